//! Graphs over HTTP and the HTML page (docs/collector.md, "Graphs"):
//!
//! - `GET /graph/<series id>[.png|.svg]?start=&end=&range=&width=&height=&
//!   format=&ds=&unit=&percentile=`: the series ids of `GET /api/v1/series`
//!   (`subnet/<prefix>`, `if/<agent>/<ifIndex>`);
//! - `GET /ui?range=`: agents, subnets and interfaces with their graphs.
//!
//! Both are behind the API's tokens. A browser cannot send a bearer header
//! with a page or its `<img>` requests, so these routes (only these) also
//! accept the token as the `token` query parameter or the `collector_token`
//! cookie. `GET /ui?token=T` with a valid token answers 303 to `/ui`
//! (without the token) and sets the cookie (HttpOnly, SameSite=Strict), so
//! the token does not stay in the address bar, the history or the page,
//! and the images are authorised by the cookie. Nothing here logs requests.

use std::{collections::HashMap, fmt::Write as _, net::IpAddr, sync::Arc};

use axum::{
    extract::{Path, Query, Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use ipnet::IpNet;

use super::{render, Format, Graph, Line, Style, Unit, HEIGHT, WIDTH};
use crate::{
    api::{token_ok, ApiError},
    rrd::Cf,
    service::Shared,
};

/// The cookie that carries the token for the page and its images.
pub const COOKIE: &str = "collector_token";
/// Interfaces shown with a graph on the page (the rest are listed).
pub const UI_MAX_INTERFACE_GRAPHS: usize = 64;
/// Longest graph range.
const MAX_RANGE: u64 = 20 * 366 * 86_400;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

/// The `/graph/...` and `/ui` routes with their authentication.
pub fn routes(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    Router::new()
        .route("/ui", get(ui))
        .route("/graph/{*id}", get(graph))
        .route_layer(middleware::from_fn_with_state(shared, auth))
}

fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

fn query_token(req: &Request) -> Option<String> {
    let q: Query<HashMap<String, String>> = Query::try_from_uri(req.uri()).ok()?;
    q.0.get("token").cloned()
}

/// Bearer header, `token` query parameter or cookie: any valid one passes.
async fn auth(State(sh): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let tokens = &sh.cfg.api.tokens;
    if tokens.is_empty() {
        return next.run(req).await;
    }
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let cookie = cookie_token(req.headers()).map(str::to_string);
    let query = query_token(&req);
    let presented: Vec<&String> = [&bearer, &cookie, &query].into_iter().flatten().collect();
    if presented.iter().any(|t| token_ok(tokens, t)) {
        return next.run(req).await;
    }
    let msg = if presented.is_empty() {
        "missing token: send 'Authorization: Bearer <token>', or open /ui?token=<token> once in a browser"
    } else {
        "invalid token"
    };
    let mut r = ApiError(StatusCode::UNAUTHORIZED, msg.into()).into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// Escapes text for HTML element content and quoted attribute values (the
/// five characters OWASP lists; hand-written: five replacements).
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A duration: seconds, or a number with s/m/h/d/w.
pub fn parse_range(v: &str) -> Option<u64> {
    let (num, mult) = match v.char_indices().last()? {
        (i, 's') => (&v[..i], 1),
        (i, 'm') => (&v[..i], 60),
        (i, 'h') => (&v[..i], 3600),
        (i, 'd') => (&v[..i], 86_400),
        (i, 'w') => (&v[..i], 7 * 86_400),
        _ => (v, 1),
    };
    let n: u64 = num.parse().ok()?;
    n.checked_mul(mult).filter(|&r| r > 0 && r <= MAX_RANGE)
}

/// What a graph shows.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphParams {
    pub start: u64,
    pub end: u64,
    pub width: u32,
    pub height: u32,
    pub format: Format,
    /// traffic, packets, errors, discards.
    pub ds: String,
    pub unit: Unit,
    /// `None`: the default for the series kind; `Some(None)`: none.
    pub percentile: Option<Option<f64>>,
}

const PARAMS: [&str; 10] = [
    "start",
    "end",
    "range",
    "width",
    "height",
    "format",
    "ds",
    "unit",
    "percentile",
    "token",
];

fn num<T: std::str::FromStr>(
    p: &HashMap<String, String>,
    name: &str,
) -> Result<Option<T>, ApiError> {
    p.get(name)
        .map(|v| {
            v.parse::<T>()
                .map_err(|_| bad(format!("'{name}' must be a number, got {v:?}")))
        })
        .transpose()
}

/// Parses and bounds the query of a graph request; `ext` is the format
/// named by the path's extension, if any.
pub fn parse_params(
    p: &HashMap<String, String>,
    ext: Option<Format>,
    now: u64,
) -> Result<GraphParams, ApiError> {
    if let Some(k) = p.keys().find(|k| !PARAMS.contains(&k.as_str())) {
        return Err(bad(format!(
            "unknown parameter '{k}' (known: {})",
            PARAMS.join(", ")
        )));
    }
    let end = num::<u64>(p, "end")
        .map_err(|_| {
            bad(format!(
                "'end' must be a Unix time in seconds, got {:?}",
                p["end"]
            ))
        })?
        .unwrap_or(now);
    let range = match p.get("range") {
        None => None,
        Some(v) => Some(parse_range(v).ok_or_else(|| {
            bad(format!(
                "'range' must be a positive duration up to 20 years, in seconds or with s/m/h/d/w (e.g. 6h, 7d), got {v:?}"
            ))
        })?),
    };
    let start = match (num::<u64>(p, "start"), range) {
        (Err(_), _) => {
            return Err(bad(format!(
                "'start' must be a Unix time in seconds, got {:?}",
                p["start"]
            )))
        }
        (Ok(Some(_)), Some(_)) => return Err(bad("give 'start' or 'range', not both")),
        (Ok(Some(s)), None) => s,
        (Ok(None), r) => end.saturating_sub(r.unwrap_or(86_400)),
    };
    if start >= end {
        return Err(bad(format!(
            "'start' ({start}) must be before 'end' ({end})"
        )));
    }
    if end - start > MAX_RANGE {
        return Err(bad("'start' to 'end' is longer than 20 years"));
    }
    let size = |name: &'static str, (min, max): (u32, u32), default: u32| {
        let v = num::<u32>(p, name)?.unwrap_or(default);
        if v < min || v > max {
            return Err(bad(format!(
                "'{name}' must be between {min} and {max}, got {v}"
            )));
        }
        Ok(v)
    };
    let width = size("width", WIDTH, 800)?;
    let height = size("height", HEIGHT, 300)?;
    let fq = match p.get("format").map(String::as_str) {
        None => None,
        Some("png") => Some(Format::Png),
        Some("svg") => Some(Format::Svg),
        Some(o) => return Err(bad(format!("'format' must be png or svg, got {o:?}"))),
    };
    let format = match (ext, fq) {
        (Some(a), Some(b)) if a != b => {
            return Err(bad("'format' contradicts the path's extension"))
        }
        (a, b) => a.or(b).unwrap_or(Format::Png),
    };
    let ds = p.get("ds").cloned().unwrap_or_else(|| "traffic".into());
    let unit = match (ds.as_str(), p.get("unit").map(String::as_str)) {
        ("traffic", None | Some("bits")) => Unit::Bits,
        ("traffic", Some("bytes")) => Unit::Bytes,
        ("traffic", Some(o)) => {
            return Err(bad(format!("'unit' must be bits or bytes, got {o:?}")))
        }
        ("packets", None) => Unit::Packets,
        ("errors" | "discards", None) => Unit::Events,
        (_, Some(_)) => return Err(bad("'unit' applies only to ds=traffic")),
        (o, None) => {
            return Err(bad(format!(
                "'ds' must be traffic, packets, errors or discards, got {o:?}"
            )))
        }
    };
    let percentile = match p.get("percentile").map(String::as_str) {
        None => None,
        Some("none") => Some(None),
        Some(v) => match v.parse::<f64>() {
            Ok(x) if x > 0.0 && x <= 100.0 => Some(Some(x)),
            _ => {
                return Err(bad(format!(
                    "'percentile' must be in (0, 100] or none, got {v:?}"
                )))
            }
        },
    };
    Ok(GraphParams {
        start,
        end,
        width,
        height,
        format,
        ds,
        unit,
        percentile,
    })
}

/// Splits `subnet/10.0.0.0/24.png` into the series id and the extension.
pub fn split_ext(path: &str) -> (&str, Option<Format>) {
    if let Some(id) = path.strip_suffix(".png") {
        (id, Some(Format::Png))
    } else if let Some(id) = path.strip_suffix(".svg") {
        (id, Some(Format::Svg))
    } else {
        (path, None)
    }
}

/// Builds the graph of series `id` from the store.
pub fn build(sh: &Shared, id: &str, gp: &GraphParams) -> Result<Graph, ApiError> {
    let is_subnet = id.starts_with("subnet/");
    let (i_in, i_out) = match (gp.ds.as_str(), is_subnet) {
        ("traffic", _) => (0, 1),
        ("packets", _) => (2, 3),
        ("errors", false) => (4, 5),
        ("discards", false) => (6, 7),
        (o, _) => {
            return Err(bad(format!(
                "'ds' {o:?} does not exist for subnet series (traffic or packets)"
            )))
        }
    };
    let scale = if gp.unit == Unit::Bits { 8.0 } else { 1.0 };
    // About one row per pixel of the plot (the archive closest to it).
    let resolution = ((gp.end - gp.start) / u64::from(gp.width)).max(1);
    let st = sh.store.read().map_err(|_| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store lock poisoned".into(),
        )
    })?;
    let (rrd, _) = st.find(id).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("no series {id:?} (see GET /api/v1/series)"),
        )
    })?;
    let f = rrd
        .fetch(Cf::Average, gp.start, gp.end, resolution)
        .map_err(|e| bad(e.to_string()))?;
    drop(st);
    let col = |i: usize| -> Vec<f64> { f.rows.iter().map(|r| r[i] * scale).collect() };
    let what = gp.ds.as_str();
    let title = match id.strip_prefix("if/").and_then(|r| r.rsplit_once('/')) {
        Some((agent, idx)) => format!("interface {idx} of {agent}: {what}"),
        None => format!("subnet {}: {what}", id.trim_start_matches("subnet/")),
    };
    let percentile = match gp.percentile {
        Some(p) => p,
        None if is_subnet => Some(sh.cfg.api.percentile),
        None => None,
    };
    Ok(Graph {
        title,
        unit: gp.unit,
        start: gp.start,
        end: gp.end,
        first: f.first,
        step: f.step,
        lines: vec![
            Line {
                label: "in".into(),
                style: Style::Area,
                values: col(i_in),
            },
            Line {
                label: "out".into(),
                style: Style::Line,
                values: col(i_out),
            },
        ],
        percentile,
        width: gp.width,
        height: gp.height,
    })
}

async fn graph(
    State(sh): State<Arc<Shared>>,
    Path(path): Path<String>,
    Query(p): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (id, ext) = split_ext(&path);
    let gp = parse_params(&p, ext, (sh.clock)())?;
    let g = build(&sh, id, &gp)?;
    let bytes = render(&g, gp.format).map_err(|e| match e {
        super::GraphError::Draw(_) | super::GraphError::Encode(_) | super::GraphError::Font => {
            ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        e => bad(e.to_string()),
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, gp.format.content_type()),
            (header::CACHE_CONTROL, "no-store"),
        ],
        bytes,
    )
        .into_response())
}

/// Characters a cookie value may hold (RFC 6265 cookie-octet).
fn cookie_safe(s: &str) -> bool {
    s.bytes().all(|b| {
        b == 0x21
            || (0x23..=0x2b).contains(&b)
            || (0x2d..=0x3a).contains(&b)
            || (0x3c..=0x5b).contains(&b)
            || (0x5d..=0x7e).contains(&b)
    })
}

async fn ui(
    State(sh): State<Arc<Shared>>,
    Query(p): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    if let Some(k) = p.keys().find(|k| !["range", "token"].contains(&k.as_str())) {
        return Err(bad(format!(
            "unknown parameter '{k}' (known: range, token)"
        )));
    }
    let range = match p.get("range") {
        None => "1d".to_string(),
        Some(v) => {
            parse_range(v).ok_or_else(|| {
                bad(format!(
                    "'range' must be a positive duration up to 20 years, in seconds or with s/m/h/d/w (e.g. 6h, 7d), got {v:?}"
                ))
            })?;
            v.clone()
        }
    };
    if let Some(t) = p.get("token") {
        // Valid (the middleware checked it): move it into a cookie and drop
        // it from the URL.
        if !cookie_safe(t) {
            return Err(bad(
                "this token has characters a cookie cannot carry; send it as a bearer header",
            ));
        }
        let cookie = format!("{COOKIE}={t}; Path=/; HttpOnly; SameSite=Strict");
        let loc = format!("/ui?range={range}");
        let mut r = (StatusCode::SEE_OTHER, "").into_response();
        let h = r.headers_mut();
        h.insert(
            header::SET_COOKIE,
            HeaderValue::from_str(&cookie).map_err(|_| bad("token not usable in a cookie"))?,
        );
        h.insert(
            header::LOCATION,
            HeaderValue::from_str(&loc).map_err(|_| bad("bad 'range'"))?,
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        return Ok(r);
    }
    let html = page(&sh, &range)?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        html,
    )
        .into_response())
}

fn img(id: &str, range: &str) -> String {
    let src = format!("/graph/{id}.png?range={range}&width=700&height=260");
    format!(
        "<div class=\"g\"><img src=\"{}\" width=\"700\" height=\"260\" alt=\"{}\"></div>\n",
        esc(&src),
        esc(id)
    )
}

/// The page: agents (a table), subnets and interfaces with their graphs.
pub fn page(sh: &Shared, range: &str) -> Result<String, ApiError> {
    let (_, agents, _) = sh.stats();
    let (nets, ifaces): (Vec<IpNet>, Vec<(IpAddr, u32)>) = {
        let st = sh.store.read().map_err(|_| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store lock poisoned".into(),
            )
        })?;
        (
            st.subnets.iter().map(|s| s.net).collect(),
            st.ifaces.keys().map(|k| (k.agent, k.if_index)).collect(),
        )
    };
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>collector</title>\n\
         <style>body{{font-family:sans-serif;margin:1em;background:#fff}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 6px}}\
         .g{{display:inline-block;margin:4px}}</style></head><body>\n\
         <h1>collector</h1>\n<p>Range: {} (change with <code>?range=6h</code>, <code>7d</code>, ...). \
         Ranges: {}</p>\n",
        esc(range),
        ["6h", "1d", "7d", "30d"]
            .iter()
            .map(|r| format!("<a href=\"/ui?range={0}\">{0}</a>", esc(r)))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let _ = writeln!(h, "<h2>Agents ({})</h2>", agents.len());
    h.push_str("<table><tr><th>agent</th><th>sub-agent</th><th>datagrams</th><th>samples</th><th>lost</th></tr>\n");
    for (k, a) in &agents {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&k.agent.to_string()),
            k.sub_agent,
            a.datagrams,
            a.samples,
            a.lost
        );
    }
    h.push_str("</table>\n");
    let _ = writeln!(h, "<h2>Subnets ({})</h2>", nets.len());
    for n in &nets {
        h.push_str(&img(&format!("subnet/{n}"), range));
    }
    let _ = writeln!(h, "<h2>Interfaces ({})</h2>", ifaces.len());
    for (i, (agent, idx)) in ifaces.iter().enumerate() {
        let id = format!("if/{agent}/{idx}");
        if i < UI_MAX_INTERFACE_GRAPHS {
            h.push_str(&img(&id, range));
        } else {
            let _ = writeln!(
                h,
                "<div><a href=\"{}\">{}</a></div>",
                esc(&format!("/graph/{id}.png?range={range}")),
                esc(&id)
            );
        }
    }
    h.push_str("</body></html>\n");
    Ok(h)
}
