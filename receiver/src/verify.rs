//! Did every published event arrive? Compares the ids a producer acknowledged (`auditstream
//! produce --ids-out`) with the ids a receiver accepted (`auditstream receiver --ids-out`, one line
//! per accepted event, so a redelivered id appears more than once).
//!
//! ```
//! use auditstream_receiver::verify::Verdict;
//!
//! let verdict = Verdict::compare(["a", "b", "c"], ["a", "b", "b"]);
//! assert_eq!(verdict.to_string(), "published 3, delivered 2, missing 1, duplicates 1");
//! assert_eq!(verdict.missing_ids, ["c"]);
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{self, BufRead};
use std::path::Path;

/// The outcome of a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Distinct ids published.
    pub published: usize,
    /// Distinct published ids that arrived at least once.
    pub delivered: usize,
    /// Published ids that never arrived, sorted.
    pub missing_ids: Vec<String>,
    /// Arrivals beyond the first of each id (at-least-once redeliveries).
    pub duplicates: u64,
    /// Distinct ids that arrived but were never published, sorted: a sign that the two files
    /// do not belong to the same run.
    pub unexpected_ids: Vec<String>,
}

impl Verdict {
    /// Compares published ids (duplicates among them count once) with every arrival.
    pub fn compare<P, R>(published: P, received: R) -> Verdict
    where
        P: IntoIterator,
        P::Item: AsRef<str>,
        R: IntoIterator,
        R::Item: AsRef<str>,
    {
        let published: HashSet<String> = published
            .into_iter()
            .map(|id| id.as_ref().to_owned())
            .collect();
        let mut arrivals: HashMap<String, u64> = HashMap::new();
        for id in received {
            *arrivals.entry(id.as_ref().to_owned()).or_default() += 1;
        }
        let mut missing_ids: Vec<String> = published
            .iter()
            .filter(|id| !arrivals.contains_key(*id))
            .cloned()
            .collect();
        missing_ids.sort_unstable();
        let mut unexpected_ids: Vec<String> = arrivals
            .keys()
            .filter(|id| !published.contains(*id))
            .cloned()
            .collect();
        unexpected_ids.sort_unstable();
        Verdict {
            published: published.len(),
            delivered: published.len() - missing_ids.len(),
            duplicates: arrivals.values().map(|&n| n - 1).sum(),
            missing_ids,
            unexpected_ids,
        }
    }

    /// Compares two id files, one id per line (blank lines are skipped).
    pub fn compare_files(published: &Path, received: &Path) -> io::Result<Verdict> {
        Ok(Verdict::compare(read_ids(published)?, read_ids(received)?))
    }

    /// Published ids that never arrived.
    pub fn missing(&self) -> usize {
        self.missing_ids.len()
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "published {}, delivered {}, missing {}, duplicates {}",
            self.published,
            self.delivered,
            self.missing(),
            self.duplicates
        )
    }
}

/// Reads an id file: one id per line, surrounding blanks trimmed, empty lines skipped.
pub fn read_ids(path: &Path) -> io::Result<Vec<String>> {
    let file = std::fs::File::open(path)
        .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", path.display())))?;
    let mut ids = Vec::new();
    for line in io::BufReader::new(file).lines() {
        let line = line?;
        let id = line.trim();
        if !id.is_empty() {
            ids.push(id.to_owned());
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Published, delivered, missing, duplicates, unexpected.
    type Counts = (usize, usize, usize, u64, usize);

    #[test]
    fn counts_missing_duplicates_and_strangers() {
        let cases: [(&[&str], &[&str], Counts); 5] = [
            (&[], &[], (0, 0, 0, 0, 0)),
            (&["a", "b"], &["b", "a"], (2, 2, 0, 0, 0)),
            (&["a", "b", "c"], &["a", "a", "a", "c"], (3, 2, 1, 2, 0)),
            (&["a", "a"], &["a"], (1, 1, 0, 0, 0)),
            (&["a"], &["z", "z"], (1, 0, 1, 1, 1)),
        ];
        for (published, received, expected) in cases {
            let v = Verdict::compare(published, received);
            assert_eq!(
                (
                    v.published,
                    v.delivered,
                    v.missing(),
                    v.duplicates,
                    v.unexpected_ids.len()
                ),
                expected,
                "{published:?} vs {received:?}"
            );
        }
    }

    #[test]
    fn reads_files_skipping_blank_lines() {
        let dir = std::env::temp_dir().join(format!("verify-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (published, received) = (dir.join("published"), dir.join("received"));
        std::fs::write(&published, "a\n b \n\nc\n").unwrap();
        std::fs::write(&received, "a\nb\nb\n").unwrap();
        let verdict = Verdict::compare_files(&published, &received).unwrap();
        assert_eq!(
            verdict.to_string(),
            "published 3, delivered 2, missing 1, duplicates 1"
        );
        assert_eq!(verdict.missing_ids, ["c"]);
        let err = Verdict::compare_files(&dir.join("nope"), &received).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
