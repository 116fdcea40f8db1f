//! Configuration files: TOML into any serde struct, with errors that point
//! at the line (`path:line:column: message`), and the error type every
//! configuration's `validate()` returns.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A configuration that cannot be used, with every reason found.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error (0 when the parser gave no position).
        line: usize,
        /// 1-based column of the error (0 when the parser gave no position).
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// Values that parse but cannot work together: every problem found.
    #[error("invalid configuration:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

/// Reads and parses a TOML file (not validated: that is the caller's).
pub fn read_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_toml(&text, path)
}

/// Parses TOML text; `path` only names it in errors.
pub fn parse_toml<T: DeserializeOwned>(text: &str, path: &Path) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let (line, column) = e
            .span()
            .map(|span| line_col(text, span.start))
            .unwrap_or((0, 0));
        ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            column,
            message: e.message().to_string(),
        }
    })
}

/// 1-based line and column of a byte offset (clamped to the text).
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Conf {
        server: Server,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Server {
        port: u16,
        #[serde(with = "humantime_serde")]
        timeout: Duration,
    }

    #[test]
    fn empty_text_gives_defaults() {
        let c: Conf = parse_toml("", Path::new("c.toml")).unwrap();
        assert_eq!(c, Conf::default());
    }

    #[test]
    fn unknown_key_names_its_line() {
        let err = parse_toml::<Conf>(
            "[server]\nport = 3306\nprot = 1\n",
            Path::new("/etc/causeway/x.toml"),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("/etc/causeway/x.toml:3:1: "), "{msg}");
        assert!(msg.contains("prot"), "{msg}");
    }

    #[test]
    fn wrong_type_names_line_and_column() {
        let err = parse_toml::<Conf>("[server]\nport = \"x\"\n", Path::new("c.toml")).unwrap_err();
        let ConfigError::Parse { line, column, .. } = err else {
            panic!("expected Parse, got {err:?}");
        };
        assert_eq!((line, column), (2, 8));
    }

    #[test]
    fn line_col_counts_from_one_and_clamps() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab\ncd", 99), (2, 3));
    }

    #[test]
    fn read_toml_names_a_missing_file() {
        let err = read_toml::<Conf>(Path::new("/nonexistent/cw.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cannot read /nonexistent/cw.toml: "),
            "{err}"
        );
    }

    #[test]
    fn read_toml_reads_a_file() {
        let path =
            std::env::temp_dir().join(format!("cw-common-config-{}.toml", std::process::id()));
        std::fs::write(&path, "[server]\nport = 7\ntimeout = \"300ms\"\n").unwrap();
        let c: Result<Conf, _> = read_toml(&path);
        std::fs::remove_file(&path).unwrap();
        let c = c.unwrap();
        assert_eq!(c.server.port, 7);
        assert_eq!(c.server.timeout, Duration::from_millis(300));
    }

    #[test]
    fn invalid_lists_every_problem() {
        let err = ConfigError::Invalid(vec!["a must be > 0".into(), "b is empty".into()]);
        assert_eq!(
            err.to_string(),
            "invalid configuration:\n  a must be > 0\n  b is empty"
        );
    }
}
