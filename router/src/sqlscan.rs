//! A small MySQL lexer for what the session must know about a statement
//! that the parser's tree does not say plainly: which user variables it
//! assigns and reads (by name), which named locks it takes, text
//! `PREPARE`/`EXECUTE`/`DEALLOCATE` names, and global locks. Pure; it
//! never decides a route.
//!
//! It skips string literals, quoted identifiers and comments (`/*! */`
//! executable comments are code), so `'@x'` or `-- @x` are not variables.
//! Backslash escapes are honoured in strings; a `NO_BACKSLASH_ESCAPES`
//! session that ends a string with a backslash can at worst make the scan
//! see too much as a string, which only hides a name: the session then
//! treats the statement's state changes as unexplained (see
//! `session::state`), never as absent.

use bytes::Bytes;

/// One lexical token the scan cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// A word (keyword or identifier), as written.
    Word(String),
    /// `@name`, `@'name'`, ``@`name` ``, `@"name"`: the name, lowercased.
    UserVar(Bytes),
    /// `@@...` (a system variable).
    SysVar,
    /// A string literal's bytes (escapes resolved).
    Str(Vec<u8>),
    /// `:=`.
    Assign,
    /// `=`.
    Eq,
    /// `,`.
    Comma,
    /// `(`.
    Open,
    /// `)`.
    Close,
    /// `;`.
    Semi,
    /// Anything else.
    Other,
}

fn lex(sql: &[u8]) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut i = 0;
    let n = sql.len();
    while i < n {
        let c = sql[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => i += 1,
            b'#' => i = skip_line(sql, i),
            b'-' if sql.get(i + 1) == Some(&b'-')
                && sql.get(i + 2).is_none_or(|c| c.is_ascii_whitespace()) =>
            {
                i = skip_line(sql, i)
            }
            b'/' if sql.get(i + 1) == Some(&b'*') => {
                // `/*!` and `/*+` are code: drop the opener, keep the body.
                if matches!(sql.get(i + 2), Some(b'!') | Some(b'+')) {
                    i += 3;
                    while i < n && sql[i].is_ascii_digit() {
                        i += 1;
                    }
                } else {
                    i = match find(sql, i + 2, b"*/") {
                        Some(end) => end + 2,
                        None => n,
                    };
                }
            }
            b'*' if sql.get(i + 1) == Some(&b'/') => i += 2,
            b'\'' | b'"' => {
                let (s, end) = string(sql, i);
                out.push(Tok::Str(s));
                i = end;
            }
            b'`' => {
                let (_, end) = quoted(sql, i, b'`');
                out.push(Tok::Other);
                i = end;
            }
            b'@' if sql.get(i + 1) == Some(&b'@') => {
                i += 2;
                while i < n && (is_word(sql[i]) || sql[i] == b'.' || sql[i] == b'`') {
                    i += 1;
                }
                out.push(Tok::SysVar);
            }
            b'@' => {
                i += 1;
                let name = match sql.get(i) {
                    Some(b'\'' | b'"') => {
                        let (s, end) = string(sql, i);
                        i = end;
                        s
                    }
                    Some(b'`') => {
                        let (s, end) = quoted(sql, i, b'`');
                        i = end;
                        s
                    }
                    _ => {
                        let start = i;
                        while i < n && (is_word(sql[i]) || sql[i] == b'.') {
                            i += 1;
                        }
                        sql[start..i].to_vec()
                    }
                };
                out.push(Tok::UserVar(Bytes::from(name.to_ascii_lowercase())));
            }
            b':' if sql.get(i + 1) == Some(&b'=') => {
                out.push(Tok::Assign);
                i += 2;
            }
            b'=' => {
                out.push(Tok::Eq);
                i += 1;
            }
            b',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            b'(' => {
                out.push(Tok::Open);
                i += 1;
            }
            b')' => {
                out.push(Tok::Close);
                i += 1;
            }
            b';' => {
                out.push(Tok::Semi);
                i += 1;
            }
            c if is_word(c) => {
                let start = i;
                while i < n && is_word(sql[i]) {
                    i += 1;
                }
                out.push(Tok::Word(
                    String::from_utf8_lossy(&sql[start..i]).into_owned(),
                ));
            }
            _ => {
                out.push(Tok::Other);
                i += 1;
            }
        }
    }
    out
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

fn skip_line(sql: &[u8], i: usize) -> usize {
    sql[i..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(sql.len(), |p| i + p + 1)
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

/// A quoted string starting at `i` (`'` or `"`): its bytes with escapes
/// resolved, and the index after its closing quote.
fn string(sql: &[u8], i: usize) -> (Vec<u8>, usize) {
    let q = sql[i];
    let mut out = Vec::new();
    let mut j = i + 1;
    while j < sql.len() {
        let c = sql[j];
        if c == b'\\' && j + 1 < sql.len() {
            out.push(match sql[j + 1] {
                b'n' => b'\n',
                b't' => b'\t',
                b'r' => b'\r',
                b'0' => 0,
                b'Z' => 0x1a,
                other => other,
            });
            j += 2;
        } else if c == q {
            if sql.get(j + 1) == Some(&q) {
                out.push(q);
                j += 2;
            } else {
                return (out, j + 1);
            }
        } else {
            out.push(c);
            j += 1;
        }
    }
    (out, sql.len())
}

/// A backquoted identifier starting at `i`: its name and the index after it.
fn quoted(sql: &[u8], i: usize, q: u8) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut j = i + 1;
    while j < sql.len() {
        if sql[j] == q {
            if sql.get(j + 1) == Some(&q) {
                out.push(q);
                j += 2;
                continue;
            }
            return (out, j + 1);
        }
        out.push(sql[j]);
        j += 1;
    }
    (out, sql.len())
}

/// What a text `PREPARE`-family statement does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextPrepare {
    /// `PREPARE name FROM ...`.
    Prepare(String),
    /// `EXECUTE name [USING ...]`.
    Execute(String),
    /// `DEALLOCATE PREPARE name`, `DROP PREPARE name`.
    Deallocate(String),
}

impl TextPrepare {
    /// The statement name (lowercased: MySQL compares them without case).
    pub fn name(&self) -> &str {
        match self {
            Self::Prepare(n) | Self::Execute(n) | Self::Deallocate(n) => n,
        }
    }
}

/// Global locks: `FLUSH TABLES ... WITH READ LOCK` / `FOR EXPORT`,
/// `LOCK INSTANCE FOR BACKUP`, and their ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalLock {
    /// FTWRL or `FLUSH TABLES ... FOR EXPORT`: until `UNLOCK TABLES`.
    TakeTables,
    /// `LOCK INSTANCE FOR BACKUP`: until `UNLOCK INSTANCE`.
    TakeInstance,
    /// `UNLOCK TABLES`.
    ReleaseTables,
    /// `UNLOCK INSTANCE`.
    ReleaseInstance,
}

/// Named-lock functions a statement calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamedLocks {
    /// Literal names passed to `GET_LOCK` (lowercased).
    pub takes: Vec<Bytes>,
    /// A `GET_LOCK` whose name is not a literal.
    pub takes_unknown: bool,
    /// `RELEASE_LOCK` or `RELEASE_ALL_LOCKS` is called.
    pub releases: bool,
    /// `RELEASE_ALL_LOCKS()` is called.
    pub releases_all: bool,
}

/// What the scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// User variables assigned (`SET @x`, `@x :=`, `INTO @x`), lowercased,
    /// each once.
    pub assigns: Vec<Bytes>,
    /// User variables read, lowercased, each once.
    pub reads: Vec<Bytes>,
    /// Named locks.
    pub locks: NamedLocks,
    /// Text prepared statements.
    pub prepare: Option<TextPrepare>,
    /// For `PREPARE name FROM '<text>'`: what the prepared text does (its
    /// `EXECUTE`s will); `None` for a text given in a variable.
    pub body: Option<Box<Scan>>,
    /// Global locks.
    pub global_lock: Option<GlobalLock>,
}

fn word(t: Option<&Tok>, w: &str) -> bool {
    matches!(t, Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w))
}

fn push_once(v: &mut Vec<Bytes>, name: &Bytes) {
    if !v.contains(name) {
        v.push(name.clone());
    }
}

/// Scans one statement text (several statements separated by `;` are
/// scanned as one, their findings merged).
pub fn scan(sql: &[u8]) -> Scan {
    let toks = lex(sql);
    let mut out = Scan::default();
    // Statement starts: index 0 and after each `;`.
    let mut start = 0;
    for (i, t) in toks.iter().enumerate() {
        if *t == Tok::Semi {
            scan_statement(&toks[start..i], &mut out);
            start = i + 1;
        }
    }
    scan_statement(&toks[start..], &mut out);
    out
}

fn scan_statement(toks: &[Tok], out: &mut Scan) {
    if toks.is_empty() {
        return;
    }
    let first = toks.first();
    let is_set = word(first, "SET");
    // In a SET, the target of each top-level assignment is assigned.
    let mut depth = 0usize;
    let mut target_next = is_set;
    let mut into = false;
    for (i, t) in toks.iter().enumerate() {
        match t {
            Tok::Open => depth += 1,
            Tok::Close => depth = depth.saturating_sub(1),
            Tok::Comma if depth == 0 && is_set => target_next = true,
            Tok::Word(w) if w.eq_ignore_ascii_case("INTO") => into = true,
            Tok::Word(w)
                if into
                    && !w.eq_ignore_ascii_case("OUTFILE")
                    && !w.eq_ignore_ascii_case("DUMPFILE") =>
            {
                into = false
            }
            Tok::UserVar(name) => {
                let next = toks.get(i + 1);
                let assigned = next == Some(&Tok::Assign)
                    || (target_next && depth == 0 && next == Some(&Tok::Eq))
                    || into;
                if assigned {
                    push_once(&mut out.assigns, name);
                } else {
                    push_once(&mut out.reads, name);
                }
            }
            _ => {}
        }
        if !matches!(t, Tok::Comma | Tok::UserVar(_)) && into && !matches!(t, Tok::Word(_)) {
            into = false;
        }
        if is_set && !matches!(t, Tok::Comma) && target_next && i > 0 {
            // The first token after SET or a top-level comma is the target;
            // `SESSION`/`LOCAL`/`GLOBAL` modifiers keep the target next.
            let modifier = matches!(t, Tok::Word(w) if ["SESSION", "LOCAL", "GLOBAL", "PERSIST", "PERSIST_ONLY"]
                .iter()
                .any(|m| w.eq_ignore_ascii_case(m)));
            if !modifier {
                target_next = false;
            }
        }
        // Named locks: FUNC ( 'literal' ...
        if let Tok::Word(w) = t {
            if toks.get(i + 1) == Some(&Tok::Open) {
                let f = w.to_ascii_lowercase();
                match f.as_str() {
                    "get_lock" => match toks.get(i + 2) {
                        Some(Tok::Str(s)) if matches!(toks.get(i + 3), Some(Tok::Comma)) => {
                            push_once(&mut out.locks.takes, &Bytes::from(s.to_ascii_lowercase()))
                        }
                        _ => out.locks.takes_unknown = true,
                    },
                    "release_lock" => out.locks.releases = true,
                    "release_all_locks" => {
                        out.locks.releases = true;
                        out.locks.releases_all = true;
                    }
                    _ => {}
                }
            }
        }
    }
    // PREPARE / EXECUTE / DEALLOCATE / DROP PREPARE.
    let name_at = |k: usize| match toks.get(k) {
        Some(Tok::Word(n)) => Some(n.to_ascii_lowercase()),
        _ => None,
    };
    if word(first, "PREPARE") {
        if let Some(n) = name_at(1) {
            out.prepare = Some(TextPrepare::Prepare(n));
            if let (true, Some(Tok::Str(text))) = (word(toks.get(2), "FROM"), toks.get(3)) {
                out.body = Some(Box::new(scan(text)));
            }
        }
    } else if word(first, "EXECUTE") {
        if let Some(n) = name_at(1) {
            out.prepare = Some(TextPrepare::Execute(n));
        }
    } else if (word(first, "DEALLOCATE") || word(first, "DROP")) && word(toks.get(1), "PREPARE") {
        if let Some(n) = name_at(2) {
            out.prepare = Some(TextPrepare::Deallocate(n));
        }
    }
    // Global locks.
    let has = |w: &str| toks.iter().any(|t| word(Some(t), w));
    if word(first, "FLUSH")
        && (has("TABLE") || has("TABLES"))
        && ((has("READ") && has("LOCK")) || has("EXPORT"))
    {
        out.global_lock = Some(GlobalLock::TakeTables);
    } else if word(first, "LOCK") && word(toks.get(1), "INSTANCE") {
        out.global_lock = Some(GlobalLock::TakeInstance);
    } else if word(first, "UNLOCK") && word(toks.get(1), "INSTANCE") {
        out.global_lock = Some(GlobalLock::ReleaseInstance);
    } else if word(first, "UNLOCK") && (word(toks.get(1), "TABLES") || word(toks.get(1), "TABLE")) {
        out.global_lock = Some(GlobalLock::ReleaseTables);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[Bytes]) -> Vec<&str> {
        v.iter()
            .map(|b| std::str::from_utf8(b).unwrap_or("?"))
            .collect()
    }

    #[test]
    fn set_assigns_its_targets_and_reads_the_rest() {
        let s = scan(b"SET @a = @b + 1, @`C d` := 2, @@session.sql_mode = @e, SESSION x = @f");
        assert_eq!(names(&s.assigns), ["a", "c d"]);
        assert_eq!(names(&s.reads), ["b", "e", "f"]);
        let s = scan(b"set @'q' = (SELECT @r := 1)");
        assert_eq!(names(&s.assigns), ["q", "r"]);
    }

    #[test]
    fn select_assignments_and_into_lists_assign() {
        let s = scan(b"SELECT @x := id, @y FROM t WHERE a = @z INTO @p, @q");
        assert_eq!(names(&s.assigns), ["x", "p", "q"]);
        assert_eq!(names(&s.reads), ["y", "z"]);
        let s = scan(b"SELECT a INTO OUTFILE '/tmp/@x' FROM t");
        assert!(s.assigns.is_empty() && s.reads.is_empty());
        let s = scan(b"SELECT 1 INTO @One");
        assert_eq!(names(&s.assigns), ["one"]);
    }

    #[test]
    fn strings_comments_and_system_variables_are_not_user_variables() {
        let s = scan(b"SELECT '@a', \"@b\", `@c`, @@d, @@session.e -- @f\n/* @g */ # @h\n");
        assert!(s.assigns.is_empty() && s.reads.is_empty(), "{s:?}");
        // Executable comments are code.
        let s = scan(b"SELECT /*!80000 @x := 1 */ 2");
        assert_eq!(names(&s.assigns), ["x"]);
        // An escaped quote does not end the string.
        let s = scan(b"SELECT 'it\\'s @a', 'x''@b'");
        assert!(s.reads.is_empty(), "{s:?}");
    }

    #[test]
    fn named_locks_are_found_by_literal_name() {
        let s = scan(b"SELECT GET_LOCK('Job', 10), get_lock(CONCAT('a','b'), 1)");
        assert_eq!(names(&s.locks.takes), ["job"]);
        assert!(s.locks.takes_unknown);
        assert!(!s.locks.releases);
        let s = scan(b"DO RELEASE_LOCK('job')");
        assert!(s.locks.releases && !s.locks.releases_all);
        let s = scan(b"SELECT RELEASE_ALL_LOCKS()");
        assert!(s.locks.releases_all);
        let s = scan(b"SELECT 'GET_LOCK(x)'");
        assert_eq!(s.locks, NamedLocks::default());
    }

    #[test]
    fn text_prepared_statements_and_global_locks() {
        assert_eq!(
            scan(b"PREPARE Stmt1 FROM 'SELECT ?'").prepare,
            Some(TextPrepare::Prepare("stmt1".into()))
        );
        let s = scan(b"EXECUTE stmt1 USING @a, @b");
        assert_eq!(s.prepare, Some(TextPrepare::Execute("stmt1".into())));
        assert_eq!(names(&s.reads), ["a", "b"]);
        assert_eq!(
            scan(b"DEALLOCATE PREPARE stmt1").prepare,
            Some(TextPrepare::Deallocate("stmt1".into()))
        );
        assert_eq!(
            scan(b"drop prepare s").prepare,
            Some(TextPrepare::Deallocate("s".into()))
        );
        let s = scan(b"PREPARE s FROM @sql");
        assert_eq!(s.reads, vec![Bytes::from_static(b"sql")]);
        assert!(s.body.is_none(), "the text is in a variable");
        let s = scan(b"PREPARE s FROM 'SELECT @a := ?, @b'");
        let body = s.body.expect("a literal text is scanned");
        assert_eq!(names(&body.assigns), ["a"]);
        assert_eq!(names(&body.reads), ["b"]);
        assert!(s.reads.is_empty());
        assert_eq!(
            scan(b"FLUSH TABLES WITH READ LOCK").global_lock,
            Some(GlobalLock::TakeTables)
        );
        assert_eq!(
            scan(b"FLUSH TABLES t1 FOR EXPORT").global_lock,
            Some(GlobalLock::TakeTables)
        );
        assert_eq!(scan(b"FLUSH TABLES").global_lock, None);
        assert_eq!(
            scan(b"LOCK INSTANCE FOR BACKUP").global_lock,
            Some(GlobalLock::TakeInstance)
        );
        assert_eq!(
            scan(b"UNLOCK INSTANCE").global_lock,
            Some(GlobalLock::ReleaseInstance)
        );
        assert_eq!(
            scan(b"unlock tables").global_lock,
            Some(GlobalLock::ReleaseTables)
        );
    }

    #[test]
    fn multi_statements_merge() {
        let s = scan(b"SET @a = 1; SELECT @b := @a; SELECT GET_LOCK('l', 1)");
        assert_eq!(names(&s.assigns), ["a", "b"]);
        assert_eq!(names(&s.reads), ["a"]);
        assert_eq!(names(&s.locks.takes), ["l"]);
    }

    #[test]
    fn garbage_never_panics() {
        for sql in [
            &b"@"[..],
            b"@'",
            b"'unterminated",
            b"/* open",
            b"SET",
            b"SET ,,, @",
            b"\xff\xfe@\xff",
            b"GET_LOCK(",
            b"PREPARE",
            b"DROP PREPARE",
        ] {
            let _ = scan(sql);
        }
    }
}
