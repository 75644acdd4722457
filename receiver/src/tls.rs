//! Throw-away certificates for local HTTPS.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};

/// A self-signed CA and a server certificate it signed for `127.0.0.1`, `localhost` and any
/// extra names asked for.
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
        SelfSignedCa::generate_for(&[])
    }

    /// Generates a fresh CA and a server certificate that also covers the DNS names `extra`
    /// (e.g. `receiver`, the service name under docker compose).
    pub fn generate_for(extra: &[String]) -> Result<SelfSignedCa, rcgen::Error> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "auditstream local test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate()?;
        let ca = ca_params.self_signed(&ca_key)?;

        let names: Vec<String> = std::iter::once("localhost".to_owned())
            .chain(extra.iter().cloned())
            .collect();
        let mut server_params = CertificateParams::new(names)?;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::client::danger::ServerCertVerifier;
    use rustls::client::WebPkiServerVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::RootCertStore;

    use super::*;

    /// Whether a client trusting only the CA accepts the server certificate for `name`.
    fn accepted_for(ca: &SelfSignedCa, name: &str) -> bool {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
        let server = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap();
        let name = ServerName::try_from(name.to_owned()).unwrap();
        verifier
            .verify_server_cert(&server, &[], &name, &[], UnixTime::now())
            .is_ok()
    }

    #[test]
    fn the_certificate_covers_localhost_and_the_extra_names_only() {
        let ca = SelfSignedCa::generate_for(&["receiver".to_owned()]).unwrap();
        assert!(accepted_for(&ca, "localhost"));
        assert!(accepted_for(&ca, "127.0.0.1"));
        assert!(accepted_for(&ca, "receiver"));
        assert!(!accepted_for(&ca, "siem.example.com"));
        assert!(!accepted_for(
            &SelfSignedCa::generate().unwrap(),
            "receiver"
        ));
    }
}
