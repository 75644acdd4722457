use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use auditstream_receiver::tls::SelfSignedCa;
use auditstream_receiver::{Receiver, ReceiverOptions};

use crate::shutdown;

/// Accepts JSON POSTs on any path and prints each body on its own line on stdout. Not for
/// production: it exists so that the pipeline can be tried without a SIEM.
#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Serve HTTPS with a self-signed CA kept in this directory (`ca.pem`, `cert.pem`,
    /// `key.pem`; generated when missing). Point a destination's `tls.ca_file` at `ca.pem`.
    /// Without it, plain HTTP.
    #[arg(long, value_name = "DIR")]
    tls_dir: Option<PathBuf>,
    /// A host name the generated certificate covers besides localhost and 127.0.0.1, e.g.
    /// `receiver` for sinks that reach it by that name under docker compose. Repeatable. Used
    /// only when the certificate is generated (an existing one in --tls-dir is kept as it is).
    #[arg(long, value_name = "NAME", requires = "tls_dir")]
    tls_name: Vec<String>,
    /// Do not print bodies, only a count on exit.
    #[arg(long)]
    quiet: bool,
    /// Append the event id of every accepted request to this file (for verification).
    #[arg(long, value_name = "FILE")]
    ids_out: Option<PathBuf>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let tls = args
        .tls_dir
        .as_deref()
        .map(|dir| load_or_generate(dir, &args.tls_name))
        .transpose()?;
    let receiver = Receiver::start(ReceiverOptions {
        listen: Some(args.listen),
        tls,
        keep_bodies: false,
        print: !args.quiet,
        ids_out: args.ids_out,
        ..ReceiverOptions::default()
    })
    .await
    .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!("receiver listening on {}", receiver.url());
    shutdown::signal().await;
    let snapshot = receiver.snapshot();
    eprintln!(
        "receiver stopping: {} requests, {} distinct events, {} duplicates",
        snapshot.requests, snapshot.distinct, snapshot.duplicates
    );
    Ok(())
}

fn load_or_generate(dir: &Path, names: &[String]) -> anyhow::Result<SelfSignedCa> {
    let [ca, cert, key] = ["ca.pem", "cert.pem", "key.pem"].map(|name| dir.join(name));
    if ca.exists() && cert.exists() && key.exists() {
        let read = |path: &Path| {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
        };
        return Ok(SelfSignedCa {
            ca_pem: read(&ca)?,
            cert_pem: read(&cert)?,
            key_pem: read(&key)?,
        });
    }
    let generated =
        SelfSignedCa::generate_for(names).context("generating a self-signed certificate")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (path, text) in [
        (&ca, &generated.ca_pem),
        (&cert, &generated.cert_pem),
        (&key, &generated.key_pem),
    ] {
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!("generated a self-signed CA in {}", dir.display());
    Ok(generated)
}
