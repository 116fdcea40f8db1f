//! Secrets in configuration: given inline, by environment variable or by
//! file, and never printed.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A secret that never appears in `Debug` output or logs.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

/// Written out (the admin interface's `config` table) as `<redacted>`.
impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// A secret that could not be read; `what` names it (e.g. "mysql password").
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The named environment variable is missing.
    #[error("{what}: environment variable {var} is not set")]
    EnvNotSet {
        /// The secret.
        what: String,
        /// The variable.
        var: String,
    },
    /// The named environment variable does not hold UTF-8.
    #[error("{what}: environment variable {var} is not valid unicode")]
    EnvNotUnicode {
        /// The secret.
        what: String,
        /// The variable.
        var: String,
    },
    /// The file could not be read.
    #[error("{what}: cannot read {}: {source}", path.display())]
    Read {
        /// The secret.
        what: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// How many of the three sources are given; configurations allow at most one.
pub fn sources_given(
    inline: &Option<Secret>,
    env: &Option<String>,
    file: &Option<PathBuf>,
) -> usize {
    [inline.is_some(), env.is_some(), file.is_some()]
        .into_iter()
        .filter(|given| *given)
        .count()
}

/// Reads a secret from the first source given of: inline, environment
/// variable, file (one line; a trailing newline is dropped). `None` when
/// none is given. `what` names the secret in errors.
pub fn resolve_secret(
    what: &str,
    inline: &Option<Secret>,
    env: &Option<String>,
    file: &Option<PathBuf>,
) -> Result<Option<String>, SecretError> {
    if let Some(s) = inline {
        return Ok(Some(s.0.clone()));
    }
    if let Some(var) = env {
        return match std::env::var(var) {
            Ok(v) => Ok(Some(v)),
            Err(std::env::VarError::NotPresent) => Err(SecretError::EnvNotSet {
                what: what.to_string(),
                var: var.clone(),
            }),
            Err(std::env::VarError::NotUnicode(_)) => Err(SecretError::EnvNotUnicode {
                what: what.to_string(),
                var: var.clone(),
            }),
        };
    }
    if let Some(path) = file {
        return read_file(what, path).map(Some);
    }
    Ok(None)
}

fn read_file(what: &str, path: &Path) -> Result<String, SecretError> {
    let v = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
        what: what.to_string(),
        path: path.to_path_buf(),
        source,
    })?;
    Ok(v.trim_end_matches(['\r', '\n']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Some(Secret("hunter2".into()));
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn secrets_deserialize_from_a_plain_string() {
        #[derive(Deserialize)]
        struct C {
            password: Secret,
        }
        let c: C = toml::from_str("password = \"pw\"").unwrap();
        assert_eq!(c.password, Secret("pw".into()));
    }

    #[test]
    fn inline_comes_first() {
        let got = resolve_secret(
            "pw",
            &Some(Secret("inline".into())),
            &Some("CW_COMMON_NO_SUCH_VAR_A".into()),
            &None,
        )
        .unwrap();
        assert_eq!(got.as_deref(), Some("inline"));
        assert_eq!(resolve_secret("pw", &None, &None, &None).unwrap(), None);
    }

    #[test]
    fn secret_from_file_drops_the_newline() {
        let path = std::env::temp_dir().join(format!("cw-common-secret-{}", std::process::id()));
        std::fs::write(&path, "s3cret\r\n").unwrap();
        let got = resolve_secret("pw", &None, &None, &Some(path.clone())).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(got.as_deref(), Some("s3cret"));
    }

    #[test]
    fn errors_name_the_secret_and_the_source() {
        let err = resolve_secret("pw", &None, &Some("CW_COMMON_NO_SUCH_VAR_B".into()), &None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "pw: environment variable CW_COMMON_NO_SUCH_VAR_B is not set"
        );
        let missing = PathBuf::from("/nonexistent/cw-common-secret");
        let err = resolve_secret("token", &None, &None, &Some(missing))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("token: cannot read /nonexistent/cw-common-secret: "),
            "{err}"
        );
    }

    #[test]
    fn sources_are_counted() {
        assert_eq!(sources_given(&None, &None, &None), 0);
        assert_eq!(
            sources_given(&Some(Secret("x".into())), &Some("V".into()), &None),
            2
        );
    }
}
