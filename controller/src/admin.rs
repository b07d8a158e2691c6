//! The admin socket (`STATE/admin.sock`, mode 0600: root and the
//! controller's user only): one JSON request per line, one JSON answer per
//! line. The CLI's `fleet`, `token`, `desired`, `intent`, `revoke`, `ca`
//! commands are its clients.
//!
//! Requests: `{"op": "list"}`, `{"op": "show", "agent": A}`,
//! `{"op": "stats"}`, `{"op": "token", "agent": A, "ttl_s": N}`,
//! `{"op": "tokens", "agents": [A...], "ttl_s": N}`,
//! `{"op": "desired", "agents": [A|"*"], "document": D, "confirm_within_s": N}`,
//! `{"op": "intent", "agent": A, "intent": TEXT}`, `{"op": "fabric", "config": TEXT}`,
//! `{"op": "revoke", "agent": A}`, `{"op": "renew", "agents": [...]}`,
//! `{"op": "ca-rotate", "validity_s": N}`, `{"op": "ca-retire"}`.
//! Answers: `{"ok": true, "result": ...}` or `{"ok": false, "error": "..."}`.

use std::{os::unix::fs::PermissionsExt, path::Path, time::Duration};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::server::{Controller, CtlError};

fn s<'a>(v: &'a Value, k: &str) -> Result<&'a str, CtlError> {
    v.get(k)
        .and_then(Value::as_str)
        .ok_or_else(|| CtlError::Invalid(format!("request.{k}: a string is required")))
}

fn strings(v: &Value, k: &str) -> Vec<String> {
    v.get(k)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs one request.
pub async fn handle(ctl: &Controller, req: &Value) -> Result<Value, CtlError> {
    let op = s(req, "op")?;
    let ctl2 = ctl.clone();
    let req2 = req.clone();
    // The store is synchronous: run the operation on the blocking pool.
    let blocking = move |f: fn(&Controller, &Value) -> Result<Value, CtlError>| {
        let c = ctl2.clone();
        let r = req2.clone();
        tokio::task::spawn_blocking(move || f(&c, &r))
    };
    let r =
        match op {
            "list" => blocking(|c, _| c.list()).await,
            "show" => blocking(|c, r| c.show(s(r, "agent")?)).await,
            "stats" => return Ok(ctl.stats_json()),
            "token" => {
                blocking(|c, r| {
                    let ttl = r.get("ttl_s").and_then(Value::as_u64).unwrap_or(3600);
                    c.token(s(r, "agent")?, Duration::from_secs(ttl))
                        .map(Value::String)
                })
                .await
            }
            "tokens" => {
                blocking(|c, r| {
                    let ttl = r.get("ttl_s").and_then(Value::as_u64).unwrap_or(3600);
                    c.tokens(&strings(r, "agents"), Duration::from_secs(ttl))
                        .map(|t| json!(t))
                })
                .await
            }
            "desired" => blocking(|c, r| {
                let within = r
                    .get("confirm_within_s")
                    .and_then(Value::as_u64)
                    .unwrap_or(0) as u32;
                let g = c.set_desired(&strings(r, "agents"), s(r, "document")?, within, "admin")?;
                Ok(json!({ "set": g.len(), "generations": g.iter().take(20).collect::<Vec<_>>() }))
            })
            .await,
            "intent" => blocking(|c, r| c.set_intent(s(r, "agent")?, s(r, "intent")?)).await,
            "fabric" => blocking(|c, r| c.set_fabric(s(r, "config")?).map(|()| json!("ok"))).await,
            "revoke" => blocking(|c, r| c.revoke(s(r, "agent")?)).await,
            "renew" => return Ok(json!({ "asked": ctl.renew_now(&strings(req, "agents")) })),
            "ca-rotate" => {
                blocking(|c, r| {
                    let v = r
                        .get("validity_s")
                        .and_then(Value::as_u64)
                        .unwrap_or(10 * 365 * 86400);
                    c.ca_rotate(Duration::from_secs(v))
                })
                .await
            }
            "ca-retire" => blocking(|c, _| c.ca_retire()).await,
            "flush" => {
                ctl.flush().await;
                return Ok(json!("ok"));
            }
            other => return Err(CtlError::Invalid(format!("request.op: unknown {other:?}"))),
        };
    r.map_err(|e| CtlError::Invalid(format!("task: {e}")))?
}

/// Serves the admin socket.
pub async fn serve(ctl: Controller, path: &Path) -> Result<(), CtlError> {
    let _ = std::fs::remove_file(path);
    let l = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    loop {
        let (conn, _) = l.accept().await?;
        let ctl = ctl.clone();
        tokio::spawn(async move {
            let (r, mut w) = conn.into_split();
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let ans = match serde_json::from_str::<Value>(&line) {
                    Ok(req) => match handle(&ctl, &req).await {
                        Ok(v) => json!({ "ok": true, "result": v }),
                        Err(e) => json!({ "ok": false, "error": e.to_string() }),
                    },
                    Err(e) => json!({ "ok": false, "error": format!("request: {e}") }),
                };
                let mut out = ans.to_string();
                out.push('\n');
                if w.write_all(out.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// One request to a running controller.
pub async fn call(path: &Path, req: &Value) -> Result<Value, CtlError> {
    let conn = tokio::net::UnixStream::connect(path).await.map_err(|e| {
        CtlError::Invalid(format!(
            "{}: {e} (is `controller serve` running?)",
            path.display()
        ))
    })?;
    let (r, mut w) = conn.into_split();
    let mut line = req.to_string();
    line.push('\n');
    w.write_all(line.as_bytes()).await?;
    let mut lines = BufReader::new(r).lines();
    let ans = lines
        .next_line()
        .await?
        .ok_or_else(|| CtlError::Invalid("no answer".into()))?;
    let v: Value = serde_json::from_str(&ans).map_err(|e| CtlError::Invalid(e.to_string()))?;
    if v.get("ok") == Some(&Value::Bool(true)) {
        Ok(v.get("result").cloned().unwrap_or(Value::Null))
    } else {
        Err(CtlError::Invalid(
            v.get("error")
                .and_then(Value::as_str)
                .unwrap_or("error")
                .to_owned(),
        ))
    }
}
