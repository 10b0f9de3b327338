//! A throwaway PKI for TLS tests: root CA → intermediate CA → server leaf
//! for `localhost` and `127.0.0.1`, plus the broken variants (missing
//! intermediate, expired leaf, unknown CA). Everything uses the ring
//! provider.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, date_time_ymd,
};
use rustls::crypto::CryptoProvider;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Which certificates the server presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chain {
    /// Leaf and intermediate: verifies against [`TestPki::ca_pem`].
    Full,
    /// The leaf alone: clients fail with `UnknownIssuer`.
    LeafOnly,
}

/// A leaf certificate with its key.
struct Leaf {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

/// Root CA, intermediate CA and server leaves, generated fresh.
pub struct TestPki {
    root: CertificateDer<'static>,
    root_pem: String,
    intermediate: CertificateDer<'static>,
    leaf: Leaf,
    expired: Leaf,
    unknown_root: CertificateDer<'static>,
    unknown_leaf: Leaf,
}

/// The SANs of every server leaf.
const SERVER_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

impl TestPki {
    /// Generates the whole PKI (ECDSA P-256 keys).
    pub fn new() -> TestPki {
        let root = ca("levee test root", None);
        let intermediate = ca("levee test intermediate", Some(&root));
        let leaf = issue_leaf(&intermediate);
        let expired = leaf_expired(&intermediate);
        let unknown_root = ca("levee unknown root", None);
        let unknown_leaf = issue_leaf(&unknown_root);
        TestPki {
            root: root.der().clone(),
            root_pem: root.pem(),
            intermediate: intermediate.der().clone(),
            leaf,
            expired,
            unknown_root: unknown_root.der().clone(),
            unknown_leaf,
        }
    }

    /// The root CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.root_pem.clone()
    }

    /// The root CA certificate, DER.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.root.clone()
    }

    /// Writes the root CA to `dir/ca.pem` and returns that path.
    pub fn write_ca(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.root_pem).expect("write ca.pem");
        path
    }

    /// A server config presenting the valid leaf with `chain`, ALPN
    /// `["h2", "http/1.1"]`.
    pub fn server_config(&self, chain: Chain) -> Arc<rustls::ServerConfig> {
        let certs = match chain {
            Chain::Full => vec![self.leaf.cert.clone(), self.intermediate.clone()],
            Chain::LeafOnly => vec![self.leaf.cert.clone()],
        };
        server_config(certs, &self.leaf.key)
    }

    /// A full chain whose leaf was valid from 2020-01-01 to 2021-01-01.
    pub fn expired_server_config(&self) -> Arc<rustls::ServerConfig> {
        let certs = vec![self.expired.cert.clone(), self.intermediate.clone()];
        server_config(certs, &self.expired.key)
    }

    /// A leaf (and its self-signed root) from a CA that [`TestPki::ca_pem`]
    /// does not hold: clients fail with `UnknownIssuer`.
    pub fn unknown_ca_server_config(&self) -> Arc<rustls::ServerConfig> {
        let certs = vec![self.unknown_leaf.cert.clone(), self.unknown_root.clone()];
        server_config(certs, &self.unknown_leaf.key)
    }

    /// A client config that trusts only [`TestPki::ca_pem`], offering
    /// `alpn` (e.g. `&["h2", "http/1.1"]`).
    pub fn client_config(&self, alpn: &[&str]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.root.clone()).expect("root parses");
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Arc::new(config)
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: &PrivatePkcs8KeyDer<'static>,
) -> Arc<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_no_client_auth()
        .with_single_cert(certs, PrivateKeyDer::Pkcs8(key.clone_key()))
        .expect("certificate and key match");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A CA, self-signed when `parent` is `None`.
fn ca(
    name: &str,
    parent: Option<&CertifiedIssuer<'static, KeyPair>>,
) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("no SANs");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(match parent {
        None => BasicConstraints::Unconstrained,
        Some(_) => BasicConstraints::Constrained(0),
    });
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("key generation");
    match parent {
        None => CertifiedIssuer::self_signed(params, key),
        Some(parent) => CertifiedIssuer::signed_by(params, key, parent),
    }
    .expect("CA certificate")
}

fn leaf_params() -> CertificateParams {
    let names: Vec<String> = SERVER_NAMES.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).expect("valid SANs");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params
}

fn issue_leaf(issuer: &Issuer<'_, KeyPair>) -> Leaf {
    sign(leaf_params(), issuer)
}

fn leaf_expired(issuer: &Issuer<'_, KeyPair>) -> Leaf {
    let mut params = leaf_params();
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2021, 1, 1);
    sign(params, issuer)
}

fn sign(params: CertificateParams, issuer: &Issuer<'_, KeyPair>) -> Leaf {
    let key = KeyPair::generate().expect("key generation");
    let cert = params.signed_by(&key, issuer).expect("leaf certificate");
    Leaf {
        cert: cert.der().clone(),
        key: PrivatePkcs8KeyDer::from(key.serialize_der()),
    }
}
