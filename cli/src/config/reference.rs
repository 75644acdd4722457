//! The README's configuration reference and the example configs, checked against the real
//! configuration types so that neither can drift from the code.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use auditstream_sink_http::encode::FormatName;
use figment::providers::Env;

use super::Config;

const PROBE: &str = "__probe__";

/// The README's `## Configuration` section: from its heading to the next `## ` heading.
fn configuration_section() -> String {
    let readme = include_str!("../../../README.md");
    let start = readme
        .find("\n## Configuration\n")
        .expect("README has a `## Configuration` section");
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    rest[..end].to_owned()
}

/// The field paths the types define, e.g. `destinations.retry.max_backoff`.
///
/// The configuration structs only derive `Deserialize` (they are never written out), so the
/// fields are asked of serde itself: every struct denies unknown fields, and deserializing a
/// table holding only an unknown key fails with "unknown field `__probe__`, expected one of
/// `a`, `b`", which lists the struct's fields. Probing each field the same way (as a table, then
/// as an array of tables) walks the whole tree; a field that answers otherwise is a leaf.
fn field_paths() -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    walk(&mut Vec::new(), &mut paths);
    paths
}

fn walk(path: &mut Vec<(String, bool)>, paths: &mut BTreeSet<String>) {
    let fields = struct_fields(path).expect("the root is a struct");
    for field in fields {
        let found = [false, true].into_iter().find_map(|is_array| {
            path.push((field.clone(), is_array));
            let sub = struct_fields(path);
            path.pop();
            sub.map(|_| is_array)
        });
        match found {
            Some(is_array) => {
                path.push((field, is_array));
                walk(path, paths);
                path.pop();
            }
            None => {
                let mut names: Vec<&str> = path.iter().map(|(name, _)| name.as_str()).collect();
                names.push(&field);
                paths.insert(names.join("."));
            }
        }
    }
}

/// The fields of the struct at `path`, or `None` when the value there is not a struct.
fn struct_fields(path: &[(String, bool)]) -> Option<Vec<String>> {
    let mut value = toml::Value::Table(toml::map::Map::from_iter([(
        PROBE.to_owned(),
        toml::Value::Integer(1),
    )]));
    for (name, is_array) in path.iter().rev() {
        if *is_array {
            value = toml::Value::Array(vec![value]);
        }
        value = toml::Value::Table(toml::map::Map::from_iter([(name.clone(), value)]));
    }
    let message = value.try_into::<Config>().err()?.to_string();
    let rest = message.split(&format!("unknown field `{PROBE}`")).nth(1)?;
    let listed = rest.lines().next().unwrap_or_default();
    if listed.contains("there are no fields") {
        return Some(Vec::new());
    }
    Some(
        listed
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect(),
    )
}

/// The first cell of every row of the reference table: `| `kafka.brokers` | ... |`.
fn documented_paths(section: &str) -> BTreeSet<String> {
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|cell| cell.split('`').next())
        .filter(|name| name.contains('.'))
        .map(str::to_owned)
        .collect()
}

fn load(path: &Path) -> anyhow::Result<Config> {
    Config::load_with(
        Some(path),
        Env::prefixed("AUDITSTREAM_TEST_UNUSED_").split("__"),
    )
}

#[test]
fn the_probe_finds_nested_and_array_fields() {
    let paths = field_paths();
    for expected in [
        "kafka.brokers",
        "topics.dead_letter_retention",
        "router.redaction.gateway.ip_address",
        "destinations.name",
        "destinations.retry.max_backoff",
        "destinations.splunk.sourcetype",
        "destinations.filter.types",
    ] {
        assert!(paths.contains(expected), "{expected} not in {paths:?}");
    }
    assert!(!paths
        .iter()
        .any(|p| p == "destinations" || p.contains(PROBE)));
}

#[test]
fn the_reference_table_names_every_field_and_only_real_ones() {
    let section = configuration_section();
    let documented = documented_paths(&section);
    let defined = field_paths();
    let missing: Vec<&String> = defined.difference(&documented).collect();
    let stale: Vec<&String> = documented.difference(&defined).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "README \"Configuration\" reference table: undocumented fields {missing:?}, \
         documented fields that do not exist {stale:?}"
    );
}

#[test]
fn every_toml_example_of_the_configuration_section_loads() {
    let section = configuration_section();
    let blocks: Vec<&str> = section
        .split("```toml\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap_or_default())
        .collect();
    assert!(
        blocks.len() >= 2,
        "expected TOML examples, found {}",
        blocks.len()
    );
    for block in blocks {
        let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::fs::write(file.path(), block).unwrap();
        if let Err(err) = load(file.path()) {
            panic!("README example does not load: {err:#}\n{block}");
        }
    }
}

#[test]
fn example_configs_load_and_validate() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let examples = [
        ("config/examples/splunk.toml", FormatName::SplunkHec),
        ("config/examples/datadog.toml", FormatName::Datadog),
        (
            "config/examples/elastic.toml",
            FormatName::ElasticsearchBulk,
        ),
        ("config/examples/webhook.toml", FormatName::Json),
        ("config/demo.toml", FormatName::Json),
    ];
    for (file, format) in examples {
        let config = load(&root.join(file)).unwrap_or_else(|err| panic!("{file}: {err:#}"));
        assert!(!config.destinations.is_empty(), "{file} has no destination");
        for destination in &config.destinations {
            assert_eq!(destination.format, format, "{file}");
            // With every `${VAR}` set, as the sink would have it.
            destination
                .validate(|_| Some("example-secret".to_owned()))
                .unwrap_or_else(|err| panic!("{file}: {err}"));
        }
    }
    let listed: BTreeSet<String> = std::fs::read_dir(root.join("config/examples"))
        .unwrap()
        .map(|entry| {
            format!(
                "config/examples/{}",
                entry.unwrap().file_name().to_string_lossy()
            )
        })
        .collect();
    let tested: BTreeSet<String> = examples.iter().map(|(f, _)| f.to_string()).collect();
    assert!(
        listed.is_subset(&tested),
        "untested examples: {:?}",
        listed.difference(&tested)
    );
}
