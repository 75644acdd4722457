use std::io::Write;

use anyhow::Context;
use auditstream_kafka::{follow, topics};
use auditstream_sink_http::FilterConfig;
use rdkafka::Message;

use crate::config::Config;
use crate::events::{self, Selection};
use crate::shutdown;

#[derive(clap::Args)]
#[command(
    after_help = "One envelope per line on stdout, the bytes exactly as destinations receive \
them, flushed per line, so that the output can feed a log collector. Partitions are assigned, not \
subscribed: tail joins no consumer group and commits nothing, so it never takes events from a sink \
or moves its offsets. Ctrl-C or SIGTERM stops it; so does a closed pipe (`| head`), with exit code 0.

Examples:
  auditstream tail
  auditstream tail --stream lifecycle --org 3f1c9a0e7b2d --type 'invitations.*'
  auditstream tail --stream module --stack 3f1c9a0e7b2d-stk0 --target '/api/ledger/*' | jq .payload.http.response.status_code
  auditstream tail --since 10m | head -n 5"
)]
pub struct Args {
    /// Which envelope topics to follow.
    #[arg(long, value_enum, default_value = "both")]
    stream: StreamArg,
    /// Only events of this organisation; repeat or separate with commas for several.
    #[arg(long = "org", value_name = "ORG_ID", value_delimiter = ',')]
    organizations: Vec<String>,
    /// Only events of this stack (events that concern no stack are then left out).
    #[arg(long = "stack", value_name = "STACK_ID", value_delimiter = ',')]
    stacks: Vec<String>,
    /// Only these event types: exact (`AUDIT`, `stacks.created`) or a prefix ending in `*`
    /// (`stacks.*`), as in a destination's `filter.types`.
    #[arg(long = "type", value_name = "PATTERN", value_delimiter = ',')]
    types: Vec<String>,
    /// Only events about this target: the affected resource's id for lifecycle events
    /// (`payload.data.id`), the API path for module events (`/api/ledger/*`). Same pattern
    /// syntax as --type.
    #[arg(long = "target", value_name = "PATTERN", value_delimiter = ',')]
    targets: Vec<String>,
    /// Start with the events written since this time (RFC 3339, or a duration ago such as `10m`)
    /// instead of only new ones.
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StreamArg {
    Lifecycle,
    Module,
    Both,
}

pub async fn run(args: Args, config: &Config) -> anyhow::Result<()> {
    let since_ms =
        events::parse_flag_time("since", args.since.as_deref()).map_err(crate::UsageError)?;
    let selection = Selection {
        filter: FilterConfig {
            stacks: args.stacks,
            organizations: args.organizations,
            types: args.types,
        },
        targets: args.targets,
        // Reading starts at --since by record timestamp; records written then may hold slightly
        // older events, which a live view shows rather than hides.
        since_ms: None,
        until_ms: None,
    };
    selection.check().map_err(crate::UsageError)?;
    let followed: &[&str] = match args.stream {
        StreamArg::Lifecycle => &[topics::LIFECYCLE],
        StreamArg::Module => &[topics::MODULE],
        StreamArg::Both => &[topics::LIFECYCLE, topics::MODULE],
    };
    let mut stdout = std::io::stdout();
    let mut write_error = None;
    follow(
        &config.kafka,
        followed,
        since_ms,
        shutdown::signal(),
        |message| {
            if !selection.accepts(message) {
                return true;
            }
            // Flushed per line: whoever reads the pipe sees each event as soon as it arrives.
            let written = stdout
                .write_all(message.payload().unwrap_or_default())
                .and_then(|()| stdout.write_all(b"\n"))
                .and_then(|()| stdout.flush());
            match written {
                Ok(()) => true,
                Err(err) => {
                    write_error = Some(err);
                    false
                }
            }
        },
    )
    .await
    .with_context(|| format!("following {}", followed.join(", ")))?;
    match write_error {
        // The reader went away (`| head`): it has what it wanted.
        Some(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Some(err) => Err(err).context("writing to stdout"),
        None => Ok(()),
    }
}
