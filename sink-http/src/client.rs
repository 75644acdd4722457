//! The HTTPS client of one destination.

use reqwest::{Certificate, Client, Identity};

use crate::{Destination, SinkError};

/// Builds a client that verifies server certificates against the public roots plus the
/// destination's `tls.ca_file` (unless `tls.insecure_skip_verify`), and presents the client
/// certificate when one is configured.
pub fn build(destination: &Destination) -> Result<Client, SinkError> {
    let fail = |message: String| SinkError::Client {
        destination: destination.config.name.clone(),
        message,
    };
    let mut builder = Client::builder()
        .use_rustls_tls()
        .timeout(destination.config.timeout)
        .pool_max_idle_per_host(destination.config.concurrency)
        .user_agent(concat!("auditstream/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &destination.config.tls.ca_file {
        let pem = std::fs::read(path)
            .map_err(|err| fail(format!("cannot read tls.ca_file {}: {err}", path.display())))?;
        let certificates = Certificate::from_pem_bundle(&pem).map_err(|err| {
            fail(format!(
                "tls.ca_file {} is not a PEM certificate bundle: {err}",
                path.display()
            ))
        })?;
        if certificates.is_empty() {
            return Err(fail(format!(
                "tls.ca_file {} holds no certificate",
                path.display()
            )));
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    let tls = &destination.config.tls;
    if let (Some(cert), Some(key)) = (&tls.client_cert_file, &tls.client_key_file) {
        let read = |path: &std::path::Path, what: &str| {
            std::fs::read(path)
                .map_err(|err| fail(format!("cannot read tls.{what} {}: {err}", path.display())))
        };
        let mut pem = read(cert, "client_cert_file")?;
        pem.push(b'\n');
        pem.extend(read(key, "client_key_file")?);
        let identity = Identity::from_pem(&pem).map_err(|err| {
            fail(format!(
                "tls.client_cert_file {} and tls.client_key_file {} are not a PEM certificate and key: {err}",
                cert.display(),
                key.display()
            ))
        })?;
        builder = builder.identity(identity);
    }
    if tls.insecure_skip_verify {
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder
        .build()
        .map_err(|err| fail(err.without_url().to_string()))
}
