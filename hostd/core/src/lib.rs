//! hostd's pure logic: desired-state schema, validation, observed model and
//! planner. Nothing in this crate touches the host.
//!
//! - [`bond`]: bond modes and options, each option defined once (its kernel attribute, modes, what a change needs).
//! - [`types`]: validated newtypes ([`types::IfName`], [`types::VlanId`], [`types::Mtu`], [`types::MacAddr`]).
//! - [`schema`]: the desired state ([`schema::NetworkState`]), YAML/JSON parsing with field paths.
//! - [`validate`]: whole-state validation before anything is touched.
//! - [`model`]: the observed model ([`model::Observed`]) that the netlink side fills.
//! - [`plan`]: the pure planner: documents, teardowns and rollbacks lowered into an [`plan::Intent`], planned by per-kind phase planners over the kernel model.
//! - [`sim`]: the kernel model (what the kernel refuses and does by itself), checked against the real kernel by the differential test.
//! - [`ownership`]: what hostd created or configured, so that it touches nothing else.
//! - [`route`]: route identity ([`route::RouteKey`]).
//! - [`intent`]: connection intent compiled for both ends of the cable ([`intent::compile`], [`intent::linux_switch`]).
//! - [`firewall`]: the InstanceArray firewall section (its own module).
//! - [`import`]: ifupdown, ifcfg and netplan configurations turned into a desired state (`hostd import`).
//! - [`ovs`]: Open vSwitch: schema, observed rows, planner, bond/LACP status.
//! - [`status`]: LACP and LLDP status (read-only), its parsers and the diagnosis.

pub mod bond;
pub mod firewall;
pub mod import;
pub mod intent;
pub mod model;
pub mod ovs;
pub mod ownership;
pub mod plan;
pub mod route;
pub mod schema;
pub mod sim;
pub mod status;
pub mod telemetry;
pub mod types;
pub mod validate;

pub use model::Observed;
pub use ownership::Ownership;
pub use plan::{plan, Op, Plan, PlanError};
pub use schema::NetworkState;
