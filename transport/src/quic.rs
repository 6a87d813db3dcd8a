//! QUIC driver (quinn, TLS 1.3) with mutual authentication under a cluster
//! certificate authority derived from the cluster secret.
//!
//! Every node derives the same CA key pair: Ed25519 seed =
//! HKDF-SHA256(secret, "owl-ca"), wrapped in PKCS#8 v1 for rcgen. Each node
//! then makes its own leaf key and certificate signed by that CA, and both
//! sides of a connection require the other's chain to end at the CA
//! (rustls `WebPkiClientVerifier` / root store). The proto handshake still
//! runs inside the stream so node ids and versions are checked exactly as on
//! TCP; its frames are sent unsealed since TLS already protects them.
//! One bidirectional stream per peer pair keeps per-peer FIFO order.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ring::hkdf;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::config::{MeshConfig, MeshError};
use crate::driver::{Conn, Net, Rd, Wr};

const SERVER_NAME: &str = "owl-node";
const ALPN: &[u8] = b"owl/1";

struct Seed;
impl hkdf::KeyType for Seed {
    fn len(&self) -> usize {
        32
    }
}

/// The cluster CA's key pair, the same on every node holding `secret`.
fn ca_key(secret: &[u8; 32]) -> Result<rcgen::KeyPair, rcgen::Error> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"owl-ca-v1").extract(secret);
    let mut seed = [0u8; 32];
    prk.expand(&[b"owl-ca"], Seed)
        .and_then(|okm| okm.fill(&mut seed))
        .expect("32 bytes is a valid HKDF length");
    // PKCS#8 v1 PrivateKeyInfo for Ed25519 (RFC 8410): fixed prefix + seed.
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&seed);
    rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &PrivatePkcs8KeyDer::from(der),
        &rcgen::PKCS_ED25519,
    )
}

fn ca_params() -> rcgen::CertificateParams {
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "owl cluster CA");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    p
}

/// This node's TLS identity: (CA certificate, leaf chain, leaf key).
pub(crate) fn identity(
    secret: &[u8; 32],
    node: u32,
) -> Result<
    (
        CertificateDer<'static>,
        Vec<CertificateDer<'static>>,
        PrivateKeyDer<'static>,
    ),
    rcgen::Error,
> {
    let ca_key = ca_key(secret)?;
    let params = ca_params();
    let ca_cert = params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(params, ca_key);
    let leaf_key = rcgen::KeyPair::generate()?;
    let mut leaf = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])?;
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, format!("owl node {node}"));
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    Ok((ca_cert.der().clone(), vec![leaf_cert.der().clone()], key))
}

fn tls_configs(cfg: &MeshConfig) -> Result<(quinn::ServerConfig, quinn::ClientConfig), String> {
    let (ca, chain, key) =
        identity(&cfg.secret, cfg.node).map_err(|e| format!("certificate generation: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).map_err(|e| format!("cluster CA: {e}"))?;
    let roots = Arc::new(roots);
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()
    .map_err(|e| format!("client verifier: {e}"))?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|e| format!("server certificate: {e}"))?;
    server.alpn_protocols = vec![ALPN.to_vec()];
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("client certificate: {e}"))?;
    client.alpn_protocols = vec![ALPN.to_vec()];

    let mut transport = quinn::TransportConfig::default();
    // QUIC's idle timer is a backstop to our heartbeats: a peer that
    // crashed is found gone on every connection to it, by the nodes that
    // do not watch it too. Past 4 nodes heartbeats go to the ring and the
    // head only, so QUIC's own keep-alive (a PING, sent only on a
    // connection that sent nothing else meanwhile) keeps a healthy idle
    // link open.
    let idle = (cfg.dead_after * 4).max(Duration::from_secs(10));
    transport.max_idle_timeout(Some(
        idle.try_into().map_err(|e| format!("idle timeout: {e}"))?,
    ));
    transport.keep_alive_interval(Some(idle / 4));
    let transport = Arc::new(transport);

    let server =
        quinn::crypto::rustls::QuicServerConfig::try_from(server).map_err(|e| e.to_string())?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server));
    server.transport_config(transport.clone());
    let client =
        quinn::crypto::rustls::QuicClientConfig::try_from(client).map_err(|e| e.to_string())?;
    let mut client = quinn::ClientConfig::new(Arc::new(client));
    client.transport_config(transport);
    Ok((server, client))
}

pub(crate) struct QuicNet {
    endpoint: quinn::Endpoint,
    local: SocketAddr,
}

impl QuicNet {
    pub(crate) fn bind(cfg: &MeshConfig) -> Result<Self, MeshError> {
        let (server, client) = tls_configs(cfg).map_err(MeshError::Setup)?;
        let mut endpoint =
            quinn::Endpoint::server(server, cfg.listen).map_err(|e| MeshError::Bind {
                addr: cfg.listen,
                source: e,
            })?;
        endpoint.set_default_client_config(client);
        let local = endpoint.local_addr().map_err(|e| MeshError::Bind {
            addr: cfg.listen,
            source: e,
        })?;
        Ok(Self { endpoint, local })
    }

    fn conn(
        c: quinn::Connection,
        (send, recv): (quinn::SendStream, quinn::RecvStream),
    ) -> Conn<QuicRd, QuicWr> {
        let remote = c.remote_address();
        Conn {
            rd: QuicRd(recv),
            wr: QuicWr(send),
            close: Box::new(move || c.close(0u32.into(), b"closed")),
            remote,
        }
    }
}

/// A connection that failed: a TLS alert in it (QUIC carries them as
/// error codes 0x100-0x1ff) means one side's certificate did not chain to
/// the other's cluster CA, i.e. the two hold different cluster secrets.
/// That is a refusal (`PermissionDenied`), which dialers do not retry.
fn conn_error(e: quinn::ConnectionError) -> io::Error {
    let code = match &e {
        quinn::ConnectionError::TransportError(t) => Some(u64::from(t.code)),
        quinn::ConnectionError::ConnectionClosed(c) => Some(u64::from(c.error_code)),
        _ => None,
    };
    if code.is_some_and(|c| (0x100..0x200).contains(&c)) {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("TLS authentication failed ({e}): the peer's certificate is not from this cluster's CA, so the peer holds a different cluster secret"),
        )
    } else {
        io::Error::other(e)
    }
}

pub(crate) struct QuicRd(quinn::RecvStream);
pub(crate) struct QuicWr(quinn::SendStream);

impl Rd for QuicRd {
    async fn read(&mut self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let r = match self.0.read(&mut buf[..]).await {
            Ok(Some(n)) => Ok(n),
            Ok(None) => Ok(0),
            Err(e) => Err(io::Error::other(e)),
        };
        (r, buf)
    }
}

impl Wr for QuicWr {
    async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let r = self.0.write_all(&buf).await.map_err(io::Error::other);
        (r, buf)
    }
    async fn finish(&mut self) {
        // Wait until the peer read everything, so closing the connection
        // afterwards cannot discard our last frame.
        if self.0.finish().is_ok() {
            let _ = tokio::time::timeout(Duration::from_millis(500), self.0.stopped()).await;
        }
    }
}

impl Net for QuicNet {
    type R = QuicRd;
    type W = QuicWr;
    type Incoming = quinn::Incoming;
    fn local_addr(&self) -> SocketAddr {
        self.local
    }
    fn remote(inc: &quinn::Incoming) -> SocketAddr {
        inc.remote_address()
    }
    async fn accept(&self) -> io::Result<quinn::Incoming> {
        self.endpoint
            .accept()
            .await
            .ok_or_else(|| io::Error::other("QUIC endpoint closed"))
    }
    async fn ready(inc: quinn::Incoming) -> io::Result<Conn<QuicRd, QuicWr>> {
        let c = inc.await.map_err(conn_error)?;
        let streams = c.accept_bi().await.map_err(conn_error)?;
        Ok(Self::conn(c, streams))
    }
    async fn dial(&self, addr: SocketAddr) -> io::Result<Conn<QuicRd, QuicWr>> {
        let c = self
            .endpoint
            .connect(addr, SERVER_NAME)
            .map_err(io::Error::other)?
            .await
            .map_err(conn_error)?;
        let streams = c.open_bi().await.map_err(conn_error)?;
        Ok(Self::conn(c, streams))
    }
    async fn close(&self) {
        self.endpoint.close(0u32.into(), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_millis(200), self.endpoint.wait_idle()).await;
    }
}
