use std::path::PathBuf;

use anyhow::{bail, Context};
use auditstream_receiver::verify::Verdict;

/// How many missing or unexpected ids to list before summarizing the rest.
const LISTED: usize = 20;

/// Compares the ids a producer published (`produce --ids-out`) with the ids a receiver recorded
/// (`receiver --ids-out`) and prints `published N, delivered N, missing N, duplicates N`.
/// Exits with 1 when an event is missing; duplicates (at-least-once redeliveries) are reported
/// only.
#[derive(clap::Args)]
pub struct Args {
    /// Ids published, one per line.
    #[arg(long, value_name = "FILE")]
    published: PathBuf,
    /// Ids received, one line per accepted event (an id redelivered appears again).
    #[arg(long, value_name = "FILE")]
    received: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let verdict = Verdict::compare_files(&args.published, &args.received)
        .context("cannot read the id files")?;
    print!("{}", report(&verdict));
    if verdict.missing() > 0 {
        bail!("{} published event(s) never arrived", verdict.missing());
    }
    Ok(())
}

/// The summary line, then the missing and unexpected ids (at most [`LISTED`] of each).
fn report(verdict: &Verdict) -> String {
    let mut text = format!("{verdict}\n");
    for (label, ids) in [
        ("missing", &verdict.missing_ids),
        ("received but never published", &verdict.unexpected_ids),
    ] {
        for id in ids.iter().take(LISTED) {
            text.push_str(&format!("{label}: {id}\n"));
        }
        if ids.len() > LISTED {
            text.push_str(&format!("... and {} more {label}\n", ids.len() - LISTED));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_counts_then_the_ids() {
        let verdict = Verdict::compare(["a", "b", "c"], ["b", "b", "x"]);
        assert_eq!(
            report(&verdict),
            "published 3, delivered 1, missing 2, duplicates 1\n\
             missing: a\nmissing: c\nreceived but never published: x\n"
        );
        let many: Vec<String> = (0..25).map(|i| format!("id-{i:02}")).collect();
        let text = report(&Verdict::compare(&many, Vec::<String>::new()));
        assert!(text.starts_with("published 25, delivered 0, missing 25, duplicates 0\n"));
        assert!(
            text.ends_with("missing: id-19\n... and 5 more missing\n"),
            "{text}"
        );
    }

    #[test]
    fn fails_only_when_something_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let published = write("published", "a\nb\n");
        let args = |received: PathBuf| Args {
            published: published.clone(),
            received,
        };
        assert!(run(args(write("all", "a\nb\nb\n"))).is_ok());
        let err = run(args(write("some", "a\n"))).unwrap_err();
        assert!(
            err.to_string()
                .contains("1 published event(s) never arrived"),
            "{err}"
        );
        let err = run(args(dir.path().join("absent"))).unwrap_err();
        assert!(format!("{err:#}").contains("absent"), "{err:#}");
    }
}
