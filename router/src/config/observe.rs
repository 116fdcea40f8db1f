//! The `[stats]` and `[query_log]` sections: what the router records about
//! the statements it serves (query digests, for the admin interface) and
//! the optional JSON-lines query log. Both are read again on reload.

use std::path::PathBuf;

use serde::Deserialize;

/// `[stats]`: per-statement statistics (query digests).
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StatsConfig {
    /// Count every statement by its digest (normalized text), schema, user
    /// and hostgroup: count, time, rows, errors, where reads went. On by
    /// default, as ProxySQL's `mysql-query_digests` is; the cost is one
    /// digest and one short lock per statement.
    pub digests: bool,
    /// At most this many distinct digests are kept; statements of new
    /// ones past it are counted in one row whose digest is `(other)`.
    pub max_digests: usize,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig {
            digests: true,
            max_digests: 10_000,
        }
    }
}

impl StatsConfig {
    /// Every problem with this section (empty when it is fine).
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.max_digests == 0 {
            errors.push(
                "stats.max_digests must be at least 1 (set stats.digests = false to keep none)"
                    .to_string(),
            );
        }
        if self.max_digests > MAX_DIGESTS {
            errors.push(format!("stats.max_digests must be at most {MAX_DIGESTS}"));
        }
        errors
    }
}

/// The largest `stats.max_digests` accepted (each digest takes about a
/// kilobyte).
pub const MAX_DIGESTS: usize = 1_000_000;

/// `[query_log]`: one JSON line per statement, written by a background
/// task (a session never waits for it: lines it cannot take are dropped
/// and counted).
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct QueryLogConfig {
    /// Write the log.
    pub enabled: bool,
    /// The file lines are appended to (created when missing).
    pub path: PathBuf,
    /// The fraction of statements logged, 0.0 to 1.0; statements that end
    /// in an error are always logged.
    pub sample: f64,
}

impl Default for QueryLogConfig {
    fn default() -> Self {
        QueryLogConfig {
            enabled: false,
            path: PathBuf::from("causeway-queries.log"),
            sample: 1.0,
        }
    }
}

impl QueryLogConfig {
    /// Every problem with this section (empty when it is fine).
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if !(0.0..=1.0).contains(&self.sample) {
            errors.push("query_log.sample must be between 0.0 and 1.0".to_string());
        }
        if self.enabled && self.path.as_os_str().is_empty() {
            errors.push("query_log.path must not be empty".to_string());
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_common::config::parse_toml;
    use std::path::Path;

    #[test]
    fn defaults_and_toml() {
        let s: StatsConfig = parse_toml("", Path::new("s.toml")).unwrap();
        assert_eq!(s, StatsConfig::default());
        assert!(s.digests);
        assert_eq!(s.max_digests, 10_000);
        assert!(s.validate().is_empty());
        let q: QueryLogConfig = parse_toml("", Path::new("q.toml")).unwrap();
        assert_eq!(q, QueryLogConfig::default());
        assert!(!q.enabled);
        assert!(q.validate().is_empty());

        let s: StatsConfig =
            parse_toml("digests = false\nmax_digests = 50\n", Path::new("s.toml")).unwrap();
        assert!(!s.digests);
        assert_eq!(s.max_digests, 50);
        let q: QueryLogConfig = parse_toml(
            "enabled = true\npath = \"/var/log/q.log\"\nsample = 0.25\n",
            Path::new("q.toml"),
        )
        .unwrap();
        assert!(q.enabled);
        assert_eq!(q.path, Path::new("/var/log/q.log"));
        assert_eq!(q.sample, 0.25);
        let err = parse_toml::<StatsConfig>("digest = true", Path::new("s.toml")).unwrap_err();
        assert!(err.to_string().contains("digest"), "{err}");
    }

    #[test]
    fn validate_collects_every_problem() {
        let s = StatsConfig {
            max_digests: 0,
            ..StatsConfig::default()
        };
        assert_eq!(s.validate().len(), 1);
        let s = StatsConfig {
            max_digests: MAX_DIGESTS + 1,
            ..StatsConfig::default()
        };
        assert_eq!(s.validate().len(), 1);
        let q = QueryLogConfig {
            enabled: true,
            path: PathBuf::new(),
            sample: 1.5,
        };
        let errors = q.validate();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("query_log.sample")));
        let nan = QueryLogConfig {
            sample: f64::NAN,
            ..QueryLogConfig::default()
        };
        assert_eq!(nan.validate().len(), 1);
    }
}
