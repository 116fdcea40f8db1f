//! What a statement is, for routing: pure, no session state.
//!
//! Two paths:
//! - a fast path on the leading keyword, for the statements that make up
//!   most traffic: a `SELECT` with none of the risky words below is a plain
//!   read; `INSERT`/`UPDATE`/`DELETE`/DDL are writes, without parsing;
//! - sqlparser (MySQL dialect) for everything else, walking expressions to
//!   find locking clauses, `SELECT ... INTO`, functions with side effects
//!   and reads of session state.
//!
//! What cannot be parsed is reported as such; the router sends it to the
//! writer. The classifier never decides a route: [`Classified`] says what the
//! statement does, the routing decision combines it with the session.

use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions, visit_relations, BinaryOperator, Expr, Query, SetExpr, Statement, Visit,
    Visitor,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

use crate::sqlscan::Scan;

/// What a statement does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Reads data and nothing else (SELECT, SHOW, DESCRIBE, EXPLAIN, ...).
    Read,
    /// Changes data or schema, or must run on the writer for another reason
    /// (CALL, LOCK TABLES, unknown statements, ...).
    Write,
    /// Starts, ends or shapes a transaction.
    Transaction(TxnOp),
    /// `USE db`.
    Use(String),
    /// `SET ...` of session variables (replayed on every backend of the
    /// session), or `SET NAMES` / `SET CHARACTER SET`.
    SetSession,
}

/// Transaction control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnOp {
    /// `BEGIN`, `START TRANSACTION [READ WRITE]`.
    Begin,
    /// `START TRANSACTION READ ONLY`.
    BeginReadOnly,
    /// `COMMIT`.
    Commit,
    /// `ROLLBACK` (not `ROLLBACK TO SAVEPOINT`, which stays inside).
    Rollback,
    /// `SET autocommit = 0|1`.
    Autocommit(bool),
    /// SAVEPOINT, RELEASE SAVEPOINT, ROLLBACK TO: inside a transaction.
    Savepoint,
}

/// Session state a statement reads or creates, so the router can send it
/// where that state lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionUse {
    /// Reads `LAST_INSERT_ID()`, `FOUND_ROWS()` or `ROW_COUNT()`.
    pub last_statement_info: bool,
    /// Reads user variables (`@x`).
    pub reads_user_vars: bool,
    /// Assigns user variables (`@x := ...`, `SET @x`, `SELECT ... INTO @x`).
    pub sets_user_vars: bool,
    /// Uses named locks (`GET_LOCK`, `RELEASE_LOCK`, `IS_USED_LOCK`, ...).
    pub named_locks: bool,
    /// Creates or drops a temporary table.
    pub temp_tables: bool,
}

/// The classification of one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// What it does.
    pub kind: Kind,
    /// `FOR UPDATE`, `FOR SHARE`, `LOCK IN SHARE MODE`.
    pub locking: bool,
    /// `SELECT ... INTO` (a file, a dump file or variables).
    pub select_into: bool,
    /// Calls a function with side effects (`SLEEP`, `GET_LOCK`,
    /// `LAST_INSERT_ID(expr)`, `NEXTVAL`, `UUID_SHORT`, ...).
    pub side_effects: bool,
    /// Session state it touches.
    pub session: SessionUse,
    /// Tables it names (unqualified names lowercased, as written otherwise),
    /// for the session's temporary-table check. Empty on the fast path.
    pub tables: Vec<String>,
    /// Whether the parser understood it (false: routed to the writer).
    pub parsed: bool,
    /// More than one statement in the text.
    pub multi: bool,
    /// Calls `LAST_INSERT_ID(...)` (reads or sets it).
    pub last_insert_id: bool,
    /// Calls `ROW_COUNT()` or `FOUND_ROWS()`.
    pub row_info: bool,
    /// `SQL_CALC_FOUND_ROWS`: the next statement will read `FOUND_ROWS()`.
    pub found_rows_calc: bool,
    /// What it does to the session cannot be told from its text: `CALL`,
    /// text the parser did not understand.
    pub opaque: bool,
    /// User variables, named locks, text `PREPARE` and global locks by
    /// name, when the text has any.
    pub scan: Option<Box<Scan>>,
}

impl Classified {
    fn new(kind: Kind) -> Classified {
        Classified {
            kind,
            locking: false,
            select_into: false,
            side_effects: false,
            session: SessionUse::default(),
            tables: Vec::new(),
            parsed: true,
            multi: false,
            last_insert_id: false,
            row_info: false,
            found_rows_calc: false,
            opaque: false,
            scan: None,
        }
    }

    /// What is known of a statement that was not looked at: a write whose
    /// effects on the session are unknown.
    pub fn unparsed() -> Classified {
        Classified {
            parsed: false,
            opaque: true,
            ..Classified::new(Kind::Write)
        }
    }

    /// User variables it assigns.
    pub fn assigns(&self) -> &[bytes::Bytes] {
        self.scan.as_ref().map_or(&[], |s| &s.assigns)
    }

    /// User variables it uses (reads and assignments), those of a text
    /// `PREPARE`'s statement included (their types are fixed when it is
    /// prepared).
    pub fn user_vars(&self) -> impl Iterator<Item = &bytes::Bytes> {
        self.scan.iter().flat_map(|s| {
            let body = s
                .body
                .iter()
                .flat_map(|b| b.reads.iter().chain(b.assigns.iter()));
            s.reads.iter().chain(s.assigns.iter()).chain(body)
        })
    }

    /// A plain read: no lock, no INTO, no side effect, no session state.
    /// Only such statements may leave the session's writer outside a
    /// transaction.
    pub fn is_plain_read(&self) -> bool {
        self.kind == Kind::Read
            && self.parsed
            && !self.multi
            && !self.locking
            && !self.select_into
            && !self.side_effects
            && self.session == SessionUse::default()
    }
}

/// Words that send a `SELECT` past the fast path to the parser (besides
/// `FOR` followed by any whitespace, and every function in
/// [`SIDE_EFFECT_FUNCTIONS`]).
const RISKY: &[&[u8]] = &[
    b"LOCK",
    b"INTO",
    b"@",
    b"LAST_INSERT_ID",
    b"FOUND_ROWS",
    b"ROW_COUNT",
    b"SLEEP",
    b"NEXTVAL",
    b"UUID_SHORT",
    b"SQL_CALC_FOUND_ROWS",
    b";",
    b"/*",
    b"--",
    b"#",
];

/// Functions whose call changes something or waits.
const SIDE_EFFECT_FUNCTIONS: &[&str] = &[
    "get_lock",
    "release_lock",
    "release_all_locks",
    "is_free_lock",
    "is_used_lock",
    "sleep",
    "benchmark",
    "nextval",
    "setval",
    "uuid_short",
    "master_pos_wait",
    "source_pos_wait",
    "wait_for_executed_gtid_set",
    "load_file",
];

const NAMED_LOCK_FUNCTIONS: &[&str] = &[
    "get_lock",
    "release_lock",
    "release_all_locks",
    "is_free_lock",
    "is_used_lock",
];

const LAST_STATEMENT_FUNCTIONS: &[&str] = &["last_insert_id", "found_rows", "row_count"];

/// Classifies one statement text (comments and hints included), with the
/// fast path: a plain `SELECT` is not parsed, so its [`Classified::tables`]
/// is empty. Use [`classify_parsed`] when the session has temporary tables.
pub fn classify(sql: &str) -> Classified {
    let body = skip_comments_and_space(sql);
    let (mut c, plain) = classify_body(body);
    if !plain {
        annotate(&mut c, body);
    }
    c
}

/// What the session needs beyond routing: calls of the last-statement
/// functions, `SQL_CALC_FOUND_ROWS`, opaque statements, and the names the
/// scan finds (only when the text can have any).
fn annotate(c: &mut Classified, body: &str) {
    let b = body.as_bytes();
    c.last_insert_id = mentions_call(b, b"LAST_INSERT_ID");
    c.row_info = mentions_call(b, b"ROW_COUNT") || mentions_call(b, b"FOUND_ROWS");
    c.found_rows_calc = contains_ci(b, b"SQL_CALC_FOUND_ROWS");
    c.session.last_statement_info = c.last_insert_id || c.row_info;
    c.opaque |= !c.parsed || leading_word(body) == "CALL";
    let worth = b.contains(&b'@')
        || [
            &b"LOCK"[..],
            b"PREPARE",
            b"EXECUTE",
            b"DEALLOCATE",
            b"FLUSH",
        ]
        .iter()
        .any(|w| contains_ci(b, w));
    if worth {
        c.scan = Some(Box::new(crate::sqlscan::scan(b)));
    }
}

/// Whether `name(` is called in `sql` (a word of its own, then `(`).
fn mentions_call(sql: &[u8], name: &[u8]) -> bool {
    let n = name.len();
    let mut i = 0;
    while i + n <= sql.len() {
        if sql[i..i + n].eq_ignore_ascii_case(name)
            && (i == 0 || !(sql[i - 1].is_ascii_alphanumeric() || sql[i - 1] == b'_'))
        {
            let rest = &sql[i + n..];
            let after = rest.iter().position(|b| !b.is_ascii_whitespace());
            if after.is_some_and(|k| rest[k] == b'(') {
                return true;
            }
        }
        i += 1;
    }
    false
}

/// The classification, and whether it is the fast path's plain `SELECT`
/// (nothing in it can touch the session).
fn classify_body(body: &str) -> (Classified, bool) {
    let word = leading_word(body);
    let c = match word.as_str() {
        "SELECT" if !contains_risky(body) => return (Classified::new(Kind::Read), true),
        "INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "ALTER" | "TRUNCATE" | "RENAME" | "GRANT"
        | "REVOKE" | "LOAD" | "CALL" | "LOCK" | "UNLOCK" | "OPTIMIZE" | "ANALYZE" | "REPAIR"
        | "FLUSH" | "PURGE" | "RESET" | "INSTALL" | "UNINSTALL" | "XA" | "HANDLER" | "DO"
            if !body.contains(';') =>
        {
            let mut c = Classified::new(Kind::Write);
            if word == "DO" {
                c.side_effects = true;
            }
            c
        }
        "CREATE" | "DROP" if !contains_word(body, "TEMPORARY") && !body.contains(';') => {
            Classified::new(Kind::Write)
        }
        "START" if !body.contains(';') && contains_word(body, "TRANSACTION") => {
            let ro = contains_ci(body.as_bytes(), b"READ ONLY");
            Classified::new(Kind::Transaction(if ro {
                TxnOp::BeginReadOnly
            } else {
                TxnOp::Begin
            }))
        }
        "SET" if autocommit_in(body).is_some() => {
            let v = autocommit_in(body).unwrap_or(true);
            let mut c = Classified::new(Kind::Transaction(TxnOp::Autocommit(v)));
            // `SET @x = 1, autocommit = 0` also sets a user variable.
            c.session.sets_user_vars = sets_user_var(body);
            c
        }
        "BEGIN" if rest_is_empty(body, 5, &["WORK"]) => {
            Classified::new(Kind::Transaction(TxnOp::Begin))
        }
        "COMMIT" if !body.contains(';') && !contains_word(body, "RELEASE") => {
            Classified::new(Kind::Transaction(TxnOp::Commit))
        }
        "SHOW" | "DESCRIBE" | "DESC" | "EXPLAIN" | "HELP"
            if !body.contains(';') && !contains_word(body, "ANALYZE") =>
        {
            Classified::new(Kind::Read)
        }
        _ => parse(body),
    };
    (c, false)
}

/// Classifies by parsing, always: [`Classified::tables`] is filled in.
pub fn classify_parsed(sql: &str) -> Classified {
    let body = skip_comments_and_space(sql);
    let mut c = parse(body);
    annotate(&mut c, body);
    c
}

fn parse(body: &str) -> Classified {
    let stmts = match Parser::parse_sql(&MySqlDialect {}, body) {
        Ok(s) if !s.is_empty() => s,
        _ => {
            let mut c = Classified::new(Kind::Write);
            c.parsed = false;
            // Still say what the text shows, for logs and metrics.
            c.locking = contains_ci(body.as_bytes(), b"FOR UPDATE")
                || contains_ci(body.as_bytes(), b"LOCK IN SHARE MODE")
                || contains_ci(body.as_bytes(), b"FOR SHARE");
            return c;
        }
    };
    let mut out = of_statement(&stmts[0]);
    for s in &stmts[1..] {
        let next = of_statement(s);
        // Several statements: the most demanding one decides.
        if next.kind != Kind::Read {
            out.kind = Kind::Write;
        }
        out.locking |= next.locking;
        out.select_into |= next.select_into;
        out.side_effects |= next.side_effects;
        merge_session(&mut out.session, next.session);
        out.tables.extend(next.tables);
    }
    out.multi = stmts.len() > 1;
    out
}

fn merge_session(a: &mut SessionUse, b: SessionUse) {
    a.last_statement_info |= b.last_statement_info;
    a.reads_user_vars |= b.reads_user_vars;
    a.sets_user_vars |= b.sets_user_vars;
    a.named_locks |= b.named_locks;
    a.temp_tables |= b.temp_tables;
}

fn of_statement(stmt: &Statement) -> Classified {
    let mut c = match stmt {
        Statement::Query(q) => {
            // `WITH ... DELETE/UPDATE/INSERT` also parses as a query.
            let kind = if is_read_body(&q.body) {
                Kind::Read
            } else {
                Kind::Write
            };
            let mut c = Classified::new(kind);
            c.locking = has_locking_clause(stmt);
            c.select_into = select_into(&q.body);
            if c.select_into {
                c.session.sets_user_vars = true;
            }
            c
        }
        Statement::StartTransaction { modifier: _, .. } => {
            let text = stmt.to_string().to_ascii_uppercase();
            if text.contains("READ ONLY") {
                Classified::new(Kind::Transaction(TxnOp::BeginReadOnly))
            } else {
                Classified::new(Kind::Transaction(TxnOp::Begin))
            }
        }
        Statement::Commit { .. } => Classified::new(Kind::Transaction(TxnOp::Commit)),
        Statement::Rollback { savepoint, .. } => {
            Classified::new(Kind::Transaction(if savepoint.is_some() {
                TxnOp::Savepoint
            } else {
                TxnOp::Rollback
            }))
        }
        Statement::Savepoint { .. } | Statement::ReleaseSavepoint { .. } => {
            Classified::new(Kind::Transaction(TxnOp::Savepoint))
        }
        Statement::Use(u) => {
            let text = u.to_string();
            let name = text
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .trim()
                .trim_matches('`')
                .to_string();
            Classified::new(Kind::Use(name))
        }
        Statement::Set(_) => set_statement(stmt),
        Statement::ShowVariables { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowCreate { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowCollation { .. }
        | Statement::ExplainTable { .. } => Classified::new(Kind::Read),
        Statement::Explain { analyze, .. } => {
            Classified::new(if *analyze { Kind::Write } else { Kind::Read })
        }
        Statement::CreateTable(ct) => {
            let mut c = Classified::new(Kind::Write);
            c.session.temp_tables = ct.temporary;
            c
        }
        Statement::Drop { temporary, .. } => {
            let mut c = Classified::new(Kind::Write);
            c.session.temp_tables = *temporary;
            c
        }
        _ => Classified::new(Kind::Write),
    };
    scan_expressions(stmt, &mut c);
    let _ = visit_relations(stmt, |name| {
        c.tables.push(name.to_string().to_ascii_lowercase());
        ControlFlow::<()>::Continue(())
    });
    c
}

/// A query body that only reads: SELECT, VALUES, TABLE, and set operations
/// or parentheses over those. DML bodies (`WITH ... DELETE`) are writes.
fn is_read_body(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(_) | SetExpr::Values(_) | SetExpr::Table(_) => true,
        SetExpr::Query(q) => is_read_body(&q.body),
        SetExpr::SetOperation { left, right, .. } => is_read_body(left) && is_read_body(right),
        _ => false,
    }
}

/// A locking clause anywhere: the top query, parenthesised queries, set
/// operation branches, derived tables and subqueries.
fn has_locking_clause(stmt: &Statement) -> bool {
    struct Locks;
    impl Visitor for Locks {
        type Break = ();
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            if query.locks.is_empty() {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        }
    }
    stmt.visit(&mut Locks).is_break()
}

fn select_into(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(s) => s.into.is_some(),
        SetExpr::Query(q) => select_into(&q.body),
        SetExpr::SetOperation { left, right, .. } => select_into(left) || select_into(right),
        _ => false,
    }
}

fn set_statement(stmt: &Statement) -> Classified {
    let text = stmt.to_string();
    let squeezed: String = text
        .to_ascii_uppercase()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let mut c = Classified::new(match autocommit_in(&text) {
        Some(v) => Kind::Transaction(TxnOp::Autocommit(v)),
        None => Kind::SetSession,
    });
    if squeezed.contains("SETGLOBAL")
        || squeezed.contains("@@GLOBAL.")
        || squeezed.contains("SETPERSIST")
        || squeezed.contains("@@PERSIST")
    {
        c.kind = Kind::Write;
    }
    c.session.sets_user_vars = sets_user_var(&text);
    c
}

/// Whether a `SET` assigns a user variable (`@x`, not `@@system`).
fn sets_user_var(set: &str) -> bool {
    let body = set.trim_start();
    let body = body.get(3..).unwrap_or("");
    body.split(',').any(|a| {
        let a = a.trim_start();
        a.starts_with('@') && !a.starts_with("@@")
    })
}

/// The value `autocommit` is set to anywhere in a `SET` statement:
/// `SET autocommit=0`, `SET @x=1, autocommit='OFF'`, `SET @@session.autocommit := 1`.
fn autocommit_in(body: &str) -> Option<bool> {
    let squeezed: String = body
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    let rest = squeezed.strip_prefix("SET")?;
    let mut found = None;
    for assignment in rest.split(',') {
        let a = assignment.trim_end_matches(';');
        let a = ["SESSION", "LOCAL", "@@SESSION.", "@@LOCAL.", "@@"]
            .iter()
            .find_map(|p| a.strip_prefix(p))
            .unwrap_or(a);
        let Some(value) = a
            .strip_prefix("AUTOCOMMIT:=")
            .or_else(|| a.strip_prefix("AUTOCOMMIT="))
        else {
            continue;
        };
        found = match value.trim_matches(|c| c == '\'' || c == '"') {
            "0" | "OFF" | "FALSE" => Some(false),
            "1" | "ON" | "TRUE" => Some(true),
            _ => found,
        };
    }
    found
}

fn scan_expressions(stmt: &Statement, c: &mut Classified) {
    let _ = visit_expressions(stmt, |e| {
        match e {
            Expr::Function(f) => {
                let name = f.name.to_string().to_ascii_lowercase();
                let name = name.rsplit('.').next().unwrap_or(&name).to_string();
                if SIDE_EFFECT_FUNCTIONS.contains(&name.as_str()) {
                    c.side_effects = true;
                }
                if NAMED_LOCK_FUNCTIONS.contains(&name.as_str()) {
                    c.session.named_locks = true;
                }
                if LAST_STATEMENT_FUNCTIONS.contains(&name.as_str()) {
                    c.session.last_statement_info = true;
                    // LAST_INSERT_ID(expr) sets the value for the session.
                    if name == "last_insert_id" && f.args.to_string().trim() != "()" {
                        c.side_effects = true;
                    }
                }
            }
            Expr::Identifier(id) if is_user_var(&id.value) => {
                c.session.reads_user_vars = true;
            }
            Expr::CompoundIdentifier(ids) if ids.first().is_some_and(|i| is_user_var(&i.value)) => {
                c.session.reads_user_vars = true;
            }
            Expr::BinaryOp {
                op: BinaryOperator::Assignment,
                ..
            } => {
                c.session.sets_user_vars = true;
                c.side_effects = true;
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
}

fn is_user_var(name: &str) -> bool {
    name.starts_with('@') && !name.starts_with("@@")
}

/// Skips whitespace and comments (`/* */`, `-- `, `#`), except MySQL's
/// executable comments (`/*! ... */`, `/*+ ... */`) which are part of the
/// statement.
pub fn skip_comments_and_space(mut s: &str) -> &str {
    loop {
        s = s.trim_start();
        if s.starts_with("/*") && !s.starts_with("/*!") && !s.starts_with("/*+") {
            match s.find("*/") {
                Some(end) => s = &s[end + 2..],
                None => return "",
            }
        } else if s.starts_with("-- ")
            || s.starts_with("--\t")
            || s.starts_with("--\n")
            || s == "--"
            || s.starts_with('#')
        {
            match s.find('\n') {
                Some(end) => s = &s[end + 1..],
                None => return "",
            }
        } else {
            return s;
        }
    }
}

/// The first word of a statement (after comments) as written, at most 16
/// letters: compare it ignoring case. No allocation (it runs per statement).
pub fn first_word(sql: &str) -> &str {
    word_at_start(skip_comments_and_space(sql))
}

/// The word `s` starts with (letters and `_`, at most 16), as written.
fn word_at_start(s: &str) -> &str {
    let n = s
        .bytes()
        .take(16)
        .take_while(|b| b.is_ascii_alphabetic() || *b == b'_')
        .count();
    &s[..n]
}

fn leading_word(s: &str) -> String {
    word_at_start(s).to_ascii_uppercase()
}

fn contains_risky(body: &str) -> bool {
    let b = body.as_bytes();
    RISKY.iter().any(|w| contains_ci(b, w))
        || SIDE_EFFECT_FUNCTIONS
            .iter()
            .any(|f| contains_ci(b, f.as_bytes()))
        || b.windows(4)
            .any(|w| w[..3].eq_ignore_ascii_case(b"FOR") && w[3].is_ascii_whitespace())
}

/// Whether `needle` occurs in `hay`, ASCII case-insensitively.
pub(crate) fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len()
        && hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

fn contains_word(body: &str, word: &str) -> bool {
    body.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .any(|w| w.eq_ignore_ascii_case(word))
}

/// After the first `skip` bytes (the leading word), only whitespace, a
/// trailing `;` or one of `allowed` words remain.
fn rest_is_empty(body: &str, skip: usize, allowed: &[&str]) -> bool {
    let rest = body
        .get(skip..)
        .unwrap_or("")
        .trim()
        .trim_end_matches(';')
        .trim();
    rest.is_empty() || allowed.iter().any(|a| rest.eq_ignore_ascii_case(a))
}

#[cfg(test)]
#[path = "classify_tests.rs"]
mod tests;
