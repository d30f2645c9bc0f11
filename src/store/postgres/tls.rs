//! TLS to the server, as libpq's `sslmode`, `sslrootcert`, `sslcert` and `sslkey` say
//! (docs/postgres.md "TLS"), through rustls with its aws-lc-rs provider: no system TLS library
//! for a program that links libevstore.
//!
//! | sslmode | TLS | the server's certificate |
//! |---|---|---|
//! | disable | never | - |
//! | prefer | if the server offers it, else plain | not checked |
//! | require | always | not checked; checked as verify-ca when a root certificate is there (libpq's rule) |
//! | verify-ca | always | signed by a certificate authority of `sslrootcert` |
//! | verify-full | always | that, and issued for the host name (or address) of the URL |
//!
//! The default is `prefer`, as libpq's. `sslrootcert` is a PEM file, or `system` for the
//! system's certificate authorities; without it, `~/.postgresql/root.crt` if it exists.
//! `sslcert`/`sslkey` are the client's certificate and key (PEM), sent when the server
//! asks for one (`hostssl ... cert` in pg_hba.conf); without them,
//! `~/.postgresql/postgresql.crt` and `.key` if both exist.

use crate::error::{Error, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_postgres::config::SslMode as WireMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode` values (without `allow`, which tokio-postgres cannot do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn parse(value: &str, location: &str) -> Result<SslMode> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => {
                return Err(Error::invalid(format!(
                    "sslmode={value} in {location} is not one of disable, prefer, require, \
                     verify-ca, verify-full"
                )))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// What tokio-postgres is told: whether to ask for TLS and whether plain will do.
    pub fn wire(self) -> WireMode {
        match self {
            SslMode::Disable => WireMode::Disable,
            SslMode::Prefer => WireMode::Prefer,
            _ => WireMode::Require,
        }
    }
}

/// The URL's TLS parameters.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub mode: SslMode,
    pub root_cert: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            mode: SslMode::Prefer,
            root_cert: None,
            cert: None,
            key: None,
        }
    }
}

/// A file under `~/.postgresql/` (libpq's defaults), if it exists.
fn default_file(name: &str) -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let path = PathBuf::from(home).join(".postgresql").join(name);
    path.is_file().then_some(path)
}

/// The connector for the URL's TLS parameters; their files are read here (at open), so
/// that a missing or bad file is an error of the open that names it.
pub fn connector(settings: &TlsSettings, location: &str) -> Result<MakeRustlsConnect> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let roots = match settings.mode {
        SslMode::Disable | SslMode::Prefer => None,
        _ => root_store(settings, location)?,
    };
    let check = match (settings.mode, roots) {
        (SslMode::VerifyFull, Some(roots)) => Check::ChainAndName(roots),
        (SslMode::VerifyCa | SslMode::Require, Some(roots)) => Check::Chain(roots),
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            return Err(Error::invalid(format!(
                "sslmode={} in {location} checks the server's certificate, and no certificate \
                 authority is given: add sslrootcert=FILE (a PEM file), or sslrootcert=system for \
                 the system's, or put the file at ~/.postgresql/root.crt",
                settings.mode.name()
            )));
        }
        _ => Check::Nothing,
    };
    let verifier = Arc::new(ServerCheck {
        check,
        provider: provider.clone(),
    });
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::invalid(format!("TLS for {location}: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match client_identity(settings, location)? {
        Some((certs, key)) => builder.with_client_auth_cert(certs, key).map_err(|e| {
            Error::invalid(format!(
                "the client certificate and key of {location} do not go together: {e}"
            ))
        })?,
        None => builder.with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

/// The certificate authorities that sign the server's certificate: `sslrootcert`'s file,
/// the system's (`system`), or `~/.postgresql/root.crt`; `None` if none is given.
fn root_store(settings: &TlsSettings, location: &str) -> Result<Option<Arc<RootCertStore>>> {
    let mut store = RootCertStore::empty();
    match settings.root_cert.as_deref() {
        Some("system") => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(Error::invalid(format!(
                    "sslrootcert=system in {location}: no certificate authority of the system \
                     could be read{}",
                    found
                        .errors
                        .first()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                )));
            }
        }
        Some(path) => add_pem_roots(&mut store, &PathBuf::from(path), "sslrootcert", location)?,
        None => match default_file("root.crt") {
            Some(path) => add_pem_roots(&mut store, &path, "~/.postgresql/root.crt", location)?,
            None => return Ok(None),
        },
    }
    Ok(Some(Arc::new(store)))
}

fn add_pem_roots(
    store: &mut RootCertStore,
    path: &PathBuf,
    what: &str,
    location: &str,
) -> Result<()> {
    let certs = read_certs(path, what, location)?;
    for cert in certs {
        store.add(cert).map_err(|e| {
            Error::invalid(format!(
                "{what} {} of {location} holds a certificate that cannot be a certificate \
                 authority: {e}",
                path.display()
            ))
        })?;
    }
    Ok(())
}

/// The PEM certificates of a file (at least one).
fn read_certs(path: &PathBuf, what: &str, location: &str) -> Result<Vec<CertificateDer<'static>>> {
    let bad = |e: &dyn std::fmt::Display| {
        Error::invalid(format!(
            "{what} {} of {location} cannot be read as PEM certificates: {e}",
            path.display()
        ))
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(&e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    if certs.is_empty() {
        return Err(bad(&"it holds no certificate"));
    }
    Ok(certs)
}

/// The client's certificate chain and key: `sslcert` and `sslkey`, or the defaults.
type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn client_identity(settings: &TlsSettings, location: &str) -> Result<Option<Identity>> {
    let (cert, key) = match (&settings.cert, &settings.key) {
        (Some(c), Some(k)) => (PathBuf::from(c), PathBuf::from(k)),
        (None, None) => match (
            default_file("postgresql.crt"),
            default_file("postgresql.key"),
        ) {
            (Some(c), Some(k)) if settings.mode != SslMode::Disable => (c, k),
            _ => return Ok(None),
        },
        (Some(_), None) | (None, Some(_)) => {
            return Err(Error::invalid(format!(
            "{location} names {} without {}: a client certificate needs both sslcert and sslkey",
            if settings.cert.is_some() {
                "sslcert"
            } else {
                "sslkey"
            },
            if settings.cert.is_some() {
                "sslkey"
            } else {
                "sslcert"
            },
        )))
        }
    };
    let certs = read_certs(&cert, "sslcert", location)?;
    let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| {
        Error::invalid(format!(
            "sslkey {} of {location} cannot be read as a PEM private key: {e}",
            key.display()
        ))
    })?;
    Ok(Some((certs, key)))
}

/// What is checked of the server's certificate.
#[derive(Debug)]
enum Check {
    Nothing,
    /// Signed (through the certificates the server sent) by one of these authorities.
    Chain(Arc<RootCertStore>),
    /// That, and issued for the host the client connected to.
    ChainAndName(Arc<RootCertStore>),
}

/// The server certificate check of one sslmode. The handshake's own signatures are
/// always verified (the server holds the key of the certificate it sent), whatever the
/// mode checks of the certificate itself.
#[derive(Debug)]
struct ServerCheck {
    check: Check,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ServerCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let (roots, names) = match &self.check {
            Check::Nothing => return Ok(ServerCertVerified::assertion()),
            Check::Chain(roots) => (roots, false),
            Check::ChainAndName(roots) => (roots, true),
        };
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        if names {
            verify_server_name(&cert, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A sentence about a TLS failure in a connection error, if it was one: the server's
/// certificate refused (and why, in the words of the sslmode), or the server refusing
/// TLS or the client's certificate.
pub fn explain(e: &tokio_postgres::Error, settings: &TlsSettings) -> Option<String> {
    use rustls::{AlertDescription as A, CertificateError as C};
    if super::conn::full_text(e).contains("server does not support TLS") {
        return Some(format!(
            "the server does not accept TLS connections (its ssl setting is off), and \
             sslmode={} asks for TLS",
            settings.mode.name()
        ));
    }
    let tls = rustls_error(e)?;
    let root = || match settings.root_cert.as_deref() {
        Some(r) => format!("sslrootcert={r}"),
        None => "~/.postgresql/root.crt".to_owned(),
    };
    Some(match tls {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => format!(
            "the server's certificate is not signed by a certificate authority of {} \
             (sslmode={}): {tls}",
            root(),
            settings.mode.name()
        ),
        rustls::Error::InvalidCertificate(C::NotValidForName)
        | rustls::Error::InvalidCertificate(C::NotValidForNameContext { .. }) => format!(
            "the server's certificate is not issued for the host name of the URL \
             (sslmode=verify-full checks the name, verify-ca only the signature): {tls}"
        ),
        rustls::Error::InvalidCertificate(_) => {
            format!(
                "the server's certificate was refused (sslmode={}): {tls}",
                settings.mode.name()
            )
        }
        rustls::Error::AlertReceived(A::CertificateRequired | A::BadCertificate | A::UnknownCA)
        | rustls::Error::AlertReceived(A::HandshakeFailure) => format!(
            "the server refused the TLS handshake ({tls}): it may want a client certificate \
             (sslcert, sslkey) that it trusts"
        ),
        other => format!("TLS with the server failed: {other}"),
    })
}

/// The rustls error inside a connection error (tokio-rustls wraps it in an io::Error).
fn rustls_error(e: &tokio_postgres::Error) -> Option<&rustls::Error> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(inner) = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(inner);
        }
        source = s.source();
    }
    None
}
