//! Routes, identified by their key `{table, destination, metric}`.

use std::collections::BTreeSet;

use crate::{
    route::{RouteKey, RouteProtocol},
    schema::Route,
    validate::{Invalid, ValidationErrors},
};

use super::{intent::RouteRemoval, route_matches, work::Work, Op, PlanError};

/// True for routes hostd installs itself (`proto static`; a route observed
/// without a protocol, in fixtures, counts as hostd's).
fn is_hostds(r: &Route) -> bool {
    matches!(r.protocol, None | Some(RouteProtocol::Static))
}

fn proto(r: &Route) -> RouteProtocol {
    r.protocol.unwrap_or(RouteProtocol::Static)
}

/// Phase 1: routes that must go. A key hostd set before that is no longer
/// wanted goes only while it still holds hostd's route; a route a DHCP
/// client, router advertisements or a routing daemon installed goes only
/// when the document names its key as absent.
pub(super) fn deletions(w: &mut Work) -> Result<(), PlanError> {
    let wanted: BTreeSet<RouteKey> = w
        .intent
        .routes
        .ensure
        .iter()
        .map(|(r, _)| r.key())
        .collect();
    let mut dels: Vec<Route> = Vec::new();
    for r in w.k.routes() {
        let k = r.key();
        if wanted.contains(&k) {
            continue;
        }
        let goes = w.intent.routes.remove.iter().any(|rm| match rm {
            RouteRemoval::Key(key) => *key == k,
            RouteRemoval::Owned(key) => *key == k && is_hostds(r),
            RouteRemoval::Exact(route) => route_matches(route, r) && proto(route) == proto(r),
        });
        if goes {
            dels.push(r.clone());
        }
    }
    dels.sort_by_key(|r| r.key());
    for route in dels {
        w.push(Op::DeleteRoute { route })?;
    }
    Ok(())
}

/// Phase 12: routes that must be there (replaced when their key holds
/// another route). A route the kernel would refuse (its gateway on no
/// subnet of a link that will be up) is an invalid document.
pub(super) fn additions(w: &mut Work) -> Result<(), PlanError> {
    let mut adds: Vec<(&Route, &String)> = w
        .intent
        .routes
        .ensure
        .iter()
        .filter(|(r, _)| !w.k.routes().iter().any(|c| route_matches(r, c)))
        .map(|(r, p)| (r, p))
        .collect();
    adds.sort_by_key(|(r, _)| r.key());
    for (r, path) in adds {
        let op = Op::AddRoute { route: r.clone() };
        if let Err(reason) = w.accepts(&op) {
            if path.starts_with("routes.") {
                return Err(PlanError::Invalid(ValidationErrors(vec![Invalid {
                    path: path.clone(),
                    value: r.to_string(),
                    reason: format!("the kernel would refuse this route after the interfaces are set up: {reason}"),
                }])));
            }
        }
        w.push(op)?;
    }
    restore_flushed(w)
}

/// Routes the plan's own steps made the kernel flush (a link set down and
/// up again, its last IPv4 address replaced) that nothing removes on
/// purpose are put back as they were, with their protocol, when the kernel
/// takes them (their links exist and are up).
fn restore_flushed(w: &mut Work) -> Result<(), PlanError> {
    let wanted: BTreeSet<RouteKey> = w
        .intent
        .routes
        .ensure
        .iter()
        .map(|(r, _)| r.key())
        .collect();
    let start = w.start_routes();
    let mut lost: Vec<Route> = Vec::new();
    for r in start {
        if wanted.contains(&r.key()) || w.k.routes().iter().any(|c| c.key() == r.key()) {
            continue;
        }
        let removed = w.intent.routes.remove.iter().any(|rm| match rm {
            RouteRemoval::Key(key) | RouteRemoval::Owned(key) => *key == r.key(),
            RouteRemoval::Exact(route) => route_matches(route, &r),
        });
        if removed {
            continue;
        }
        // The links it goes through, by their names now.
        let Some(r) = w.renamed_route(&r) else {
            continue;
        };
        lost.push(r);
    }
    lost.sort_by_key(|r| r.key());
    for route in lost {
        let op = Op::AddRoute { route };
        if w.accepts(&op).is_ok() {
            w.push(op)?;
        }
    }
    Ok(())
}
