//! Static addresses. Dynamic ones (DHCP, SLAAC, temporary: with a finite
//! lifetime) are never deleted; one the intent lists is made static.

use super::{work::Work, Op, PlanError};

/// Phase 2: static addresses that must go, on links that stay.
pub(super) fn deletions(w: &mut Work) -> Result<(), PlanError> {
    let mut dels = Vec::new();
    for (li, l) in w.existing() {
        for a in &l.addresses {
            if li.addrs.unwanted(a) {
                dels.push((li.name.clone(), *a));
            }
        }
    }
    dels.sort();
    for (iface, address) in dels {
        w.push(Op::DeleteAddress { iface, address })?;
    }
    Ok(())
}

/// Phase 11: addresses that must be there, after the links are up (a link
/// going down drops its IPv6 addresses): the ones the intent wants, and the
/// static ones a link had when the plan started that the intent does not
/// remove (the plan's own steps may have dropped them: a link set down, a
/// VLAN that followed its base down and up).
pub(super) fn additions(w: &mut Work) -> Result<(), PlanError> {
    let mut adds = Vec::new();
    for l in w.k.links() {
        let li = w.intent(l.name.as_str());
        if li.is_some_and(|li| li.absent()) {
            continue;
        }
        let mut wanted: std::collections::BTreeSet<ipnet::IpNet> =
            li.map(|li| li.addrs.wanted()).unwrap_or_default();
        if let Some(s) = w.at_start(l) {
            wanted.extend(
                s.addresses
                    .iter()
                    .filter(|a| li.is_none_or(|li| !li.addrs.unwanted(a))),
            );
        }
        for a in wanted {
            if !l.addresses.contains(&a) {
                adds.push((l.name.clone(), a));
            }
        }
    }
    adds.sort();
    for (iface, address) in adds {
        w.push(Op::AddAddress { iface, address })?;
    }
    Ok(())
}
