//! What a connection must run before it serves a session: pure.
//!
//! The session keeps what it *wants* ([`Wanted`]: its schema, the system
//! variables the server's tracker reported it set, the next transaction's
//! characteristics, its user variables, the multi-statements option), and
//! every backend connection keeps what it *has* ([`ConnState`], carried
//! with it through the pool). [`replay`] is the difference, as little as
//! can bring one to the other, sent in one round trip:
//!
//! ```text
//! COM_INIT_DB <schema>                       when the schemas differ
//! SET @@SESSION.x = DEFAULT, ...,            variables the connection has and the session does not
//!     @@SESSION.y = <value>, ...,            the session's variables from the first that differs on
//!     @u = <literal>, @v = NULL, ...,        user variables that differ / the session never set
//!     @@SESSION.last_insert_id = <n>         when the statement reads LAST_INSERT_ID()
//! SET @@transaction_isolation = ..., ...     the connection's next-transaction characteristics cleared
//! SET TRANSACTION ...; SET TRANSACTION ...   the session's, one COM_QUERY each
//! COM_SET_OPTION                             when the multi-statements option differs
//! ```
//! Nothing that is already in place is sent: a connection the session gets
//! back in the state it left it costs no replay at all.

use std::collections::BTreeMap;

use bytes::Bytes;

/// System variables set in a session, in the order they were last set
/// (some depend on others: `collation_connection` after
/// `character_set_connection`). Names are lowercase.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars(Vec<(Bytes, Bytes)>);

impl Vars {
    /// Records `name = value`, moving `name` to the end.
    pub fn set(&mut self, name: &[u8], value: &[u8]) {
        self.0.retain(|(n, _)| n != name);
        self.0.push((
            Bytes::copy_from_slice(&name.to_ascii_lowercase()),
            Bytes::copy_from_slice(value),
        ));
    }

    /// The value of `name`.
    pub fn get(&self, name: &[u8]) -> Option<&Bytes> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Every variable, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.0.iter().map(|(n, v)| (n, v))
    }

    /// None set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Forgets every variable.
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// `session_track_gtids` on a connection: what its OK packets report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum GtidTrack {
    /// Nothing.
    #[default]
    Off,
    /// The GTIDs of the connection's own transactions.
    Own,
    /// The server's whole executed set.
    All,
}

impl GtidTrack {
    /// The variable's value.
    pub fn sql(self) -> &'static str {
        match self {
            Self::Off => "OFF",
            Self::Own => "OWN_GTID",
            Self::All => "ALL_GTIDS",
        }
    }

    /// Parses the tracker's report of the variable.
    pub fn parse(value: &[u8]) -> Option<GtidTrack> {
        match value.to_ascii_uppercase().as_slice() {
            b"OFF" | b"0" => Some(Self::Off),
            b"OWN_GTID" | b"1" => Some(Self::Own),
            b"ALL_GTIDS" | b"2" => Some(Self::All),
            _ => None,
        }
    }
}

/// Where the character set variables stand when no statement set them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CharsetBase {
    /// The collation given at login (the handshake, COM_CHANGE_USER).
    #[default]
    Login,
    /// The server's global defaults: COM_RESET_CONNECTION puts them there.
    Server,
}

/// The variables the handshake's collation sets, in the order that keeps
/// the collation (`collation_connection` last).
const CHARSET_VARS: [&str; 4] = [
    "character_set_client",
    "character_set_results",
    "character_set_connection",
    "collation_connection",
];

/// What the session wants every connection it uses to have.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    /// Its default schema.
    pub schema: Option<Bytes>,
    /// System variables it set (as the tracker reported them).
    pub vars: Vars,
    /// `SET TRANSACTION ...` for its next transaction, as the tracker
    /// reported it (`SET TRANSACTION ISOLATION LEVEL SERIALIZABLE;`).
    pub characteristics: Option<Bytes>,
    /// User variables it set whose values are known, as SQL literals.
    pub user_vars: BTreeMap<Bytes, String>,
    /// The multi-statements option (`CLIENT_MULTI_STATEMENTS` at login,
    /// `COM_SET_OPTION` since).
    pub multi_statements: bool,
    /// GTID tracking its connections need (the router's, or the client's own).
    pub gtids: GtidTrack,
    /// Its character set variables where no statement set them.
    pub charset: CharsetBase,
}

/// What one backend connection has, kept with it in the pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnState {
    /// Its default schema.
    pub schema: Option<Bytes>,
    /// System variables set on it since login.
    pub vars: Vars,
    /// Characteristics set for its next transaction.
    pub characteristics: Option<Bytes>,
    /// User variables set on it: their literal when known, `None` when a
    /// statement set it and nobody read it back yet.
    pub user_vars: BTreeMap<Bytes, Option<String>>,
    /// Its multi-statements option.
    pub multi_statements: bool,
    /// Its `session_track_gtids`.
    pub gtids: GtidTrack,
    /// Its character set variables where no statement set them.
    pub charset: CharsetBase,
    /// The collation id it logged in with (0: unknown).
    pub login_collation: u8,
}

/// Statements that bring a connection to a session's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// `COM_INIT_DB` with this schema.
    pub init_db: Option<Bytes>,
    /// One `SET` statement.
    pub set: Option<String>,
    /// The next transaction's characteristics: the connection's own
    /// cleared, then each `SET TRANSACTION ...` of the session's, one
    /// statement per COM_QUERY.
    pub characteristics: Vec<String>,
    /// `COM_SET_OPTION` (true: multi-statements on).
    pub set_option: Option<bool>,
}

impl Replay {
    /// Nothing to run.
    pub fn is_empty(&self) -> bool {
        self.init_db.is_none()
            && self.set.is_none()
            && self.characteristics.is_empty()
            && self.set_option.is_none()
    }

    /// How many commands it sends.
    pub fn commands(&self) -> usize {
        usize::from(self.init_db.is_some())
            + usize::from(self.set.is_some())
            + self.characteristics.len()
            + usize::from(self.set_option.is_some())
    }
}

/// Gives the next transaction the session's own characteristics,
/// undoing a `SET TRANSACTION`.
const CLEAR_CHARACTERISTICS: &str =
    "SET @@transaction_isolation = @@SESSION.transaction_isolation, \
     @@transaction_read_only = @@SESSION.transaction_read_only";

/// What brings `conn` to `wanted`; with `last_insert_id`, the statement
/// also needs `LAST_INSERT_ID()` to return that value. `own` are user
/// variables the session itself assigned on this connection and has not
/// read back: they stay as they are. `None` when the connection cannot be
/// brought there (a schema cannot be unset: a session without one must not
/// get a connection that has one).
pub fn replay(
    wanted: &Wanted,
    conn: &ConnState,
    last_insert_id: Option<u64>,
    own: &[Bytes],
) -> Option<Replay> {
    let mut r = Replay::default();
    match (&wanted.schema, &conn.schema) {
        (Some(w), c) if c.as_ref() != Some(w) => r.init_db = Some(w.clone()),
        (None, Some(_)) => return None,
        _ => {}
    }
    let mut set: Vec<String> = Vec::new();
    let is_charset = |n: &[u8]| CHARSET_VARS.iter().any(|c| c.as_bytes() == n);
    let mut charset = wanted.charset != conn.charset;
    for (name, _) in conn.vars.iter() {
        if wanted.vars.get(name).is_none() {
            if is_charset(name) {
                // `DEFAULT` is the server's, not the login's.
                charset = true;
            } else {
                set.push(format!("@@SESSION.{} = DEFAULT", ident(name)));
            }
        }
    }
    if charset {
        let value = match (wanted.charset, conn.login_collation) {
            (CharsetBase::Login, id) if id != 0 => id.to_string(),
            _ => "DEFAULT".to_string(),
        };
        for name in CHARSET_VARS {
            set.push(format!("@@SESSION.{name} = {value}"));
        }
    }
    // From the first wanted variable that differs on, all of them, in
    // order: setting one may change a later one.
    let first_diff = wanted
        .vars
        .iter()
        .position(|(n, v)| conn.vars.get(n) != Some(v) || !set.is_empty());
    if let Some(k) = first_diff {
        for (name, value) in wanted.vars.iter().skip(k) {
            set.push(format!(
                "@@SESSION.{} = {}",
                ident(name),
                sysvar_literal(name, value)
            ));
        }
    }
    for (name, literal) in &wanted.user_vars {
        if conn.user_vars.get(name) != Some(&Some(literal.clone())) {
            set.push(format!("@{} = {literal}", user_var_name(name)));
        }
    }
    for name in conn.user_vars.keys() {
        if !wanted.user_vars.contains_key(name) && !own.contains(name) {
            set.push(format!("@{} = NULL", user_var_name(name)));
        }
    }
    if let Some(id) = last_insert_id {
        set.push(format!("@@SESSION.last_insert_id = {id}"));
    }
    if !set.is_empty() {
        r.set = Some(format!("SET {}", set.join(", ")));
    }
    if wanted.characteristics != conn.characteristics {
        if conn.characteristics.is_some() {
            // Back to the session's defaults: `@@x` without a scope is
            // the next transaction's.
            r.characteristics.push(CLEAR_CHARACTERISTICS.to_string());
        }
        if let Some(text) = &wanted.characteristics {
            // The tracker's text is `SET TRANSACTION ...;` statements.
            r.characteristics.extend(
                String::from_utf8_lossy(text)
                    .split(';')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            );
        }
    }
    if wanted.multi_statements != conn.multi_statements {
        r.set_option = Some(wanted.multi_statements);
    }
    Some(r)
}

impl ConnState {
    /// What a connection has after COM_RESET_CONNECTION: its schema and
    /// login collation, the server's defaults for everything else.
    pub fn after_reset(&self, caps: causeway_wire::CapabilityFlags) -> ConnState {
        ConnState {
            schema: self.schema.clone(),
            multi_statements: caps.contains(causeway_wire::CapabilityFlags::MULTI_STATEMENTS),
            charset: CharsetBase::Server,
            login_collation: self.login_collation,
            ..ConnState::default()
        }
    }

    /// The connection ran `replay` for `wanted` (and the session's own
    /// unread user variables `own`) successfully.
    pub fn replayed(&mut self, wanted: &Wanted, replay: &Replay, own: &[Bytes]) {
        if replay.init_db.is_some() {
            self.schema.clone_from(&wanted.schema);
        }
        if replay.set.is_some() {
            self.vars.clone_from(&wanted.vars);
            self.charset = wanted.charset;
            self.user_vars.retain(|n, v| v.is_none() && own.contains(n));
            self.user_vars.extend(
                wanted
                    .user_vars
                    .iter()
                    .map(|(n, l)| (n.clone(), Some(l.clone()))),
            );
        }
        if !replay.characteristics.is_empty() {
            self.characteristics.clone_from(&wanted.characteristics);
        }
        if let Some(on) = replay.set_option {
            self.multi_statements = on;
        }
    }
}

/// A system variable's name as SQL: plain when it is a plain word.
fn ident(name: &[u8]) -> String {
    let text = String::from_utf8_lossy(name);
    if !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    {
        text.into_owned()
    } else {
        format!("`{}`", text.replace('`', "``"))
    }
}

/// A user variable's name as SQL (always quoted: any name is allowed).
pub fn user_var_name(name: &[u8]) -> String {
    format!("`{}`", String::from_utf8_lossy(name).replace('`', "``"))
}

/// The tracker's text of a system variable's value as an SQL literal that
/// sets the same value: numbers as they are (integer variables refuse
/// strings), everything else as a string. `character_set_results` reported
/// empty was set to NULL.
pub fn sysvar_literal(name: &[u8], value: &[u8]) -> String {
    if value.is_empty() && name == b"character_set_results" {
        return "NULL".into();
    }
    if is_number(value) {
        return String::from_utf8_lossy(value).into_owned();
    }
    string_literal(value)
}

fn is_number(v: &[u8]) -> bool {
    let digits = v.strip_prefix(b"-").unwrap_or(v);
    let mut parts = digits.splitn(2, |&b| b == b'.');
    let int = parts.next().unwrap_or(&[]);
    let frac = parts.next();
    !int.is_empty()
        && int.iter().all(u8::is_ascii_digit)
        && frac.is_none_or(|f| !f.is_empty() && f.iter().all(u8::is_ascii_digit))
}

/// A string literal that means the same whatever `sql_mode` says about
/// backslashes: quotes doubled, and a hex literal when a backslash or a
/// control byte is in the value.
pub fn string_literal(value: &[u8]) -> String {
    if value
        .iter()
        .any(|&b| b == b'\\' || !(0x20..0x7f).contains(&b))
    {
        return format!("X'{}'", hex(value));
    }
    format!("'{}'", String::from_utf8_lossy(value).replace('\'', "''"))
}

/// Uppercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02X}"));
    }
    s
}

/// A user variable's value, read back with
/// `SELECT @v, HEX(@v), CHARSET(@v), COLLATION(@v)`, as the literal that
/// gives the variable the same type and value (MySQL's user variables are
/// integers, decimals, doubles or strings with a collation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserValue<'a> {
    /// NULL, never given a type (a variable never set reads back so).
    Null,
    /// NULL in a variable that had a value before: MySQL keeps its type
    /// (prepared statements fix result types from it), so the literal
    /// keeps it too.
    TypedNull {
        /// The column type it read back as (`MYSQL_TYPE_*`).
        kind: u8,
        /// `CHARSET(@v)`.
        charset: &'a str,
        /// `COLLATION(@v)`.
        collation: &'a str,
    },
    /// An integer (`MYSQL_TYPE_LONGLONG`), as text.
    Int(&'a str),
    /// A decimal (`MYSQL_TYPE_NEWDECIMAL`), as text (scale kept).
    Decimal(&'a str),
    /// A double, as MySQL prints it (shortest round-trip form).
    Double(&'a str),
    /// A string: uppercase hex of its bytes, its character set and collation.
    Str {
        /// `HEX(@v)`.
        hex: &'a str,
        /// `CHARSET(@v)`.
        charset: &'a str,
        /// `COLLATION(@v)`.
        collation: &'a str,
    },
}

/// The literal for `v` (see [`UserValue`]).
pub fn user_literal(v: &UserValue<'_>) -> Option<String> {
    let plain = |s: &str, extra: &[u8]| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || b == b'-' || b == b'.' || extra.contains(&b))
            && !s.is_empty()
    };
    let word = |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    Some(match v {
        UserValue::Null => "NULL".into(),
        UserValue::TypedNull {
            kind,
            charset,
            collation,
        } => match *kind {
            8 => "CAST(NULL AS SIGNED)".into(),
            246 => "CAST(NULL AS DECIMAL(65,30))".into(),
            5 => "CAST(NULL AS DOUBLE)".into(),
            // A never-set variable reads back as VAR_STRING of `binary`.
            253 if *charset == "binary" => "NULL".into(),
            _ if *charset == "binary" => "CAST(NULL AS BINARY)".into(),
            _ if word(charset) && word(collation) => {
                format!("CAST(NULL AS CHAR CHARACTER SET {charset}) COLLATE {collation}")
            }
            _ => return None,
        },
        UserValue::Int(s) if plain(s, b"") => (*s).to_string(),
        UserValue::Decimal(s) if plain(s, b"") => (*s).to_string(),
        UserValue::Double(s) if plain(s, b"eE+") => {
            if s.contains(['e', 'E']) {
                (*s).to_string()
            } else {
                format!("{s}e0")
            }
        }
        UserValue::Str {
            hex,
            charset,
            collation,
        } if hex.bytes().all(|b| b.is_ascii_hexdigit()) && hex.len() % 2 == 0 => {
            let word = |w: &str| {
                !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            };
            if *charset == "binary" {
                format!("X'{hex}'")
            } else if word(charset) && word(collation) {
                format!("_{charset} X'{hex}' COLLATE {collation}")
            } else {
                return None;
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        let mut v = Vars::default();
        for (n, x) in pairs {
            v.set(n.as_bytes(), x.as_bytes());
        }
        v
    }

    #[test]
    fn nothing_in_place_is_replayed() {
        let w = Wanted {
            schema: Some("app".into()),
            vars: vars(&[("sql_mode", "ANSI"), ("time_zone", "+01:00")]),
            ..Wanted::default()
        };
        let mut c = ConnState::default();
        let r = replay(&w, &c, None, &[]).unwrap();
        assert_eq!(r.init_db.as_deref(), Some(&b"app"[..]));
        assert_eq!(
            r.set.as_deref(),
            Some("SET @@SESSION.sql_mode = 'ANSI', @@SESSION.time_zone = '+01:00'")
        );
        c.replayed(&w, &r, &[]);
        assert!(replay(&w, &c, None, &[]).unwrap().is_empty());
    }

    #[test]
    fn variables_the_session_never_set_go_back_to_default_first() {
        let w = Wanted {
            vars: vars(&[("time_zone", "+01:00")]),
            ..Wanted::default()
        };
        let c = ConnState {
            vars: vars(&[("sql_mode", "ANSI"), ("time_zone", "+01:00")]),
            ..ConnState::default()
        };
        assert_eq!(
            replay(&w, &c, None, &[]).unwrap().set.as_deref(),
            Some("SET @@SESSION.sql_mode = DEFAULT, @@SESSION.time_zone = '+01:00'")
        );
    }

    #[test]
    fn later_variables_follow_the_first_that_differs() {
        // collation_connection must be set again after character_set_connection.
        let w = Wanted {
            vars: vars(&[
                ("autocommit", "OFF"),
                ("character_set_connection", "latin1"),
                ("collation_connection", "latin1_german1_ci"),
            ]),
            ..Wanted::default()
        };
        let c = ConnState {
            vars: vars(&[
                ("autocommit", "OFF"),
                ("character_set_connection", "utf8mb4"),
                ("collation_connection", "latin1_german1_ci"),
            ]),
            ..ConnState::default()
        };
        assert_eq!(
            replay(&w, &c, None, &[]).unwrap().set.as_deref(),
            Some(
                "SET @@SESSION.character_set_connection = 'latin1', \
                 @@SESSION.collation_connection = 'latin1_german1_ci'"
            )
        );
    }

    #[test]
    fn user_variables_are_set_or_cleared_and_last_insert_id_given() {
        let mut w = Wanted::default();
        w.user_vars.insert("a".into(), "5".into());
        let mut c = ConnState::default();
        c.user_vars.insert("a".into(), Some("5".into()));
        c.user_vars.insert("b".into(), Some("'x'".into()));
        c.user_vars.insert("c".into(), None);
        assert_eq!(
            replay(&w, &c, Some(42), &[]).unwrap().set.as_deref(),
            Some("SET @`b` = NULL, @`c` = NULL, @@SESSION.last_insert_id = 42")
        );
        // The session's own, not read back yet: left alone.
        assert_eq!(
            replay(&w, &c, None, &[Bytes::from("c")])
                .unwrap()
                .set
                .as_deref(),
            Some("SET @`b` = NULL")
        );
        c.user_vars.insert("a".into(), None);
        assert_eq!(
            replay(&w, &ConnState::default(), None, &[])
                .unwrap()
                .set
                .as_deref(),
            Some("SET @`a` = 5")
        );
    }

    #[test]
    fn character_sets_go_back_to_the_login_collation_not_the_servers_default() {
        // A connection that ran SET NAMES for another session; this one
        // logged in with latin1 (8): DEFAULT would give the server's.
        let c = ConnState {
            vars: vars(&[
                ("character_set_client", "utf8mb4"),
                ("collation_connection", "utf8mb4_bin"),
                ("sql_mode", "ANSI"),
            ]),
            login_collation: 8,
            ..ConnState::default()
        };
        let w = Wanted::default();
        let r = replay(&w, &c, None, &[]).unwrap();
        assert_eq!(
            r.set.as_deref(),
            Some(
                "SET @@SESSION.sql_mode = DEFAULT, @@SESSION.character_set_client = 8, \
                 @@SESSION.character_set_results = 8, @@SESSION.character_set_connection = 8, \
                 @@SESSION.collation_connection = 8"
            )
        );
        // After COM_RESET_CONNECTION the server's defaults are in place: a
        // session that logged in gets its own back ...
        let reset = c.after_reset(causeway_wire::CapabilityFlags::empty());
        assert_eq!(reset.charset, CharsetBase::Server);
        let r = replay(&w, &reset, None, &[]).unwrap();
        assert!(r
            .set
            .unwrap()
            .contains("@@SESSION.collation_connection = 8"));
        // ... and a session whose client sent the reset wants the server's.
        let after_client_reset = Wanted {
            charset: CharsetBase::Server,
            ..Wanted::default()
        };
        let mut fresh = ConnState {
            login_collation: 8,
            ..ConnState::default()
        };
        let r = replay(&after_client_reset, &fresh, None, &[]).unwrap();
        assert!(r
            .set
            .as_ref()
            .unwrap()
            .contains("@@SESSION.collation_connection = DEFAULT"));
        fresh.replayed(&after_client_reset, &r, &[]);
        assert!(replay(&after_client_reset, &fresh, None, &[])
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_session_without_a_schema_cannot_take_a_connection_with_one() {
        let c = ConnState {
            schema: Some("x".into()),
            ..ConnState::default()
        };
        assert_eq!(replay(&Wanted::default(), &c, None, &[]), None);
    }

    #[test]
    fn characteristics_and_the_multi_statements_option() {
        let w = Wanted {
            characteristics: Some("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE;".into()),
            multi_statements: true,
            ..Wanted::default()
        };
        let mut c = ConnState::default();
        let r = replay(&w, &c, None, &[]).unwrap();
        assert_eq!(r.commands(), 2);
        assert_eq!(r.set_option, Some(true));
        c.replayed(&w, &r, &[]);
        assert!(replay(&w, &c, None, &[]).unwrap().is_empty());
        // Several statements: one COM_QUERY each (a connection without
        // multi-statements refuses them together); the connection's own
        // are cleared first.
        let two = Wanted {
            characteristics: Some(
                "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; SET TRANSACTION READ ONLY;".into(),
            ),
            ..w.clone()
        };
        let r = replay(&two, &c, None, &[]).unwrap();
        assert_eq!(
            r.characteristics,
            [
                CLEAR_CHARACTERISTICS,
                "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
                "SET TRANSACTION READ ONLY"
            ]
        );
        // A session with none gets a connection's cleared.
        let none = Wanted {
            characteristics: None,
            ..w.clone()
        };
        let r = replay(&none, &c, None, &[]).unwrap();
        assert_eq!(r.characteristics, [CLEAR_CHARACTERISTICS]);
        c.replayed(&none, &r, &[]);
        assert_eq!(c.characteristics, None);
    }

    #[test]
    fn literals_keep_types_and_bytes() {
        assert_eq!(sysvar_literal(b"max_execution_time", b"1000"), "1000");
        assert_eq!(
            sysvar_literal(b"timestamp", b"1000000.000000"),
            "1000000.000000"
        );
        assert_eq!(sysvar_literal(b"time_zone", b"+01:00"), "'+01:00'");
        assert_eq!(sysvar_literal(b"character_set_results", b""), "NULL");
        assert_eq!(sysvar_literal(b"x", b"it's"), "'it''s'");
        assert_eq!(sysvar_literal(b"x", b"a\\b"), "X'615C62'");
        assert_eq!(user_literal(&UserValue::Int("-5")).unwrap(), "-5");
        assert_eq!(user_literal(&UserValue::Decimal("1.50")).unwrap(), "1.50");
        assert_eq!(
            user_literal(&UserValue::Double("0.30000000000000004")).unwrap(),
            "0.30000000000000004e0"
        );
        assert_eq!(user_literal(&UserValue::Double("1e300")).unwrap(), "1e300");
        assert_eq!(
            user_literal(&UserValue::Str {
                hex: "E9",
                charset: "latin1",
                collation: "latin1_german1_ci"
            })
            .unwrap(),
            "_latin1 X'E9' COLLATE latin1_german1_ci"
        );
        assert_eq!(
            user_literal(&UserValue::Str {
                hex: "00FF",
                charset: "binary",
                collation: "binary"
            })
            .unwrap(),
            "X'00FF'"
        );
        assert_eq!(user_literal(&UserValue::Int("1; DROP")), None);
        assert_eq!(
            user_literal(&UserValue::Str {
                hex: "41",
                charset: "x y",
                collation: "z"
            }),
            None
        );
        assert_eq!(user_literal(&UserValue::Null).unwrap(), "NULL");
        let typed = |kind, charset, collation| {
            user_literal(&UserValue::TypedNull {
                kind,
                charset,
                collation,
            })
        };
        assert_eq!(
            typed(8, "binary", "binary").unwrap(),
            "CAST(NULL AS SIGNED)"
        );
        assert_eq!(
            typed(251, "utf8mb4", "utf8mb4_0900_ai_ci").unwrap(),
            "CAST(NULL AS CHAR CHARACTER SET utf8mb4) COLLATE utf8mb4_0900_ai_ci"
        );
        assert_eq!(typed(253, "binary", "binary").unwrap(), "NULL");
    }
}
