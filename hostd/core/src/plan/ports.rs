//! Controllers: port releases and enslavements.

use super::{intent::CtrlKind, links::bonds_to_empty, work::Work, Op, PlanError};

/// Phase 3: ports whose controller must change or go are released, and so
/// are the ports of bonds that must be empty for a change (mode,
/// `fail_over_mac`). Ports of links the plan deletes are released by the
/// kernel.
pub(super) fn releases(w: &mut Work) -> Result<(), PlanError> {
    let emptied = bonds_to_empty(w);
    let mut out = Vec::new();
    for l in w.k.links() {
        let Some(c) = &l.controller else { continue };
        if w.doomed.contains(l.name.as_str()) || w.doomed.contains(c.as_str()) {
            continue;
        }
        let release = emptied.contains(c.as_str())
            || w.intent(l.name.as_str())
                .and_then(|li| li.controller.as_ref())
                .is_some_and(|target| target.as_ref().map(|t| &t.name) != Some(c));
        if release {
            out.push(l.name.clone());
        }
    }
    for iface in out {
        w.push(Op::SetController {
            iface,
            controller: None,
        })?;
    }
    Ok(())
}

/// Phase 7: enslavements, lower devices first. The kernel refuses to
/// enslave an up link to a bond: it is set down first (the bond brings it
/// up).
pub(super) fn enslavements(w: &mut Work) -> Result<(), PlanError> {
    let mut todo = Vec::new();
    for li in &w.intent.links {
        let Some(Some(c)) = &li.controller else {
            continue;
        };
        let Some(l) = w.k.link(li.name.as_str()) else {
            continue;
        };
        if l.controller.as_ref() == Some(&c.name) {
            continue;
        }
        todo.push((
            w.depth(li.name.as_str()),
            c.name.clone(),
            li.name.clone(),
            c.kind,
        ));
    }
    todo.sort();
    for (_, c, port, kind) in todo {
        if kind == CtrlKind::Bond && w.k.link(port.as_str()).is_some_and(|l| l.up) {
            w.push(Op::SetState {
                iface: port.clone(),
                up: false,
            })?;
        }
        w.push(Op::SetController {
            iface: port,
            controller: Some(c),
        })?;
    }
    Ok(())
}
