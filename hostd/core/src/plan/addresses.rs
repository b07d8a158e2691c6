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
/// going down drops its IPv6 addresses).
pub(super) fn additions(w: &mut Work) -> Result<(), PlanError> {
    let mut adds = Vec::new();
    for (li, l) in w.existing() {
        if !li.absent() {
            for a in li.addrs.wanted() {
                if !l.addresses.contains(&a) {
                    adds.push((li.name.clone(), a));
                }
            }
        }
    }
    adds.sort();
    for (iface, address) in adds {
        w.push(Op::AddAddress { iface, address })?;
    }
    Ok(())
}
