//! The daemon's status source: what `Status()` returns and what feeds the
//! `LacpChanged`/`LldpChanged` signals.
//!
//! INTEGRATION POINT: the LACP/LLDP status model (issue 10 item 2,
//! `hostd::status`) plugs in here by implementing [`StatusSource`] and
//! being passed to [`super::Daemon::with_status`]. Until then
//! [`ObservedStatus`] serves what the engine's own observation holds (bond
//! mode and options, members and their up/down state, from
//! `engine::show`): real observed data, but no LACP partner or LLDP
//! neighbour details, and it never emits `LldpChanged`.

use std::{collections::BTreeMap, sync::Mutex};

use hostd_core::model::Observed;
use serde_json::{json, Value};

/// A status change to announce.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusChange {
    /// A bond's LACP state changed (JSON of the bond).
    Lacp(Value),
    /// A NIC's LLDP neighbour changed (JSON of the NIC's neighbour).
    Lldp(Value),
}

/// Where status comes from.
pub trait StatusSource: Send + Sync + 'static {
    /// The current status as JSON (called on a blocking thread; may read
    /// the kernel, /proc or lldpd).
    fn status(&self, observed: &Observed) -> Value;
    /// Called after every reconcile with a fresh observation: returns what
    /// changed since the last call.
    fn refresh(&self, observed: &Observed) -> Vec<StatusChange>;
}

/// The stand-in source: bonds as the engine observes them.
#[derive(Debug, Default)]
pub struct ObservedStatus {
    last: Mutex<BTreeMap<String, Value>>,
}

impl ObservedStatus {
    /// Bonds as observed: mode, options, up, members (name, up).
    pub fn bonds(observed: &Observed) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        for l in &observed.links {
            let Some(b) = &l.bond else { continue };
            let members: Vec<Value> = observed
                .links
                .iter()
                .filter(|p| p.controller.as_ref() == Some(&l.name))
                .map(|p| json!({ "name": p.name.as_str(), "up": p.up }))
                .collect();
            out.insert(
                l.name.as_str().to_owned(),
                json!({
                    "name": l.name.as_str(),
                    "mode": b.mode,
                    "up": l.up,
                    "options": b.options,
                    "members": members,
                }),
            );
        }
        out
    }
}

impl StatusSource for ObservedStatus {
    fn status(&self, observed: &Observed) -> Value {
        json!({
            "source": "engine observation (bonds and members; LACP partner and LLDP details come with hostd::status)",
            "bonds": Self::bonds(observed).into_values().collect::<Vec<_>>(),
            "lldp": Value::Null,
        })
    }

    fn refresh(&self, observed: &Observed) -> Vec<StatusChange> {
        let now = Self::bonds(observed);
        let Ok(mut last) = self.last.lock() else {
            return Vec::new();
        };
        let mut changes = Vec::new();
        for (name, v) in &now {
            if last.get(name) != Some(v) {
                changes.push(StatusChange::Lacp(v.clone()));
            }
        }
        for name in last.keys() {
            if !now.contains_key(name) {
                changes.push(StatusChange::Lacp(json!({ "name": name, "gone": true })));
            }
        }
        *last = now;
        changes
    }
}
