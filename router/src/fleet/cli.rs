//! `causeway-router fleet ...`: publish the fleet's configuration and look
//! at the fleet.
//!
//! ```text
//! fleet get          ──> "# causeway fleet: revision N of KEY" + the document
//! edit, fleet put F  ──> checked here first (as --check does), then written only if the key
//!                        is still at revision N (from F's first line or --expect-revision):
//!                        two operators never overwrite each other silently
//! fleet diff F       ──> what F would change
//! fleet status       ──> every live router: revision in force, last refused revision
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;

use super::etcd::{self, Cas};
use super::view::{self, Registration};
use crate::config::{Config, EtcdConfig};

const HEADER: &str = "# causeway fleet: revision ";

/// The revision and key named by a document's first line, and the
/// document without it.
pub fn split_header(text: &str) -> (Option<(i64, &str)>, &str) {
    let Some(rest) = text.strip_prefix(HEADER) else {
        return (None, text);
    };
    let (line, doc) = rest.split_once('\n').unwrap_or((rest, ""));
    let (rev, key) = line.split_once(" of ").unwrap_or((line, ""));
    match rev.trim().parse() {
        Ok(r) => (Some((r, key.trim())), doc),
        Err(_) => (None, text),
    }
}

/// `fleet get`: the document with its revision on the first line.
pub async fn get(cfg: &EtcdConfig) -> anyhow::Result<String> {
    let mut c = etcd::connect(cfg).await?;
    let (v, _) = etcd::get(&mut c, &cfg.key).await?;
    let v = v.with_context(|| format!("etcd holds nothing at {}", cfg.key))?;
    let text = String::from_utf8(v.value)
        .map_err(|_| anyhow::anyhow!("etcd:{}: the document is not UTF-8 text", cfg.key))?;
    Ok(format!("{HEADER}{} of {}\n{text}", v.mod_revision, cfg.key))
}

/// What `fleet put` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Put {
    /// Written at this revision.
    Written(i64),
    /// The file is what etcd holds already.
    Unchanged(i64),
}

/// `fleet put FILE`: checks the file, then writes it if the key is still
/// at the revision expected (`expect`, else the file's first line; a key
/// that does not exist yet needs neither). `resolve`: also read the
/// secrets and certificates it names, as `--check` does.
pub async fn put(
    cfg: &EtcdConfig,
    file: &Path,
    expect: Option<i64>,
    resolve: bool,
) -> anyhow::Result<Put> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let (header, doc) = split_header(&text);
    if let Some((_, key)) = header {
        anyhow::ensure!(
            key.is_empty() || key == cfg.key,
            "{} was read from {key}, not {}: put it there, or remove its first line",
            file.display(),
            cfg.key
        );
    }
    let header = header.map(|(rev, _)| rev);
    check(doc, file, resolve)?;
    let mut c = etcd::connect(cfg).await?;
    let (now, _) = etcd::get(&mut c, &cfg.key).await?;
    let current = now.as_ref().map_or(0, |v| v.mod_revision);
    if now.as_ref().is_some_and(|v| v.value == doc.as_bytes()) {
        return Ok(Put::Unchanged(current));
    }
    let expected = match expect.or(header) {
        Some(r) => r,
        None if current == 0 => 0,
        None => anyhow::bail!(
            "{key} holds revision {current}: give the revision your file was edited from \
             (--expect-revision N, or keep the first line `fleet get` writes) so that a change \
             made meanwhile is not overwritten",
            key = cfg.key
        ),
    };
    match etcd::put_if(&mut c, &cfg.key, doc, expected).await? {
        Cas::Written(rev) => Ok(Put::Written(rev)),
        Cas::Conflict(now) => anyhow::bail!(
            "not written: {key} is at revision {now}, not {expected}: someone changed it since \
             your copy; `fleet get`, merge your change, and put again",
            key = cfg.key
        ),
    }
}

/// The checks `--check` makes, on a document.
pub fn check(doc: &str, name: &Path, resolve: bool) -> anyhow::Result<()> {
    let config = Config::from_toml(doc, name)?;
    config.validate()?;
    if resolve {
        crate::runtime::Runtime::build(config).with_context(|| {
            format!(
                "{}: (use --no-resolve when the secrets and files it names exist only on the \
                 routers' hosts)",
                name.display()
            )
        })?;
    }
    Ok(())
}

/// `fleet diff FILE`: from what etcd holds to the file (empty: the same).
pub async fn diff(cfg: &EtcdConfig, file: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let (_, doc) = split_header(&text);
    let mut c = etcd::connect(cfg).await?;
    let (v, _) = etcd::get(&mut c, &cfg.key).await?;
    let (old, rev) = v.map_or((String::new(), 0), |v| {
        (
            String::from_utf8_lossy(&v.value).into_owned(),
            v.mod_revision,
        )
    });
    Ok(super::diff::unified(
        &format!("etcd:{}@{rev}", cfg.key),
        &old,
        &file.display().to_string(),
        doc,
    ))
}

/// `fleet status`: a table of the live routers, and whether every one runs
/// the latest revision without a refused one.
pub async fn status(cfg: &EtcdConfig) -> anyhow::Result<(String, bool)> {
    let mut c = etcd::connect(cfg).await?;
    let (v, _) = etcd::get(&mut c, &cfg.key).await?;
    let latest = v.map_or(0, |v| v.mod_revision);
    let (items, _) = etcd::list(&mut c, &cfg.routers_prefix()).await?;
    let regs: BTreeMap<String, Registration> = items
        .into_iter()
        .map(|(id, v, _)| {
            let r = serde_json::from_slice(&v).unwrap_or_else(|_| Registration {
                id: id.clone(),
                last_error: Some("unreadable registration".into()),
                ..Registration::default()
            });
            (id, r)
        })
        .collect();
    let rows = view::rows(&regs, latest);
    let all_well = !rows.is_empty() && rows.iter().all(|r| r.problem().is_empty());
    Ok((table(&cfg.key, latest, &rows), all_well))
}

/// The status table.
pub fn table(key: &str, latest: i64, rows: &[view::Row]) -> String {
    let mut out = format!(
        "{key}: latest revision {latest}, {} live routers\n",
        rows.len()
    );
    let mut lines = vec![[
        "ID".to_string(),
        "ADDRESS".into(),
        "VERSION".into(),
        "REVISION".into(),
        "STATUS".into(),
    ]];
    for r in rows {
        let p = r.problem();
        lines.push([
            r.reg.id.clone(),
            r.reg.address.clone(),
            r.reg.version.clone(),
            r.reg.config_revision.to_string(),
            if p.is_empty() { "ok".into() } else { p },
        ]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for l in &lines {
        for (c, w) in widths.iter().enumerate() {
            out.push_str(&format!("{:<w$}  ", l[c], w = *w));
        }
        out.push_str(&l[4]);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_names_the_revision_and_is_not_part_of_the_document() {
        let (rev, doc) = split_header("# causeway fleet: revision 42 of /c\n[frontend]\n");
        assert_eq!((rev, doc), (Some((42, "/c")), "[frontend]\n"));
        let (rev, _) = split_header("# causeway fleet: revision 7\n");
        assert_eq!(rev, Some((7, "")));
        let (rev, doc) = split_header("# a comment\n[frontend]\n");
        assert_eq!((rev, doc), (None, "# a comment\n[frontend]\n"));
        let (rev, doc) = split_header("# causeway fleet: revision x\n");
        assert_eq!((rev, doc), (None, "# causeway fleet: revision x\n"));
    }

    #[test]
    fn the_table_flags_what_is_wrong() {
        let regs: BTreeMap<String, Registration> = [("a", 3), ("b", 2)]
            .into_iter()
            .map(|(id, rev)| {
                (
                    id.to_string(),
                    Registration {
                        id: id.into(),
                        address: "127.0.0.1:6033".into(),
                        version: "0.1.0".into(),
                        config_revision: rev,
                        ..Registration::default()
                    },
                )
            })
            .collect();
        let t = table("/c", 3, &view::rows(&regs, 3));
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "/c: latest revision 3, 2 live routers");
        assert!(
            lines[2].starts_with("a ") && lines[2].ends_with("  ok"),
            "{t}"
        );
        assert!(lines[3].ends_with("runs revision 2 of 3"), "{t}");
    }
}
