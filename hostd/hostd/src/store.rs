//! The ownership record on disk: JSON, written atomically (temporary file in
//! the same directory, fsync, rename, fsync of the directory), so a crash
//! leaves the old record or the new one, never half of one.

use std::{
    fs::{self, File},
    io::{self, Write as _},
    path::{Path, PathBuf},
};

use hostd_core::Ownership;

/// Default location of the ownership record.
pub const DEFAULT_STATE_FILE: &str = "/var/lib/hostd/owned.json";

/// A failure reading or writing the record.
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
    /// Another hostd holds the lock.
    #[error("{path}: another hostd{} is applying or running as the daemon; one hostd changes the host at a time (with the daemon running, `hostd apply` goes through it)", .holder.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Its holder's pid, when it wrote one.
        holder: Option<u32>,
    },
    /// The file is not an ownership record.
    #[error("{path}: not a hostd ownership record: {message}")]
    Corrupt {
        /// File.
        path: PathBuf,
        /// Parser message.
        message: String,
    },
}

/// The lock that lets one hostd at a time change the host: an exclusive
/// `flock` on `<record>.lock`, held until the guard is dropped (or the
/// process dies: the kernel releases it, so a crash never leaves it held).
#[derive(Debug)]
pub struct Lock {
    _file: nix::fcntl::Flock<File>,
}

/// Takes the lock of the record at `path`, or says who holds it.
pub fn lock(path: &Path) -> Result<Lock, StoreError> {
    use nix::fcntl::{Flock, FlockArg};
    let lock_path = lock_path(path);
    let io = |source| StoreError::Io {
        path: lock_path.clone(),
        source,
    };
    if let Some(dir) = lock_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io)?;
    }
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(io)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut locked) => {
            // Who holds it, for the next one's error message.
            let _ = locked.set_len(0);
            let _ = writeln!(&mut *locked, "{}", std::process::id());
            Ok(Lock { _file: locked })
        }
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(StoreError::Locked {
            holder: fs::read_to_string(&lock_path)
                .ok()
                .and_then(|s| s.trim().parse().ok()),
            path: lock_path,
        }),
        Err((_, e)) => Err(io(io::Error::from(e))),
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "owned.json".into());
    name.push(".lock");
    path.with_file_name(name)
}

/// Loads the record; a missing file is an empty record.
pub fn load(path: &Path) -> Result<Ownership, StoreError> {
    match fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
            path: path.to_owned(),
            message: e.to_string(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Ownership::default()),
        Err(source) => Err(StoreError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Saves the record atomically.
pub fn save(path: &Path, own: &Ownership) -> Result<(), StoreError> {
    let mut text = serde_json::to_vec_pretty(own).map_err(|e| StoreError::Corrupt {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    text.push(b'\n');
    write_atomic(path, &text).map_err(|source| StoreError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Writes `data` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "hostd".into());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing_file() {
        let dir = std::env::temp_dir().join(format!("hostd-store-{}", std::process::id()));
        let path = dir.join("sub/owned.json");
        assert_eq!(load(&path).unwrap(), Ownership::default());
        let mut own = Ownership::default();
        own.created.insert(
            hostd_core::types::IfName::new("bond0").unwrap(),
            Default::default(),
        );
        save(&path, &own).unwrap();
        assert_eq!(load(&path).unwrap(), own);
        fs::write(&path, "{").unwrap();
        assert!(matches!(load(&path), Err(StoreError::Corrupt { .. })));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn one_holder_at_a_time() {
        let dir = std::env::temp_dir().join(format!("hostd-lock-{}", std::process::id()));
        let path = dir.join("owned.json");
        let held = lock(&path).expect("first lock");
        match lock(&path) {
            Err(StoreError::Locked { holder, .. }) => {
                assert_eq!(holder, Some(std::process::id()))
            }
            other => panic!("second lock: {other:?}"),
        }
        drop(held);
        let again = lock(&path).expect("free again");
        drop(again);
        fs::remove_dir_all(&dir).unwrap();
    }
}
