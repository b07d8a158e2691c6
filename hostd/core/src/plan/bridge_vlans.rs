//! VLAN membership of bridge ports, and of a bridge itself (`self`).

use crate::model::{compress_vlans, expand_vlans, LinkKind, VidFlags, VlanSet};

use super::{work::Work, Op, PlanError};

/// Phase 8: each port with declared VLANs gets exactly those: VLANs it
/// should not carry are deleted (including the VLAN 1 the kernel gives a new
/// port), then the missing ones (or ones with other flags) added, as ranges.
pub(super) fn plan(w: &mut Work) -> Result<(), PlanError> {
    let mut ports: Vec<_> = w
        .intent
        .links
        .iter()
        .filter_map(|li| li.port_vlans.as_ref().map(|v| (li.name.clone(), v)))
        .collect();
    ports.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, target) in ports {
        let Some(l) = w.k.link(name.as_str()) else {
            continue;
        };
        // A bridge's own membership ("self"), or a bridge port's.
        let bridge_self = l.kind == LinkKind::Bridge;
        let in_bridge = l
            .controller
            .as_ref()
            .and_then(|c| w.k.link(c.as_str()))
            .is_some_and(|c| c.kind == LinkKind::Bridge);
        if !in_bridge && !bridge_self {
            continue;
        }
        let current = expand_vlans(&l.vlans);
        let gone: VlanSet = current
            .keys()
            .filter(|v| !target.contains_key(v))
            .map(|v| (*v, VidFlags::default()))
            .collect();
        let add: VlanSet = target
            .iter()
            .filter(|(v, f)| current.get(v) != Some(f))
            .map(|(v, f)| (*v, *f))
            .collect();
        if !gone.is_empty() {
            w.push(Op::BridgeVlanDel {
                iface: name.clone(),
                vlans: compress_vlans(&gone),
                bridge_self,
            })?;
        }
        if !add.is_empty() {
            w.push(Op::BridgeVlanAdd {
                iface: name,
                vlans: compress_vlans(&add),
                bridge_self,
            })?;
        }
    }
    Ok(())
}
