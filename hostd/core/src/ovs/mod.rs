//! Open vSwitch, the pure half: the desired OVS schema and its validation
//! ([`schema`]), the observed rows ([`model`]), the planner with rollback and
//! teardown ([`plan`]), and parsers for ovs-vswitchd's `bond/show` and
//! `lacp/show` ([`status`]); the OVS entries of the main document and how
//! a kernel plan is staged around the OVS steps ([`doc`]). The OVSDB client is crate `hostd-ovsdb`; the
//! backend that observes and executes is `hostd::ovs`.

pub mod doc;
pub mod model;
pub mod plan;
pub mod schema;
pub mod status;

pub use model::{Col, OvsObserved, OvsRow, Table, OWNER_KEY, OWNER_VALUE};
pub use plan::{
    plan_ovs, plan_ovs_rollback, plan_ovs_teardown, render, simulate, OvsOp, OvsPlan, OvsPlanError,
    OvsStep, Touched,
};
pub use schema::{OvsBridgeConfig, OvsEntry, OvsState, OvsValidationErrors};
