//! Links: renames, which links go, deletions, changes to existing bonds and
//! bridges, creations.

use std::collections::BTreeSet;

use crate::{bond::BondOptions, model::LinkKind, schema::InterfaceType, types::IfName};

use super::{
    diff_bridge,
    intent::{Find, LinkIntent},
    work::Work,
    NewLink, Op, PlanError,
};

/// Phase 0: NICs matched by MAC (links matched by ifindex, in a rollback)
/// get the name the intent gives them; the link is set down first (the
/// kernel refuses to rename an up link).
pub(super) fn renames(w: &mut Work) -> Result<(), PlanError> {
    for li in &w.intent.links {
        let found: Option<IfName> = match li.find {
            Find::Name => continue,
            Find::Mac(mac) => {
                if w.k
                    .link(li.name.as_str())
                    .is_some_and(|l| l.mac == Some(mac))
                {
                    continue;
                }
                let candidates: Vec<IfName> =
                    w.k.links()
                        .filter(|l| matches!(l.kind, LinkKind::Ethernet | LinkKind::Veth))
                        .filter(|l| l.mac == Some(mac))
                        .filter(|l| w.intent(l.name.as_str()).is_none())
                        .map(|l| l.name.clone())
                        .collect();
                match candidates.into_iter().next() {
                    Some(n) => Some(n),
                    None => {
                        return Err(PlanError::NoSuchMac {
                            path: li.path.clone(),
                            name: li.name.clone(),
                            mac,
                        })
                    }
                }
            }
            Find::Index(i) => w.k.links().find(|l| l.index == i).map(|l| l.name.clone()),
        };
        let Some(from) = found else { continue };
        if from == li.name {
            continue;
        }
        if w.k.link(li.name.as_str()).is_some() {
            return Err(PlanError::RenameConflict {
                path: li.path.clone(),
                from,
                to: li.name.clone(),
            });
        }
        if w.k.link(from.as_str()).is_some_and(|l| l.up) {
            w.push(Op::SetState {
                iface: from.clone(),
                up: false,
            })?;
        }
        w.push(Op::RenameLink {
            from,
            to: li.name.clone(),
        })?;
    }
    Ok(())
}

/// A NIC the intent names must exist; a declared link must not exist as
/// something hostd may not replace.
pub(super) fn check_kinds(w: &Work) -> Result<(), PlanError> {
    for li in &w.intent.links {
        let existing = w.k.link(li.name.as_str());
        if li.kind.is_virtual() {
            if let Some(l) = existing {
                if !l.kind.interface_type().is_virtual() {
                    return Err(PlanError::KindConflict {
                        path: li.path.clone(),
                        name: li.name.clone(),
                        found: l.kind,
                        wanted: li.kind.as_str(),
                    });
                }
            }
        } else if li.kind == InterfaceType::Ethernet {
            match existing {
                Some(l) if !matches!(l.kind, LinkKind::Ethernet | LinkKind::Veth) => {
                    return Err(PlanError::KindConflict {
                        path: li.path.clone(),
                        name: li.name.clone(),
                        found: l.kind,
                        wanted: "ethernet",
                    })
                }
                None if !li.absent() && li.state.is_some() => {
                    return Err(PlanError::MissingNic {
                        path: li.path.clone(),
                        name: li.name.clone(),
                    })
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Which links go: virtual links the intent wants absent, or of another
/// kind or VLAN settings (then recreated), and the VLANs on them (which the
/// kernel deletes with their base: recreated when wanted, refused when
/// nobody said hostd may touch them).
pub(super) fn doomed(w: &Work) -> Result<BTreeSet<String>, PlanError> {
    let mut doomed = BTreeSet::new();
    for li in &w.intent.links {
        let Some(l) = w.k.link(li.name.as_str()) else {
            continue;
        };
        if !li.kind.is_virtual() || !l.kind.interface_type().is_virtual() {
            continue;
        }
        // Another link under this name than the one a rollback restores.
        let other = matches!(li.find, Find::Index(i) if i != l.index);
        let replace = l.kind.interface_type() != li.kind
            || other
            || li.vlan.as_ref().is_some_and(|v| l.vlan.as_ref() != Some(v));
        if li.absent() || replace {
            doomed.insert(li.name.to_string());
        }
    }
    loop {
        let mut added = false;
        for l in w.k.links() {
            let Some(v) = &l.vlan else { continue };
            if doomed.contains(v.base_iface.as_str()) && !doomed.contains(l.name.as_str()) {
                if w.intent(l.name.as_str()).is_some() || w.intent.may_destroy_uppers {
                    doomed.insert(l.name.to_string());
                    added = true;
                } else {
                    return Err(PlanError::WouldDestroy {
                        name: v.base_iface.clone(),
                        upper: l.name.clone(),
                    });
                }
            }
        }
        if !added {
            break;
        }
    }
    Ok(doomed)
}

/// Phase 4: deletions, children first.
pub(super) fn deletions(w: &mut Work) -> Result<(), PlanError> {
    let mut dels: Vec<String> = w.doomed.iter().cloned().collect();
    dels.sort_by_key(|n| (std::cmp::Reverse(w.depth(n)), n.clone()));
    for d in dels {
        if let Some(l) = w.k.link(&d) {
            let iface = l.name.clone();
            w.push(Op::DeleteLink { iface })?;
        }
    }
    w.deletions_done = true;
    Ok(())
}

/// Bonds whose ports must be released before their settings change (a mode
/// change, `fail_over_mac`).
pub(super) fn bonds_to_empty(w: &Work) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (li, l) in w.existing() {
        if let (Some((mode, opts)), Some(b)) = (&li.bond, &l.bond) {
            if *mode != b.mode || opts.diff(&b.options).needs_no_ports() {
                out.insert(li.name.to_string());
            }
        }
    }
    out
}

/// Phase 5: changes to existing bonds and bridges. Options the kernel only
/// takes on a down bond are set with the bond down (the state phase brings
/// it back up); a mode change happens on a bond whose ports were released.
pub(super) fn changes(w: &mut Work) -> Result<(), PlanError> {
    for (li, l) in w.existing() {
        if !li.present_virtual() {
            continue;
        }
        if let (Some((mode, opts)), Some(b)) = (&li.bond, w.k.bond_configured(l.name.as_str())) {
            bond_changes(w, li, *mode, opts, &b)?;
        }
        if let (Some(want), Some(have)) = (&li.bridge, &l.bridge) {
            let diff = diff_bridge(want, have);
            if !diff.is_empty() {
                w.push(Op::SetBridge {
                    iface: li.name.clone(),
                    options: diff,
                })?;
            }
        }
    }
    Ok(())
}

/// A bond's mode and options, as few messages as the kernel allows: options
/// only the current mode takes go before a mode change; the rest after it;
/// then, while the kernel's own reactions (a new `miimon` rescales the
/// delays, a mode turns the MII monitor on) leave a difference, once more.
fn bond_changes(
    w: &mut Work,
    li: &LinkIntent,
    mode: crate::schema::BondMode,
    opts: &BondOptions,
    b: &crate::model::BondState,
) -> Result<(), PlanError> {
    let mode_changes = mode != b.mode;
    let pre = if mode_changes {
        opts.diff(&b.options)
            .only(|d| d.modes.contains(b.mode) && !d.modes.contains(mode))
    } else {
        BondOptions::default()
    };
    let clear_primary = li.clear_primary && b.options.primary.is_some();
    // Into a mode that uses a primary from one that does not: the kernel
    // may still hold a primary's name from before (netlink did not show
    // it): without one declared, clear it after the mode change.
    let hidden_primary =
        mode_changes && mode.uses_primary() && !b.mode.uses_primary() && opts.primary.is_none();
    let mut first = true;
    for _ in 0..3 {
        let Some(cur) = w.k.bond_configured(li.name.as_str()) else {
            return Ok(());
        };
        let changing_mode = first && mode_changes;
        let mut after_mode = cur.options.clone();
        if first {
            after_mode.merge(&pre);
        }
        if changing_mode {
            after_mode.after_mode_set(mode);
        }
        let diff = opts
            .diff(&after_mode)
            .only(|d| d.modes.contains(mode))
            .without_idle_mii_delays(after_mode.miimon);
        let pre_now = if first {
            pre.clone()
        } else {
            BondOptions::default()
        };
        let clear_now = first && clear_primary;
        let clear_after = first && hidden_primary;
        if !changing_mode && diff.is_empty() && pre_now.is_empty() && !clear_now && !clear_after {
            break;
        }
        let down = changing_mode
            || diff.needs_down()
            || diff.needs_no_ports()
            || pre_now.needs_down()
            || pre_now.needs_no_ports();
        if down && w.k.link(li.name.as_str()).is_some_and(|l| l.up) {
            w.push(Op::SetState {
                iface: li.name.clone(),
                up: false,
            })?;
        }
        if !pre_now.is_empty() || (clear_now && changing_mode) {
            w.push(Op::SetBond {
                iface: li.name.clone(),
                mode: None,
                options: pre_now,
                clear_primary: clear_now,
            })?;
        }
        if changing_mode || !diff.is_empty() || clear_now {
            w.push(Op::SetBond {
                iface: li.name.clone(),
                mode: changing_mode.then_some(mode),
                options: diff,
                clear_primary: clear_now && !changing_mode,
            })?;
        }
        if clear_after {
            w.push(Op::SetBond {
                iface: li.name.clone(),
                mode: None,
                options: BondOptions::default(),
                clear_primary: true,
            })?;
        }
        first = false;
    }
    Ok(())
}

/// Phase 6: creations, parents first. A VLAN gets its MTU at creation only
/// when its base already allows it (otherwise the MTU phase raises it after
/// the base).
pub(super) fn creations(w: &mut Work) -> Result<(), PlanError> {
    let mut creates: Vec<&LinkIntent> = w
        .intent
        .links
        .iter()
        .filter(|li| li.present_virtual() && w.k.link(li.name.as_str()).is_none())
        .collect();
    creates.sort_by_key(|li| (w.depth(li.name.as_str()), li.name.clone()));
    for li in creates {
        let link = match li.kind {
            InterfaceType::Bond => {
                let Some((mode, options)) = &li.bond else {
                    continue;
                };
                NewLink::Bond {
                    mode: *mode,
                    options: options
                        .only(|d| d.modes.contains(*mode))
                        .without_idle_mii_delays(BondOptions::kernel_defaults(*mode).miimon),
                }
            }
            InterfaceType::Vlan => {
                let Some(v) = &li.vlan else { continue };
                NewLink::Vlan {
                    base: v.base_iface.clone(),
                    id: v.id,
                    protocol: v.protocol,
                }
            }
            InterfaceType::LinuxBridge => NewLink::Bridge {
                options: li.bridge.clone().unwrap_or_default(),
            },
            _ => continue,
        };
        let mtu = match &link {
            NewLink::Vlan { base, .. } => {
                // A base whose MTU the model cannot know (a released bond
                // port) gets its MTU first: the VLAN's comes in the MTU phase.
                let base_mtu =
                    w.k.link(base.as_str())
                        .filter(|_| w.k.mtu_known(base.as_str()))
                        .map(|b| b.mtu);
                li.mtu.filter(|m| base_mtu.is_some_and(|b| *m <= b))
            }
            _ => li.mtu,
        };
        let index = li
            .restore
            .index
            .filter(|i| !w.k.links().any(|l| l.index == *i));
        w.push(Op::CreateLink {
            iface: li.name.clone(),
            mtu,
            link,
            index,
            mac: li.restore.mac,
        })?;
        if let Some(mode) = li.restore.addr_gen_mode {
            if w.k.link(li.name.as_str()).and_then(|l| l.addr_gen_mode) != Some(mode) {
                w.push(Op::SetAddrGenMode {
                    iface: li.name.clone(),
                    mode,
                })?;
            }
        }
    }
    Ok(())
}
