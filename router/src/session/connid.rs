//! `CONNECTION_ID()` answers the session's id, not a backend's.
//!
//! A session has no single backend connection, and the id its client was
//! given (in the handshake, and the one `KILL` takes) is the router's. Every
//! call `CONNECTION_ID()` in code (not in literals or comments) becomes that
//! id as a literal; where the call is a whole item of a select list with no
//! alias, the item keeps MySQL's column name (the call as written):
//!
//! ```text
//! SELECT CONNECTION_ID()                 -> SELECT 7 AS `CONNECTION_ID()`
//! SELECT connection_id() AS me, 1        -> SELECT 7 AS me, 1
//! KILL QUERY ... WHERE id = CONNECTION_ID() -> ... WHERE id = 7
//! ```
//! Pure; `None` when the text has no such call (the common case, found by
//! one pass over the bytes). Likewise `SHOW PROCESSLIST`'s row for the
//! session's own backend connection shows the session's id.

/// The text with every `CONNECTION_ID()` call replaced by `id`, or `None`
/// when it has none.
pub fn rewrite(sql: &[u8], id: u32) -> Option<Vec<u8>> {
    // The common case, cheaply: no such name at all (one byte compared per
    // position, as statements can be megabytes long).
    const NAME: &[u8] = b"connection_id";
    let mentioned = sql.len() >= NAME.len()
        && (0..=sql.len() - NAME.len())
            .any(|i| sql[i] | 0x20 == b'c' && sql[i..i + NAME.len()].eq_ignore_ascii_case(NAME));
    if !mentioned {
        return None;
    }
    let calls = find_calls(sql);
    if calls.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(sql.len() + 32 * calls.len());
    let mut at = 0;
    for c in calls {
        out.extend_from_slice(&sql[at..c.start]);
        out.extend_from_slice(id.to_string().as_bytes());
        if c.whole_item {
            out.extend_from_slice(b" AS `");
            out.extend_from_slice(&sql[c.start..c.end]);
            out.push(b'`');
        }
        at = c.end;
    }
    out.extend_from_slice(&sql[at..]);
    Some(out)
}

/// Whether `sql` is `SHOW [FULL] PROCESSLIST`, whose row for the session's
/// own backend connection gets the session's id.
pub fn is_show_processlist(sql: &[u8]) -> bool {
    // Checked for every statement: most are told apart without lexing.
    const NAME: &[u8] = b"processlist";
    if sql.len() > 512
        || !sql
            .windows(NAME.len())
            .any(|w| w[0] | 0x20 == b'p' && w.eq_ignore_ascii_case(NAME))
    {
        return false;
    }
    let toks = tokens(sql);
    let words: Vec<Tok> = toks.iter().map(|t| t.1).collect();
    match words.as_slice() {
        [a, b, rest @ ..] if word_is(sql, *a, "SHOW") => {
            let (list, rest) = if word_is(sql, *b, "FULL") {
                match rest {
                    [c, rest @ ..] => (*c, rest),
                    [] => return false,
                }
            } else {
                (*b, rest)
            };
            word_is(sql, list, "PROCESSLIST") && rest.iter().all(|t| *t == Tok::Semi)
        }
        _ => false,
    }
}

/// A text-protocol row of `SHOW PROCESSLIST` whose `Id` (the first
/// column) is `backend`, with `id` in its place; `None` for other rows.
pub fn own_row(row: &[u8], backend: u32, id: u32) -> Option<Vec<u8>> {
    use causeway_wire::buf::{put_lenenc_bytes, read_lenenc_int};
    let (len, at) = read_lenenc_int(row, "Id").ok()?;
    let end = at.checked_add(usize::try_from(len).ok()?)?;
    if row.get(at..end)? != backend.to_string().as_bytes() {
        return None;
    }
    let mut out = bytes::BytesMut::with_capacity(row.len());
    put_lenenc_bytes(&mut out, id.to_string().as_bytes());
    out.extend_from_slice(&row[end..]);
    Some(out.to_vec())
}

#[derive(Debug, PartialEq, Eq)]
struct Call {
    start: usize,
    end: usize,
    /// A whole select-list item without an alias.
    whole_item: bool,
}

/// A code token, as far as this scan needs to tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Word(usize, usize),
    Comma,
    Open,
    Close,
    Semi,
    Other,
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// The code tokens of `sql` with their start offsets: literals, quoted
/// identifiers and comments (optimizer hints `/*+ */` included) are
/// skipped; `/*! */` bodies are code.
fn tokens(sql: &[u8]) -> Vec<(usize, Tok)> {
    let mut out = Vec::new();
    let n = sql.len();
    let mut i = 0;
    while i < n {
        let c = sql[i];
        match c {
            b'\'' | b'"' | b'`' => {
                let start = i;
                i += 1;
                while i < n {
                    let b = sql[i];
                    if b == b'\\' && c != b'`' {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    if b == c {
                        if sql.get(i) == Some(&c) {
                            i += 1;
                            continue;
                        }
                        break;
                    }
                }
                out.push((start, Tok::Other));
            }
            b'#' => {
                while i < n && sql[i] != b'\n' {
                    i += 1;
                }
            }
            b'-' if sql.get(i + 1) == Some(&b'-')
                && sql.get(i + 2).is_none_or(|b| b.is_ascii_whitespace()) =>
            {
                while i < n && sql[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if sql.get(i + 1) == Some(&b'*') => {
                if sql.get(i + 2) == Some(&b'!') {
                    // Executable comment: its body is code; skip the opener
                    // and a version number after `/*!`.
                    i += 3;
                    while i < n && sql[i].is_ascii_digit() {
                        i += 1;
                    }
                } else {
                    i += 2;
                    while i < n && !(sql[i] == b'*' && sql.get(i + 1) == Some(&b'/')) {
                        i += 1;
                    }
                    i += 2;
                }
            }
            b'*' if sql.get(i + 1) == Some(&b'/') => i += 2,
            b',' => {
                out.push((i, Tok::Comma));
                i += 1;
            }
            b'(' => {
                out.push((i, Tok::Open));
                i += 1;
            }
            b')' => {
                out.push((i, Tok::Close));
                i += 1;
            }
            b';' => {
                out.push((i, Tok::Semi));
                i += 1;
            }
            _ if c.is_ascii_whitespace() => i += 1,
            _ if is_word_byte(c) => {
                let start = i;
                while i < n && is_word_byte(sql[i]) {
                    i += 1;
                }
                out.push((start, Tok::Word(start, i)));
            }
            _ => {
                out.push((i, Tok::Other));
                i += 1;
            }
        }
    }
    out
}

fn word_is(sql: &[u8], t: Tok, w: &str) -> bool {
    matches!(t, Tok::Word(a, b) if sql[a..b].eq_ignore_ascii_case(w.as_bytes()))
}

/// Words that end a select list at its depth.
const AFTER_LIST: &[&str] = &[
    "FROM",
    "INTO",
    "WHERE",
    "GROUP",
    "HAVING",
    "ORDER",
    "LIMIT",
    "UNION",
    "WINDOW",
    "FOR",
    "EXCEPT",
    "INTERSECT",
];

fn find_calls(sql: &[u8]) -> Vec<Call> {
    let toks = tokens(sql);
    let mut calls = Vec::new();
    // Per parenthesis depth: whether a select list is open there.
    let mut in_list = vec![false];
    let mut k = 0;
    while k < toks.len() {
        let (start, t) = toks[k];
        let depth = in_list.len() - 1;
        match t {
            Tok::Open => in_list.push(false),
            Tok::Close if depth > 0 => {
                in_list.pop();
            }
            Tok::Semi => in_list = vec![false],
            _ if word_is(sql, t, "SELECT") => in_list[depth] = true,
            _ if AFTER_LIST.iter().any(|w| word_is(sql, t, w)) => in_list[depth] = false,
            _ if word_is(sql, t, "CONNECTION_ID")
                && matches!(toks.get(k + 1), Some((_, Tok::Open)))
                && matches!(toks.get(k + 2), Some((_, Tok::Close))) =>
            {
                let end = toks[k + 2].0 + 1;
                let before = k.checked_sub(1).map(|p| toks[p].1);
                let after = toks.get(k + 3).map(|x| x.1);
                let starts_item = matches!(before, Some(Tok::Comma))
                    || before
                        .is_some_and(|b| word_is(sql, b, "SELECT") || word_is(sql, b, "DISTINCT"));
                let ends_item = match after {
                    None | Some(Tok::Comma | Tok::Semi | Tok::Close) => true,
                    Some(a) => AFTER_LIST.iter().any(|w| word_is(sql, a, w)),
                };
                calls.push(Call {
                    start,
                    end,
                    whole_item: in_list[depth] && starts_item && ends_item,
                });
                k += 3;
                continue;
            }
            _ => {}
        }
        k += 1;
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(sql: &str) -> Option<String> {
        rewrite(sql.as_bytes(), 7).map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn select_items_keep_mysql_s_column_name() {
        assert_eq!(
            rw("SELECT CONNECTION_ID()").unwrap(),
            "SELECT 7 AS `CONNECTION_ID()`"
        );
        assert_eq!(
            rw("select connection_id( ), 1;").unwrap(),
            "select 7 AS `connection_id( )`, 1;"
        );
        assert_eq!(
            rw("SELECT 1, CONNECTION_ID() FROM dual").unwrap(),
            "SELECT 1, 7 AS `CONNECTION_ID()` FROM dual"
        );
        assert_eq!(
            rw("SELECT (SELECT CONNECTION_ID())").unwrap(),
            "SELECT (SELECT 7 AS `CONNECTION_ID()`)"
        );
        assert_eq!(
            rw("SELECT CONNECTION_ID() INTO @me").unwrap(),
            "SELECT 7 AS `CONNECTION_ID()` INTO @me"
        );
    }

    #[test]
    fn other_calls_become_the_literal() {
        assert_eq!(
            rw("SELECT CONNECTION_ID() AS me").unwrap(),
            "SELECT 7 AS me"
        );
        assert_eq!(rw("SELECT CONNECTION_ID() me").unwrap(), "SELECT 7 me");
        assert_eq!(
            rw("SELECT * FROM t WHERE id = CONNECTION_ID()").unwrap(),
            "SELECT * FROM t WHERE id = 7"
        );
        assert_eq!(
            rw("SELECT a FROM t WHERE id IN (1, CONNECTION_ID(), 2)").unwrap(),
            "SELECT a FROM t WHERE id IN (1, 7, 2)"
        );
        assert_eq!(
            rw("SELECT CONCAT('x', CONNECTION_ID())").unwrap(),
            "SELECT CONCAT('x', 7)"
        );
        assert_eq!(rw("SELECT CONNECTION_ID() + 1").unwrap(), "SELECT 7 + 1");
        assert_eq!(rw("SET @me = CONNECTION_ID()").unwrap(), "SET @me = 7");
        assert_eq!(
            rw("INSERT INTO t VALUES (CONNECTION_ID())").unwrap(),
            "INSERT INTO t VALUES (7)"
        );
        assert_eq!(
            rw("SELECT /*+ x */ CONNECTION_ID()").unwrap(),
            "SELECT /*+ x */ 7 AS `CONNECTION_ID()`"
        );
        assert_eq!(
            rw("SELECT /*!80000 CONNECTION_ID() */").unwrap(),
            "SELECT /*!80000 7 AS `CONNECTION_ID()` */"
        );
    }

    #[test]
    fn the_session_s_own_processlist_row_gets_its_id() {
        for sql in [
            "SHOW PROCESSLIST",
            "show full processlist;",
            "/* x */ SHOW  PROCESSLIST",
        ] {
            assert!(is_show_processlist(sql.as_bytes()), "{sql}");
        }
        for sql in [
            "SHOW TABLES",
            "SELECT * FROM PROCESSLIST",
            "SHOW PROCESSLIST x",
            "SHOW",
        ] {
            assert!(!is_show_processlist(sql.as_bytes()), "{sql}");
        }
        // Id 23, User "app", NULL.
        let row = b"\x0223\x03app\xfb";
        assert_eq!(own_row(row, 23, 7).unwrap(), b"\x017\x03app\xfb");
        assert_eq!(own_row(row, 24, 7), None);
        assert_eq!(own_row(b"", 23, 7), None);
        assert_eq!(own_row(b"\x09", 23, 7), None);
    }

    use proptest::prelude::*;

    proptest! {
        /// Client text is arbitrary: never a panic, and a rewrite leaves
        /// the text around the calls as it was.
        #[test]
        fn any_text_is_rewritten_safely(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just(b"CONNECTION_ID()".to_vec()),
                    Just(b"connection_id ( )".to_vec()),
                    Just(b"SELECT ".to_vec()),
                    Just(b", ".to_vec()),
                    Just(b"'".to_vec()),
                    Just(b"/*".to_vec()),
                    Just(b"*/".to_vec()),
                    Just(b"(".to_vec()),
                    Just(b")".to_vec()),
                    proptest::collection::vec(any::<u8>(), 0..8),
                ],
                0..12,
            ),
            id in any::<u32>(),
        ) {
            let sql: Vec<u8> = parts.concat();
            let _ = is_show_processlist(&sql);
            let _ = own_row(&sql, id, 7);
            if let Some(out) = rewrite(&sql, id) {
                let calls = find_calls(&sql);
                prop_assert!(!calls.is_empty());
                // Before the first call and after the last, the text is
                // the client's, byte for byte.
                let (first, last) = (&calls[0], &calls[calls.len() - 1]);
                prop_assert!(out.starts_with(&sql[..first.start]));
                prop_assert!(out.ends_with(&sql[last.end..]));
                let shown = id.to_string();
                prop_assert!(out[first.start..].starts_with(shown.as_bytes()));
            }
        }
    }

    #[test]
    fn literals_comments_and_other_names_are_left_alone() {
        for sql in [
            "SELECT 1",
            "SELECT 'CONNECTION_ID()'",
            "SELECT \"connection_id()\"",
            "SELECT `CONNECTION_ID` FROM t",
            "SELECT 1 /* CONNECTION_ID() */",
            "SELECT 1 -- CONNECTION_ID()",
            "SELECT 1 # CONNECTION_ID()",
            "SELECT MY_CONNECTION_ID()",
            "SELECT CONNECTION_ID_X()",
            "SELECT CONNECTION_ID",
            "SELECT 'it\\'s CONNECTION_ID()'",
        ] {
            assert_eq!(rw(sql), None, "{sql}");
        }
        // Garbage never panics.
        for sql in [
            "CONNECTION_ID(",
            "CONNECTION_ID)",
            "((((CONNECTION_ID()",
            ")))",
        ] {
            let _ = rw(sql);
        }
    }
}
