use super::*;

fn read(sql: &str) {
    let c = classify(sql);
    assert!(c.is_plain_read(), "{sql:?} should be a plain read: {c:?}");
    let p = classify_parsed(sql);
    assert!(
        p.is_plain_read(),
        "{sql:?} parsed should be a plain read: {p:?}"
    );
}

fn writer(sql: &str) {
    let c = classify(sql);
    assert!(
        !c.is_plain_read(),
        "{sql:?} must not be a plain read: {c:?}"
    );
}

#[test]
fn plain_reads() {
    read("SELECT 1");
    read("select * from t where id = 5");
    read("  \n SELECT a, b FROM t JOIN u ON t.id = u.id ORDER BY a LIMIT 10");
    read("/* app:42 */ SELECT c FROM sbtest1 WHERE id=7");
    read("-- a comment\nSELECT 1");
    read("# hash comment\nSELECT 1");
    read("WITH x AS (SELECT 1 AS a) SELECT a FROM x");
    read("SELECT COUNT(*) FROM t GROUP BY k HAVING COUNT(*) > 1");
    read("(SELECT 1) UNION (SELECT 2)");
    read("SHOW TABLES");
    read("DESCRIBE t");
    read("EXPLAIN SELECT * FROM t");
    read("SELECT 'FOR UPDATE' FROM t");
}

#[test]
fn writes_and_ddl() {
    for sql in [
        "INSERT INTO t VALUES (1)",
        "update t set a = 1",
        "DELETE FROM t WHERE id = 1",
        "REPLACE INTO t VALUES (1)",
        "CREATE TABLE t (id INT)",
        "ALTER TABLE t ADD COLUMN b INT",
        "DROP TABLE t",
        "TRUNCATE TABLE t",
        "CALL p()",
        "LOCK TABLES t READ",
        "SET GLOBAL max_connections = 10",
        "EXPLAIN ANALYZE SELECT * FROM t",
        "INSERT INTO t SELECT * FROM u",
    ] {
        let c = classify(sql);
        assert_eq!(c.kind, Kind::Write, "{sql}: {c:?}");
    }
}

#[test]
fn locking_reads_and_into_go_to_the_writer() {
    for sql in [
        "SELECT * FROM t WHERE id = 1 FOR UPDATE",
        "SELECT * FROM t WHERE id = 1 FOR SHARE",
        "SELECT * FROM t WHERE id = 1 LOCK IN SHARE MODE",
        "select * from t for update nowait",
    ] {
        let c = classify(sql);
        assert!(c.locking, "{sql}: {c:?}");
        writer(sql);
    }
    let c = classify("SELECT a INTO @x FROM t LIMIT 1");
    assert!(c.select_into && c.session.sets_user_vars, "{c:?}");
    writer("SELECT a INTO OUTFILE '/tmp/x' FROM t");
}

#[test]
fn side_effects_and_session_state() {
    let c = classify("SELECT GET_LOCK('x', 10)");
    assert!(c.side_effects && c.session.named_locks, "{c:?}");
    let c = classify("SELECT SLEEP(1)");
    assert!(c.side_effects, "{c:?}");
    let c = classify("SELECT LAST_INSERT_ID()");
    assert!(c.session.last_statement_info && !c.side_effects, "{c:?}");
    let c = classify("SELECT LAST_INSERT_ID(42)");
    assert!(c.side_effects, "{c:?}");
    let c = classify("select found_rows()");
    assert!(c.session.last_statement_info, "{c:?}");
    let c = classify("SELECT ROW_COUNT()");
    assert!(c.session.last_statement_info, "{c:?}");
    let c = classify("SELECT * FROM t WHERE id = @id");
    assert!(c.session.reads_user_vars, "{c:?}");
    let c = classify("SELECT @@version");
    assert!(
        c.is_plain_read(),
        "system variables are not session state: {c:?}"
    );
    let c = classify("SELECT @n := @n + 1 FROM t");
    assert!(c.session.sets_user_vars, "{c:?}");
    // A read; the session keeps its connection for the FOUND_ROWS() that
    // follows (see session::state).
    let c = classify("SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1");
    assert!(c.found_rows_calc, "{c:?}");
    let c = classify("SELECT FOUND_ROWS()");
    assert!(c.row_info && c.session.last_statement_info, "{c:?}");
    let c = classify("INSERT INTO t VALUES (LAST_INSERT_ID())");
    assert!(c.last_insert_id && !c.row_info, "{c:?}");
    let c = classify("SELECT 1 FROM t WHERE sql_calc_found_rows_x = 1");
    assert!(!c.row_info, "{c:?}");
    assert!(classify("CALL p()").opaque);
}

#[test]
fn transactions() {
    use TxnOp::*;
    for (sql, op) in [
        ("BEGIN", Begin),
        ("begin work", Begin),
        ("START TRANSACTION", Begin),
        ("START TRANSACTION READ WRITE", Begin),
        ("START TRANSACTION READ ONLY", BeginReadOnly),
        (
            "start transaction read only, with consistent snapshot",
            BeginReadOnly,
        ),
        ("COMMIT", Commit),
        ("commit;", Commit),
        ("ROLLBACK", Rollback),
        ("ROLLBACK TO SAVEPOINT s1", Savepoint),
        ("SAVEPOINT s1", Savepoint),
        ("RELEASE SAVEPOINT s1", Savepoint),
        ("SET autocommit = 0", Autocommit(false)),
        ("SET autocommit=1", Autocommit(true)),
        ("set @@session.autocommit = OFF", Autocommit(false)),
        ("SET SESSION autocommit = ON", Autocommit(true)),
    ] {
        assert_eq!(classify(sql).kind, Kind::Transaction(op), "{sql}");
    }
}

#[test]
fn session_statements() {
    assert_eq!(classify("USE shop").kind, Kind::Use("shop".into()));
    assert_eq!(classify("use `my db`").kind, Kind::Use("my db".into()));
    assert_eq!(classify("SET NAMES utf8mb4").kind, Kind::SetSession);
    assert_eq!(
        classify("SET sql_mode = 'STRICT_ALL_TABLES'").kind,
        Kind::SetSession
    );
    assert_eq!(classify("SET time_zone = '+00:00'").kind, Kind::SetSession);
    let c = classify("SET @x = 5");
    assert_eq!(c.kind, Kind::SetSession);
    assert!(c.session.sets_user_vars, "{c:?}");
}

#[test]
fn temporary_tables() {
    let c = classify("CREATE TEMPORARY TABLE tmp (id INT)");
    assert!(c.session.temp_tables && c.kind == Kind::Write, "{c:?}");
    let c = classify("DROP TEMPORARY TABLE tmp");
    assert!(c.session.temp_tables, "{c:?}");
    let c = classify_parsed("SELECT * FROM tmp JOIN shop.items i ON 1=1");
    assert!(c.tables.contains(&"tmp".to_string()), "{c:?}");
    assert!(c.tables.contains(&"shop.items".to_string()), "{c:?}");
}

#[test]
fn unparseable_and_multi_statements_go_to_the_writer() {
    let c = classify("SELEC 1");
    assert!(!c.parsed && c.kind == Kind::Write, "{c:?}");
    let c = classify("SELECT 1; SELECT 2");
    assert!(c.multi && !c.is_plain_read(), "{c:?}");
    let c = classify("SELECT 1; DELETE FROM t");
    assert_eq!(c.kind, Kind::Write);
    let c = classify("");
    assert!(!c.parsed, "{c:?}");
    // Never panics on odd input.
    for s in [
        "/*",
        "--",
        "#",
        "/* unterminated",
        "SELECT '",
        "\0\0",
        "é",
        ";;;",
    ] {
        let _ = classify(s);
        let _ = classify_parsed(s);
    }
}

#[test]
fn executable_comments_are_part_of_the_statement() {
    // MySQL runs /*! ... */ contents: never skip them as plain comments.
    let c = classify("/*!40101 SET NAMES utf8 */");
    assert!(!c.is_plain_read(), "{c:?}");
}

mod laws {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any text, valid SQL or not, is classified without a panic.
        #[test]
        fn never_panics(s in "\\PC{0,200}") {
            let _ = classify(&s);
            let _ = classify_parsed(&s);
        }

        /// SQL-looking noise too (keywords, quotes, comments, separators).
        #[test]
        fn never_panics_on_sql_fragments(parts in proptest::collection::vec(
            prop_oneof![
                Just("SELECT"), Just("FROM"), Just("FOR UPDATE"), Just("INTO"), Just("@x"),
                Just(":="), Just("'"), Just("\""), Just("`"), Just("/*"), Just("*/"),
                Just("--"), Just("#"), Just(";"), Just("("), Just(")"), Just("WITH"),
                Just("UNION"), Just("t"), Just("1"), Just("\n"), Just("/*!"),
            ], 0..20)) {
            let s = parts.join(" ");
            let _ = classify(&s);
            let _ = classify_parsed(&s);
        }

        /// The fast path never calls a statement a plain read when the
        /// parser would not (it may only be more careful).
        #[test]
        fn fast_path_is_never_bolder_than_the_parser(
            cols in proptest::collection::vec("c_[a-z]{1,6}", 1..4),
            table in "t_[a-z]{1,6}",
            n in 0u32..1000,
            suffix in prop_oneof![
                Just(""), Just(" ORDER BY 1"), Just(" LIMIT 5"), Just(" FOR UPDATE"),
                Just(" LOCK IN SHARE MODE"), Just(" FOR SHARE"),
            ],
        ) {
            let sql = format!("SELECT {} FROM {table} WHERE id = {n}{suffix}", cols.join(", "));
            let fast = classify(&sql);
            let parsed = classify_parsed(&sql);
            prop_assert!(!fast.is_plain_read() || parsed.is_plain_read(), "{sql}: {fast:?} vs {parsed:?}");
            prop_assert_eq!(fast.is_plain_read(), suffix.is_empty() || !suffix.contains("FOR") && !suffix.contains("LOCK"), "{}", sql);
        }
    }
}

#[test]
fn review_findings_stay_fixed() {
    // WITH ... DELETE/UPDATE parse as queries but write.
    for sql in [
        "WITH c AS (SELECT 1) DELETE FROM t WHERE id IN (SELECT * FROM c)",
        "WITH c AS (SELECT 1) UPDATE t SET a = 1",
    ] {
        let c = classify(sql);
        assert_eq!(c.kind, Kind::Write, "{sql}: {c:?}");
    }
    // Locking clauses anywhere, not only at the top.
    for sql in [
        "(SELECT * FROM t WHERE id = 1 FOR UPDATE)",
        "(SELECT 1 FROM t FOR UPDATE) UNION (SELECT 2 FROM u)",
        "SELECT * FROM (SELECT * FROM t FOR UPDATE) x",
        "SELECT * FROM t WHERE a IN (SELECT a FROM u FOR UPDATE)",
        "SELECT * FROM t WHERE id=1 FOR\tUPDATE",
        "select * from t where id=1 for\r\nupdate",
        "SELECT * FROM t FOR\tSHARE",
    ] {
        let c = classify(sql);
        assert!(c.locking && !c.is_plain_read(), "{sql:?}: {c:?}");
    }
    // Side-effect functions the fast path used to let through.
    for sql in [
        "SELECT BENCHMARK(1, 1)",
        "SELECT LOAD_FILE('/etc/passwd')",
        "SELECT SOURCE_POS_WAIT('f', 4)",
        "SELECT WAIT_FOR_EXECUTED_GTID_SET('u:1')",
    ] {
        let c = classify(sql);
        assert!(c.side_effects && !c.is_plain_read(), "{sql}: {c:?}");
    }
    // autocommit anywhere in a SET, quoted, with :=.
    use TxnOp::Autocommit;
    for (sql, v) in [
        ("SET @x=1, autocommit=0", false),
        ("SET autocommit='OFF'", false),
        ("SET @@autocommit := 0", false),
        ("SET sql_mode='', SESSION autocommit = 1", true),
    ] {
        assert_eq!(
            classify(sql).kind,
            Kind::Transaction(Autocommit(v)),
            "{sql}"
        );
    }
    assert!(classify("SET @x=1, autocommit=0").session.sets_user_vars);
    assert!(!classify("SET autocommit=0").session.sets_user_vars);
}
