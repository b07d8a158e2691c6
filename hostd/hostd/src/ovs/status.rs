//! OVS bond and LACP status: `bond/show`, `lacp/show`, `lacp/show-stats`
//! over ovs-vswitchd's control socket, merged with `Interface.lacp_current`
//! from the OVSDB cache. Parsing and diagnosis are pure
//! (`hostd_core::ovs::status`).

use std::path::Path;

use hostd_core::ovs::status::{merge, OvsBondStatus};
use hostd_ovsdb::{Client, Unixctl, UnixctlError};

/// Reads the status of every OVS bond.
pub async fn bond_status(
    vswitchd_ctl: &Path,
    client: Option<&Client>,
) -> Result<Vec<OvsBondStatus>, UnixctlError> {
    let mut ctl = Unixctl::connect(vswitchd_ctl).await?;
    let bond = ctl.call("bond/show", &[]).await?;
    let lacp = ctl.call("lacp/show", &[]).await?;
    let stats = ctl.call("lacp/show-stats", &[]).await?;
    let mut bonds = merge(&bond, &lacp, &stats);
    if let Some(c) = client {
        c.with_cache(|cache| {
            for b in &mut bonds {
                for m in &mut b.members {
                    m.lacp_current = cache
                        .by_name("Interface", &m.name)
                        .and_then(|(_, r)| r.bool("lacp_current"));
                }
            }
        });
    }
    Ok(bonds)
}
