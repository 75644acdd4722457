//! The HTTPS client of one destination.

use reqwest::{Certificate, Client, Identity};

use crate::{Destination, SinkError};

/// Builds a client that verifies server certificates against the public roots plus the
/// destination's `tls.ca_file` (unless `tls.insecure_skip_verify`), and presents the client
/// certificate when one is configured.
///
/// Redirects are not followed: reqwest would turn a POST answered with 301, 302 or 303 into a
/// bodiless GET, whose 2xx would count events as delivered that no one received, and would send
/// the destination's token headers (only `Authorization` and cookies are dropped) to whatever
/// host the `Location` names. A 3xx is returned as it is, and retried like any other status
/// that is not permanent. reqwest's own retries (of HTTP/2 refusals) are off too: the worker
/// retries every failure itself, and reqwest's policy copied every request's headers in case.
pub fn build(destination: &Destination) -> Result<Client, SinkError> {
    let fail = |message: String| SinkError::Client {
        destination: destination.config.name.clone(),
        message,
    };
    let mut builder = Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .retry(reqwest::retry::never().max_retries_per_request(0))
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
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

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

    /// Accepts HTTP/1.1 connections on `listener` and answers every request with `response`,
    /// counting the requests.
    async fn answer_all(
        listener: tokio::net::TcpListener,
        response: String,
        requests: Arc<AtomicUsize>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let (response, requests) = (response.clone(), requests.clone());
            tokio::spawn(async move {
                let mut received = Vec::new();
                let mut buffer = [0; 4096];
                // The head is enough: what matters is what is answered.
                while !received.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => received.extend_from_slice(&buffer[..n]),
                    }
                }
                requests.fetch_add(1, Ordering::SeqCst);
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    }

    #[tokio::test]
    async fn a_redirect_is_returned_not_followed() {
        let landing = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let landing_url = format!("http://{}/login", landing.local_addr().unwrap());
        let landing_requests = Arc::default();
        tokio::spawn(answer_all(
            landing,
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".into(),
            Arc::clone(&landing_requests),
        ));
        let origin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin_url = format!("http://{}/hec", origin.local_addr().unwrap());
        let origin_requests = Arc::default();
        tokio::spawn(answer_all(
            origin,
            format!("HTTP/1.1 302 Found\r\nlocation: {landing_url}\r\ncontent-length: 0\r\n\r\n"),
            Arc::clone(&origin_requests),
        ));

        let config: crate::DestinationConfig =
            toml::from_str(&format!("name = \"siem\"\nurl = \"{origin_url}\"")).unwrap();
        let destination = config.validate(|_| None).unwrap();
        let client = build(&destination).unwrap();
        let response = client
            .post(destination.url.clone())
            .body("{\"id\":\"e1\"}")
            .send()
            .await
            .unwrap();

        assert_eq!(response.status(), reqwest::StatusCode::FOUND);
        let count = |requests: &Arc<AtomicUsize>| requests.load(Ordering::SeqCst);
        assert_eq!(count(&origin_requests), 1);
        assert_eq!(count(&landing_requests), 0, "the redirect was followed");
    }
}
