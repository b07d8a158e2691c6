//! hostd, the per-server host network daemon: the side-effecting half.
//!
//! - [`netlink`]: a synchronous rtnetlink socket that pipelines requests.
//! - [`observe`]: links, bridge port VLANs, addresses, routes into the model.
//! - [`apply`]: a plan's operations as rtnetlink requests, executed in batches.
//! - [`bond_attrs`]: bond options on the wire, from hostd-core's option table.
//! - [`resolved`]: `dns-resolver` per link through systemd-resolved (D-Bus), where it runs.
//! - [`engine`]: plan, apply, verify, roll back; teardown.
//! - [`state_plan`]: the whole plan (network operations, then the firewall step).
//! - [`store`]: the ownership record, written atomically.
//! - [`daemon`]: `hostd daemon`: reconcile on kernel events, commit-confirmed
//!   applies, the D-Bus API, supervised telemetry; the CLI's client side.
//! - [`cli`]: the command line and its exit codes; `main` only calls [`cli::run`].
//! - [`firewall`]: the InstanceArray firewall (nftables).
//! - [`ovs`]: Open vSwitch through OVSDB (crate `hostd-ovsdb`): observe,
//!   apply one transaction per step, verify, roll back; bond/LACP status.
//! - [`status`]: `hostd status`: LACP and LLDP status with a diagnosis.
//! - [`telemetry`]: `hostd telemetry run|show`: the eBPF counters and the
//!   sFlow agent (crate `hostd-telemetry`) driven by the `telemetry` section.
//!
//! The pure half (schema, validation, planner) is `hostd-core`.

pub mod apply;
pub mod bond_attrs;
pub mod cli;
pub mod daemon;
pub mod engine;
pub mod firewall;
pub mod fleet;
pub mod netlink;
pub mod observe;
pub mod ovs;
pub mod resolved;
pub mod state_plan;
pub mod status;
pub mod store;
pub mod telemetry;
