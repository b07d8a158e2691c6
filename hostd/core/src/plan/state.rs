//! Administrative state (up/down).

use crate::{model::Link, schema::IfState};

use super::{work::Work, Op, PlanError};

/// Phase 10: every link ends in the state its intent names; a link the plan
/// took down on its way (a renamed NIC, a bond set down for an option, the
/// ports of an emptied bond, a VLAN that followed its base) without an
/// intent about its state goes back to the state it had. Ups go parents
/// first (a VLAN needs its base up), then downs children first; repeated
/// while the kernel's own reactions (a base coming up brings its VLANs up)
/// leave something to do.
pub(super) fn plan(w: &mut Work) -> Result<(), PlanError> {
    for _ in 0..3 {
        let mut ups = Vec::new();
        let mut downs = Vec::new();
        for l in w.k.links() {
            let Some(want) = wanted_up(w, l) else {
                continue;
            };
            if want != l.up {
                let d = w.depth(l.name.as_str());
                if want {
                    ups.push((d, l.name.clone()));
                } else {
                    downs.push((std::cmp::Reverse(d), l.name.clone()));
                }
            }
        }
        if ups.is_empty() && downs.is_empty() {
            return Ok(());
        }
        ups.sort();
        downs.sort();
        for (_, iface) in ups {
            if !w.k.link(iface.as_str()).is_some_and(|l| l.up) {
                w.push(Op::SetState { iface, up: true })?;
            }
        }
        for (_, iface) in downs {
            if w.k.link(iface.as_str()).is_some_and(|l| l.up) {
                w.push(Op::SetState { iface, up: false })?;
            }
        }
    }
    Ok(())
}

/// The state `l` must end in, when the plan decides it.
fn wanted_up(w: &Work, l: &Link) -> Option<bool> {
    match w.intent(l.name.as_str()).and_then(|li| li.state) {
        Some(IfState::Up) => Some(true),
        Some(IfState::Down | IfState::Absent) => Some(false),
        None => w.at_start(l).map(|s| s.up),
    }
}
