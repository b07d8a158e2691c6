//! hostd's pure logic: desired-state schema, validation, observed model and
//! planner. Nothing in this crate touches the host.
