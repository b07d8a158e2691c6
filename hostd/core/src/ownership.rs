//! What hostd owns: links it created, NICs it configured, addresses and
//! route keys it set. The daemon stores this durably (JSON, written
//! atomically) and the planner reads it: hostd deletes only what it created,
//! and changes only what the desired state names.

use std::collections::BTreeSet;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{
    plan::{Op, Plan},
    route::RouteKey,
    schema::{IfState, InterfaceType, NetworkState, RouteState},
    types::IfName,
};

/// The ownership record.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Ownership {
    /// Virtual links hostd created.
    #[serde(default)]
    pub created: BTreeSet<IfName>,
    /// NICs hostd configured (never deleted; teardown leaves them down).
    #[serde(default)]
    pub managed: BTreeSet<IfName>,
    /// Addresses hostd set.
    #[serde(default)]
    pub addresses: BTreeSet<OwnedAddress>,
    /// Routes hostd set.
    #[serde(default)]
    pub routes: BTreeSet<RouteKey>,
}

/// An address on an interface.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnedAddress {
    /// Interface.
    pub iface: IfName,
    /// Address with prefix.
    pub address: IpNet,
}

impl Ownership {
    /// The record after `plan` for `desired` was applied and verified.
    pub fn after_apply(&self, desired: &NetworkState, plan: &Plan) -> Ownership {
        let mut next = self.clone();
        for op in &plan.ops {
            match op {
                Op::CreateLink { iface, .. } => {
                    next.created.insert(iface.clone());
                }
                Op::DeleteLink { iface } => {
                    next.created.remove(iface);
                }
                Op::RenameLink { from, to } if next.managed.remove(from) => {
                    next.managed.insert(to.clone());
                }
                _ => {}
            }
        }
        // Links deleted and created again in the same plan stay owned.
        for op in &plan.ops {
            if let Op::CreateLink { iface, .. } = op {
                next.created.insert(iface.clone());
            }
        }
        next.addresses.clear();
        for i in &desired.interfaces {
            if i.kind == InterfaceType::Ethernet {
                if i.state == IfState::Absent {
                    next.managed.remove(&i.name);
                } else {
                    next.managed.insert(i.name.clone());
                }
            }
            if i.state == IfState::Absent {
                continue;
            }
            for cfg in [&i.ipv4, &i.ipv6].into_iter().flatten() {
                for a in &cfg.address {
                    if let Ok(net) = IpNet::new(a.ip, a.prefix_length) {
                        next.addresses.insert(OwnedAddress {
                            iface: i.name.clone(),
                            address: net,
                        });
                    }
                }
            }
        }
        next.routes = desired
            .routes
            .config
            .iter()
            .filter(|r| r.state == RouteState::Present)
            .map(|r| r.key())
            .collect();
        next
    }
}
