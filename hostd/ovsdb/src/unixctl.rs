//! ovs-vswitchd's control socket (what `ovs-appctl` talks to): the same
//! JSON-RPC framing as OVSDB; a command is a request whose `method` is the
//! command name and `params` its string arguments; the reply's `result` is
//! the command's text output (or `error` its error text).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::{json, Value};
use thiserror::Error;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::UnixStream,
};

use crate::framing::JsonSplitter;

/// What can go wrong on the control socket.
#[derive(Debug, Error)]
pub enum UnixctlError {
    #[error("ovs-vswitchd control socket {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("ovs-vswitchd control socket {path}: {message}")]
    Protocol { path: String, message: String },
    #[error("{command} failed: {error}")]
    Command { command: String, error: String },
    #[error("no reply to {command} within {after:?}")]
    Timeout { command: String, after: Duration },
    #[error("cannot find ovs-vswitchd's control socket: {0}")]
    NotFound(String),
}

/// The socket of the running ovs-vswitchd in `rundir` (e.g.
/// `/run/openvswitch`): `ovs-vswitchd.PID.ctl`, PID from `ovs-vswitchd.pid`.
pub fn vswitchd_socket(rundir: &Path) -> Result<PathBuf, UnixctlError> {
    let pidfile = rundir.join("ovs-vswitchd.pid");
    let pid = std::fs::read_to_string(&pidfile)
        .map_err(|e| UnixctlError::NotFound(format!("{}: {e}", pidfile.display())))?;
    let path = rundir.join(format!("ovs-vswitchd.{}.ctl", pid.trim()));
    if path.exists() {
        Ok(path)
    } else {
        Err(UnixctlError::NotFound(format!(
            "{} is missing",
            path.display()
        )))
    }
}

/// One connection to a unixctl server; commands run one at a time.
pub struct Unixctl {
    stream: UnixStream,
    path: String,
    split: JsonSplitter,
    next_id: u64,
    /// Bound on each command's reply.
    pub timeout: Duration,
}

impl Unixctl {
    /// Connects to a control socket, e.g. `/run/openvswitch/ovs-vswitchd.1234.ctl`.
    pub async fn connect(path: impl AsRef<Path>) -> Result<Self, UnixctlError> {
        let p = path.as_ref().display().to_string();
        let stream =
            UnixStream::connect(path.as_ref())
                .await
                .map_err(|source| UnixctlError::Io {
                    path: p.clone(),
                    source,
                })?;
        Ok(Self {
            stream,
            path: p,
            split: JsonSplitter::default(),
            next_id: 0,
            timeout: Duration::from_secs(30),
        })
    }

    /// Runs `command args...` (e.g. `bond/show bond0`) and returns its output.
    pub async fn call(&mut self, command: &str, args: &[&str]) -> Result<String, UnixctlError> {
        let id = self.next_id;
        self.next_id += 1;
        let req = json!({"id": id, "method": command, "params": args});
        let io = |source| UnixctlError::Io {
            path: self.path.clone(),
            source,
        };
        self.stream
            .write_all(req.to_string().as_bytes())
            .await
            .map_err(io)?;
        let reply = tokio::time::timeout(self.timeout, self.read_reply(id))
            .await
            .map_err(|_| UnixctlError::Timeout {
                command: command.to_owned(),
                after: self.timeout,
            })??;
        let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
        match reply.get("error") {
            Some(e) if !e.is_null() => Err(UnixctlError::Command {
                command: command.to_owned(),
                error: text(e).trim_end().to_owned(),
            }),
            _ => Ok(reply.get("result").map(text).unwrap_or_default()),
        }
    }

    async fn read_reply(&mut self, id: u64) -> Result<Value, UnixctlError> {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            while let Some(v) = self
                .split
                .next_value()
                .map_err(|e| UnixctlError::Protocol {
                    path: self.path.clone(),
                    message: e.to_string(),
                })?
            {
                if v.get("id").and_then(Value::as_u64) == Some(id) {
                    return Ok(v);
                }
            }
            let n = self
                .stream
                .read(&mut buf)
                .await
                .map_err(|source| UnixctlError::Io {
                    path: self.path.clone(),
                    source,
                })?;
            if n == 0 {
                return Err(UnixctlError::Protocol {
                    path: self.path.clone(),
                    message: "closed before replying".into(),
                });
            }
            self.split.push(&buf[..n]);
        }
    }
}
