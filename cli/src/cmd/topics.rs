use anyhow::Context;
use auditstream_kafka::topics::{self, Created};

use crate::config::Config;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create every topic of the pipeline (raw, envelope and dead-letter topics, one per
    /// destination) with the partitions and retention of [topics]; existing topics are left alone.
    Create,
    /// Print the topics `create` would create, without contacting the broker.
    Plan,
}

pub async fn run(command: Command, config: &Config) -> anyhow::Result<()> {
    let plan = config
        .topics
        .plan(config.destinations.iter().map(|d| d.name.as_str()));
    match command {
        Command::Plan => {
            for spec in &plan {
                println!(
                    "{}\tpartitions={}\tretention.ms={}",
                    spec.name,
                    spec.partitions,
                    spec.retention.as_millis()
                );
            }
        }
        Command::Create => {
            let results = topics::create(&config.kafka, &plan)
                .await
                .with_context(|| format!("creating topics on {}", config.kafka.brokers))?;
            for (name, created) in results {
                let what = match created {
                    Created::New => "created",
                    Created::Existing => "exists",
                };
                println!("{what}\t{name}");
            }
        }
    }
    Ok(())
}
