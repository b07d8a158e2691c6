//! What hostd owns: links it created, NICs it configured, addresses and
//! route keys it set. The daemon stores this durably (JSON, written
//! atomically, under a lock) and the planner reads it: hostd deletes only
//! what it created, and changes only what the desired state names.
//!
//! A created link is identified by more than its name: its kind and its
//! ifindex (or, for a link recorded just before it was created, the lowest
//! ifindex it can have: every link that existed then had a smaller one). A
//! stale record (after a reboot, or after someone deleted hostd's link and
//! made another with the same name) therefore never makes hostd delete a
//! link it did not create.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};

use crate::{
    model::{Link, LinkKind, Observed},
    plan::{Op, Plan},
    route::RouteKey,
    schema::{IfState, InterfaceType, NetworkState, RouteState},
    types::IfName,
};

/// The ownership record.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Ownership {
    /// Virtual links hostd created, with their identity.
    #[serde(default, deserialize_with = "created_compat")]
    pub created: BTreeMap<IfName, OwnedLink>,
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

/// The identity of a link hostd created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OwnedLink {
    /// Its kind (`None` in records of older versions: any virtual kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<LinkKind>,
    /// Its ifindex, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// Recorded before it was created: its ifindex is at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_index: Option<u32>,
}

impl OwnedLink {
    /// True when `l` is this link.
    pub fn matches(&self, l: &Link) -> bool {
        if !l.kind.interface_type().is_virtual() {
            return false;
        }
        if self.kind.is_some_and(|k| k != l.kind) {
            return false;
        }
        match (self.index, self.min_index) {
            (Some(i), _) => i == l.index,
            (None, Some(m)) => l.index >= m,
            (None, None) => true,
        }
    }
}

/// Accepts the current map and the list of names older versions wrote.
fn created_compat<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<IfName, OwnedLink>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Map(BTreeMap<IfName, OwnedLink>),
        List(Vec<IfName>),
    }
    Ok(match Either::deserialize(d)? {
        Either::Map(m) => m,
        Either::List(l) => l.into_iter().map(|n| (n, OwnedLink::default())).collect(),
    })
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
    /// True when hostd created the link `l` (name and identity).
    pub fn owns_created(&self, l: &Link) -> bool {
        self.created.get(&l.name).is_some_and(|o| o.matches(l))
    }

    /// The record with entries whose link is gone or is not hostd's any
    /// more (a stale record) dropped.
    pub fn pruned(&self, observed: &Observed) -> Ownership {
        let mut next = self.clone();
        let links = observed.links_by_name();
        next.created
            .retain(|n, o| links.get(n.as_str()).is_some_and(|l| o.matches(l)));
        next
    }

    /// The record while `plan` runs: every link it creates is owned before it
    /// exists, identified by the lowest ifindex it can get (`min_index`: one
    /// above every ifindex observed before), so a crash never leaves a link
    /// hostd made unowned, and never makes an older link look like hostd's.
    pub fn with_pending(&self, plan: &Plan, observed: &Observed) -> Ownership {
        let mut next = self.clone();
        let min_index = observed.links.iter().map(|l| l.index).max().unwrap_or(0) + 1;
        for op in &plan.ops {
            if let Op::CreateLink {
                iface, link, index, ..
            } = op
            {
                next.created.insert(
                    iface.clone(),
                    OwnedLink {
                        kind: Some(link.kind()),
                        index: *index,
                        min_index: index.is_none().then_some(min_index),
                    },
                );
            }
        }
        next
    }

    /// The record after `plan` for `desired` was applied and verified;
    /// `now` is the host after it (for the ifindexes of created links).
    pub fn after_apply(&self, desired: &NetworkState, plan: &Plan, now: &Observed) -> Ownership {
        let mut next = self.clone();
        for op in &plan.ops {
            match op {
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
            if let Op::CreateLink { iface, link, .. } = op {
                next.created.insert(
                    iface.clone(),
                    OwnedLink {
                        kind: Some(link.kind()),
                        index: None,
                        min_index: None,
                    },
                );
            }
        }
        // The identity of every owned link, as it is now.
        let links = now.links_by_name();
        for (name, o) in next.created.iter_mut() {
            if let Some(l) = links.get(name.as_str()) {
                if o.index.is_none() && o.kind.is_none_or(|k| k == l.kind) {
                    o.index = Some(l.index);
                    o.kind = Some(l.kind);
                    o.min_index = None;
                }
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
        next.pruned(now)
    }
}

impl crate::plan::NewLink {
    /// The kind of link it creates.
    pub fn kind(&self) -> LinkKind {
        match self {
            Self::Bond { .. } => LinkKind::Bond,
            Self::Vlan { .. } => LinkKind::Vlan,
            Self::Bridge { .. } => LinkKind::Bridge,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str, index: u32, kind: LinkKind) -> Link {
        serde_json::from_value(serde_json::json!({
            "name": name, "index": index, "kind": kind,
        }))
        .unwrap()
    }

    #[test]
    fn identity_is_more_than_the_name() {
        let o = OwnedLink {
            kind: Some(LinkKind::Bond),
            index: Some(7),
            min_index: None,
        };
        assert!(o.matches(&link("bond0", 7, LinkKind::Bond)));
        assert!(
            !o.matches(&link("bond0", 8, LinkKind::Bond)),
            "another ifindex"
        );
        assert!(
            !o.matches(&link("bond0", 7, LinkKind::Bridge)),
            "another kind"
        );
        let pending = OwnedLink {
            kind: Some(LinkKind::Vlan),
            index: None,
            min_index: Some(20),
        };
        assert!(pending.matches(&link("v", 21, LinkKind::Vlan)));
        assert!(
            !pending.matches(&link("v", 19, LinkKind::Vlan)),
            "older link"
        );
        assert!(
            !OwnedLink::default().matches(&link("eth0", 1, LinkKind::Ethernet)),
            "never a NIC"
        );
    }

    #[test]
    fn reads_the_old_record_format() {
        let own: Ownership =
            serde_json::from_str(r#"{"created": ["bond0", "br0"], "managed": ["eth0"]}"#).unwrap();
        assert_eq!(own.created.len(), 2);
        assert!(own.owns_created(&link("bond0", 3, LinkKind::Bond)));
        let back: Ownership = serde_json::from_str(&serde_json::to_string(&own).unwrap()).unwrap();
        assert_eq!(back, own);
    }
}
