//! HTTP+JSON API (described in collector/openapi.yaml):
//!
//! - `GET /api/v1/health` (no authentication): liveness.
//! - `GET /api/v1/stats`: ingest statistics, per-agent sequence tracking,
//!   kernel drops, series memory, snapshot status.
//! - `GET /api/v1/series`: every series with its data sources and archives.
//! - `GET /api/v1/series/data?id=&start=&end=&resolution=&cf=`: rows of one
//!   series at the archive closest to the resolution.
//! - `GET /api/v1/report?start=&end=&resolution=&subnet=&percentile=`: per
//!   subnet bytes/packets in and out and the percentile rate.
//! - `GET /metrics`: Prometheus text exposition of the collector's counters.
//!
//! Every route but health requires `Authorization: Bearer <token>` when
//! tokens are configured. Errors are `{"error": "..."}` with a 4xx status
//! that says what was wrong with which parameter.

use std::{collections::HashMap, fmt::Write as _, sync::Arc};

use axum::{
    extract::{Query, Request, State},
    http::{header, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use ipnet::IpNet;
use serde_json::json;

use crate::{accounting::Stats, rrd::Cf, service::Shared};

/// A 4xx/5xx with a message.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

type Params = Query<HashMap<String, String>>;

pub fn router(shared: Arc<Shared>) -> Router {
    let protected = Router::new()
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/series", get(series))
        .route("/api/v1/series/data", get(series_data))
        .route("/api/v1/report", get(report))
        .route("/metrics", get(metrics))
        .route("/api/v1/snmp/targets", get(crate::snmp::targets_handler))
        .route_layer(middleware::from_fn_with_state(shared.clone(), auth));
    Router::new()
        .route("/api/v1/health", get(health))
        .merge(protected)
        // Graphs and the HTML page (issue 13): their own auth, see graph::web.
        .merge(crate::graph::web::routes(shared.clone()))
        .fallback(|| async {
            ApiError(
                StatusCode::NOT_FOUND,
                "no such endpoint; see collector/openapi.yaml".into(),
            )
        })
        .with_state(shared)
}

/// Constant-time comparison of a presented token with the configured ones.
pub(crate) fn token_ok(tokens: &[String], presented: &str) -> bool {
    tokens.iter().fold(false, |ok, t| {
        let (a, b) = (t.as_bytes(), presented.as_bytes());
        let mut diff = (a.len() ^ b.len()) as u8 | (a.len() != b.len()) as u8;
        for (i, x) in a.iter().enumerate() {
            diff |= x ^ b.get(i).copied().unwrap_or(0);
        }
        ok | (diff == 0)
    })
}

async fn auth(State(sh): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let tokens = &sh.cfg.api.tokens;
    if tokens.is_empty() {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(t) if token_ok(tokens, t) => next.run(req).await,
        Some(_) => {
            ApiError(StatusCode::UNAUTHORIZED, "invalid bearer token".into()).into_response()
        }
        None => {
            let mut r = ApiError(
                StatusCode::UNAUTHORIZED,
                "missing 'Authorization: Bearer <token>' header".into(),
            )
            .into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            r
        }
    }
}

async fn health(State(sh): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let now = (sh.clock)();
    Json(
        json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION"), "uptime_seconds": now.saturating_sub(sh.started_at) }),
    )
}

async fn stats(State(sh): State<Arc<Shared>>) -> Result<Json<serde_json::Value>, ApiError> {
    let (total, agents, kernel_drops) = sh.stats();
    let (series, memory, dropped, per_subnet, limits) = {
        let st = sh.store.read().map_err(|_| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store lock poisoned".into(),
            )
        })?;
        (
            json!({ "subnets": st.subnets.len(), "interfaces": st.ifaces.len() }),
            st.memory_bytes(),
            st.iface_readings_dropped,
            st.subnet_series_bytes(),
            limits_json(&sh, &st, &total),
        )
    };
    let snapshots = sh.snapshots.lock().map(|s| s.clone()).unwrap_or_default();
    let agents: Vec<_> = agents
        .iter()
        .map(|(k, a)| {
            let mut v = serde_json::to_value(a).unwrap_or_default();
            v["agent"] = json!(k.agent.to_string());
            v["sub_agent"] = json!(k.sub_agent);
            v
        })
        .collect();
    Ok(Json(json!({
        "ingest": total,
        "kernel_drops": kernel_drops,
        "agents": agents,
        "series": series,
        "series_memory_bytes": memory,
        "subnet_series_bytes": per_subnet,
        "interface_readings_dropped": dropped,
        "limits": limits,
        "snapshots": snapshots,
        "restored": sh.restored,
        "uptime_seconds": (sh.clock)().saturating_sub(sh.started_at),
    })))
}

/// Each memory guard: its configured maximum, what is in use, and how
/// often it refused something (docs/collector.md, "Bounded memory").
fn limits_json(sh: &Shared, st: &crate::store::Store, total: &Stats) -> serde_json::Value {
    let l = &sh.cfg.limits;
    json!({
        "agents": {
            "max": l.max_agents,
            "in_use": sh.agent_count.load(std::sync::atomic::Ordering::Relaxed),
            "hits": total.datagrams_over_agent_limit,
            "idle_expiry_s": l.agent_idle_expiry,
            "expired": total.agents_expired,
        },
        "sources_per_agent": {
            "max": l.max_sources_per_agent,
            "hits": total.flow_samples_over_source_limit,
        },
        "interfaces": {
            "max": sh.cfg.series.max_interfaces,
            "in_use": st.ifaces.len(),
            "hits": st.iface_over_total_limit + total.interface_readings_over_limit,
        },
        "interfaces_per_agent": {
            "max": l.max_interfaces_per_agent,
            "hits": st.iface_over_agent_limit,
        },
    })
}

async fn series(State(sh): State<Arc<Shared>>) -> Result<Json<serde_json::Value>, ApiError> {
    let st = sh.store.read().map_err(|_| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store lock poisoned".into(),
        )
    })?;
    Ok(Json(json!({ "series": st.list() })))
}

fn time_param(p: &HashMap<String, String>, name: &str, default: u64) -> Result<u64, ApiError> {
    match p.get(name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            bad(format!(
                "'{name}' must be a Unix time in seconds, got {v:?}"
            ))
        }),
    }
}

/// Parses start/end/resolution with defaults: end = now, start = end - 1 day,
/// resolution = the series' base step.
fn range(sh: &Shared, p: &HashMap<String, String>) -> Result<(u64, u64, u64), ApiError> {
    for k in p.keys() {
        if ![
            "id",
            "start",
            "end",
            "resolution",
            "cf",
            "subnet",
            "percentile",
        ]
        .contains(&k.as_str())
        {
            return Err(bad(format!("unknown parameter '{k}'")));
        }
    }
    let end = time_param(p, "end", (sh.clock)())?;
    let start = time_param(p, "start", end.saturating_sub(86_400))?;
    if start >= end {
        return Err(bad(format!(
            "'start' ({start}) must be before 'end' ({end})"
        )));
    }
    if end - start > 20 * 366 * 86_400 {
        return Err(bad("range longer than 20 years"));
    }
    let resolution = match p.get("resolution") {
        None => sh.cfg.series.step,
        Some(v) => match v.parse::<u64>() {
            Ok(r) if r > 0 => r,
            _ => {
                return Err(bad(format!(
                    "'resolution' must be a positive number of seconds, got {v:?}"
                )))
            }
        },
    };
    Ok((start, end, resolution))
}

async fn series_data(
    State(sh): State<Arc<Shared>>,
    Query(p): Params,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = p
        .get("id")
        .ok_or_else(|| bad("missing 'id' (see GET /api/v1/series)"))?;
    let (start, end, resolution) = range(&sh, &p)?;
    let cf = match p.get("cf").map(|s| s.to_ascii_uppercase()).as_deref() {
        None | Some("AVERAGE") => Cf::Average,
        Some("MIN") => Cf::Min,
        Some("MAX") => Cf::Max,
        Some("LAST") => Cf::Last,
        Some(o) => {
            return Err(bad(format!(
                "'cf' must be AVERAGE, MIN, MAX or LAST, got {o:?}"
            )))
        }
    };
    let st = sh.store.read().map_err(|_| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store lock poisoned".into(),
        )
    })?;
    let (rrd, names) = st
        .find(id)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no series {id:?}")))?;
    let f = rrd
        .fetch(cf, start, end, resolution)
        .map_err(|e| bad(e.to_string()))?;
    let rows: Vec<serde_json::Value> = f
        .iter()
        .map(|(t, v)| {
            let mut r = vec![json!(t)];
            r.extend(v.iter().map(|x| {
                if x.is_finite() {
                    json!(x)
                } else {
                    serde_json::Value::Null
                }
            }));
            serde_json::Value::Array(r)
        })
        .collect();
    Ok(Json(
        json!({ "id": id, "cf": cf, "resolution": f.step, "ds": names, "rows": rows }),
    ))
}

async fn report(
    State(sh): State<Arc<Shared>>,
    Query(p): Params,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (start, end, resolution) = range(&sh, &p)?;
    let percentile = match p.get("percentile") {
        None => sh.cfg.api.percentile,
        Some(v) => match v.parse::<f64>() {
            Ok(x) if x > 0.0 && x <= 100.0 => x,
            _ => return Err(bad(format!("'percentile' must be in (0, 100], got {v:?}"))),
        },
    };
    let only = match p.get("subnet") {
        None => None,
        Some(s) => Some(s.parse::<IpNet>().map_err(|_| {
            bad(format!(
                "'subnet' must be a prefix like 10.0.0.0/24, got {s:?}"
            ))
        })?),
    };
    let st = sh.store.read().map_err(|_| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store lock poisoned".into(),
        )
    })?;
    if let Some(n) = only {
        if !st.subnets.iter().any(|s| s.net == n) {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("subnet {n} is not configured"),
            ));
        }
    }
    let r = st
        .report(start, end, resolution, percentile, only)
        .map_err(|e| bad(e.to_string()))?;
    Ok(Json(serde_json::to_value(r).unwrap_or_default()))
}

async fn metrics(State(sh): State<Arc<Shared>>) -> Response {
    let (s, agents, kdrops) = sh.stats();
    let (ifaces, over_total, over_agent) = sh
        .store
        .read()
        .map(|st| {
            (
                st.ifaces.len() as u64,
                st.iface_over_total_limit,
                st.iface_over_agent_limit,
            )
        })
        .unwrap_or_default();
    let agents_in_use = sh.agent_count.load(std::sync::atomic::Ordering::Relaxed) as u64;
    let lc = &sh.cfg.limits;
    let mut o = String::new();
    let mut m = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(o, "{name}{labels} {v}");
        }
    };
    let one = |v: u64| vec![(String::new(), v)];
    m(
        "collector_datagrams_total",
        "counter",
        "sFlow datagrams received.",
        &one(s.datagrams),
    );
    m(
        "collector_datagram_bytes_total",
        "counter",
        "Bytes of sFlow datagrams received.",
        &one(s.bytes),
    );
    m(
        "collector_datagrams_rejected_total",
        "counter",
        "Datagrams whose header could not be decoded.",
        &one(s.datagrams_rejected),
    );
    m(
        "collector_datagrams_not_allowed_total",
        "counter",
        "Datagrams from agents outside the allow-list.",
        &one(s.datagrams_not_allowed),
    );
    m(
        "collector_samples_total",
        "counter",
        "Samples by type.",
        &[
            ("{type=\"flow\"}".into(), s.flow_samples),
            ("{type=\"counter\"}".into(), s.counter_samples),
            ("{type=\"other\"}".into(), s.other_samples),
        ],
    );
    m(
        "collector_flow_samples_total",
        "counter",
        "Flow samples by outcome.",
        &[
            ("{outcome=\"attributed\"}".into(), s.flow_samples_attributed),
            (
                "{outcome=\"unattributed\"}".into(),
                s.flow_samples_unattributed,
            ),
            ("{outcome=\"no_ip\"}".into(), s.flow_samples_no_ip),
            ("{outcome=\"zero_rate\"}".into(), s.flow_samples_zero_rate),
        ],
    );
    let errs: Vec<(String, u64)> = s
        .errors
        .iter()
        .map(|(k, v)| (format!("{{kind=\"{k}\"}}"), *v))
        .collect();
    m(
        "collector_decode_errors_total",
        "counter",
        "Decode errors by level and kind.",
        &errs,
    );
    m(
        "collector_sequence_lost_total",
        "counter",
        "Datagrams lost in transit (sequence gaps).",
        &one(s.sequence_lost),
    );
    m(
        "collector_agent_drops_total",
        "counter",
        "Samples agents reported dropped (added by effective-rate scaling).",
        &one(s.agent_drops),
    );
    m(
        "collector_kernel_drops_total",
        "counter",
        "Datagrams the kernel dropped for a full receive buffer (SO_RXQ_OVFL).",
        &one(kdrops),
    );
    let lim = |l: &str| format!("{{limit=\"{l}\"}}");
    m(
        "collector_limit_hits_total",
        "counter",
        "Inputs refused by a memory guard (docs/collector.md, Bounded memory).",
        &[
            (lim("agents"), s.datagrams_over_agent_limit),
            (lim("sources_per_agent"), s.flow_samples_over_source_limit),
            (
                lim("interfaces"),
                over_total + s.interface_readings_over_limit,
            ),
            (lim("interfaces_per_agent"), over_agent),
        ],
    );
    m(
        "collector_agents_expired_total",
        "counter",
        "sFlow agents forgotten after limits.agent_idle_expiry seconds without a datagram.",
        &[(String::new(), s.agents_expired)],
    );
    m(
        "collector_limit_in_use",
        "gauge",
        "Entries held against a memory guard.",
        &[(lim("agents"), agents_in_use), (lim("interfaces"), ifaces)],
    );
    m(
        "collector_limit_max",
        "gauge",
        "Configured maximum of a memory guard.",
        &[
            (lim("agents"), lc.max_agents as u64),
            (lim("sources_per_agent"), lc.max_sources_per_agent as u64),
            (lim("interfaces"), sh.cfg.series.max_interfaces as u64),
            (
                lim("interfaces_per_agent"),
                lc.max_interfaces_per_agent as u64,
            ),
        ],
    );
    let per_agent: Vec<(String, u64)> = agents
        .iter()
        .map(|(k, a)| {
            (
                format!("{{agent=\"{}\",sub_agent=\"{}\"}}", k.agent, k.sub_agent),
                a.datagrams,
            )
        })
        .collect();
    m(
        "collector_agent_datagrams_total",
        "counter",
        "Datagrams per agent.",
        &per_agent,
    );
    let lost: Vec<(String, u64)> = agents
        .iter()
        .map(|(k, a)| {
            (
                format!("{{agent=\"{}\",sub_agent=\"{}\"}}", k.agent, k.sub_agent),
                a.lost,
            )
        })
        .collect();
    m(
        "collector_agent_sequence_lost_total",
        "counter",
        "Datagrams lost per agent.",
        &lost,
    );
    if let Ok(st) = sh.store.read() {
        m(
            "collector_series",
            "gauge",
            "Series held.",
            &[
                ("{kind=\"subnet\"}".into(), st.subnets.len() as u64),
                ("{kind=\"interface\"}".into(), st.ifaces.len() as u64),
            ],
        );
        m(
            "collector_series_memory_bytes",
            "gauge",
            "Memory held by series.",
            &one(st.memory_bytes() as u64),
        );
    }
    if let Ok(sn) = sh.snapshots.lock() {
        m(
            "collector_snapshots_total",
            "counter",
            "Snapshots written.",
            &one(sn.count),
        );
        if let Some(t) = sn.last_success {
            m(
                "collector_snapshot_last_success_timestamp_seconds",
                "gauge",
                "Time of the last good snapshot.",
                &one(t),
            );
        }
    }
    if let Some(rw) = &sh.remote_write {
        rw.write_metrics(&mut o);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], o).into_response()
}

#[cfg(test)]
mod tests {
    use super::token_ok;

    #[test]
    fn tokens() {
        let t = vec![
            "0123456789abcdef".to_string(),
            "another-token-xyz".to_string(),
        ];
        assert!(token_ok(&t, "0123456789abcdef"));
        assert!(token_ok(&t, "another-token-xyz"));
        assert!(!token_ok(&t, "0123456789abcde"));
        assert!(!token_ok(&t, "0123456789abcdeff"));
        assert!(!token_ok(&t, ""));
        assert!(!token_ok(&[], "x"));
    }
}
