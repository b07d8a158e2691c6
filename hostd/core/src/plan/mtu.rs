//! MTUs, after every link exists and every port is enslaved: the kernel
//! changes MTUs by itself when ports come and go (a bond port takes its
//! bond's MTU, a bridge follows its ports unless its MTU was set by hand),
//! so the MTUs are set last, then checked again until nothing changes.

use crate::{
    model::LinkKind,
    validate::{Invalid, ValidationErrors},
};

use super::{work::Work, Op, PlanError};

/// Rounds before giving up (each round can only be needed because an
/// earlier one made the kernel change another link's MTU).
const ROUNDS: usize = 4;

/// Phase 9: lowering children first, raising parents first. A target the
/// kernel would refuse (a VLAN above the MTU its base will have, an MTU
/// above a device's maximum) is an invalid document, named by its field.
pub(super) fn plan(w: &mut Work) -> Result<(), PlanError> {
    for _ in 0..ROUNDS {
        let mut lower = Vec::new();
        let mut raise = Vec::new();
        for (li, l) in w.existing() {
            let Some(m) = li.mtu else { continue };
            if li.absent() {
                continue;
            }
            let d = w.depth(li.name.as_str());
            // A released bond port's MTU is what it had when it was
            // enslaved, which the model cannot know: set it.
            let known = w.k.mtu_known(li.name.as_str());
            if m < l.mtu && known {
                lower.push((std::cmp::Reverse(d), li.name.clone(), m, li.path.clone()));
            } else if m > l.mtu || !known {
                // Unknown: parents first, so a VLAN's MTU comes after its
                // base's is set.
                raise.push((d, li.name.clone(), m, li.path.clone()));
            }
        }
        if lower.is_empty() && raise.is_empty() {
            return Ok(());
        }
        lower.sort();
        raise.sort();
        let ordered = lower
            .into_iter()
            .map(|(_, n, m, p)| (n, m, p))
            .chain(raise.into_iter().map(|(_, n, m, p)| (n, m, p)));
        for (iface, mtu, path) in ordered {
            // An earlier change of this round may have done it.
            if w.k.mtu_known(iface.as_str())
                && w.k.link(iface.as_str()).is_none_or(|l| l.mtu == mtu)
            {
                continue;
            }
            let op = Op::SetMtu {
                iface: iface.clone(),
                mtu,
            };
            if let Err(reason) = w.accepts(&op) {
                return Err(invalid_mtu(w, &path, iface.as_str(), mtu, reason));
            }
            w.push(op)?;
        }
    }
    Ok(())
}

fn invalid_mtu(w: &Work, path: &str, iface: &str, mtu: u32, reason: String) -> PlanError {
    let l = w.k.link(iface);
    let why = match l {
        Some(l) if l.kind == LinkKind::Vlan => {
            let base = l
                .vlan
                .as_ref()
                .map(|v| v.base_iface.to_string())
                .unwrap_or_default();
            let bm = w.k.link(&base).map(|b| b.mtu).unwrap_or(0);
            format!(
                "VLAN MTU exceeds the MTU {bm} its base {base} will have (declare the base's mtu)"
            )
        }
        Some(l) if l.max_mtu.is_some_and(|m| mtu > m) => format!(
            "above the largest MTU {} that {iface} accepts",
            l.max_mtu.unwrap_or(0)
        ),
        _ => format!("the kernel would refuse it: {reason}"),
    };
    PlanError::Invalid(ValidationErrors(vec![Invalid {
        path: format!("{path}.mtu"),
        value: mtu.to_string(),
        reason: why,
    }]))
}
