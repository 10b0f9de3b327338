//! TLS: the handshake as levee makes it (SNI, ALPN, the minimum version,
//! the system's roots plus `ca_file`), the chain as the server presented it,
//! and a failure explained in plain words with the `ca_file` fix.

use super::{Layer, Target, Verdict};
use crate::upstream;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Verifies exactly as levee does, and keeps the chain it was shown.
#[derive(Debug)]
struct Recording {
    inner: Arc<WebPkiServerVerifier>,
    chain: Mutex<Vec<CertificateDer<'static>>>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        *self.chain.lock().unwrap_or_else(|e| e.into_inner()) = chain;
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Handshakes with `target` at `addr`; the session, when it verified, is
/// handed to the HTTP layer.
pub async fn check(
    target: &Target,
    addr: SocketAddr,
    timeout: Duration,
) -> (Layer, Option<TlsStream<TcpStream>>) {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => over(target, tcp, timeout).await,
        Ok(Err(e)) => failed(format!("reconnect to {addr} failed: {e}")),
        Err(_) => failed(format!("reconnect to {addr} timed out")),
    }
}

fn failed(why: String) -> (Layer, Option<TlsStream<TcpStream>>) {
    let mut layer = Layer::new("tls");
    layer.worsen(Verdict::Fail);
    layer.evidence.push(why);
    (layer, None)
}

/// Handshakes with `target` over `tcp` (a direct connection or a proxy's
/// tunnel).
pub async fn over(
    target: &Target,
    tcp: TcpStream,
    timeout: Duration,
) -> (Layer, Option<TlsStream<TcpStream>>) {
    let mut layer = Layer::new("tls");
    let fail = |mut layer: Layer, why: String| {
        layer.worsen(Verdict::Fail);
        layer.evidence.push(why);
        (layer, None)
    };
    let built = upstream::tls::roots(&target.tls).and_then(|roots| {
        let verifier = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()?;
        Ok((
            upstream::tls::client_config_with(&target.tls, rustls::RootCertStore::empty())?,
            verifier,
        ))
    });
    let (mut config, verifier) = match built {
        Ok(v) => v,
        Err(e) => return fail(layer, format!("cannot build the TLS config: {e:#}")),
    };
    let recording = Arc::new(Recording {
        inner: verifier,
        chain: Mutex::new(Vec::new()),
    });
    config
        .dangerous()
        .set_certificate_verifier(recording.clone());
    let Ok(name) = ServerName::try_from(target.host.clone()) else {
        return fail(
            layer,
            format!("`{}` is not a valid TLS server name", target.host),
        );
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let handshake = tokio::time::timeout(timeout, connector.connect(name, tcp)).await;
    let chain = std::mem::take(&mut *recording.chain.lock().unwrap_or_else(|e| e.into_inner()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let certs: Vec<Cert> = chain.iter().filter_map(Cert::parse).collect();
    for (i, c) in certs.iter().enumerate() {
        let days = (c.not_after - now) / 86_400;
        layer.evidence.push(format!(
            "cert {i}: subject {}; issuer {}; valid {} to {} ({days} days left)",
            c.subject, c.issuer, c.not_before_text, c.not_after_text
        ));
        if days < 14 && c.not_after > now {
            layer.worsen(Verdict::Warn);
            layer.fix = Some(format!("cert {i} expires in {days} days"));
        }
    }
    match handshake {
        Ok(Ok(stream)) => {
            let (_, session) = stream.get_ref();
            layer.evidence.insert(
                0,
                format!(
                    "handshake ok with SNI {}: {:?}, ALPN {}",
                    target.host,
                    session
                        .protocol_version()
                        .map_or("?".into(), |v| format!("{v:?}")),
                    session
                        .alpn_protocol()
                        .map_or("none".into(), |p| String::from_utf8_lossy(p).into_owned()),
                ),
            );
            (layer, Some(stream))
        }
        Ok(Err(e)) => {
            layer.fix = Some(advice(&e, &certs, target));
            fail(
                layer,
                format!("tls: {}", upstream::tls::explain(&e, &target.host)),
            )
        }
        Err(_) => fail(layer, format!("no handshake within {timeout:?}")),
    }
}

/// The fix for a failed handshake, from the error and the chain.
fn advice(error: &std::io::Error, chain: &[Cert], target: &Target) -> String {
    let unknown_issuer = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .is_some_and(|e| {
            matches!(
                e,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
            )
        });
    let ca = target
        .tls
        .ca_file
        .as_ref()
        .map_or("no ca_file is set".to_owned(), |p| {
            format!("ca_file is {}", p.display())
        });
    match chain.last() {
        Some(last) if unknown_issuer && last.subject == last.issuer => format!(
            "the chain ends in `{}`, a root this machine does not trust ({ca}). If a corporate \
             proxy re-signs TLS, set `ca_file` on the upstream to that root's PEM file",
            last.subject
        ),
        Some(last) if unknown_issuer => format!(
            "the server sent {} certificate(s) ending with one issued by `{}`, which is not a \
             trusted root ({ca}). Either the server omits an intermediate certificate, or a proxy \
             re-signs TLS: put the missing intermediate or the proxy's root in a PEM file and \
             set `ca_file` on the upstream",
            chain.len(),
            last.issuer
        ),
        _ => "see the error above; `levee doctor` checks DNS and TCP first, so the network \
              reaches the server"
            .to_owned(),
    }
}

/// What the doctor shows of a certificate.
struct Cert {
    subject: String,
    issuer: String,
    not_before_text: String,
    not_after_text: String,
    not_after: i64,
}

impl Cert {
    fn parse(der: &CertificateDer<'_>) -> Option<Cert> {
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        let validity = cert.validity();
        Some(Cert {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            not_before_text: validity.not_before.to_string(),
            not_after_text: validity.not_after.to_string(),
            not_after: validity.not_after.timestamp(),
        })
    }
}
