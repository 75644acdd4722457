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

/// A request error for the log: every cause in the chain (reqwest's own message is only "error
/// sending request"), without the URL, which may carry a credential in its query string. A
/// certificate problem gets a hint at the setting that fixes it.
pub fn describe_error(err: reqwest::Error) -> String {
    describe_chain(&err.without_url())
}

fn describe_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // hyper and std sometimes repeat their source in their own message.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    if text.to_ascii_lowercase().contains("certificate") {
        text.push_str(
            " (the destination's TLS certificate is not trusted: set tls.ca_file to the CA that signed it)",
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn chains_are_spelled_out_with_a_hint_for_certificates() {
        let chain = |layers: &[&'static str]| {
            layers
                .iter()
                .rev()
                .fold(None, |inner, name| Some(Layer(name, inner.map(Box::new))))
                .unwrap()
        };
        assert_eq!(
            describe_chain(&chain(&[
                "error sending request",
                "client error (Connect)",
                "Connection refused (os error 111)"
            ])),
            "error sending request: client error (Connect): Connection refused (os error 111)"
        );
        assert_eq!(
            describe_chain(&chain(&["io: timed out", "timed out"])),
            "io: timed out"
        );
        let tls = describe_chain(&chain(&[
            "error sending request",
            "invalid peer certificate: UnknownIssuer",
        ]));
        assert!(
            tls.starts_with("error sending request: invalid peer certificate: UnknownIssuer (")
                && tls.contains("tls.ca_file"),
            "{tls}"
        );
    }
}
