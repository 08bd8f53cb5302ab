//! The simulator's own certificate authority and server certificate.
//!
//! Clients trust the simulator by adding `ca.pem`, as they would add a
//! corporate CA, so that the real TLS stack is exercised end to end.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::SimError;

/// Names the server certificate is valid for.
pub const SERVER_NAMES: &[&str] = &[
    "127.0.0.1",
    "localhost",
    "login.microsoftonline.com",
    "management.azure.com",
    "graph.microsoft.com",
    "*.vault.azure.net",
];

pub struct Tls {
    pub ca_pem: String,
    pub ca_path: PathBuf,
    pub server_config: Arc<rustls::ServerConfig>,
}

/// Makes a CA and a server certificate signed by it, writes the CA to
/// `cert_dir/ca.pem` and returns the rustls configuration to serve with.
pub fn setup(cert_dir: &Path) -> Result<Tls, SimError> {
    let tls_err = |e: rcgen::Error| SimError::Tls(e.to_string());
    let now = time_now();

    let ca_key = KeyPair::generate().map_err(tls_err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "cloudkeep Azure simulator CA");
    dn.push(DnType::OrganizationName, "cloudkeep");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = now - ::time::Duration::days(1);
    ca_params.not_after = now + ::time::Duration::days(825);
    let ca_cert = ca_params.self_signed(&ca_key).map_err(tls_err)?;
    let ca_pem = ca_cert.pem();

    let server_key = KeyPair::generate().map_err(tls_err)?;
    let names: Vec<String> = SERVER_NAMES.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(names).map_err(tls_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "management.azure.com");
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - ::time::Duration::days(1);
    params.not_after = now + ::time::Duration::days(397);
    let issuer = Issuer::new(ca_params, ca_key);
    let server_cert = params.signed_by(&server_key, &issuer).map_err(tls_err)?;

    std::fs::create_dir_all(cert_dir).map_err(|e| SimError::Io(cert_dir.to_path_buf(), e))?;
    let ca_path = cert_dir.join("ca.pem");
    std::fs::write(&ca_path, &ca_pem).map_err(|e| SimError::Io(ca_path.clone(), e))?;

    let chain = vec![CertificateDer::from(server_cert.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| SimError::Tls(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| SimError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Tls {
        ca_pem,
        ca_path,
        server_config: Arc::new(config),
    })
}

fn time_now() -> ::time::OffsetDateTime {
    ::time::OffsetDateTime::now_utc()
}
