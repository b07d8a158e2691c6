//! The Open vSwitch backend: observe OVSDB into the observed OVS model,
//! execute an [`OvsPlan`] (one transaction per step, each waiting until
//! ovs-vswitchd applied it), verify by re-observing and re-planning, roll
//! back exactly the rows the plan touched, and read bond/LACP status.
//!
//! - [`observe`]: the `hostd-ovsdb` cache -> [`OvsObserved`].
//! - [`exec`]: a step -> OVSDB operations; the apply/verify/rollback loop.
//! - [`session`]: a blocking facade for the engine (`hostd apply` with OVS
//!   entries in the document).
//! - [`status`]: `bond/show`, `lacp/show`, `lacp/show-stats` over
//!   ovs-vswitchd's control socket, and `Interface.lacp_current`.
//!
//! The planner is pure, in `hostd_core::ovs`; the client is `hostd-ovsdb`.
//! hostd never runs `ovs-vsctl`.

pub mod exec;
pub mod observe;
pub mod session;
pub mod status;

use std::{path::Path, time::Duration};

use hostd_core::ovs::{OvsObserved, OvsPlan, OvsPlanError, OvsState};
use hostd_ovsdb::{Client, DB, HOSTD_TABLES};

pub use exec::{ApplyError, ApplyOptions, ApplyReport};

/// Where Debian's ovsdb-server listens.
pub const DEFAULT_DB_SOCKET: &str = "/run/openvswitch/db.sock";

/// A connection to OVSDB with the monitored cache hostd plans from.
pub struct Ovs {
    pub client: Client,
}

impl Ovs {
    /// Connects to ovsdb-server's unix socket, starts the cache and makes
    /// sure the `Open_vSwitch` row exists.
    pub async fn connect(db_socket: impl AsRef<Path>) -> Result<Self, hostd_ovsdb::Error> {
        let client = Client::connect_unix(db_socket).await?;
        client.ensure_root_row().await?;
        client.monitor_cache(DB, HOSTD_TABLES).await?;
        // The root row inserted just now reaches the cache by an update.
        client
            .wait_until("the Open_vSwitch row", Duration::from_secs(10), |c| {
                !c.is_empty("Open_vSwitch")
            })
            .await?;
        Ok(Self { client })
    }

    /// The rows as the cache holds them now.
    pub fn observe(&self) -> OvsObserved {
        observe::observe(&self.client)
    }

    /// Plans `desired` against the current rows (pure, nothing changed).
    pub fn plan(&self, desired: &OvsState) -> Result<OvsPlan, OvsPlanError> {
        hostd_core::ovs::plan_ovs(desired, &self.observe())
    }

    /// Plans, applies, verifies; rolls back on failure.
    pub async fn apply(
        &self,
        desired: &OvsState,
        opts: &ApplyOptions,
    ) -> Result<ApplyReport, ApplyError> {
        exec::apply(self, Some(desired), opts).await
    }

    /// Removes every row hostd created.
    pub async fn teardown(&self, opts: &ApplyOptions) -> Result<ApplyReport, ApplyError> {
        exec::apply(self, None, opts).await
    }
}
