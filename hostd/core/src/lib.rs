//! hostd's pure logic: desired-state schema, validation, observed model and
//! planner. Nothing in this crate touches the host.
//!
//! - [`types`]: validated newtypes ([`types::IfName`], [`types::VlanId`], [`types::Mtu`], [`types::MacAddr`]).
//! - [`schema`]: the desired state ([`schema::NetworkState`]), YAML/JSON parsing with field paths.
//! - [`validate`]: whole-state validation before anything is touched.
//! - [`model`]: the observed model ([`model::Observed`]) that the netlink side fills.
//! - [`plan`]: the pure planner ([`plan::plan`], teardown and rollback plans).
//! - [`ownership`]: what hostd created or configured, so that it touches nothing else.
//! - [`route`]: route identity ([`route::RouteKey`]).
//! - [`firewall`]: the InstanceArray firewall section (its own module).
//! - [`status`]: LACP and LLDP status (read-only), its parsers and the diagnosis.

pub mod firewall;
pub mod model;
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
