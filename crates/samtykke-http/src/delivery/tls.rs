//! The delivery listener's TLS: the server certificate, and mutual TLS
//! required with client certificates issued by the configured client CA
//! (the enterprise-certificate CAs the creditors' certificates come from).
//! A connection without a client certificate, or with one the CA did not
//! issue (or expired), fails the handshake: it never reaches HTTP.
//! HTTP/2 and HTTP/1.1 are offered by ALPN.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// Why the delivery listener's TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryTlsError {
    #[error("delivery-tls-cert holds no PEM certificate")]
    NoCertificate,
    #[error("delivery-tls-key holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey,
    #[error("delivery-client-ca holds no PEM certificate")]
    NoClientCa,
    #[error("delivery-client-ca: {0}")]
    ClientCa(String),
    #[error("delivery TLS: {0}")]
    Tls(String),
}

/// The PEM files' contents, as read.
pub struct DeliveryTlsFiles<'a> {
    /// The server's certificate chain (leaf first).
    pub certificate_chain: &'a [u8],
    /// The server certificate's private key.
    pub private_key: &'a [u8],
    /// The CA certificate(s) whose client certificates are accepted.
    pub client_ca: &'a [u8],
}

/// ALPN: HTTP/2 preferred, HTTP/1.1 otherwise.
pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The rustls server configuration of the delivery listener.
pub fn server_config(files: &DeliveryTlsFiles<'_>) -> Result<Arc<ServerConfig>, DeliveryTlsError> {
    let chain = certificates(files.certificate_chain);
    if chain.is_empty() {
        return Err(DeliveryTlsError::NoCertificate);
    }
    let key =
        PrivateKeyDer::from_pem_slice(files.private_key).map_err(|_| DeliveryTlsError::NoKey)?;
    let cas = certificates(files.client_ca);
    if cas.is_empty() {
        return Err(DeliveryTlsError::NoClientCa);
    }
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots
            .add(ca)
            .map_err(|e| DeliveryTlsError::ClientCa(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // Required: a client without an accepted certificate fails the handshake.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| DeliveryTlsError::ClientCa(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DeliveryTlsError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| DeliveryTlsError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// Every certificate of a PEM bundle (other sections are skipped).
fn certificates(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

#[cfg(test)]
mod tests {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

    use super::*;

    struct Pems {
        cert: String,
        key: String,
        ca: String,
    }

    fn pems() -> Pems {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        Pems {
            cert: server.pem(),
            key: key.serialize_pem(),
            ca: ca.pem(),
        }
    }

    fn config(cert: &str, key: &str, ca: &str) -> Result<Arc<ServerConfig>, DeliveryTlsError> {
        server_config(&DeliveryTlsFiles {
            certificate_chain: cert.as_bytes(),
            private_key: key.as_bytes(),
            client_ca: ca.as_bytes(),
        })
    }

    #[test]
    fn a_server_config_offers_h2_and_http11() {
        // That it requires a client certificate: tests/api/push.rs, over
        // real connections.
        let p = pems();
        let config = config(&p.cert, &p.key, &p.ca).unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn missing_or_mismatched_files_are_told_apart() {
        let p = pems();
        let other = pems();
        assert!(matches!(
            config(&p.key, &p.key, &p.ca),
            Err(DeliveryTlsError::NoCertificate)
        ));
        assert!(matches!(
            config(&p.cert, &p.cert, &p.ca),
            Err(DeliveryTlsError::NoKey)
        ));
        assert!(matches!(
            config(&p.cert, &p.key, "nothing"),
            Err(DeliveryTlsError::NoClientCa)
        ));
        assert!(matches!(
            config(&p.cert, &other.key, &p.ca),
            Err(DeliveryTlsError::Tls(_))
        ));
    }
}
