//! Keys, CSRs and certificates (rcgen, x509-parser).
//!
//! - An agent generates its key on the host ([`new_key`]); only its CSR
//!   ([`csr_pem`]) leaves the host.
//! - The controller's [`Ca`] signs a CSR for one agent id
//!   ([`Ca::sign_agent`]): the certificate names the agent (CN and a DNS
//!   SAN), is for client authentication only, and carries a random serial;
//!   what the CSR asked for besides its public key is ignored.
//! - [`CertInfo`] reads what the rest needs (serial, name, validity).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::{pem::PemObject, CertificateDer};

/// PKI errors.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused (bad CSR, bad key, ...).
    #[error("{what}: {source}")]
    Rcgen {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
    /// A certificate did not parse.
    #[error("certificate: {0}")]
    Parse(String),
    /// An agent id that cannot name a certificate.
    #[error("agent id {0:?}: 1..=63 characters of [a-z0-9-], not starting or ending with '-'")]
    AgentId(String),
}

fn rc(what: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
    move |source| PkiError::Rcgen { what, source }
}

/// Checks an agent id: a DNS label (it is the certificate's DNS SAN).
pub fn check_agent_id(id: &str) -> Result<(), PkiError> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && !id.starts_with('-')
        && !id.ends_with('-')
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(PkiError::AgentId(id.to_owned()))
    }
}

/// A new ECDSA P-256 key (generated here; for an agent, on its host).
pub fn new_key() -> Result<KeyPair, PkiError> {
    KeyPair::generate().map_err(rc("generating a key"))
}

/// Parses a PEM private key.
pub fn key_from_pem(pem: &str) -> Result<KeyPair, PkiError> {
    KeyPair::from_pem(pem).map_err(rc("reading a private key"))
}

/// A CSR for `agent_id`'s key.
pub fn csr_pem(key: &KeyPair, agent_id: &str) -> Result<String, PkiError> {
    check_agent_id(agent_id)?;
    let mut p = CertificateParams::new(vec![agent_id.to_owned()]).map_err(rc("CSR names"))?;
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, agent_id);
    p.serialize_request(key)
        .and_then(|c| c.pem())
        .map_err(rc("serializing a CSR"))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn offset(unix: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn random_serial() -> SerialNumber {
    let mut b: [u8; 16] = rand::random();
    b[0] &= 0x7f; // positive
    b[0] |= 0x01; // no leading zero byte
    SerialNumber::from_slice(&b)
}

/// A certificate authority: the controller's signer.
pub struct Ca {
    cert_pem: String,
    key: KeyPair,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

impl Ca {
    /// A new self-signed CA named `name`, valid for `valid` from now
    /// (back-dated by 5 minutes for clock skew).
    pub fn generate(name: &str, valid: Duration) -> Result<Self, PkiError> {
        let key = new_key()?;
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = unix_now() as i64;
        p.not_before = offset(now - 300);
        p.not_after = offset(now + valid.as_secs() as i64);
        p.serial_number = Some(random_serial());
        let cert = p.self_signed(&key).map_err(rc("self-signing the CA"))?;
        Ok(Self {
            cert_pem: cert.pem(),
            key,
        })
    }

    /// A CA from its certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = key_from_pem(key_pem)?;
        Issuer::from_ca_cert_pem(cert_pem, &key).map_err(rc("reading the CA certificate"))?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            key,
        })
    }

    /// The CA's certificate.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's key (to store it).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    fn leaf(name: &str, sans: Vec<SanType>, not_before: i64, valid: Duration) -> CertificateParams {
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, name);
        p.subject_alt_names = sans;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.not_before = offset(not_before);
        p.not_after = offset(not_before + 300 + valid.as_secs() as i64);
        p.serial_number = Some(random_serial());
        p.use_authority_key_identifier_extension = true;
        p
    }

    /// Signs `csr_pem` for `agent_id`: client authentication only, valid
    /// `valid` from now. Only the CSR's public key (and its signature,
    /// checked) is used. `not_before_offset_s` moves the validity window
    /// (tests make expired certificates with it).
    pub fn sign_agent(
        &self,
        csr_pem: &str,
        agent_id: &str,
        valid: Duration,
        not_before_offset_s: i64,
    ) -> Result<String, PkiError> {
        check_agent_id(agent_id)?;
        let mut csr =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(rc("reading the CSR"))?;
        let san = SanType::DnsName(
            agent_id
                .to_owned()
                .try_into()
                .map_err(rc("the agent id as a DNS name"))?,
        );
        let mut p = Self::leaf(
            agent_id,
            vec![san],
            unix_now() as i64 - 300 + not_before_offset_s,
            valid,
        );
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        csr.params = p;
        let issuer =
            Issuer::from_ca_cert_pem(&self.cert_pem, &self.key).map_err(rc("the CA as issuer"))?;
        Ok(csr.signed_by(&issuer).map_err(rc("signing the CSR"))?.pem())
    }

    /// A server certificate and key for a controller (`names`: DNS names
    /// and IP addresses), valid `valid`.
    pub fn issue_server(
        &self,
        names: &[String],
        valid: Duration,
    ) -> Result<(String, String), PkiError> {
        let key = new_key()?;
        let sans = CertificateParams::new(names.to_vec())
            .map_err(rc("server names"))?
            .subject_alt_names;
        let mut p = Self::leaf(
            names.first().map_or("controller", String::as_str),
            sans,
            unix_now() as i64 - 300,
            valid,
        );
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let issuer =
            Issuer::from_ca_cert_pem(&self.cert_pem, &self.key).map_err(rc("the CA as issuer"))?;
        let cert = p.signed_by(&key, &issuer).map_err(rc("signing"))?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// The public key a CSR asks to have certified (its raw bytes; the CSR's
/// signature is checked by the parser).
pub fn csr_public_key(csr_pem: &str) -> Result<Vec<u8>, PkiError> {
    use rcgen::PublicKeyData;
    let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(rc("reading the CSR"))?;
    Ok(csr.public_key.der_bytes().to_vec())
}

/// What the channel needs to know of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Serial, lower-case hex.
    pub serial: String,
    /// Subject common name.
    pub common_name: String,
    /// Validity, Unix seconds.
    pub not_before: i64,
    /// Validity, Unix seconds.
    pub not_after: i64,
}

impl CertInfo {
    /// Reads a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, PkiError> {
        let (_, c) =
            x509_parser::parse_x509_certificate(der).map_err(|e| PkiError::Parse(e.to_string()))?;
        let common_name = c
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_owned();
        Ok(Self {
            serial: c.raw_serial_as_string().replace(':', ""),
            common_name,
            not_before: c.validity().not_before.timestamp(),
            not_after: c.validity().not_after.timestamp(),
        })
    }

    /// Reads the first certificate of a PEM text.
    pub fn from_pem(pem: &str) -> Result<Self, PkiError> {
        let der = CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| PkiError::Parse(e.to_string()))?;
        Self::from_der(&der)
    }

    /// When to renew: at `fraction` (0..1) of the lifetime.
    pub fn renew_at(&self, fraction: f64) -> i64 {
        let life = (self.not_after - self.not_before).max(0) as f64;
        self.not_before + (life * fraction.clamp(0.0, 1.0)) as i64
    }
}

/// Every certificate in a PEM text.
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Parse(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_signed_for_the_agent_only() {
        let ca = Ca::generate("test-ca", Duration::from_secs(3600)).unwrap();
        let key = new_key().unwrap();
        let csr = csr_pem(&key, "srv1").unwrap();
        let cert = ca
            .sign_agent(&csr, "srv1", Duration::from_secs(600), 0)
            .unwrap();
        let info = CertInfo::from_pem(&cert).unwrap();
        assert_eq!(info.common_name, "srv1");
        assert!(info.not_after - info.not_before >= 600);
        assert!(info.renew_at(2.0 / 3.0) > info.not_before);
        // A CA round-trips through PEM and still signs.
        let ca2 = Ca::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
        ca2.sign_agent(&csr, "srv1", Duration::from_secs(60), 0)
            .unwrap();
        assert!(ca
            .sign_agent("garbage", "srv1", Duration::from_secs(60), 0)
            .is_err());
        assert!(check_agent_id("Bad_Id").is_err());
    }
}
