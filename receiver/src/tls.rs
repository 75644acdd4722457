//! Throw-away certificates for local HTTPS.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};

/// A self-signed CA and a server certificate it signed for `127.0.0.1` and `localhost`.
#[derive(Clone)]
pub struct SelfSignedCa {
    /// The CA certificate, PEM: what a client must trust.
    pub ca_pem: String,
    /// The server certificate, PEM.
    pub cert_pem: String,
    /// The server's private key, PEM.
    pub key_pem: String,
}

impl SelfSignedCa {
    /// Generates a fresh CA and server certificate.
    pub fn generate() -> Result<SelfSignedCa, rcgen::Error> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "auditstream local test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate()?;
        let ca = ca_params.self_signed(&ca_key)?;

        let mut server_params = CertificateParams::new(vec!["localhost".to_owned()])?;
        server_params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        server_params
            .distinguished_name
            .push(DnType::CommonName, "auditstream local receiver");
        let server_key = KeyPair::generate()?;
        let server = server_params.signed_by(&server_key, &ca, &ca_key)?;
        Ok(SelfSignedCa {
            ca_pem: ca.pem(),
            cert_pem: server.pem(),
            key_pem: server_key.serialize_pem(),
        })
    }
}
