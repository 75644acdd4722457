//! What `history` and `tail` share: time arguments, the selection of envelope records (by the
//! routing headers the router sets, so most records are judged without parsing their body), and
//! the fields shown of an envelope.

use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use auditstream_schemas::{headers, pattern};
use auditstream_sink_http::FilterConfig;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::Message;
use serde_json::Value;

/// A point in time given on the command line: an RFC 3339 timestamp (`2026-11-22T08:00:00Z`) or
/// a duration ago (`2h`, `30m`, `7d`).
pub fn parse_time(text: &str) -> anyhow::Result<SystemTime> {
    if let Ok(date) =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
    {
        let nanos = u64::try_from(date.unix_timestamp_nanos()).context("time is before 1970")?;
        return Ok(SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos));
    }
    match humantime::parse_duration(text) {
        Ok(ago) => Ok(SystemTime::now() - ago),
        Err(_) => bail!("{text:?} is neither an RFC 3339 time (2026-11-22T08:00:00Z) nor a duration ago (2h, 30m, 7d)"),
    }
}

/// Milliseconds since the Unix epoch, the unit of the `date_ms` header and of record timestamps.
pub fn epoch_millis(at: SystemTime) -> i64 {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// Parses an optional `--since`/`--until` style flag into epoch milliseconds.
pub fn parse_flag_time(flag: &str, text: Option<&str>) -> anyhow::Result<Option<i64>> {
    text.map(|text| {
        parse_time(text)
            .map(epoch_millis)
            .with_context(|| format!("--{flag}"))
    })
    .transpose()
}

/// Checks an organisation or stack id from the command line. Ids are opaque, so this only refuses
/// what no id can be (and what would silently match nothing): empty, blank or control characters.
pub fn check_id(what: &str, id: &str) -> anyhow::Result<()> {
    if id.is_empty() || id.len() > 256 || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("{what} id {id:?} is not valid: expected 1 to 256 characters without spaces");
    }
    Ok(())
}

/// Which records to show. Organisations, stacks and type patterns are a destination's
/// [`FilterConfig`], so `tail --org X --type 'stacks.*'` shows what a destination with that
/// filter receives; targets and dates are the inspection commands' own.
pub struct Selection {
    /// Organisations, stacks and event type patterns, judged on the routing headers.
    pub filter: FilterConfig,
    /// Target patterns (see [`target`]); empty lets everything through.
    pub targets: Vec<String>,
    /// Earliest event date, epoch milliseconds.
    pub since_ms: Option<i64>,
    /// Latest event date, epoch milliseconds.
    pub until_ms: Option<i64>,
}

impl Selection {
    /// Checks ids and patterns, so that a typo is an error rather than an empty result.
    pub fn check(&self) -> anyhow::Result<()> {
        for id in &self.filter.organizations {
            check_id("organisation", id)?;
        }
        for id in &self.filter.stacks {
            check_id("stack", id)?;
        }
        for pattern in &self.filter.types {
            pattern::check(pattern)
                .map_err(anyhow::Error::msg)
                .context("--type")?;
        }
        for pattern in &self.targets {
            pattern::check(pattern)
                .map_err(anyhow::Error::msg)
                .context("--target")?;
        }
        if let (Some(since), Some(until)) = (self.since_ms, self.until_ms) {
            if since > until {
                bail!("--since is after --until");
            }
        }
        Ok(())
    }

    /// Whether the record is selected. Headers decide first; the body is parsed only when a
    /// target is asked for, and then only for records the headers let through.
    pub fn accepts(&self, message: &BorrowedMessage<'_>) -> bool {
        let routing = Routing::of(message);
        let in_time = match routing.date_ms {
            Some(date) => {
                self.since_ms.is_none_or(|since| date >= since)
                    && self.until_ms.is_none_or(|until| date <= until)
            }
            None => self.since_ms.is_none() && self.until_ms.is_none(),
        };
        if !in_time
            || !self.filter.accepts(
                routing.event_type,
                routing.organization_id,
                routing.stack_id,
            )
        {
            return false;
        }
        if self.targets.is_empty() {
            return true;
        }
        let Some(envelope) = message
            .payload()
            .and_then(|body| serde_json::from_slice::<Value>(body).ok())
        else {
            return false;
        };
        target(&envelope).is_some_and(|target| {
            self.targets
                .iter()
                .any(|pattern| pattern::matches(pattern, &target))
        })
    }
}

/// The routing metadata the router puts in the headers of every envelope record.
pub struct Routing<'a> {
    /// `type` header.
    pub event_type: &'a str,
    /// `organization_id` header.
    pub organization_id: &'a str,
    /// `stack_id` header, absent for events that concern no stack.
    pub stack_id: Option<&'a str>,
    /// `date_ms` header.
    pub date_ms: Option<i64>,
    /// `event_id` header.
    pub event_id: Option<&'a str>,
}

impl<'a> Routing<'a> {
    /// Reads the headers of `message`; missing ones are empty (and so match no filter).
    pub fn of(message: &'a BorrowedMessage<'_>) -> Routing<'a> {
        let mut routing = Routing {
            event_type: "",
            organization_id: "",
            stack_id: None,
            date_ms: None,
            event_id: None,
        };
        let Some(record_headers) = message.headers() else {
            return routing;
        };
        for header in record_headers.iter() {
            let Some(value) = header.value.and_then(|v| std::str::from_utf8(v).ok()) else {
                continue;
            };
            match header.key {
                headers::TYPE => routing.event_type = value,
                headers::ORGANIZATION_ID => routing.organization_id = value,
                headers::STACK_ID => routing.stack_id = Some(value),
                headers::DATE_MS => routing.date_ms = value.parse().ok(),
                headers::EVENT_ID => routing.event_id = Some(value),
                _ => {}
            }
        }
        routing
    }
}

/// The resource an event is about, which `--target` matches: for a lifecycle event the id of the
/// affected resource (`payload.data.id`: the stack of `stacks.*`, the organisation of
/// `organizations.*`, the invitation, region or user otherwise); for a module event the API path
/// called (`payload.http.request.path`, without its query). The v2 envelope has no target field
/// of its own, and these are the fields that name the object acted on.
pub fn target(envelope: &Value) -> Option<String> {
    let payload = &envelope["payload"];
    match envelope["app"].as_str()? {
        "membership" => match &payload["data"]["id"] {
            Value::String(id) => Some(id.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        },
        "gateway" => payload["http"]["request"]["path"]
            .as_str()
            .map(|path| path.split('?').next().unwrap_or(path).to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_are_rfc3339_or_durations_ago() {
        let at = parse_time("2026-11-22T08:00:00Z").unwrap();
        assert_eq!(epoch_millis(at), 1_795_334_400_000);
        let ago = parse_time("2h").unwrap();
        let expected = SystemTime::now() - Duration::from_secs(7200);
        assert!(expected.duration_since(ago).unwrap_or_default() < Duration::from_secs(5));
        let err = format!(
            "{:#}",
            parse_flag_time("until", Some("yesterday")).unwrap_err()
        );
        assert!(
            err.starts_with("--until: ") && err.contains("RFC 3339"),
            "{err}"
        );
        assert_eq!(parse_flag_time("since", None).unwrap(), None);
    }

    #[test]
    fn selections_refuse_what_would_silently_match_nothing() {
        let selection = |orgs: &[&str], types: &[&str], targets: &[&str]| Selection {
            filter: FilterConfig {
                organizations: orgs.iter().map(|s| s.to_string()).collect(),
                stacks: vec![],
                types: types.iter().map(|s| s.to_string()).collect(),
            },
            targets: targets.iter().map(|s| s.to_string()).collect(),
            since_ms: None,
            until_ms: None,
        };
        assert!(selection(&["org1"], &["stacks.*"], &["stk-1"])
            .check()
            .is_ok());
        for (bad, needle) in [
            (selection(&[""], &[], &[]), "organisation id"),
            (selection(&["a b"], &[], &[]), "without spaces"),
            (selection(&[], &["*.created"], &[]), "--type"),
            (selection(&[], &[], &[""]), "--target"),
        ] {
            let err = format!("{:#}", bad.check().unwrap_err());
            assert!(err.contains(needle), "{err} lacks {needle}");
        }
        let mut reversed = selection(&[], &[], &[]);
        reversed.since_ms = Some(2);
        reversed.until_ms = Some(1);
        assert!(reversed.check().is_err());
    }

    #[test]
    fn targets_name_the_object_acted_on() {
        let lifecycle =
            json!({"app": "membership", "payload": {"data": {"id": "stk1", "name": "prod"}}});
        assert_eq!(target(&lifecycle).as_deref(), Some("stk1"));
        let numeric = json!({"app": "membership", "payload": {"data": {"id": 42}}});
        assert_eq!(target(&numeric).as_deref(), Some("42"));
        let without = json!({"app": "membership", "payload": {"data": {}}});
        assert_eq!(target(&without), None);
        let module = json!({"app": "gateway", "payload": {"http": {"request": {"path": "/api/ledger/v2/main/transactions?page=2"}}}});
        assert_eq!(
            target(&module).as_deref(),
            Some("/api/ledger/v2/main/transactions")
        );
    }
}
