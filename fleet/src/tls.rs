//! TLS for the channel (rustls 0.23, ring).
//!
//! Agent side: one [`ClientConfig`] for the agent's whole life whose
//! client certificate ([`SwapClientCert`]) and trust bundle
//! ([`SwapServerVerifier`]) are swapped in place (arc-swap): a renewed
//! certificate or a rotated bundle is used from the next handshake on, and
//! the open stream is not touched. tonic's own TLS takes a fixed identity,
//! hence the connector of [`connect`].
//!
//! Controller side: [`AgentVerifier`] checks client certificates against
//! the trust bundle (swappable, for CA rotation) and a revocation list;
//! a connection without a certificate is let through the handshake but
//! can only enrol ([`PeerIdentity`] is `None` and every `Fleet` call
//! refuses it).

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::Duration,
};

use arc_swap::{ArcSwap, ArcSwapOption};
use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    client::{ResolvesClientCert, WebPkiServerVerifier},
    crypto::CryptoProvider,
    server::danger::{ClientCertVerified, ClientCertVerifier},
    server::WebPkiClientVerifier,
    sign::CertifiedKey,
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::net::TcpStream;

use crate::pki::{self, CertInfo};

/// TLS set-up errors.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM text did not parse.
    #[error("{what}: {detail}")]
    Pem {
        /// Which text.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// rustls refused the material.
    #[error("{what}: {source}")]
    Rustls {
        /// What was being built.
        what: &'static str,
        /// The cause.
        #[source]
        source: rustls::Error,
    },
    /// A verifier could not be built.
    #[error("trust bundle: {0}")]
    Verifier(String),
}

/// The crypto provider the channel uses (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(bundle_pem: &str) -> Result<RootCertStore, TlsError> {
    let mut r = RootCertStore::empty();
    let certs = pki::certs_from_pem(bundle_pem).map_err(|e| TlsError::Pem {
        what: "trust bundle",
        detail: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what: "trust bundle",
            detail: "no certificate".into(),
        });
    }
    for c in certs {
        r.add(c).map_err(|source| TlsError::Rustls {
            what: "trust bundle",
            source,
        })?;
    }
    Ok(r)
}

/// A certificate chain and its key, as rustls wants them.
pub fn certified_key(cert_pem: &str, key_pem: &str) -> Result<CertifiedKey, TlsError> {
    let chain = pki::certs_from_pem(cert_pem).map_err(|e| TlsError::Pem {
        what: "certificate",
        detail: e.to_string(),
    })?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| TlsError::Pem {
        what: "private key",
        detail: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|source| TlsError::Rustls {
        what: "certificate and key",
        source,
    })
}

/// The agent's client certificate, swapped on renewal.
#[derive(Debug, Default)]
pub struct SwapClientCert(ArcSwapOption<CertifiedKey>);

impl SwapClientCert {
    /// Uses `ck` from the next handshake on.
    pub fn set(&self, ck: CertifiedKey) {
        self.0.store(Some(Arc::new(ck)));
    }
    /// Whether a certificate is set.
    pub fn is_set(&self) -> bool {
        self.0.load().is_some()
    }
}

impl ResolvesClientCert for SwapClientCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0.load_full()
    }
    fn has_certs(&self) -> bool {
        self.is_set()
    }
}

/// The agent's trust bundle, swapped on rotation.
#[derive(Debug)]
pub struct SwapServerVerifier(ArcSwap<WebPkiServerVerifier>);

fn server_verifier(bundle_pem: &str) -> Result<Arc<WebPkiServerVerifier>, TlsError> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots(bundle_pem)?), provider())
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))
}

impl SwapServerVerifier {
    /// From a PEM bundle.
    pub fn new(bundle_pem: &str) -> Result<Self, TlsError> {
        Ok(Self(ArcSwap::new(server_verifier(bundle_pem)?)))
    }
    /// Trusts `bundle_pem` from the next handshake on.
    pub fn set(&self, bundle_pem: &str) -> Result<(), TlsError> {
        self.0.store(server_verifier(bundle_pem)?);
        Ok(())
    }
}

impl ServerCertVerifier for SwapServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0
            .load()
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.load().verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.load().verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.load().supported_verify_schemes()
    }
}

/// The agent's TLS: one config, swappable identity and trust.
#[derive(Debug, Clone)]
pub struct AgentTls {
    /// The client certificate.
    pub cert: Arc<SwapClientCert>,
    /// The trust bundle.
    pub trust: Arc<SwapServerVerifier>,
    /// The config built over both.
    pub config: Arc<ClientConfig>,
}

impl AgentTls {
    /// Trusting `bundle_pem`, with no client certificate yet.
    pub fn new(bundle_pem: &str) -> Result<Self, TlsError> {
        let cert = Arc::new(SwapClientCert::default());
        let trust = Arc::new(SwapServerVerifier::new(bundle_pem)?);
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|source| TlsError::Rustls {
                what: "client config",
                source,
            })?
            .dangerous()
            .with_custom_certificate_verifier(trust.clone())
            .with_client_cert_resolver(cert.clone());
        config.alpn_protocols = vec![b"h2".to_vec()];
        // No resumption: a resumed session carries the identity of the
        // session it resumes (an enrolment's: none; a certificate since
        // renewed or revoked), and every connection must show the
        // certificate in force.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Self {
            cert,
            trust,
            config: Arc::new(config),
        })
    }
}

/// Who is on the other end of a controller's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The agent id (the certificate's common name); `None` without a
    /// client certificate (enrolment only).
    pub agent: Option<String>,
    /// The certificate's serial (hex).
    pub serial: Option<String>,
    /// Its notAfter (Unix seconds).
    pub not_after: Option<i64>,
    /// The TCP peer.
    pub remote: Option<SocketAddr>,
}

/// The controller's check of client certificates: chains to the trust
/// bundle (swappable: CA rotation keeps old and new CAs for a while), in
/// its validity window, and not revoked.
#[derive(Debug)]
pub struct AgentVerifier {
    inner: ArcSwap<Arc<dyn ClientCertVerifier>>,
    revoked: RwLock<HashSet<String>>,
}

fn client_verifier(bundle_pem: &str) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots(bundle_pem)?), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))
}

impl AgentVerifier {
    /// Trusting agents whose certificates chain to `bundle_pem`.
    pub fn new(bundle_pem: &str) -> Result<Self, TlsError> {
        Ok(Self {
            inner: ArcSwap::new(Arc::new(client_verifier(bundle_pem)?)),
            revoked: RwLock::new(HashSet::new()),
        })
    }
    /// A new trust bundle, from the next handshake on.
    pub fn set_bundle(&self, bundle_pem: &str) -> Result<(), TlsError> {
        self.inner.store(Arc::new(client_verifier(bundle_pem)?));
        Ok(())
    }
    /// Refuses these serials (hex) from the next handshake on.
    pub fn set_revoked(&self, serials: impl IntoIterator<Item = String>) {
        let mut r = self.revoked.write().unwrap_or_else(|e| e.into_inner());
        *r = serials.into_iter().collect();
    }
}

impl ClientCertVerifier for AgentVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The hints are only a hint; an empty list makes the client send
        // whatever it has (and avoids borrowing from the swappable part).
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let v = self.inner.load_full();
        let ok = v.verify_client_cert(end_entity, intermediates, now)?;
        let info =
            CertInfo::from_der(end_entity).map_err(|e| rustls::Error::General(e.to_string()))?;
        let revoked = self
            .revoked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&info.serial);
        if revoked {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked,
            ));
        }
        Ok(ok)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.load().verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.load().verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.load().supported_verify_schemes()
    }
}

/// The controller's server config.
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    verifier: Arc<AgentVerifier>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = pki::certs_from_pem(cert_pem).map_err(|e| TlsError::Pem {
        what: "server certificate",
        detail: e.to_string(),
    })?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| TlsError::Pem {
        what: "server key",
        detail: e.to_string(),
    })?;
    let mut c = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Rustls {
            what: "server config",
            source,
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Rustls {
            what: "server certificate",
            source,
        })?;
    c.alpn_protocols = vec![b"h2".to_vec()];
    // No resumption (see AgentTls::new): every handshake verifies the
    // client certificate against the bundle and revocations in force.
    c.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    c.send_tls13_tickets = 0;
    Ok(Arc::new(c))
}

/// A server-side TLS connection with who is on the other end.
pub struct TlsConn {
    /// The stream.
    pub stream: tokio_rustls::server::TlsStream<TcpStream>,
    /// The peer.
    pub peer: PeerIdentity,
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = PeerIdentity;
    fn connect_info(&self) -> PeerIdentity {
        self.peer.clone()
    }
}

impl tokio::io::AsyncRead for TlsConn {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsConn {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Server-side handshake of one accepted connection.
pub async fn accept(
    acceptor: &tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    timeout: Duration,
) -> std::io::Result<TlsConn> {
    let remote = tcp.peer_addr().ok();
    let _ = tcp.set_nodelay(true);
    let stream = tokio::time::timeout(timeout, acceptor.accept(tcp))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake"))??;
    let certs = stream.get_ref().1.peer_certificates();
    let info = match certs.and_then(|c| c.first()) {
        None => None,
        Some(c) => match CertInfo::from_der(c) {
            Ok(i) => Some(i),
            Err(e) => {
                tracing::warn!(error = %e, "client certificate unreadable after verification");
                None
            }
        },
    };
    tracing::debug!(certs = certs.map_or(0, <[_]>::len), agent = ?info.as_ref().map(|i| &i.common_name), "accepted");
    let peer = PeerIdentity {
        agent: info.as_ref().map(|i| i.common_name.clone()),
        serial: info.as_ref().map(|i| i.serial.clone()),
        not_after: info.as_ref().map(|i| i.not_after),
        remote,
    };
    Ok(TlsConn { stream, peer })
}

/// A tonic channel to `addr` over the agent's TLS, verifying the
/// controller as `server_name`. Connects now (errors surface here).
pub async fn connect(
    tls: &AgentTls,
    addr: &str,
    server_name: &str,
    timeout: Duration,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
    let addr = addr.to_owned();
    let name = server_name.to_owned();
    let svc = tower::service_fn(move |_uri: tonic::transport::Uri| {
        let connector = connector.clone();
        let addr = addr.clone();
        let name = name.clone();
        async move {
            let tcp = TcpStream::connect(&addr).await?;
            let _ = tcp.set_nodelay(true);
            let sn = ServerName::try_from(name)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let tls = connector.connect(sn, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    tonic::transport::Endpoint::from_static("http://controller")
        .connect_timeout(timeout)
        .http2_keep_alive_interval(Duration::from_secs(15))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .connect_with_connector(svc)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swapped_client_cert_is_offered() {
        let ca = pki::Ca::generate("t", Duration::from_secs(600)).unwrap();
        let k = pki::new_key().unwrap();
        let cert = ca
            .sign_agent(
                &pki::csr_pem(&k, "a1").unwrap(),
                "a1",
                Duration::from_secs(600),
                0,
            )
            .unwrap();
        let t = AgentTls::new(ca.cert_pem()).unwrap();
        assert!(t
            .cert
            .resolve(&[], &[SignatureScheme::ECDSA_NISTP256_SHA256])
            .is_none());
        t.cert
            .set(certified_key(&cert, &k.serialize_pem()).unwrap());
        let ck = t
            .cert
            .resolve(&[], &[SignatureScheme::ECDSA_NISTP256_SHA256])
            .expect("a certificate");
        assert!(ck
            .key
            .choose_scheme(&[SignatureScheme::ECDSA_NISTP256_SHA256])
            .is_some());
    }
}
