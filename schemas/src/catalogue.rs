//! The lifecycle event catalogue, read from `schemas/catalogue.tsv` so that code and docs share one list.

use std::sync::LazyLock;

/// One lifecycle event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecycleType {
    /// Scope, e.g. `stacks`.
    pub scope: &'static str,
    /// Full type, e.g. `stacks.created`.
    pub name: &'static str,
}

static CATALOGUE: LazyLock<Vec<LifecycleType>> = LazyLock::new(|| {
    include_str!("../catalogue.tsv")
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (scope, name) = line
                .split_once('\t')
                .expect("catalogue.tsv lines are `scope<TAB>type`");
            LifecycleType { scope, name }
        })
        .collect()
});

/// Every known lifecycle event type, in catalogue order.
pub fn lifecycle_types() -> &'static [LifecycleType] {
    &CATALOGUE
}

/// Whether `name` is a known lifecycle event type. Unknown types are still forwarded.
pub fn is_known_lifecycle_type(name: &str) -> bool {
    CATALOGUE.iter().any(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_has_the_55_documented_types_once_each() {
        let types = lifecycle_types();
        assert_eq!(types.len(), 55);
        let mut names: Vec<_> = types.iter().map(|t| t.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 55, "duplicate entries in catalogue.tsv");
        for t in types {
            assert!(t.name.starts_with(&format!("{}.", t.scope)), "{t:?}");
        }
    }

    #[test]
    fn known_and_unknown_types() {
        assert!(is_known_lifecycle_type("stacks.created"));
        assert!(is_known_lifecycle_type("regions.set_disconnected"));
        assert!(!is_known_lifecycle_type("stacks.exploded"));
    }
}
