//! The suite's own certificate authority, for the creditor protocol's mutual
//! TLS in both directions (issue 21).
//!
//! [`TestCa::new`] makes a CA (ECDSA P-256, rcgen) and a temporary directory
//! that holds every PEM file it writes; the directory is removed when the
//! `TestCa` is dropped. [`TestCa::server_cert`] issues a server certificate
//! for `127.0.0.1` and `localhost`; [`TestCa::client_cert`] a client
//! certificate whose subject carries `organizationIdentifier` (OID 2.5.4.97)
//! `NTRNO-<org>`, as Norwegian enterprise certificates do (ETSI EN 319
//! 412-1). [`serve_tls`] runs an axum router behind rustls on loopback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The OID of `organizationIdentifier` (X.520, 2.5.4.97).
pub const ORGANIZATION_IDENTIFIER: [u64; 4] = [2, 5, 4, 97];

/// A certificate and its key, as PEM text and as files in the CA's directory.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl Issued {
    /// Certificate and key in one PEM text (what `reqwest::Identity::from_pem` reads).
    pub fn identity_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }

    pub fn reqwest_identity(&self) -> reqwest::Identity {
        reqwest::Identity::from_pem(self.identity_pem().as_bytes()).expect("identity")
    }

    fn chain(&self) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("certificate PEM")
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("key PEM")
    }
}

pub struct TestCa {
    dir: PathBuf,
    cert: rcgen::Certificate,
    key: KeyPair,
    /// The CA certificate as PEM, and the file that holds it.
    pub ca_pem: String,
    pub ca_path: PathBuf,
}

impl TestCa {
    /// A new CA named `Samtykke Test CA` in a fresh temporary directory.
    pub fn new() -> Self {
        Self::named("Samtykke Test CA")
    }

    pub fn named(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("samtykke-test-ca-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("CA directory");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, "Samtykke test suite");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        let ca_pem = cert.pem();
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, &ca_pem).expect("write CA");
        Self {
            dir,
            cert,
            key,
            ca_pem,
            ca_path,
        }
    }

    /// The directory the PEM files are in (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A server certificate for `127.0.0.1` and `localhost`, files
    /// `<name>.pem` and `<name>-key.pem`.
    pub fn server_cert(&self, name: &str) -> Issued {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("server params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.issue(name, params)
    }

    /// A client certificate for organisation `org`: subject
    /// `CN=<name>, O=<name>, organizationIdentifier=NTRNO-<org>`.
    pub fn client_cert(&self, name: &str, org: &str) -> Issued {
        self.client_cert_with_identifier(name, Some(&format!("NTRNO-{org}")))
    }

    /// A client certificate with the given `organizationIdentifier` value
    /// (verbatim), or none.
    pub fn client_cert_with_identifier(&self, name: &str, identifier: Option<&str>) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, name);
        if let Some(identifier) = identifier {
            params.distinguished_name.push(
                DnType::CustomDnType(ORGANIZATION_IDENTIFIER.to_vec()),
                identifier,
            );
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.issue(name, params)
    }

    fn issue(&self, name: &str, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign certificate");
        let file = sanitize(name);
        let issued = Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_path: self.dir.join(format!("{file}.pem")),
            key_path: self.dir.join(format!("{file}-key.pem")),
        };
        std::fs::write(&issued.cert_path, &issued.cert_pem).expect("write certificate");
        std::fs::write(&issued.key_path, &issued.key_pem).expect("write key");
        issued
    }

    /// The CA as a reqwest root certificate.
    pub fn reqwest_root(&self) -> reqwest::Certificate {
        reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("CA PEM")
    }

    fn roots(&self) -> Arc<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(cert.expect("CA PEM")).expect("add CA");
        }
        Arc::new(roots)
    }

    /// A rustls server configuration presenting `server`; with
    /// `require_client_cert`, a client certificate issued by this CA is
    /// required (mutual TLS). ALPN offers HTTP/1.1.
    pub fn server_config(
        &self,
        server: &Issued,
        require_client_cert: bool,
    ) -> rustls::ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let builder = if require_client_cert {
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(self.roots(), provider)
                    .build()
                    .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder
            .with_single_cert(server.chain(), server.key())
            .expect("server certificate");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }

    /// A reqwest client trusting this CA (only), presenting `identity` if given.
    pub fn client(&self, identity: Option<&Issued>) -> reqwest::Client {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(self.reqwest_root());
        if let Some(identity) = identity {
            builder = builder.identity(identity.reqwest_identity());
        }
        builder.build().expect("client")
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// What a TLS connection's peer presented, given to the router as a request
/// extension.
#[derive(Debug, Clone, Default)]
pub struct PeerCertificates(pub Vec<CertificateDer<'static>>);

/// Serves `router` over TLS with `config` on a fresh loopback port, until the
/// runtime ends; each request carries the client's [`PeerCertificates`]
/// (empty without one). Returns the address.
pub async fn serve_tls(router: axum::Router, config: rustls::ServerConfig) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let router = router.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let peer = PeerCertificates(
                    tls.get_ref()
                        .1
                        .peer_certificates()
                        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                        .unwrap_or_default(),
                );
                let service = hyper::service::service_fn(
                    move |mut req: hyper::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(peer.clone());
                        let mut router = router.clone();
                        async move { tower::Service::call(&mut router, req).await }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use axum::Extension;

    fn router() -> axum::Router {
        axum::Router::new().route(
            "/hello",
            get(|Extension(peer): Extension<PeerCertificates>| async move {
                format!("hello, {} certificate(s)", peer.0.len())
            }),
        )
    }

    #[tokio::test]
    async fn a_client_trusting_the_ca_connects_to_a_server_with_its_certificate() {
        let ca = TestCa::new();
        let server = ca.server_cert("creditor");
        let addr = serve_tls(router(), ca.server_config(&server, false)).await;
        for host in [
            format!("127.0.0.1:{}", addr.port()),
            format!("localhost:{}", addr.port()),
        ] {
            let answer = ca
                .client(None)
                .get(format!("https://{host}/hello"))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 200);
            assert_eq!(answer.text().await.unwrap(), "hello, 0 certificate(s)");
        }
        // A client that does not trust the test CA refuses the server.
        let stranger = TestCa::named("Another CA");
        assert!(stranger
            .client(None)
            .get(format!("https://127.0.0.1:{}/hello", addr.port()))
            .send()
            .await
            .is_err());
        // The files are where the paths say, and go with the CA.
        let dir = ca.dir().to_owned();
        assert_eq!(
            std::fs::read_to_string(&server.cert_path).unwrap(),
            server.cert_pem
        );
        assert_eq!(std::fs::read_to_string(&ca.ca_path).unwrap(), ca.ca_pem);
        drop(ca);
        assert!(!dir.exists());
    }

    #[tokio::test]
    async fn mutual_tls_requires_a_client_certificate_of_the_ca_carrying_the_organization_identifier(
    ) {
        let ca = TestCa::new();
        let server = ca.server_cert("registry");
        let addr = serve_tls(router(), ca.server_config(&server, true)).await;
        let url = format!("https://127.0.0.1:{}/hello", addr.port());

        let bank = ca.client_cert("Nordlys Bank ASA", "923456783");
        let answer = ca.client(Some(&bank)).get(&url).send().await.unwrap();
        assert_eq!(answer.text().await.unwrap(), "hello, 1 certificate(s)");
        // The subject carries organizationIdentifier = NTRNO-923456783 as a
        // UTF8String under OID 2.5.4.97 (06 03 55 04 61, 0c 0f "NTRNO-…").
        let der = CertificateDer::from_pem_slice(bank.cert_pem.as_bytes()).unwrap();
        let needle = [
            &[0x06, 0x03, 0x55, 0x04, 0x61, 0x0c, 0x0f][..],
            b"NTRNO-923456783",
        ]
        .concat();
        assert!(der.windows(needle.len()).any(|w| w == needle.as_slice()));

        // No client certificate, or one from another CA: the handshake fails.
        assert!(ca.client(None).get(&url).send().await.is_err());
        let other = TestCa::named("Another CA");
        let foreign = other.client_cert("Impostor", "923456783");
        assert!(ca.client(Some(&foreign)).get(&url).send().await.is_err());
    }
}
