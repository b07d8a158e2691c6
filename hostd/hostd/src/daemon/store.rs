//! The daemon's records on disk, in its state directory:
//!
//! - `desired.json`: the confirmed desired document (the one reconciled and
//!   restored at boot);
//! - `pending.json`: a commit-confirmed apply waiting for confirmation: the
//!   previous confirmed document, the new one and the deadline. Written
//!   durably *before* the first change of that apply.
//!
//! Each file is written through a temporary file, `fsync`, `rename`, `fsync`
//! of the directory ([`crate::store::write_atomic`]), so a crash leaves the
//! old file or the new one. The record also carries a sha256 of its bytes:
//! a file that was torn anyway (a filesystem without ordered data, a disk
//! lying about flushes) is reported as corrupt instead of being half-read.

use std::{
    fs, io,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::doc::{hex, DocError, Document};

/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/hostd";
const DESIRED: &str = "desired.json";
const PENDING: &str = "pending.json";
const FORMAT: u32 = 1;

/// A failure reading or writing a record.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// Not a valid record (bad JSON, checksum mismatch, unknown format).
    #[error("{path}: corrupt record: {reason}")]
    Corrupt {
        /// File.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The document inside no longer parses.
    #[error("{path}: the stored document does not parse: {source}")]
    Document {
        /// File.
        path: PathBuf,
        /// Parser error.
        #[source]
        source: DocError,
    },
}

/// A document as recorded: its text (re-parsed on load) and id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocRecord {
    /// Content id at the time it was written.
    pub id: String,
    /// The document's text.
    pub text: String,
}

impl From<&Document> for DocRecord {
    fn from(d: &Document) -> Self {
        Self {
            id: d.id.clone(),
            text: d.text.clone(),
        }
    }
}

/// `desired.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmedRecord {
    /// The document.
    pub doc: DocRecord,
    /// When it was confirmed (Unix seconds).
    pub confirmed_at: u64,
}

/// `pending.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRecord {
    /// What a revert restores (the confirmed document when the apply began).
    pub previous: DocRecord,
    /// What was applied and waits for confirmation.
    pub new: DocRecord,
    /// When the apply began (Unix seconds).
    pub created_at: u64,
    /// Revert unless confirmed by then (Unix seconds, wall clock: it must
    /// survive a restart of the daemon).
    pub deadline: u64,
    /// The kernel's boot id when the record was written: a record from an
    /// earlier boot is never resumed.
    pub boot_id: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    format: u32,
    sha256: String,
    /// The record's JSON, exactly the bytes the checksum covers.
    record: String,
}

/// Current Unix time in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The kernel's boot id (`/proc/sys/kernel/random/boot_id`), or "" if unknown.
pub fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens (creates) `dir` and removes temporary files left by a crash.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let io = |source| StoreError::Io {
            path: dir.to_owned(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        for e in fs::read_dir(dir).map_err(io)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.contains(".tmp.") {
                tracing::info!(file = %name, "removing a temporary file left by a crash");
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The confirmed document, if any.
    pub fn confirmed(&self) -> Result<Option<ConfirmedRecord>, StoreError> {
        read(&self.dir.join(DESIRED))
    }

    /// Records `doc` as the confirmed document.
    pub fn set_confirmed(&self, doc: &DocRecord) -> Result<(), StoreError> {
        write(
            &self.dir.join(DESIRED),
            &ConfirmedRecord {
                doc: doc.clone(),
                confirmed_at: unix_now(),
            },
        )
    }

    /// The pending apply, if any.
    pub fn pending(&self) -> Result<Option<PendingRecord>, StoreError> {
        read(&self.dir.join(PENDING))
    }

    /// Records a pending apply (durably, before anything changes).
    pub fn set_pending(&self, p: &PendingRecord) -> Result<(), StoreError> {
        write(&self.dir.join(PENDING), p)
    }

    /// Removes the pending record (durably).
    pub fn clear_pending(&self) -> Result<(), StoreError> {
        let path = self.dir.join(PENDING);
        match fs::remove_file(&path) {
            Ok(()) => {
                if let Ok(d) = fs::File::open(&self.dir) {
                    let _ = d.sync_all();
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }
}

/// Parses a stored document (its id is recomputed; a changed id, e.g. after
/// an upgrade that normalises differently, is logged).
pub fn parse_doc(path: &Path, r: &DocRecord) -> Result<Document, StoreError> {
    let d = Document::parse(&r.text).map_err(|source| StoreError::Document {
        path: path.to_owned(),
        source,
    })?;
    if d.id != r.id {
        tracing::warn!(stored = %r.id, now = %d.id, "a stored document's id changed");
    }
    Ok(d)
}

/// Path of the confirmed record (for error messages).
pub fn desired_path(dir: &Path) -> PathBuf {
    dir.join(DESIRED)
}

fn write<T: Serialize>(path: &Path, record: &T) -> Result<(), StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let record = serde_json::to_string(record).map_err(|e| corrupt(e.to_string()))?;
    let env = Envelope {
        format: FORMAT,
        sha256: hex(&Sha256::digest(record.as_bytes())),
        record,
    };
    let mut bytes = serde_json::to_vec_pretty(&env).map_err(|e| corrupt(e.to_string()))?;
    bytes.push(b'\n');
    crate::store::write_atomic(path, &bytes).map_err(|source| StoreError::Io {
        path: path.to_owned(),
        source,
    })
}

fn read<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StoreError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    let env: Envelope = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if env.format != FORMAT {
        return Err(corrupt(format!("unknown format {}", env.format)));
    }
    let sum = hex(&Sha256::digest(env.record.as_bytes()));
    if sum != env.sha256 {
        return Err(corrupt(format!(
            "checksum mismatch (stored {}, computed {sum})",
            env.sha256
        )));
    }
    serde_json::from_str(&env.record)
        .map(Some)
        .map_err(|e| corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hostd-dstore-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn rec(n: u32) -> DocRecord {
        DocRecord {
            id: format!("id{n}"),
            text: format!("interfaces: [] # {n}\n"),
        }
    }

    #[test]
    fn round_trip_pending_and_confirmed() {
        let dir = tmpdir("rt");
        let s = Store::open(&dir).expect("open");
        assert_eq!(s.confirmed().expect("read"), None);
        s.set_confirmed(&rec(1)).expect("write");
        assert_eq!(s.confirmed().expect("read").map(|c| c.doc), Some(rec(1)));
        let p = PendingRecord {
            previous: rec(1),
            new: rec(2),
            created_at: 1,
            deadline: 2,
            boot_id: boot_id(),
        };
        s.set_pending(&p).expect("write");
        assert_eq!(s.pending().expect("read"), Some(p));
        s.clear_pending().expect("clear");
        s.clear_pending().expect("clear twice");
        assert_eq!(s.pending().expect("read"), None);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn torn_or_edited_records_are_refused_not_half_read() {
        let dir = tmpdir("torn");
        let s = Store::open(&dir).expect("open");
        s.set_confirmed(&rec(1)).expect("write");
        let path = dir.join(DESIRED);
        let full = fs::read(&path).expect("read");
        // Every truncation of the file is refused.
        for cut in 0..full.len() - 1 {
            fs::write(&path, &full[..cut]).expect("write");
            assert!(
                matches!(s.confirmed(), Err(StoreError::Corrupt { .. })),
                "cut at {cut} accepted"
            );
        }
        // A changed byte inside the record is caught by the checksum.
        let text = String::from_utf8(full.clone()).expect("utf8");
        fs::write(&path, text.replace("id1", "id9")).expect("write");
        let e = s.confirmed().expect_err("edited");
        assert!(e.to_string().contains("checksum"), "{e}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn temporary_files_of_a_crashed_writer_are_removed_and_ignored() {
        let dir = tmpdir("tmp");
        let s = Store::open(&dir).expect("open");
        s.set_confirmed(&rec(1)).expect("write");
        // A writer killed before its rename leaves a partial temp file.
        let tmp = dir.join(".desired.json.tmp.99999");
        fs::write(&tmp, b"{\"format\":1,\"sha").expect("write");
        let s = Store::open(&dir).expect("reopen");
        assert!(!tmp.exists());
        assert_eq!(s.confirmed().expect("read").map(|c| c.doc), Some(rec(1)));
        let _ = fs::remove_dir_all(&dir);
    }
}
