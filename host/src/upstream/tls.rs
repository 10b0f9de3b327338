//! The upstream TLS client config, and plain-words explanations of TLS
//! failures.
//!
//! Trust is the system's roots plus an optional `ca_file`, never less: there
//! is no switch that turns verification off.

use crate::config::{Tls, TlsVersion};
use anyhow::{Context, Result};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::sync::Arc;

/// Builds the client config for one upstream, with ALPN offering h2 and
/// HTTP/1.1.
pub fn client_config(tls: &Tls) -> Result<Arc<rustls::ClientConfig>> {
    Ok(Arc::new(client_config_with(tls, roots(tls)?)?))
}

/// The trust levee uses: the system's roots plus the `ca_file`, if any.
pub fn roots(tls: &Tls) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A few malformed system certificates must not stop levee.
        let _ = roots.add(cert);
    }
    if let Some(path) = &tls.ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .with_context(|| format!("cannot read ca_file {}", path.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("ca_file {} is not valid PEM", path.display()))?;
        anyhow::ensure!(
            !certs.is_empty(),
            "ca_file {} holds no certificates",
            path.display()
        );
        for cert in certs {
            roots.add(cert).with_context(|| {
                format!("ca_file {} holds an unusable certificate", path.display())
            })?;
        }
    }
    Ok(roots)
}

/// The client config over `roots`, with ALPN offering h2 and HTTP/1.1.
pub fn client_config_with(tls: &Tls, roots: rustls::RootCertStore) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match tls.min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Explains a TLS handshake failure for `host` in plain words, with the fix.
pub fn explain(error: &std::io::Error, host: &str) -> String {
    use rustls::CertificateError as C;
    let rustls_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(cert)) => match cert {
            C::UnknownIssuer => format!(
                "certificate verify failed: unknown issuer for {host}; set ca_file if a corporate \
                 proxy re-signs TLS, or if the server sends an incomplete chain"
            ),
            C::Expired | C::ExpiredContext { .. } => format!(
                "certificate verify failed: the certificate of {host} has expired (or this \
                 machine's clock is wrong)"
            ),
            C::NotValidYet | C::NotValidYetContext { .. } => format!(
                "certificate verify failed: the certificate of {host} is not valid yet (check \
                 this machine's clock)"
            ),
            C::NotValidForName | C::NotValidForNameContext { .. } => format!(
                "certificate verify failed: the certificate is not valid for {host}; DNS may \
                 point at the wrong server"
            ),
            C::Revoked => {
                format!("certificate verify failed: the certificate of {host} is revoked")
            }
            other => format!("certificate verify failed for {host}: {other:?}"),
        },
        Some(other) => format!("handshake with {host} failed: {other}"),
        None => format!("handshake with {host} failed: {error}"),
    }
}
