//! The control server's TLS identity: files given on the command line, a self-signed CA and
//! a serving certificate made at start (the CA is written out for the sidecars to trust), or
//! a CA and certificate kept in a Secret and rotated ([`crate::managed_certs`]).

use std::{
    io::Write,
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::{
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};

/// Why a TLS identity could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// Generating a key or certificate failed.
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM file could not be read.
    #[error("reading PEM: {0}")]
    Pem(String),
    /// rustls refused the certificate or key.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// A certificate's validity could not be read.
    #[error("reading a certificate's validity: {0}")]
    Validity(String),
    /// A date is outside what a certificate can carry.
    #[error("certificate lifetime out of range")]
    Lifetime,
    /// Writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
}

/// A CA and a serving certificate it signed, in PEM.
#[derive(Clone)]
pub struct Generated {
    /// The CA certificate sidecars trust.
    pub ca_pem: String,
    /// The serving certificate.
    pub cert_pem: String,
    /// The serving certificate's private key.
    pub key_pem: String,
}

impl std::fmt::Debug for Generated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generated")
            .field("ca_pem", &self.ca_pem)
            .finish_non_exhaustive()
    }
}

/// The parameters of the operator's CA: it signs certificates, named `sluice-operator CA`.
fn ca_params() -> Result<CertificateParams, CertError> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "sluice-operator CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(ca)
}

/// The parameters of a serving certificate for `names`, named after the first of them.
fn leaf_params(names: &[String]) -> Result<CertificateParams, CertError> {
    let mut leaf = CertificateParams::new(names.to_vec())?;
    leaf.distinguished_name.push(
        DnType::CommonName,
        names.first().map_or("sluice-operator", String::as_str),
    );
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    Ok(leaf)
}

/// Makes a CA and a serving certificate for `names` (DNS names or IP addresses).
pub fn generate(names: &[String]) -> Result<Generated, CertError> {
    let ca_key = KeyPair::generate()?;
    let ca = ca_params()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate()?;
    let cert = leaf_params(names)?.signed_by(&key, &issuer)?;
    Ok(Generated {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A PEM chain (at least one certificate) and its private key.
fn chain_and_key(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), CertError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::Pem(format!("certificate: {e}")))?;
    if chain.is_empty() {
        return Err(CertError::Pem("no certificate in the PEM".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| CertError::Pem(format!("key: {e}")))?;
    Ok((chain, key))
}

/// A rustls server config on aws-lc-rs with its safe default protocol versions, without
/// client certificates, waiting for its own.
fn server_builder() -> Result<rustls::ConfigBuilder<rustls::ServerConfig, rustls::server::WantsServerCert>, CertError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth())
}

/// `config` offering HTTP/2 and HTTP/1.1.
fn with_alpn(mut config: rustls::ServerConfig) -> Arc<rustls::ServerConfig> {
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A rustls server config for a PEM chain and key, offering HTTP/2 and HTTP/1.1.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<rustls::ServerConfig>, CertError> {
    let (chain, key) = chain_and_key(cert_pem, key_pem)?;
    Ok(with_alpn(server_builder()?.with_single_cert(chain, key)?))
}

/// How long a managed CA is valid: the CA is not rotated (replacing it would need every
/// sidecar and the webhook configuration to trust both for a while), so it is long-lived.
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Certificates are valid from a little before they are made, so that a clock slightly behind
/// ours (the API server's, a sidecar's) accepts them at once.
const BACKDATE: Duration = Duration::from_secs(60);

fn offset_date_time(at: SystemTime) -> Result<time::OffsetDateTime, CertError> {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| CertError::Lifetime)?
        .as_secs();
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).map_err(|_| CertError::Lifetime)?)
        .map_err(|_| CertError::Lifetime)
}

/// Makes `params` valid from [`BACKDATE`] before now until `lifetime` after it.
fn valid_for(params: &mut CertificateParams, lifetime: Duration) -> Result<(), CertError> {
    let now = SystemTime::now();
    params.not_before = offset_date_time(now.checked_sub(BACKDATE).unwrap_or(now))?;
    params.not_after = offset_date_time(now.checked_add(lifetime).ok_or(CertError::Lifetime)?)?;
    Ok(())
}

/// A new CA: its certificate and its private key, in PEM.
pub fn generate_ca() -> Result<(String, String), CertError> {
    let ca_key = KeyPair::generate()?;
    let mut ca = ca_params()?;
    valid_for(&mut ca, CA_LIFETIME)?;
    let cert = ca.self_signed(&ca_key)?;
    Ok((cert.pem(), ca_key.serialize_pem()))
}

/// A serving certificate for `names` valid for `lifetime`, signed by the CA in PEM: its
/// certificate and private key, in PEM.
pub fn issue(
    ca_pem: &str,
    ca_key_pem: &str,
    names: &[String],
    lifetime: Duration,
) -> Result<(String, String), CertError> {
    let issuer = Issuer::from_ca_cert_pem(ca_pem, KeyPair::from_pem(ca_key_pem)?)?;
    let key = KeyPair::generate()?;
    let mut leaf = leaf_params(names)?;
    valid_for(&mut leaf, lifetime)?;
    let cert = leaf.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// When the first certificate of a PEM chain stops being valid.
pub fn not_after(cert_pem: &[u8]) -> Result<SystemTime, CertError> {
    let der = CertificateDer::from_pem_slice(cert_pem).map_err(|e| CertError::Pem(format!("certificate: {e}")))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| CertError::Validity(e.to_string()))?;
    let secs = cert.validity().not_after.timestamp();
    let secs = u64::try_from(secs).map_err(|_| CertError::Validity(format!("not after {secs}")))?;
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// A rustls signing identity for a PEM chain and key.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, CertError> {
    let (chain, key) = chain_and_key(cert_pem, key_pem)?;
    let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)?;
    Ok(CertifiedKey::new(chain, signer))
}

/// The serving certificate as a value that can be replaced while serving: handshakes after
/// [`SwappableCert::set`] get the new certificate, connections already open keep theirs, so a
/// rotation needs no restart and drops nothing.
#[derive(Debug)]
pub struct SwappableCert {
    current: ArcSwap<CertifiedKey>,
}

impl SwappableCert {
    /// Starts with `first`.
    pub fn new(first: CertifiedKey) -> Self {
        Self {
            current: ArcSwap::from_pointee(first),
        }
    }

    /// Serves `next` from the next handshake on.
    pub fn set(&self, next: CertifiedKey) {
        self.current.store(Arc::new(next));
    }
}

impl ResolvesServerCert for SwappableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// A rustls server config that takes its certificate from `cert`, offering HTTP/2 and HTTP/1.1.
pub fn swappable_server_config(cert: Arc<SwappableCert>) -> Result<Arc<rustls::ServerConfig>, CertError> {
    Ok(with_alpn(server_builder()?.with_cert_resolver(cert)))
}

/// Writes `contents` to `path`, readable by the owner only when `secret`.
pub fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), CertError> {
    let io = |source| CertError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_identity_loads_into_rustls() {
        let g = generate(&["127.0.0.1".into(), "sluice-operator.sluice-system.svc".into()]).unwrap();
        assert!(g.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let config = server_config(g.cert_pem.as_bytes(), g.key_pem.as_bytes()).unwrap();
        assert_eq!(config.alpn_protocols[0], b"h2");
    }

    #[test]
    fn an_issued_certificate_expires_after_its_lifetime_and_chains_to_the_ca() {
        let (ca, ca_key) = generate_ca().unwrap();
        let lifetime = Duration::from_secs(3600);
        let before = SystemTime::now();
        let (cert, key) = issue(&ca, &ca_key, &["127.0.0.1".into()], lifetime).unwrap();
        let expires = not_after(cert.as_bytes()).unwrap();
        assert!(expires >= before + lifetime - Duration::from_secs(1));
        assert!(expires <= SystemTime::now() + lifetime);
        certified_key(cert.as_bytes(), key.as_bytes()).unwrap();
        let ca_der = CertificateDer::from_pem_slice(ca.as_bytes()).unwrap();
        let leaf_der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        let (_, ca_x509) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        let (_, leaf_x509) = x509_parser::parse_x509_certificate(&leaf_der).unwrap();
        assert_eq!(leaf_x509.issuer(), ca_x509.subject());
        leaf_x509.verify_signature(Some(ca_x509.public_key())).unwrap();
    }
}
