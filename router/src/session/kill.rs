//! KILL addressed to the router's connection ids. Clients see the router's
//! id (the handshake's connection id); the router maps it to the session's
//! backend thread and issues the KILL on a separate backend connection, as
//! the same user (MySQL lets a user kill its own threads).

use std::sync::Arc;

use causeway_wire::ErrPacket;

use crate::backend::connect::{Endpoint, SideConn};
use crate::error::{Error, Result};
use crate::shared::Shared;

/// What a KILL asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillTarget {
    /// `KILL QUERY n`: stop the running statement.
    Query(u32),
    /// `KILL n`, `KILL CONNECTION n`, COM_PROCESS_KILL: end the session.
    Connection(u32),
}

impl KillTarget {
    /// The router connection id addressed.
    pub fn id(self) -> u32 {
        match self {
            Self::Query(id) | Self::Connection(id) => id,
        }
    }
}

/// What a statement interrupted by KILL QUERY answers, as in MySQL.
pub fn interrupted() -> ErrPacket {
    ErrPacket::new(1317, *b"70100", "Query execution was interrupted")
}

/// Recognises `KILL [QUERY | CONNECTION] <id>` (any case, optional `;`),
/// with comments and whitespace before and after it.
pub fn parse(sql: &[u8]) -> Option<KillTarget> {
    let text = std::str::from_utf8(sql).ok()?;
    let text = strip_trailing(crate::classify::skip_comments_and_space(text));
    let mut words = text.split_ascii_whitespace();
    if !words.next()?.eq_ignore_ascii_case("kill") {
        return None;
    }
    let mut word = words.next()?;
    let query = if word.eq_ignore_ascii_case("query") {
        word = words.next()?;
        true
    } else if word.eq_ignore_ascii_case("connection") {
        word = words.next()?;
        false
    } else {
        false
    };
    let id: u32 = word.parse().ok()?;
    if words.next().is_some() {
        return None;
    }
    Some(if query {
        KillTarget::Query(id)
    } else {
        KillTarget::Connection(id)
    })
}

/// `text` without trailing whitespace, `;` and comments (`/* */`, `-- `,
/// `#`). Only called on text that already starts with a word, so a `#` or
/// `--` that would be inside a string literal makes the result fail to
/// parse as KILL, which is then refused rather than forwarded.
fn strip_trailing(mut text: &str) -> &str {
    loop {
        let t = text.trim_end().trim_end_matches(';').trim_end();
        // A line comment runs to the end of its line: cut at the first
        // `#` or `-- ` on the last line.
        let line_start = t.rfind('\n').map_or(0, |i| i + 1);
        let last = &t[line_start..];
        let hash = last.find('#');
        let dash = last
            .match_indices("--")
            .find(|(i, _)| {
                last[i + 2..]
                    .chars()
                    .next()
                    .is_none_or(|c| c.is_whitespace() || c.is_control())
            })
            .map(|(i, _)| i);
        let cut = match (hash, dash) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(i) = cut {
            text = &t[..line_start + i];
            continue;
        }
        if let Some(body) = t.strip_suffix("*/") {
            if let Some(open) = body.rfind("/*") {
                text = &t[..open];
                continue;
            }
        }
        return t;
    }
}

/// Whether `sql` contains the word `KILL` as code: outside string literals,
/// quoted identifiers and ordinary comments (`/*! */` executable comments
/// count as code). Statements the router forwards unchanged must not
/// contain a KILL, whose thread id the backend would read as its own. With
/// `PREPARE` in the text, string literals are searched too (`PREPARE s FROM
/// 'KILL ?'`). Checked with and without backslash escapes, so the SQL mode
/// cannot hide one.
pub fn mentions_kill(sql: &[u8]) -> bool {
    // Nearly every statement has no "kill" in it at all: one pass, instead
    // of the four scans below, tells.
    if !crate::classify::contains_ci(sql, b"KILL") {
        return false;
    }
    let prepare = scan_words(sql, true, b"PREPARE") || scan_words(sql, false, b"PREPARE");
    if prepare && contains_word_anywhere(sql, b"KILL") {
        return true;
    }
    scan_words(sql, true, b"KILL") || scan_words(sql, false, b"KILL")
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

fn word_at(sql: &[u8], i: usize, word: &[u8]) -> bool {
    let end = i + word.len();
    end <= sql.len()
        && sql[i..end].eq_ignore_ascii_case(word)
        && (i == 0 || !is_word_byte(sql[i - 1]))
        && sql.get(end).is_none_or(|&b| !is_word_byte(b))
}

fn contains_word_anywhere(sql: &[u8], word: &[u8]) -> bool {
    (0..sql.len()).any(|i| word_at(sql, i, word))
}

/// Scans `sql` for `word` outside literals and ordinary comments.
fn scan_words(sql: &[u8], backslash_escapes: bool, word: &[u8]) -> bool {
    let mut i = 0;
    while i < sql.len() {
        match sql[i] {
            q @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < sql.len() {
                    let b = sql[i];
                    if b == b'\\' && backslash_escapes && q != b'`' {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    if b == q {
                        // A doubled quote stays inside the literal.
                        if sql.get(i) == Some(&q) {
                            i += 1;
                            continue;
                        }
                        break;
                    }
                }
            }
            b'#' => {
                while i < sql.len() && sql[i] != b'\n' {
                    i += 1;
                }
            }
            b'-' if sql.get(i + 1) == Some(&b'-')
                && sql
                    .get(i + 2)
                    .is_none_or(|&b| b.is_ascii_whitespace() || b.is_ascii_control()) =>
            {
                while i < sql.len() && sql[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if sql.get(i + 1) == Some(&b'*') && sql.get(i + 2) != Some(&b'!') => {
                i += 2;
                while i < sql.len() && !(sql[i] == b'*' && sql.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 2;
            }
            _ => {
                if word_at(sql, i, word) {
                    return true;
                }
                i += 1;
            }
        }
    }
    false
}

/// Kills `target` for a session logged in as `user` (`None`: for an
/// operator, who may kill any session). An ERR to relay to the client is
/// [`Error::BackendRefused`]. `KILL QUERY` stops the statement
/// where it runs (KILL QUERY on that backend thread), or interrupts its
/// wait when it runs nowhere yet; `KILL CONNECTION` wakes the session,
/// which ends at once and kills what it ran.
pub async fn execute(shared: &Shared, user: Option<&str>, target: KillTarget) -> Result<()> {
    let id = target.id();
    let info = shared
        .sessions
        .lock()
        .ok()
        .and_then(|s| s.get(&id).cloned());
    let Some(info) = info else {
        let msg = format!("Unknown thread id: {id}");
        return Err(Error::BackendRefused(ErrPacket::new(1094, *b"HY000", msg)));
    };
    if user.is_some_and(|u| u != info.user) {
        let msg = format!("You are not owner of thread {id}");
        return Err(Error::BackendRefused(ErrPacket::new(1095, *b"HY000", msg)));
    }
    if matches!(target, KillTarget::Connection(_)) {
        // The session ends at once, and kills what it ran on a backend.
        info.kill.notify_one();
        return Ok(());
    }
    let running = info.active.load(std::sync::atomic::Ordering::Relaxed);
    if running == 0 {
        // Nothing runs on a backend: what waits is interrupted (nothing,
        // when the session is idle: a KILL QUERY then does nothing).
        info.interrupt.fire();
        return Ok(());
    }
    let active = info
        .threads
        .lock()
        .ok()
        .and_then(|t| t.iter().find(|(_, t)| *t == running).cloned());
    let Some((server, thread)) = active else {
        return Ok(());
    };
    let rt = shared.runtime();
    let (Some(u), Some(s)) = (rt.users.get(&info.user), rt.server_named(&server)) else {
        return Ok(());
    };
    let endpoint = rt.servers[s].endpoint.clone();
    let side = SideConn::open(&endpoint, &u.backend_user, &u.backend_password).await?;
    // The login took a while: the statement may have ended and its
    // connection gone to another session, whose statement must not be
    // killed. Only a statement still running on that thread is.
    if info.active.load(std::sync::atomic::Ordering::Relaxed) != thread {
        side.quit().await;
        return Ok(());
    }
    match side.run(&format!("KILL QUERY {thread}")).await {
        // The backend connection went meanwhile: nothing to stop.
        Err(Error::BackendRefused(err)) if err.code == 1094 => Ok(()),
        other => other,
    }
}

/// Ends backend connection `thread` on the server at `endpoint` in the
/// background: the router gave up on its statement (its backend timeout
/// passed) and closed its side, but the server would run the statement to
/// its end. Failures are only logged.
pub fn kill_abandoned(endpoint: Endpoint, user: Arc<str>, password: Vec<u8>, thread: u32) {
    tokio::spawn(async move {
        let res = async {
            SideConn::open(&endpoint, &user, &password)
                .await?
                .run(&format!("KILL {thread}"))
                .await
        }
        .await;
        match res {
            Ok(()) => {
                tracing::debug!(server = %endpoint.name, thread, "abandoned statement killed")
            }
            // It ended meanwhile.
            Err(Error::BackendRefused(e)) if e.code == 1094 => {}
            Err(e) => tracing::warn!(server = %endpoint.name, thread, error = %e.report(),
                "could not kill a statement whose backend timeout passed"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_of_kill() {
        assert_eq!(parse(b"KILL 12"), Some(KillTarget::Connection(12)));
        assert_eq!(parse(b"kill query 7;"), Some(KillTarget::Query(7)));
        assert_eq!(
            parse(b"  Kill Connection  9 ; "),
            Some(KillTarget::Connection(9))
        );
        assert_eq!(parse(b"KILL"), None);
        assert_eq!(parse(b"KILL QUERY"), None);
        assert_eq!(parse(b"KILL 1 2"), None);
        assert_eq!(parse(b"SELECT 'KILL 1'"), None);
        assert_eq!(parse(b"KILL -1"), None);
    }

    #[test]
    fn comments_around_a_kill_are_skipped() {
        assert_eq!(parse(b"KILL 5 -- x"), Some(KillTarget::Connection(5)));
        assert_eq!(parse(b"KILL 5 --"), Some(KillTarget::Connection(5)));
        assert_eq!(parse(b"KILL 5; # why"), Some(KillTarget::Connection(5)));
        assert_eq!(parse(b"/*app*/ KILL 5"), Some(KillTarget::Connection(5)));
        assert_eq!(
            parse(b"-- a\n /* b */ kill query 7 /* c */ ; -- d\n"),
            Some(KillTarget::Query(7))
        );
        assert_eq!(
            parse(b"KILL CONNECTION 9 /* x */ /* y */"),
            Some(KillTarget::Connection(9))
        );
        // A `--` without a space after it is not a comment.
        assert_eq!(parse(b"KILL 5 --1"), None);
        let long = format!("/*{}*/ KILL 3", "x".repeat(300));
        assert_eq!(parse(long.as_bytes()), Some(KillTarget::Connection(3)));
    }

    #[test]
    fn kill_outside_literals_is_found() {
        for sql in [
            &b"SELECT 1; KILL 5"[..],
            b"kill 5",
            b"KILL 5 --1",
            b"SELECT 1;KILL\tQUERY 5",
            b"/*!50000 KILL 5 */",
            b"SELECT 'a\\' KILL 5 ''",
            b"PREPARE s FROM 'KILL ?'",
            b"prepare s from \"kill 1\"",
            b"SELECT 'x''y'; KILL 1",
            // Without backslash escapes (NO_BACKSLASH_ESCAPES) the KILL is code.
            b"SELECT 'it\\'s; KILL 5'",
        ] {
            assert!(mentions_kill(sql), "{}", String::from_utf8_lossy(sql));
        }
        for sql in [
            &b"SELECT 'KILL 1'"[..],
            b"SELECT \"kill 1\"",
            b"SELECT `kill` FROM t",
            b"SELECT skill, killer, kill_at FROM t",
            b"INSERT INTO log VALUES ('please KILL 5', 'it''s KILL')",
            b"SELECT 1 /* KILL 5 */",
            b"SELECT 1 -- KILL 5",
            b"SELECT 1 # KILL 5",
        ] {
            assert!(!mentions_kill(sql), "{}", String::from_utf8_lossy(sql));
        }
    }
}
