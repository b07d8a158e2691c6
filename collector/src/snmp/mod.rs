//! SNMP polling (issue 13): IF-MIB, HOST-RESOURCES and ENTITY-SENSOR
//! tables of configured targets into the collector's round-robin store.
//!
//! Pure parts: [`config`] (the `snmp:` section, secrets), [`decode`] (OID
//! tables, row decoding, HC/32-bit fallback, sensor scaling), [`series`]
//! (series per target and index, counter handling, target status),
//! [`schedule`] (when targets are due, overruns, names refresh). I/O in
//! [`poller`] only. See docs/collector.md, "SNMP polling".

pub mod config;
pub mod decode;
pub mod poller;
pub mod schedule;
pub mod series;

use std::sync::Arc;

use axum::{extract::State, http::StatusCode, response::IntoResponse, Json};

use crate::service::Shared;

/// `GET /api/v1/snmp/targets`: each target's status, interface names and
/// limits counters — never its credentials.
pub async fn targets_handler(State(sh): State<Arc<Shared>>) -> axum::response::Response {
    let Ok(st) = sh.store.read() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "store lock poisoned").into_response();
    };
    let s = &st.snmp;
    Json(serde_json::json!({
        "targets": s.targets,
        "series": s.series.len(),
        "memory_bytes": s.memory_bytes(),
        "limits": {
            "max_interfaces_per_target": s.limits.max_interfaces_per_target,
            "max_rows_per_table": s.limits.max_rows_per_table,
            "max_series": s.limits.max_series,
            "rows_over_limit": s.rows_over_limit,
        },
        "readings_dropped": s.readings_dropped,
        "sockets": s.sockets,
        "peak_in_flight": s.peak_in_flight,
    }))
    .into_response()
}

#[cfg(test)]
mod tests;
