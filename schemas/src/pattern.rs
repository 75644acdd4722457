//! Patterns over event types (and other routing values such as a target id): an exact value, or
//! a prefix ending in `*` (`stacks.*`). One definition, so that a destination's `filter.types`
//! and the inspection commands' `--type` select exactly the same events.

/// Whether `value` matches `pattern`: equal to it, or starting with the text before a final `*`.
pub fn matches(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => value == pattern,
    }
}

/// Checks that `pattern` can match something as written: it is not empty and has no `*` except
/// a final one. A `*` elsewhere is taken literally by [`matches`], which is never what was meant.
pub fn check(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("a pattern must not be empty".to_owned());
    }
    let body = pattern.strip_suffix('*').unwrap_or(pattern);
    if body.contains('*') {
        return Err(format!(
            "pattern {pattern:?}: `*` is only allowed at the end (e.g. \"stacks.*\")"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_prefix_patterns() {
        let cases = [
            ("AUDIT", "AUDIT", true),
            ("AUDIT", "AUDITX", false),
            ("stacks.*", "stacks.created", true),
            ("stacks.*", "stacks.", true),
            ("stacks.*", "stacksX", false),
            ("stacks.*", "organizations.created", false),
            ("*", "anything", true),
            ("stacks.created", "stacks.created.x", false),
        ];
        for (pattern, value, expected) in cases {
            assert_eq!(matches(pattern, value), expected, "{pattern} vs {value}");
        }
    }

    #[test]
    fn misplaced_stars_and_empty_patterns_are_refused() {
        assert!(check("stacks.*").is_ok());
        assert!(check("*").is_ok());
        assert!(check("AUDIT").is_ok());
        assert!(check("").is_err());
        assert!(check("*.created")
            .unwrap_err()
            .contains("only allowed at the end"));
        assert!(check("stacks.**").is_err());
    }
}
