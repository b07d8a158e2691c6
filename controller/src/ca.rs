//! The controller's CAs: one signs (the active one), all listed in the
//! bundle are trusted. Rotation: `rotate` adds a new CA and makes it the
//! signer (the old one stays trusted, so certificates it signed keep
//! working); agents get the new bundle over their stream and renew;
//! `retire` drops old CAs from the bundle once every agent has renewed.

use std::time::Duration;

use fleet::pki::Ca;

use crate::store::{Store, StoreError};

/// CA errors.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// Files.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Keys and certificates.
    #[error(transparent)]
    Pki(#[from] fleet::pki::PkiError),
    /// Nothing set up.
    #[error("no CA in {0}: run `controller init` first")]
    Missing(String),
    /// Bad state.
    #[error("{0}")]
    Invalid(String),
}

/// The CAs.
pub struct Cas {
    /// Index of the signer.
    pub active: u32,
    /// Trusted, by index (the signer included).
    pub trusted: Vec<(u32, String)>,
    /// The signer.
    pub signer: Ca,
}

fn list(store: &Store) -> Result<Vec<u32>, CaError> {
    Ok(store
        .read("ca/bundle")?
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect())
}

impl Cas {
    /// Reads the CAs.
    pub fn load(store: &Store) -> Result<Self, CaError> {
        let active: u32 = store
            .read("ca/active")?
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| CaError::Missing(store.root().display().to_string()))?;
        let mut trusted = Vec::new();
        for n in list(store)? {
            let pem = store
                .read(&format!("ca/ca-{n}.pem"))?
                .ok_or_else(|| CaError::Invalid(format!("ca/ca-{n}.pem missing")))?;
            trusted.push((n, pem));
        }
        let cert = store
            .read(&format!("ca/ca-{active}.pem"))?
            .ok_or_else(|| CaError::Invalid(format!("ca/ca-{active}.pem missing")))?;
        let key = store
            .read(&format!("ca/ca-{active}.key"))?
            .ok_or_else(|| CaError::Invalid(format!("ca/ca-{active}.key missing")))?;
        Ok(Self {
            active,
            trusted,
            signer: Ca::from_pem(&cert, &key)?,
        })
    }

    /// The trust bundle (PEM of every trusted CA).
    pub fn bundle(&self) -> String {
        self.trusted.iter().map(|(_, p)| p.as_str()).collect()
    }

    /// Creates a new CA, trusted and active. Returns its index.
    pub fn add(store: &Store, validity: Duration) -> Result<u32, CaError> {
        let mut l = list(store)?;
        let n = l.iter().max().map_or(1, |m| m + 1);
        let ca = Ca::generate(&format!("hostnet fleet CA {n}"), validity)?;
        store.write(&format!("ca/ca-{n}.key"), ca.key_pem().as_bytes(), 0o600)?;
        store.write(&format!("ca/ca-{n}.pem"), ca.cert_pem().as_bytes(), 0o644)?;
        l.push(n);
        let text: Vec<String> = l.iter().map(u32::to_string).collect();
        store.write("ca/bundle", text.join("\n").as_bytes(), 0o644)?;
        store.write("ca/active", n.to_string().as_bytes(), 0o644)?;
        Ok(n)
    }

    /// Drops every CA but the active one from the bundle.
    pub fn retire_old(store: &Store) -> Result<Vec<u32>, CaError> {
        let active: u32 = store
            .read("ca/active")?
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| CaError::Missing(store.root().display().to_string()))?;
        let old: Vec<u32> = list(store)?.into_iter().filter(|n| *n != active).collect();
        store.write("ca/bundle", active.to_string().as_bytes(), 0o644)?;
        Ok(old)
    }
}
