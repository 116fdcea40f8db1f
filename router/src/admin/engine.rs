//! The admin tables' SQL engine: SQLite in memory, a fresh database per
//! query filled with snapshot rows, read-only once filled, bounded in time
//! and in result size. Pure apart from SQLite itself: no sockets, no
//! router state (the caller brings the rows).

use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use rusqlite::{params_from_iter, Connection};

/// A column type of a snapshot table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 64-bit integer.
    Int,
    /// Floating point.
    Real,
    /// Text.
    Text,
}

impl Kind {
    fn sql(self) -> &'static str {
        match self {
            Kind::Int => "INTEGER",
            Kind::Real => "REAL",
            Kind::Text => "TEXT",
        }
    }
}

/// A value in a snapshot row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// NULL.
    Null,
    /// An integer.
    Int(i64),
    /// A float.
    Real(f64),
    /// Text.
    Text(String),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Value::from(v as u64)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(v.into())
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map(Into::into).unwrap_or(Value::Null)
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value as V};
        Ok(ToSqlOutput::Owned(match self {
            Value::Null => V::Null,
            Value::Int(v) => V::Integer(*v),
            Value::Real(v) => V::Real(*v),
            Value::Text(s) => V::Text(s.clone()),
        }))
    }
}

/// The shape of a snapshot table.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// Its name.
    pub name: &'static str,
    /// What it shows (for `SHOW TABLES`).
    pub about: &'static str,
    /// Its columns.
    pub columns: &'static [(&'static str, Kind)],
}

/// A snapshot table: its shape and rows (`None`: not asked for, left
/// empty).
#[derive(Debug, Clone)]
pub struct Table {
    /// Its shape.
    pub schema: &'static Schema,
    /// Its rows, each as long as the columns.
    pub rows: Vec<Vec<Value>>,
}

/// What a query answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// Column names and types.
    pub columns: Vec<(String, Kind)>,
    /// Rows of values as text (`None`: NULL).
    pub rows: Vec<Vec<Option<String>>>,
}

/// Bounds on one query.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// It ends when this long has passed.
    pub timeout: Duration,
    /// At most this many rows.
    pub max_rows: usize,
    /// At most this many bytes of values.
    pub max_bytes: usize,
}

/// Why a query failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// SQLite could not compile it.
    #[error("{0}")]
    Syntax(String),
    /// It names a table there is not.
    #[error("Table '{0}' doesn't exist")]
    NoSuchTable(String),
    /// It would write.
    #[error("the admin tables are read-only")]
    ReadOnly,
    /// It ran past the timeout.
    #[error("the query ran past admin.query_timeout ({0:?}) and was stopped")]
    Timeout(Duration),
    /// Its result is too large.
    #[error("the result is larger than {0}; narrow it with WHERE or LIMIT")]
    TooLarge(String),
    /// More than one statement.
    #[error("one statement at a time")]
    Multiple,
    /// Anything else SQLite said.
    #[error("{0}")]
    Other(String),
}

/// Functions MySQL clients call, answered by the caller.
#[derive(Debug, Clone, Default)]
pub struct Session {
    /// `USER()`, `CURRENT_USER()`.
    pub user: String,
    /// `CONNECTION_ID()`.
    pub id: u32,
    /// `VERSION()`.
    pub version: String,
}

/// Runs `sql` over `tables`.
pub fn run(
    tables: &[Table],
    sql: &str,
    session: &Session,
    limits: Limits,
) -> Result<Answer, EngineError> {
    let db = Connection::open_in_memory().map_err(other)?;
    fill(&db, tables)?;
    functions(&db, session)?;
    db.pragma_update(None, "query_only", true).map_err(other)?;
    db.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_ATTACHED, 0)
        .map_err(other)?;
    // No single value (a randomblob(), a repeat()) larger than the answer
    // may be.
    let length = i32::try_from(limits.max_bytes)
        .unwrap_or(i32::MAX)
        .max(1 << 20);
    db.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, length)
        .map_err(other)?;
    let deadline = Instant::now() + limits.timeout;
    db.progress_handler(1000, Some(move || Instant::now() > deadline));
    let res = query(&db, sql, limits);
    match res {
        Err(EngineError::Other(m)) if Instant::now() > deadline || m.contains("interrupt") => {
            Err(EngineError::Timeout(limits.timeout))
        }
        r => r,
    }
}

fn query(db: &Connection, sql: &str, limits: Limits) -> Result<Answer, EngineError> {
    let mut stmt = db.prepare(sql).map_err(compile_error)?;
    if !stmt.readonly() {
        return Err(EngineError::ReadOnly);
    }
    let declared: Vec<Option<Kind>> = stmt
        .columns()
        .iter()
        .map(
            |c| match c.decl_type().map(str::to_ascii_uppercase).as_deref() {
                Some("INTEGER") => Some(Kind::Int),
                Some("REAL") => Some(Kind::Real),
                Some("TEXT") => Some(Kind::Text),
                _ => None,
            },
        )
        .collect();
    let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
    let n = names.len();
    let mut seen: Vec<Option<Kind>> = vec![None; n];
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let mut rows = stmt.query([]).map_err(other)?;
    while let Some(row) = rows.next().map_err(other)? {
        if out.len() >= limits.max_rows {
            return Err(EngineError::TooLarge(format!("{} rows", limits.max_rows)));
        }
        let mut values = Vec::with_capacity(n);
        for (i, seen) in seen.iter_mut().enumerate() {
            let v = match row.get_ref(i).map_err(other)? {
                ValueRef::Null => None,
                ValueRef::Integer(v) => {
                    seen.get_or_insert(Kind::Int);
                    Some(v.to_string())
                }
                ValueRef::Real(v) => {
                    seen.get_or_insert(Kind::Real);
                    Some(v.to_string())
                }
                ValueRef::Text(t) | ValueRef::Blob(t) => {
                    seen.get_or_insert(Kind::Text);
                    // Counted before it is copied.
                    bytes += t.len();
                    if bytes > limits.max_bytes {
                        return Err(too_large(limits));
                    }
                    Some(String::from_utf8_lossy(t).into_owned())
                }
            };
            // What a value costs beyond its bytes.
            bytes += std::mem::size_of::<Option<String>>() + v.as_ref().map_or(0, String::len);
            values.push(v);
        }
        if bytes > limits.max_bytes {
            return Err(too_large(limits));
        }
        out.push(values);
    }
    let columns = names
        .into_iter()
        .zip(declared.into_iter().zip(seen))
        .map(|(name, (d, s))| (name, d.or(s).unwrap_or(Kind::Text)))
        .collect();
    Ok(Answer { columns, rows: out })
}

fn too_large(limits: Limits) -> EngineError {
    EngineError::TooLarge(format!("{} bytes", limits.max_bytes))
}

fn fill(db: &Connection, tables: &[Table]) -> Result<(), EngineError> {
    for t in tables {
        let cols: Vec<String> = t
            .schema
            .columns
            .iter()
            .map(|(c, k)| format!("\"{c}\" {}", k.sql()))
            .collect();
        db.execute_batch(&format!(
            "CREATE TABLE \"{}\" ({})",
            t.schema.name,
            cols.join(", ")
        ))
        .map_err(other)?;
        if t.rows.is_empty() {
            continue;
        }
        let marks = vec!["?"; t.schema.columns.len()].join(", ");
        let tx = db.unchecked_transaction().map_err(other)?;
        {
            let mut insert = tx
                .prepare(&format!(
                    "INSERT INTO \"{}\" VALUES ({marks})",
                    t.schema.name
                ))
                .map_err(other)?;
            for row in &t.rows {
                insert
                    .execute(params_from_iter(row.iter()))
                    .map_err(other)?;
            }
        }
        tx.commit().map_err(other)?;
    }
    Ok(())
}

fn functions(db: &Connection, s: &Session) -> Result<(), EngineError> {
    use rusqlite::functions::FunctionFlags;
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    let text = |name: &'static str, value: String| {
        db.create_scalar_function(name, 0, flags, move |_| Ok(value.clone()))
    };
    text("database", "main".into()).map_err(other)?;
    text("schema", "main".into()).map_err(other)?;
    text("user", format!("{}@localhost", s.user)).map_err(other)?;
    text("current_user", format!("{}@localhost", s.user)).map_err(other)?;
    text("version", s.version.clone()).map_err(other)?;
    let id = s.id;
    db.create_scalar_function("connection_id", 0, flags, move |_| Ok(i64::from(id)))
        .map_err(other)?;
    db.create_scalar_function("now", 0, flags, |_| {
        Ok(format_time(std::time::SystemTime::now()))
    })
    .map_err(other)?;
    Ok(())
}

/// A time as the admin tables show it (RFC 3339, UTC, seconds).
pub fn format_time(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn other(e: rusqlite::Error) -> EngineError {
    EngineError::Other(e.to_string())
}

fn compile_error(e: rusqlite::Error) -> EngineError {
    let m = e.to_string();
    if matches!(e, rusqlite::Error::MultipleStatement) {
        return EngineError::Multiple;
    }
    if let Some(t) = m.strip_prefix("no such table: ") {
        return EngineError::NoSuchTable(t.trim_start_matches("main.").to_string());
    }
    if m.contains("readonly") || m.contains("read-only") {
        return EngineError::ReadOnly;
    }
    EngineError::Syntax(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    static PEOPLE: Schema = Schema {
        name: "people",
        about: "test",
        columns: &[
            ("name", Kind::Text),
            ("age", Kind::Int),
            ("score", Kind::Real),
        ],
    };
    static PETS: Schema = Schema {
        name: "pets",
        about: "test",
        columns: &[("owner", Kind::Text), ("pet", Kind::Text)],
    };

    fn tables() -> Vec<Table> {
        vec![
            Table {
                schema: &PEOPLE,
                rows: vec![
                    vec!["ann".into(), 31i64.into(), 1.5.into()],
                    vec!["bob".into(), 25i64.into(), Value::Null],
                ],
            },
            Table {
                schema: &PETS,
                rows: vec![vec!["ann".into(), "cat".into()]],
            },
        ]
    }

    fn limits() -> Limits {
        Limits {
            timeout: Duration::from_secs(5),
            max_rows: 1000,
            max_bytes: 1 << 20,
        }
    }

    fn ask(sql: &str) -> Result<Answer, EngineError> {
        let s = Session {
            user: "ops".into(),
            id: 9,
            version: "v".into(),
        };
        run(&tables(), sql, &s, limits())
    }

    #[test]
    fn selects_filter_order_join_and_keep_types() {
        let a =
            ask("SELECT name, age, score FROM people WHERE age > 20 ORDER BY age LIMIT 5").unwrap();
        assert_eq!(
            a.columns,
            vec![
                ("name".into(), Kind::Text),
                ("age".into(), Kind::Int),
                ("score".into(), Kind::Real)
            ]
        );
        assert_eq!(a.rows[0], vec![Some("bob".into()), Some("25".into()), None]);
        assert_eq!(a.rows[1][2].as_deref(), Some("1.5"));
        let a = ask("SELECT p.name, q.pet FROM people p JOIN pets q ON q.owner = p.name").unwrap();
        assert_eq!(a.rows, vec![vec![Some("ann".into()), Some("cat".into())]]);
        let a = ask("SELECT connection_id() AS id, user() AS u, database() AS d").unwrap();
        assert_eq!(
            a.rows[0],
            vec![
                Some("9".into()),
                Some("ops@localhost".into()),
                Some("main".into())
            ]
        );
    }

    #[test]
    fn bad_queries_fail_clearly() {
        assert_eq!(
            ask("SELECT * FROM nope"),
            Err(EngineError::NoSuchTable("nope".into()))
        );
        assert!(matches!(ask("SELEC 1"), Err(EngineError::Syntax(_))));
        assert_eq!(
            ask("WITH x AS (SELECT 1) DELETE FROM people"),
            Err(EngineError::ReadOnly)
        );
        assert_eq!(ask("SELECT 1; SELECT 2"), Err(EngineError::Multiple));
        assert!(ask("ATTACH DATABASE '/tmp/x.db' AS x").is_err());
    }

    #[test]
    fn runaway_queries_stop_at_the_timeout_and_results_are_bounded() {
        let s = Session::default();
        let short = Limits {
            timeout: Duration::from_millis(50),
            ..limits()
        };
        let r = run(
            &tables(),
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) \
             SELECT count(*) FROM n",
            &s,
            short,
        );
        assert_eq!(r, Err(EngineError::Timeout(Duration::from_millis(50))));
        let few = Limits {
            max_rows: 10,
            ..limits()
        };
        let r = run(
            &tables(),
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) \
             SELECT i FROM n",
            &s,
            few,
        );
        assert!(matches!(r, Err(EngineError::TooLarge(_))), "{r:?}");
        let small = Limits {
            max_bytes: 1 << 20,
            ..limits()
        };
        let r = run(&tables(), "SELECT randomblob(100000000)", &s, small);
        assert!(
            r.is_err(),
            "a value past the limit is refused by SQLite: {r:?}"
        );
        let r = run(
            &tables(),
            "SELECT zeroblob(900000) AS a, zeroblob(900000) AS b",
            &s,
            small,
        );
        assert!(matches!(r, Err(EngineError::TooLarge(_))), "{r:?}");
    }
}
