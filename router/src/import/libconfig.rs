//! A reader for the libconfig syntax ProxySQL's `proxysql.cnf` is written
//! in: pure, no I/O.
//!
//! ```text
//!   file    = setting*
//!   setting = name ("=" | ":") value [";" | ","]
//!   value   = scalar | "[" scalars "]" | "(" values ")" | "{" setting* "}"
//!   scalar  = true | false | integer (decimal, 0x hex, L suffix) | float
//!           | "string" ("string" ...)      adjacent strings join
//! ```
//! Comments are `#` and `//` to the end of the line, and `/* ... */`.
//! Strings take the escapes `\\ \" \n \r \t \f \xNN`. Every error names its
//! line and column; nothing here panics on any input.

use std::fmt;

/// One value with the line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    /// What it is.
    pub kind: Kind,
    /// 1-based line of its first character.
    pub line: usize,
}

/// The kinds of libconfig values.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// `true` / `false` (any case).
    Bool(bool),
    /// An integer (`42`, `-1`, `0x1F`, `10L`).
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string, escapes resolved, adjacent parts joined.
    Str(String),
    /// `[ ... ]`: scalars of one type.
    Array(Vec<Value>),
    /// `( ... )`: values of any type.
    List(Vec<Value>),
    /// `{ ... }`: named settings in file order.
    Group(Vec<(String, Value)>),
}

impl Value {
    /// The setting called `name` of a group (the first, if repeated).
    pub fn get(&self, name: &str) -> Option<&Value> {
        match &self.kind {
            Kind::Group(items) => items.iter().find(|(n, _)| n == name).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The settings of a group, or nothing.
    pub fn settings(&self) -> &[(String, Value)] {
        match &self.kind {
            Kind::Group(items) => items,
            _ => &[],
        }
    }

    /// The elements of a list or array, or nothing.
    pub fn elements(&self) -> &[Value] {
        match &self.kind {
            Kind::List(items) | Kind::Array(items) => items,
            _ => &[],
        }
    }

    /// The value as text, as ProxySQL reads it into its tables: strings
    /// as they are, numbers and booleans written out (`true` is `1`).
    pub fn as_text(&self) -> Option<String> {
        match &self.kind {
            Kind::Str(s) => Some(s.clone()),
            Kind::Int(i) => Some(i.to_string()),
            Kind::Float(f) => Some(f.to_string()),
            Kind::Bool(b) => Some(if *b { "1" } else { "0" }.to_string()),
            _ => None,
        }
    }
}

/// Bad input, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for ParseError {}

/// Deepest nesting accepted (a hostile file cannot exhaust the stack).
const MAX_DEPTH: usize = 64;

/// Parses a whole file into its top-level group.
pub fn parse(text: &str) -> Result<Value, ParseError> {
    let mut p = Parser {
        chars: text.chars().collect(),
        pos: 0,
        line: 1,
        column: 1,
    };
    let settings = p.settings(None, 0)?;
    Ok(Value {
        kind: Kind::Group(settings),
        line: 1,
    })
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    column: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            line: self.line,
            column: self.column,
            message: message.into(),
        })
    }

    /// Skips whitespace and comments.
    fn skip(&mut self) -> Result<(), ParseError> {
        loop {
            match (self.peek(), self.chars.get(self.pos + 1).copied()) {
                (Some(c), _) if c.is_whitespace() => {
                    self.bump();
                }
                (Some('#'), _) | (Some('/'), Some('/')) => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.bump();
                    }
                }
                (Some('/'), Some('*')) => {
                    let (line, column) = (self.line, self.column);
                    self.bump();
                    self.bump();
                    loop {
                        match self.bump() {
                            None => {
                                return Err(ParseError {
                                    line,
                                    column,
                                    message: "comment /* is never closed".into(),
                                })
                            }
                            Some('*') if self.peek() == Some('/') => {
                                self.bump();
                                break;
                            }
                            Some(_) => {}
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// Settings up to `close` (or the end of the file when `None`).
    fn settings(
        &mut self,
        close: Option<char>,
        depth: usize,
    ) -> Result<Vec<(String, Value)>, ParseError> {
        let mut out = Vec::new();
        loop {
            self.skip()?;
            match (self.peek(), close) {
                (None, None) => return Ok(out),
                (None, Some(c)) => return self.error(format!("missing {c:?} before the end")),
                (Some(c), Some(want)) if c == want => {
                    self.bump();
                    return Ok(out);
                }
                _ => {}
            }
            let name = self.name()?;
            self.skip()?;
            match self.peek() {
                Some('=' | ':') => {
                    self.bump();
                }
                Some(c) => return self.error(format!("expected '=' after {name:?}, found {c:?}")),
                None => return self.error(format!("expected '=' after {name:?}")),
            }
            self.skip()?;
            let value = self.value(depth)?;
            self.skip()?;
            if matches!(self.peek(), Some(';' | ',')) {
                self.bump();
            }
            out.push((name, value));
        }
    }

    fn name(&mut self) -> Result<String, ParseError> {
        let mut name = String::new();
        match self.peek() {
            Some(c) if c.is_ascii_alphabetic() || c == '*' => {}
            Some(c) => return self.error(format!("expected a setting name, found {c:?}")),
            None => return self.error("expected a setting name"),
        }
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '*') {
                name.push(c);
                self.bump();
            } else {
                break;
            }
        }
        Ok(name)
    }

    fn value(&mut self, depth: usize) -> Result<Value, ParseError> {
        if depth >= MAX_DEPTH {
            return self.error(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        let line = self.line;
        let kind = match self.peek() {
            Some('{') => {
                self.bump();
                Kind::Group(self.settings(Some('}'), depth + 1)?)
            }
            Some('(') => {
                self.bump();
                Kind::List(self.elements(')', depth)?)
            }
            Some('[') => {
                self.bump();
                Kind::Array(self.elements(']', depth)?)
            }
            Some('"') => Kind::Str(self.strings()?),
            Some(_) => self.scalar()?,
            None => return self.error("expected a value"),
        };
        Ok(Value { kind, line })
    }

    fn elements(&mut self, close: char, depth: usize) -> Result<Vec<Value>, ParseError> {
        let mut out = Vec::new();
        loop {
            self.skip()?;
            if self.peek() == Some(close) {
                self.bump();
                return Ok(out);
            }
            if self.peek().is_none() {
                return self.error(format!("missing {close:?} before the end"));
            }
            out.push(self.value(depth + 1)?);
            self.skip()?;
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some(c) if c == close => {}
                Some(c) => return self.error(format!("expected ',' or {close:?}, found {c:?}")),
                None => return self.error(format!("missing {close:?} before the end")),
            }
        }
    }

    /// One or more adjacent string literals, joined.
    fn strings(&mut self) -> Result<String, ParseError> {
        let mut out = String::new();
        loop {
            self.string(&mut out)?;
            let save = (self.pos, self.line, self.column);
            self.skip()?;
            if self.peek() != Some('"') {
                (self.pos, self.line, self.column) = save;
                return Ok(out);
            }
        }
    }

    fn string(&mut self, out: &mut String) -> Result<(), ParseError> {
        let (line, column) = (self.line, self.column);
        self.bump(); // the opening quote
        loop {
            match self.bump() {
                None => {
                    return Err(ParseError {
                        line,
                        column,
                        message: "string is never closed".into(),
                    })
                }
                Some('"') => return Ok(()),
                Some('\\') => {
                    let c = match self.bump() {
                        Some('\\') => '\\',
                        Some('"') => '"',
                        Some('n') => '\n',
                        Some('r') => '\r',
                        Some('t') => '\t',
                        Some('f') => '\x0c',
                        Some('x') => {
                            let hex: String = (0..2).filter_map(|_| self.bump()).collect();
                            match u8::from_str_radix(&hex, 16) {
                                Ok(b) => char::from(b),
                                Err(_) => return self.error(format!("bad escape \\x{hex}")),
                            }
                        }
                        Some(c) => return self.error(format!("unknown escape \\{c}")),
                        None => return self.error("string is never closed"),
                    };
                    out.push(c);
                }
                Some(c) => out.push(c),
            }
        }
    }

    /// A boolean or a number.
    fn scalar(&mut self) -> Result<Kind, ParseError> {
        let (line, column) = (self.line, self.column);
        let mut word = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '+' | '.' | '_') {
                word.push(c);
                self.bump();
            } else {
                break;
            }
        }
        let bad = |message: String| {
            Err(ParseError {
                line,
                column,
                message,
            })
        };
        if word.is_empty() {
            let c = self.peek().unwrap_or(' ');
            return bad(format!("expected a value, found {c:?}"));
        }
        if word.eq_ignore_ascii_case("true") {
            return Ok(Kind::Bool(true));
        }
        if word.eq_ignore_ascii_case("false") {
            return Ok(Kind::Bool(false));
        }
        let digits = word
            .strip_suffix("LL")
            .or_else(|| word.strip_suffix('L'))
            .unwrap_or(&word);
        let (negative, body) = match digits.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, digits.strip_prefix('+').unwrap_or(digits)),
        };
        let int = match body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
            Some(hex) => i64::from_str_radix(hex, 16).ok(),
            None => body.parse::<i64>().ok(),
        };
        if let Some(i) = int {
            return Ok(Kind::Int(if negative { -i } else { i }));
        }
        if let Ok(f) = word.parse::<f64>() {
            if f.is_finite() {
                return Ok(Kind::Float(f));
            }
        }
        bad(format!(
            "{word:?} is not a value (strings need double quotes)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proxysql_shapes() {
        let text = r#"
# a comment
datadir="/var/lib/proxysql"
admin_variables=
{
    admin_credentials="admin:admin"   // trailing comment
    mysql_ifaces="0.0.0.0:6032"
}
/* block
   comment */
mysql_variables= { threads=4; max_connections=2048, have_compress=true
    monitor_ping_interval = 0x10 }
mysql_servers =
(
    { address="10.0.0.1" , port=3306 , hostgroup=10, weight=1L },
    { address="10.0.0.2" , port=3306 , hostgroup=20, }
)
ratio = -1.5
list = [1, 2, 3]
msg = "a \"quoted\" " "joined\tstring"
"#;
        let v = parse(text).unwrap();
        assert_eq!(
            v.get("datadir").unwrap().kind,
            Kind::Str("/var/lib/proxysql".into())
        );
        let mv = v.get("mysql_variables").unwrap();
        assert_eq!(mv.get("threads").unwrap().kind, Kind::Int(4));
        assert_eq!(mv.get("have_compress").unwrap().kind, Kind::Bool(true));
        assert_eq!(mv.get("monitor_ping_interval").unwrap().kind, Kind::Int(16));
        let servers = v.get("mysql_servers").unwrap();
        assert_eq!(servers.line, 14);
        assert_eq!(servers.elements().len(), 2);
        assert_eq!(servers.elements()[0].line, 15);
        assert_eq!(
            servers.elements()[0].get("weight").unwrap().kind,
            Kind::Int(1)
        );
        assert_eq!(
            servers.elements()[1].get("address").unwrap().as_text(),
            Some("10.0.0.2".into())
        );
        assert_eq!(v.get("ratio").unwrap().kind, Kind::Float(-1.5));
        assert_eq!(v.get("list").unwrap().elements().len(), 3);
        assert_eq!(
            v.get("msg").unwrap().kind,
            Kind::Str("a \"quoted\" joined\tstring".into())
        );
    }

    #[test]
    fn errors_name_their_line_and_column() {
        let cases = [
            ("a = 1\nb = \"open\n", 2, "never closed"),
            ("a = 1\nb = unquoted\n", 2, "not a value"),
            ("a = 1\n\ng = { x = 1 \n", 4, "missing '}'"),
            ("l = ( 1 2 )", 1, "expected ','"),
            ("a 1", 1, "expected '='"),
            ("= 1", 1, "setting name"),
            ("x = 1\n/* open", 2, "never closed"),
            ("s = \"bad \\q\"", 1, "unknown escape"),
            ("x = ", 1, "expected a value"),
        ];
        for (text, line, needle) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.to_string().contains(needle), "{text:?}: {e}");
        }
        let e = parse("a = 1\nb = (\n  1,\n  2 3)\n").unwrap_err();
        assert_eq!((e.line, e.column), (4, 5), "{e}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = format!("a = {}{}", "(".repeat(10_000), ")".repeat(10_000));
        let e = parse(&text).unwrap_err();
        assert!(e.message.contains("nested deeper"), "{e}");
    }

    #[test]
    fn any_bytes_give_a_value_or_an_error() {
        for text in [
            "",
            "{",
            "}",
            "a=(",
            "a=[1,",
            "a=\"\\x",
            "a={b=(c=1)}",
            "\u{0}",
        ] {
            let _ = parse(text);
        }
    }
}
