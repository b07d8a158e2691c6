//! The controller's store: plain files under one directory, crash-safe.
//!
//! ```text
//! STATE/ca/ca-N.pem, ca-N.key (0600)   CAs; `ca/active` names the signer;
//!                                      the trust bundle is every CA listed in `ca/bundle`
//! STATE/tokens/AGENT.json              one-time bootstrap tokens (SHA-256 of the token, expiry, the key that used it)
//! STATE/agents/AGENT.json              one record per agent (certificate, desired state,
//!                                      confirmations, last inventory/status/apply, report seqs)
//! STATE/intents/AGENT.yaml             desired connection intents (fabric service)
//! STATE/fabric.yaml                    switches: facts and which agent runs each
//! STATE/revoked.json                   revoked certificate serials
//! ```
//!
//! Every write is temp file + rename. Agent records are written by a group
//! commit ([`Store::flush`]): all dirty records written, one `syncfs`,
//! renamed, one `syncfs` (two syncs per batch instead of two per file;
//! 10,000 confirmations in one batch cost two syncs). Small, rare files
//! (CA, tokens, revocations) are synced one by one.
//!
//! Two controllers of a failover list may share the directory (one
//! filesystem): a controller re-reads an agent's record when that agent
//! connects to it, unless it holds unwritten changes of its own. A larger
//! fleet needs a real shared store instead (docs/fleet.md).

use std::{
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file.
    #[error("{path}: {source}")]
    Io {
        /// Which.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A record that does not parse.
    #[error("{path}: {detail}")]
    Parse {
        /// Which.
        path: PathBuf,
        /// Why.
        detail: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The desired state of one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredRecord {
    /// Increases with every new desired state of this agent.
    pub generation: u64,
    /// The hostd document.
    pub document: String,
    /// Commit-confirmed window (0: apply and keep).
    pub confirm_within_s: u32,
    /// Unix ms.
    pub set_at_ms: u64,
    /// Who set it (`admin`, `fabric`).
    pub source: String,
}

/// Report bookkeeping of one agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportCounts {
    /// The agent process whose seqs are counted.
    pub epoch: u64,
    /// Highest seq received of that epoch.
    pub last_seq: u64,
    /// Reports received (all epochs).
    pub received: u64,
    /// Gaps seen in seqs (lost reports).
    pub lost: u64,
    /// Reports duplicated (resent after a reconnect, already had).
    pub duplicates: u64,
    /// What the agent says it dropped from its full queue.
    pub dropped_by_agent: u64,
}

/// One agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// Agent id.
    pub id: String,
    /// Current certificate serial (hex) and notAfter.
    pub cert_serial: String,
    /// notAfter, Unix s.
    pub cert_not_after: i64,
    /// Previous serials still valid (renewed; kept until they expire).
    #[serde(default)]
    pub previous_serials: Vec<String>,
    /// Certificates issued.
    #[serde(default)]
    pub certs_issued: u64,
    /// Unix ms.
    pub enrolled_ms: u64,
    /// The desired state.
    #[serde(default)]
    pub desired: Option<DesiredRecord>,
    /// Highest generation confirmed by the agent over the new path.
    #[serde(default)]
    pub confirmed_generation: u64,
    /// Last generation the agent reverted.
    #[serde(default)]
    pub reverted_generation: u64,
    /// Last time the agent was heard from (Unix ms).
    #[serde(default)]
    pub last_seen_ms: u64,
    /// Which controller it was connected to.
    #[serde(default)]
    pub controller: String,
    /// Latest inventory report (NICs, MACs, speeds, LLDP).
    #[serde(default)]
    pub inventory: Option<Value>,
    /// Latest status report (LACP, LLDP, diagnosis).
    #[serde(default)]
    pub status: Option<Value>,
    /// Latest apply reports (last 8).
    #[serde(default)]
    pub applies: Vec<Value>,
    /// Latest drift events (last 8) and their count.
    #[serde(default)]
    pub drifts: Vec<Value>,
    /// Drift events seen.
    #[serde(default)]
    pub drift_count: u64,
    /// The fabric service's last compile result for this agent.
    #[serde(default)]
    pub fabric: Option<Value>,
    /// Reports.
    #[serde(default)]
    pub reports: ReportCounts,
}

/// A bootstrap token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// SHA-256 of the token, hex.
    pub sha256: String,
    /// Unix s.
    pub expires: u64,
    /// SHA-256 (hex) of the public key that used it: a token is bound to
    /// the first key that enrols with it (a retry by that key, whose answer
    /// was lost, is answered again; any other key is refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_by_key: Option<String>,
}

/// The directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// Writes `data` to `path` via a temp file and rename; `sync`: fsync the
/// file and the directory.
pub fn write_file(path: &Path, data: &[u8], mode: u32, sync: bool) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = tmp_path(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(data).map_err(io(&tmp))?;
    if sync {
        f.sync_all().map_err(io(&tmp))?;
    }
    drop(f);
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if sync {
        if let Ok(d) = std::fs::File::open(dir) {
            d.sync_all().map_err(io(dir))?;
        }
    }
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Makes everything written under `dir` durable (one `syncfs`).
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    syncfs(dir)
}

/// `syncfs(2)` on the filesystem holding `dir`.
fn syncfs(dir: &Path) -> Result<(), StoreError> {
    let f = std::fs::File::open(dir).map_err(io(dir))?;
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open descriptor for the duration of the call.
    let rc = unsafe { libc::syncfs(f.as_raw_fd()) };
    if rc != 0 {
        return Err(StoreError::Io {
            path: dir.to_owned(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

impl Store {
    /// The store at `root` (created).
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        for d in ["ca", "tokens", "agents", "intents"] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).map_err(io(&p))?;
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A path under the root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Reads a file, `None` when missing.
    pub fn read(&self, rel: &str) -> Result<Option<String>, StoreError> {
        let p = self.path(rel);
        match std::fs::read_to_string(&p) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Io { path: p, source: e }),
        }
    }

    /// Writes a small file durably.
    pub fn write(&self, rel: &str, data: &[u8], mode: u32) -> Result<(), StoreError> {
        write_file(&self.path(rel), data, mode, true)
    }

    /// Removes a file durably (missing is fine).
    pub fn remove(&self, rel: &str) -> Result<(), StoreError> {
        let p = self.path(rel);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::Io { path: p, source: e }),
        }
        if let Some(d) = p.parent().and_then(|d| std::fs::File::open(d).ok()) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn agent_rel(id: &str) -> String {
        format!("agents/{id}.json")
    }

    /// One agent's record.
    pub fn agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        let rel = Self::agent_rel(id);
        match self.read(&rel)? {
            None => Ok(None),
            Some(s) => serde_json::from_str(&s)
                .map(Some)
                .map_err(|e| StoreError::Parse {
                    path: self.path(&rel),
                    detail: e.to_string(),
                }),
        }
    }

    /// Every agent's record, by id.
    pub fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        let dir = self.path("agents");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let e = e.map_err(io(&dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".json") {
                if let Some(r) = self.agent(id)? {
                    out.push(r);
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Group commit of agent records: write all, sync once, rename all,
    /// sync once.
    pub fn flush(&self, records: &[AgentRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut tmps = Vec::with_capacity(records.len());
        for r in records {
            let path = self.path(&Self::agent_rel(&r.id));
            let tmp = tmp_path(&path);
            let data = serde_json::to_vec(r).map_err(|e| StoreError::Parse {
                path: path.clone(),
                detail: e.to_string(),
            })?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io(&tmp))?;
            f.write_all(&data).map_err(io(&tmp))?;
            tmps.push((tmp, path));
        }
        let dir = self.path("agents");
        syncfs(&dir)?;
        for (tmp, path) in &tmps {
            std::fs::rename(tmp, path).map_err(io(path))?;
        }
        syncfs(&dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_group_commit() {
        let d = std::env::temp_dir().join(format!("ctl-store-{}", std::process::id()));
        let s = Store::open(&d).unwrap();
        let mut a = AgentRecord {
            id: "srv1".into(),
            ..AgentRecord::default()
        };
        let b = AgentRecord {
            id: "srv2".into(),
            ..AgentRecord::default()
        };
        s.flush(&[a.clone(), b.clone()]).unwrap();
        a.confirmed_generation = 3;
        s.flush(&[a.clone()]).unwrap();
        assert_eq!(s.agent("srv1").unwrap().unwrap().confirmed_generation, 3);
        assert_eq!(s.agents().unwrap().len(), 2);
        assert!(s.agent("nope").unwrap().is_none());
        // No temp files left.
        let left: Vec<_> = std::fs::read_dir(d.join("agents"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .collect();
        assert!(left.is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
