//! Query rules, statement digests and routing hints: pure, no I/O, no
//! session state.
//!
//! # Rules
//! `[[query_rules]]` entries are evaluated in the order they are written,
//! for every statement:
//!
//! ```text
//!   rule disabled or a filter fails ---------------> next rule
//!   rule matches, chain = false -------------------> apply its actions, stop
//!   rule matches, chain = true --------------------> apply its actions, next rule
//!   no rule left ----------------------------------> the actions applied so far
//! ```
//! A rule matches when every criterion it gives holds: `user`, `schema`,
//! `client_addr`, and the text match (`match_pattern` on the statement as
//! sent, `match_digest` on its [`digest`]). `negate` inverts the text match
//! only: the rule then matches the statements that fail `match_pattern` or
//! `match_digest`, from the users, schemas and addresses it names.
//! Actions are `destination` (a hostgroup) and `consistency` (a
//! [`Scope`]); a later chained match overrides what an earlier one set, and
//! what no rule sets is left to the router's defaults.
//!
//! ```toml
//! [[query_rules]]
//! name = "reports to the analytics replicas"
//! user = "reports"
//! destination = "analytics"
//! consistency = "eventual"
//!
//! [[query_rules]]
//! match_digest = '^SELECT .* FROM `?orders`? WHERE id = \?$'
//! consistency = "session"
//! ```
//!
//! # Digest
//! [`digest`] turns a statement into its normalized form, the same for
//! every statement that differs only in literals, comments and spacing:
//! `select a from t where id in (1, 2) and b = 'x' -- hi` gives
//! `select a from t where id in (...) and b = ?`. [`Rules::evaluate`]
//! computes it at most once per statement, only when a rule needs it.
//!
//! # Hints
//! A client may also say what it wants in a comment anywhere in the
//! statement: `/* causeway: hostgroup=reports, consistency=eventual */`
//! (see [`Hints`]). **A hint overrides the rules**: `hostgroup` replaces the
//! rules' destination, `primary` sends the statement to the writer whatever
//! the rules say, `consistency` replaces the rules' scope. The caller
//! applies [`Outcome`] first and [`Hints`] over it.

use std::net::IpAddr;

use regex::{Regex, RegexBuilder};
use serde::Deserialize;

use crate::causal::Scope;

/// Largest compiled program of one rule regex, and of its lazy DFA cache:
/// generous for hand-written patterns, small enough that a pasted monster
/// fails at load time rather than eating memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// One `[[query_rules]]` entry of the configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryRuleConfig {
    /// Name in logs and metrics (default `rule N`, N its position from 0).
    pub name: Option<String>,
    /// Regular expression searched for in the statement text as the client
    /// sent it, comments included. Case-insensitive unless the pattern
    /// starts with `(?-i)`; anchor it with `^`/`$` to match the whole text.
    pub match_pattern: Option<String>,
    /// Regular expression searched for in the statement's digest: comments
    /// removed, literals replaced by `?`, `IN (...)` lists collapsed,
    /// whitespace squeezed, words kept as written
    /// (`SELECT * FROM t WHERE id IN (...) AND name = ?`).
    /// Case-insensitive like `match_pattern`.
    pub match_digest: Option<String>,
    /// Inverts `match_pattern`/`match_digest`: the rule matches statements
    /// they do not match (the other filters still apply). Needs one of them.
    pub negate: bool,
    /// Only sessions logged in as this user (exact match).
    pub user: Option<String>,
    /// Only sessions whose current default schema (`USE`, or the schema of
    /// the login) is this one (exact match); no schema never matches.
    pub schema: Option<String>,
    /// Only clients from this address (`10.0.0.7`, `::1`) or network
    /// (`10.0.0.0/8`, `fd00::/8`). IPv4 clients connected over IPv6
    /// (`::ffff:10.0.0.7`) count as IPv4.
    pub client_addr: Option<String>,
    /// Send matching statements to this hostgroup.
    pub destination: Option<String>,
    /// Consistency of matching reads: `eventual`, `session`, `token` or
    /// `global`.
    pub consistency: Option<Scope>,
    /// `false`: the backend connection a matching statement runs on stays
    /// with its session until the session ends (multiplexing off for it),
    /// for statements whose effects the router cannot see.
    pub multiplex: Option<bool>,
    /// A matching statement whose backend has not finished answering after
    /// this long ends: its connection is closed, a read that got nothing
    /// yet runs once more elsewhere, anything else gets ERR 2013 (its
    /// outcome unknown). Overrides the user's `backend_timeout`; `0s`: none.
    #[serde(default, with = "humantime_serde")]
    pub backend_timeout: Option<std::time::Duration>,
    /// Keep evaluating the following rules after this one matched (their
    /// actions override this one's). Off: evaluation stops here. A chained
    /// rule may have no action: it then only counts matches in metrics.
    pub chain: bool,
    /// Off: the rule is checked at load time but never evaluated.
    pub enabled: bool,
}

impl Default for QueryRuleConfig {
    fn default() -> QueryRuleConfig {
        QueryRuleConfig {
            name: None,
            match_pattern: None,
            match_digest: None,
            negate: false,
            user: None,
            schema: None,
            client_addr: None,
            destination: None,
            consistency: None,
            multiplex: None,
            backend_timeout: None,
            chain: false,
            enabled: true,
        }
    }
}

impl QueryRuleConfig {
    /// How messages name the rule at `index`: `query_rules[3] ("name")`.
    pub fn label(&self, index: usize) -> String {
        match &self.name {
            Some(name) => format!("query_rules[{index}] ({name:?})"),
            None => format!("query_rules[{index}]"),
        }
    }

    fn has_action(&self) -> bool {
        self.destination.is_some()
            || self.consistency.is_some()
            || self.multiplex.is_some()
            || self.backend_timeout.is_some()
    }
}

/// An address with a prefix length; IPv4-mapped IPv6 is stored as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    fn parse(text: &str) -> Result<Network, String> {
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .trim()
            .parse()
            .map_err(|_| format!("{addr_text:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("prefix length {p:?} is not 0..={max}")),
            },
        };
        if mask(addr, prefix) != addr {
            return Err(format!(
                "host bits set (the network is {}/{prefix})",
                mask(addr, prefix)
            ));
        }
        // `::ffff:10.0.0.0/104` is `10.0.0.0/8`: clients are compared canonical.
        let net = match addr {
            IpAddr::V6(v6) if prefix >= 96 && v6.to_ipv4_mapped().is_some() => Network {
                addr: addr.to_canonical(),
                prefix: prefix - 96,
            },
            _ => Network { addr, prefix },
        };
        Ok(net)
    }

    /// Whether `ip` (already canonical) is in the network.
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(ip, self.prefix) == self.addr
            }
            _ => false,
        }
    }
}

/// `ip` with every bit past `prefix` cleared.
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let keep = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((bits & keep).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let keep = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((bits & keep).into())
        }
    }
}

/// One enabled rule, ready to evaluate.
#[derive(Debug, Clone)]
struct Rule {
    /// Its position in the configuration.
    index: usize,
    pattern: Option<Regex>,
    digest: Option<Regex>,
    negate: bool,
    user: Option<String>,
    schema: Option<String>,
    client: Option<Network>,
    destination: Option<String>,
    consistency: Option<Scope>,
    multiplex: Option<bool>,
    backend_timeout: Option<std::time::Duration>,
    chain: bool,
}

/// The compiled `[[query_rules]]`.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Enabled rules in order.
    rules: Vec<Rule>,
    /// Names of every configured rule by position, disabled ones included.
    names: Vec<String>,
}

/// What [`Rules::evaluate`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct RuleInput<'a> {
    /// The statement text as the client sent it.
    pub sql: &'a str,
    /// Its [`digest`], if the caller already has it; otherwise computed
    /// when the first rule with `match_digest` is reached.
    pub digest: Option<&'a str>,
    /// The session's user.
    pub user: &'a str,
    /// The session's current default schema.
    pub schema: Option<&'a str>,
    /// The client's address.
    pub client_ip: IpAddr,
}

/// What the matching rules decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome<'r> {
    /// Hostgroup to route to (the last matching rule that set one).
    pub destination: Option<&'r str>,
    /// Consistency scope (the last matching rule that set one).
    pub consistency: Option<Scope>,
    /// Multiplexing (the last matching rule that set it).
    pub multiplex: Option<bool>,
    /// Backend timeout (the last matching rule that set one).
    pub backend_timeout: Option<std::time::Duration>,
    /// How many rules matched.
    pub matched: usize,
    /// Position in the configuration of the last matching rule: the one
    /// that stopped evaluation, unless every match was chained.
    pub last: Option<usize>,
    /// The digest computed during evaluation, for the caller's logs and
    /// metrics (`None` when the input carried one or no rule needed it).
    pub digest: Option<String>,
}

impl Rules {
    /// Compiles the configured rules, reporting every problem at once, each
    /// naming its rule. Disabled rules are checked too. Destinations are not
    /// checked against the hostgroups here (see [`Rules::destinations`]).
    pub fn compile(configs: &[QueryRuleConfig]) -> Result<Rules, Vec<String>> {
        let mut errors = Vec::new();
        let mut rules = Vec::new();
        let mut names = Vec::with_capacity(configs.len());
        for (index, c) in configs.iter().enumerate() {
            let mut problems: Vec<(&str, String)> = Vec::new();
            let pattern = compile_regex(c.match_pattern.as_deref()).unwrap_or_else(|e| {
                problems.push(("match_pattern", e));
                None
            });
            let digest = compile_regex(c.match_digest.as_deref()).unwrap_or_else(|e| {
                problems.push(("match_digest", e));
                None
            });
            let client = match c.client_addr.as_deref().map(Network::parse) {
                None => None,
                Some(Ok(n)) => Some(n),
                Some(Err(e)) => {
                    problems.push(("client_addr", e));
                    None
                }
            };
            for (what, value) in [
                ("user", &c.user),
                ("schema", &c.schema),
                ("destination", &c.destination),
            ] {
                if value.as_deref() == Some("") {
                    problems.push((what, "must not be empty (omit it instead)".to_string()));
                }
            }
            if c.negate && c.match_pattern.is_none() && c.match_digest.is_none() {
                problems.push(("negate", "needs match_pattern or match_digest".to_string()));
            }
            let criteria = c.match_pattern.is_some()
                || c.match_digest.is_some()
                || c.user.is_some()
                || c.schema.is_some()
                || c.client_addr.is_some();
            if !c.has_action() && !criteria {
                problems.push(("rule", "no match criteria and no action".to_string()));
            } else if !c.has_action() && !c.chain {
                problems.push((
                    "rule",
                    "no action: give destination, consistency, multiplex or backend_timeout, or chain = true \
                     to only count matches"
                        .to_string(),
                ));
            }
            names.push(c.name.clone().unwrap_or_else(|| format!("rule {index}")));
            if !problems.is_empty() {
                let label = c.label(index);
                errors.extend(
                    problems
                        .into_iter()
                        .map(|(what, why)| format!("{label}: {what}: {why}")),
                );
            } else if c.enabled {
                rules.push(Rule {
                    index,
                    pattern,
                    digest,
                    negate: c.negate,
                    user: c.user.clone(),
                    schema: c.schema.clone(),
                    client,
                    destination: c.destination.clone(),
                    consistency: c.consistency,
                    multiplex: c.multiplex,
                    backend_timeout: c.backend_timeout,
                    chain: c.chain,
                });
            }
        }
        if errors.is_empty() {
            Ok(Rules { rules, names })
        } else {
            Err(errors)
        }
    }

    /// No enabled rule: [`Rules::evaluate`] always returns the default.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The name of the rule at configuration position `index` (for logs
    /// and metrics labels), `rule N` when it has none.
    pub fn name(&self, index: usize) -> Option<&str> {
        self.names.get(index).map(String::as_str)
    }

    /// Every destination of an enabled rule, with its configuration
    /// position, for the caller to check against its hostgroups.
    pub fn destinations(&self) -> impl Iterator<Item = (usize, &str)> + '_ {
        self.rules
            .iter()
            .filter_map(|r| Some((r.index, r.destination.as_deref()?)))
    }

    /// Runs the rules over one statement. Allocates nothing unless a rule
    /// with `match_digest` is reached without [`RuleInput::digest`] (then
    /// the digest is computed once, and returned in [`Outcome::digest`]).
    pub fn evaluate(&self, input: &RuleInput<'_>) -> Outcome<'_> {
        let mut out = Outcome::default();
        if self.rules.is_empty() {
            return out;
        }
        let ip = input.client_ip.to_canonical();
        for rule in &self.rules {
            if !rule.matches(input, ip, &mut out.digest) {
                continue;
            }
            out.matched += 1;
            out.last = Some(rule.index);
            if let Some(d) = &rule.destination {
                out.destination = Some(d);
            }
            if let Some(c) = rule.consistency {
                out.consistency = Some(c);
            }
            if let Some(m) = rule.multiplex {
                out.multiplex = Some(m);
            }
            if let Some(t) = rule.backend_timeout {
                out.backend_timeout = Some(t);
            }
            if !rule.chain {
                break;
            }
        }
        out
    }
}

impl Rule {
    /// Cheap filters first, then the pattern, then the digest (computed
    /// into `cache` on first need).
    fn matches(&self, input: &RuleInput<'_>, ip: IpAddr, cache: &mut Option<String>) -> bool {
        if self.user.as_deref().is_some_and(|u| u != input.user)
            || self.schema.is_some() && self.schema.as_deref() != input.schema
            || self.client.is_some_and(|n| !n.contains(ip))
        {
            return false;
        }
        if self.pattern.is_none() && self.digest.is_none() {
            return true;
        }
        let text = self.pattern.as_ref().is_none_or(|p| p.is_match(input.sql))
            && self.digest.as_ref().is_none_or(|re| {
                let d = match input.digest {
                    Some(d) => d,
                    None => cache.get_or_insert_with(|| digest(input.sql)),
                };
                re.is_match(d)
            });
        text != self.negate
    }
}

/// A case-insensitive, size-limited regex; `None` for an absent pattern.
fn compile_regex(pattern: Option<&str>) -> Result<Option<Regex>, String> {
    let Some(p) = pattern else { return Ok(None) };
    if p.is_empty() {
        return Err("must not be empty (omit it to match every statement)".to_string());
    }
    RegexBuilder::new(p)
        .case_insensitive(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map(Some)
        // A syntax error draws the pattern and a caret over several lines;
        // its last line says what is wrong, which is what a one-line
        // config error needs.
        .map_err(|e| {
            let text = e.to_string();
            let last = text.lines().last().unwrap_or_default();
            last.strip_prefix("error: ").unwrap_or(last).to_string()
        })
}

/// The scopes by name, for hints (configuration uses serde).
fn parse_scope(text: &str) -> Option<Scope> {
    [
        ("eventual", Scope::Eventual),
        ("session", Scope::Session),
        ("user", Scope::User),
        ("router", Scope::Router),
        ("token", Scope::Token),
        ("global", Scope::Global),
    ]
    .into_iter()
    .find(|(name, _)| text.eq_ignore_ascii_case(name))
    .map(|(_, s)| s)
}

/// Routing wishes a client writes in comments:
/// `/* causeway: hostgroup=reports, consistency=eventual */`, anywhere in the
/// statement (`/*+ causeway: ... */` is accepted too, but MySQL warns about
/// optimizer hints it does not know, so prefer the plain form). Keys, in
/// any case, separated by commas:
///
/// | key | meaning |
/// |---|---|
/// | `hostgroup=<name>` | route to this hostgroup |
/// | `primary` or `primary=true` | run on the writer |
/// | `consistency=<eventual\|session\|user\|router\|token\|global>` | the read's [`Scope`] |
/// | `min_gtid=<gtid set>` | GTIDs the read must see; the set's own commas are fine (`min_gtid=uuid:1-5,uuid2:1-9`: an item with `:` and no `=` continues it) |
///
/// Only `/* */` comments count: text in string literals, quoted
/// identifiers and `--`/`#` comments is never a hint. Several hint comments
/// merge in text order, later keys winning. The `mysql` command-line
/// client strips comments unless started with `--comments`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hints {
    /// `hostgroup=<name>` (not checked against the hostgroups here).
    pub hostgroup: Option<String>,
    /// `primary`: the statement must run on the writer.
    pub primary: bool,
    /// `consistency=<scope>`.
    pub consistency: Option<Scope>,
    /// `min_gtid=<set>`, as written: the caller parses it.
    pub min_gtid: Option<String>,
    /// Unknown keys, missing or bad values, an unterminated hint comment
    /// (at most [`Hints::MAX_ERRORS`], then one "more errors" line). The
    /// caller decides whether to refuse the statement.
    pub errors: Vec<String>,
}

impl Hints {
    /// Errors kept at most (a long bad comment does not make a long list).
    pub const MAX_ERRORS: usize = 8;

    /// Reads every hint comment of a statement. Never fails: problems go to
    /// [`Hints::errors`]. Linear in the text; allocates only for hints.
    pub fn parse(sql: &str) -> Hints {
        let mut hints = Hints::default();
        if !sql.contains("/*") {
            return hints;
        }
        let b = sql.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'\'' | b'"' | b'`' => i = quoted_end(b, i),
                b'/' if b.get(i + 1) == Some(&b'*') => {
                    let (end, closed) = block_end(b, i);
                    let body = &sql[i + 2..if closed { end - 2 } else { end }];
                    if let Some(items) = hint_items(body) {
                        if closed {
                            hints.read(items);
                        } else {
                            hints.error("unterminated hint comment".to_string());
                        }
                    }
                    i = end;
                }
                _ => i = comment_end(b, i).unwrap_or(i + 1),
            }
        }
        hints
    }

    /// No hint and no error.
    pub fn is_empty(&self) -> bool {
        *self == Hints::default()
    }

    fn read(&mut self, items: &str) {
        // The last key was min_gtid: items with ':' and no '=' continue it.
        let mut in_gtid = false;
        for item in items.split(',').map(str::trim) {
            if item.is_empty() {
                continue;
            }
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (item, None),
            };
            if let (None, true, Some(set)) = (value, in_gtid, &mut self.min_gtid) {
                if item.contains(':') {
                    set.push(',');
                    set.push_str(item);
                    continue;
                }
            }
            in_gtid = false;
            let is = |k: &str| key.eq_ignore_ascii_case(k);
            match value.filter(|v| !v.is_empty()) {
                Some(v) if is("hostgroup") => self.hostgroup = Some(v.to_string()),
                Some(v) if is("min_gtid") => {
                    self.min_gtid = Some(v.to_string());
                    in_gtid = true;
                }
                Some(v) if is("consistency") => match parse_scope(v) {
                    Some(scope) => self.consistency = Some(scope),
                    None => self.error(format!(
                        "consistency: expected eventual, session, token or global, got {}",
                        shorten(v)
                    )),
                },
                None if is("primary") && value.is_none() => self.primary = true,
                Some(v) if is("primary") => match parse_bool(v) {
                    Some(on) => self.primary = on,
                    None => self.error(format!(
                        "primary: expected true or false, got {}",
                        shorten(v)
                    )),
                },
                _ if ["hostgroup", "min_gtid", "consistency", "primary"]
                    .iter()
                    .any(|k| is(k)) =>
                {
                    self.error(format!("{key} needs a value"))
                }
                _ => self.error(format!("unknown key {}", shorten(key))),
            }
        }
    }

    fn error(&mut self, message: String) {
        if self.errors.len() < Hints::MAX_ERRORS {
            self.errors.push(format!("hint: {message}"));
        } else if self.errors.len() == Hints::MAX_ERRORS {
            self.errors.push("hint: more errors not shown".to_string());
        }
    }
}

/// The items of a hint comment body (`+` and `causeway:` stripped), or
/// `None` for any other comment.
fn hint_items(body: &str) -> Option<&str> {
    let body = body.strip_prefix('+').unwrap_or(body).trim_start();
    let rest = body
        .get(..8)
        .filter(|p| p.eq_ignore_ascii_case("causeway"))
        .map(|_| &body[8..])?;
    rest.trim_start().strip_prefix(':')
}

fn parse_bool(text: &str) -> Option<bool> {
    let is = |w: &str| text.eq_ignore_ascii_case(w);
    if is("true") || is("1") || is("on") || is("yes") {
        Some(true)
    } else if is("false") || is("0") || is("off") || is("no") {
        Some(false)
    } else {
        None
    }
}

/// `text` quoted for a message, cut after 40 characters.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((cut, _)) => format!("{:?}...", &text[..cut]),
        None => format!("{text:?}"),
    }
}

/// The normalized form of a statement, for grouping statements in metrics
/// and for `match_digest`, close to ProxySQL's and MySQL's digests:
///
/// - comments (`/* */` of every kind, `-- `, `#`) are removed;
/// - literals become `?`: strings in `'...'` or `"..."` (with a charset
///   introducer or `N`/`X`/`B` prefix), numbers (`42`, `-1.5e3`, `.5`,
///   `0x1F`, `0b101`; the sign goes with the number after an operator, `(`,
///   `,` or a keyword like `WHERE`, stays in `a - 1`);
/// - `IN (?, ?, ...)` becomes `IN (...)` whatever the count;
/// - whitespace runs become one space; none is kept after `(`, before `)`
///   or `,`, nor at either end; trailing `;` are dropped;
/// - everything else is kept as written: keywords are not uppercased (rule
///   regexes are case-insensitive anyway), identifiers, backquoted ones
///   included, keep their case and quotes, `?` placeholders stay.
///
/// Backslash escapes are honored in strings (MySQL's default sql_mode).
/// Never panics, linear in the text, one allocation. The law:
/// `digest(&digest(x)) == digest(x)` for every `x`.
pub fn digest(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    digest_into(sql, &mut out);
    out
}

/// [`digest`] into `out` (replacing what it held), reusing its buffer: a
/// caller that keeps one allocates nothing once it is large enough.
pub fn digest_into(sql: &str, out: &mut String) {
    let mut bytes = std::mem::take(out).into_bytes();
    bytes.clear();
    digest_bytes(sql, &mut bytes);
    // Every cut is next to an ASCII byte of valid UTF-8, so this never
    // fails; the fallback only avoids a panic path.
    *out = String::from_utf8(bytes)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
}

fn digest_bytes(sql: &str, out: &mut Vec<u8>) {
    let b = sql.as_bytes();
    let mut space = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if is_space(c) {
            space = true;
            i += 1;
            continue;
        }
        if let Some(end) = comment_end(b, i) {
            space = true;
            i = end;
            continue;
        }
        if std::mem::take(&mut space)
            && !(out.is_empty()
                || c == b')'
                || c == b','
                || out.ends_with(b"(")
                // `--` then a space would start a comment.
                || out.ends_with(b"--"))
        {
            out.push(b' ');
        }
        i = match c {
            b'\'' | b'"' => {
                out.push(b'?');
                quoted_end(b, i)
            }
            b'`' => {
                let end = quoted_end(b, i);
                out.extend_from_slice(&b[i..end]);
                end
            }
            // `t.1col`: a name after a qualifier, not a number.
            b'0'..=b'9' if follows_qualifier(out) => copy_word(b, i, out),
            b'0'..=b'9' => number(b, i, out),
            b'.' if b.get(i + 1).is_some_and(u8::is_ascii_digit)
                && !out.last().is_some_and(|&p| is_word(p) || p == b'`') =>
            {
                number(b, i, out)
            }
            _ if is_word(c) => word(b, i, out),
            b')' => {
                out.push(c);
                collapse_in_list(out);
                i + 1
            }
            _ => {
                out.push(c);
                i + 1
            }
        };
    }
    let keep = out
        .iter()
        .rposition(|&c| c != b';' && c != b' ')
        .map_or(0, |p| p + 1);
    out.truncate(keep);
}

/// Words after which `-`/`+` before a number is a sign, not an operator.
const SIGN_AFTER: &[&[u8]] = &[
    b"SELECT",
    b"WHERE",
    b"AND",
    b"OR",
    b"NOT",
    b"XOR",
    b"WHEN",
    b"THEN",
    b"ELSE",
    b"CASE",
    b"LIKE",
    b"BETWEEN",
    b"ON",
    b"HAVING",
    b"LIMIT",
    b"OFFSET",
    b"INTERVAL",
    b"DIV",
    b"MOD",
    b"DEFAULT",
    b"RETURN",
];

/// A number at `b[i]` (a digit, or `.` before one): `?` out, or the whole
/// word when it is a name starting with digits (`1st`, `0xZ`).
fn number(b: &[u8], i: usize, out: &mut Vec<u8>) -> usize {
    let run = |mut j: usize, class: fn(&u8) -> bool| {
        while b.get(j).is_some_and(class) {
            j += 1;
        }
        j
    };
    let radix = |p: &[u8], class: fn(&u8) -> bool| {
        b[i] == b'0'
            && b.get(i + 1).is_some_and(|c| p.contains(c))
            && b.get(i + 2).is_some_and(class)
    };
    let binary: fn(&u8) -> bool = |c| *c == b'0' || *c == b'1';
    let (end, fraction) = if radix(b"xX", u8::is_ascii_hexdigit) {
        (run(i + 2, u8::is_ascii_hexdigit), false)
    } else if radix(b"bB", binary) {
        (run(i + 2, binary), false)
    } else {
        let mut j = run(i, u8::is_ascii_digit);
        let fraction = b.get(j) == Some(&b'.');
        if fraction {
            j = run(j + 1, u8::is_ascii_digit);
        }
        if matches!(b.get(j), Some(b'e' | b'E')) {
            let k = j + 1 + usize::from(matches!(b.get(j + 1), Some(b'+' | b'-')));
            if b.get(k).is_some_and(u8::is_ascii_digit) {
                j = run(k, u8::is_ascii_digit);
            }
        }
        (j, fraction)
    };
    if !fraction && b.get(end).is_some_and(|&c| is_word(c)) {
        return copy_word(b, i, out);
    }
    drop_unary_sign(out);
    out.push(b'?');
    end
}

/// Removes a `-`/`+` (and the space after it) at the end of `out` when it
/// is a sign: after nothing, an operator, `(`, `,` or a [`SIGN_AFTER`] word.
fn drop_unary_sign(out: &mut Vec<u8>) {
    let mut k = out.len();
    if k > 0 && out[k - 1] == b' ' {
        k -= 1;
    }
    if k == 0 || !matches!(out[k - 1], b'-' | b'+') {
        return;
    }
    let sign = k - 1;
    let before = &out[..sign];
    let before = before.strip_suffix(b" ").unwrap_or(before);
    let unary = match before.last() {
        None => true,
        Some(c) if b"=<>!+-*/%,(&|^~:".contains(c) => true,
        Some(&c) if is_word(c) => {
            // At most one byte past the longest word, so this is O(1).
            let n = before
                .iter()
                .rev()
                .take(9)
                .take_while(|&&c| is_word(c))
                .count();
            let w = &before[before.len() - n..];
            SIGN_AFTER.iter().any(|k| w.eq_ignore_ascii_case(k))
        }
        Some(_) => false,
    };
    if unary {
        out.truncate(sign);
    }
}

/// After pushing `)`: `IN (?, ?)` becomes `IN (...)`.
fn collapse_in_list(out: &mut Vec<u8>) {
    let close = out.len() - 1;
    let list = out[..close]
        .iter()
        .rev()
        .take_while(|&&c| matches!(c, b'?' | b',' | b' '))
        .count();
    let open = close - list;
    if open == 0 || out[open - 1] != b'(' || !out[open..close].contains(&b'?') {
        return;
    }
    let mut w = open - 1;
    if w > 0 && out[w - 1] == b' ' {
        w -= 1;
    }
    if w >= 2 && out[w - 2..w].eq_ignore_ascii_case(b"IN") && (w == 2 || !is_word(out[w - 3])) {
        out.truncate(w);
        out.extend_from_slice(b" (...)");
    }
}

/// A word at `b[i]`: a string literal with a prefix (`_utf8mb4'a'`,
/// `N'a'`, `X'0F'`, `B'01'`) becomes `?`; anything else is copied.
fn word(b: &[u8], i: usize, out: &mut Vec<u8>) -> usize {
    let end = word_end(b, i);
    let w = &b[i..end];
    let prefix = w[0] == b'_' || w.len() == 1 && b"nNxXbB".contains(&w[0]);
    if prefix && b.get(end) == Some(&b'\'') {
        out.push(b'?');
        return quoted_end(b, end);
    }
    out.extend_from_slice(w);
    end
}

fn copy_word(b: &[u8], i: usize, out: &mut Vec<u8>) -> usize {
    let end = word_end(b, i);
    out.extend_from_slice(&b[i..end]);
    end
}

fn word_end(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(|&c| is_word(c)) {
        i += 1;
    }
    i
}

/// `out` ends with a name and a `.`.
fn follows_qualifier(out: &[u8]) -> bool {
    matches!(out, [.., p, b'.'] if is_word(*p) || *p == b'`')
}

// ---------------------------------------------------------------------------
// Lexical scanning shared by the digest and the hints.

/// Whitespace for the digest and for `--` comments: every byte up to the
/// space (MySQL's lexer takes a control character after `--` the same way).
fn is_space(c: u8) -> bool {
    c <= b' '
}

/// A byte of an unquoted name or number: ASCII letters and digits, `_`,
/// `$`, and every byte of a non-ASCII character.
fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// End (exclusive) of the quoted run opening at `b[i]` (`'`, `"` or a
/// backquote). A doubled quote stays inside, so does a backslash-escaped
/// byte outside backquotes; an unterminated run ends with the text.
fn quoted_end(b: &[u8], i: usize) -> usize {
    let quote = b[i];
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' if quote != b'`' => j += 2,
            c if c == quote && b.get(j + 1) == Some(&quote) => j += 2,
            c if c == quote => return j + 1,
            _ => j += 1,
        }
    }
    b.len()
}

/// The end (exclusive) of the comment opening at `b[i]`, if one does:
/// `/* */` (unterminated: the text's end), `#` and `-- ` (to the end of the
/// line, the newline left as whitespace). `--` must be followed by
/// whitespace or a control byte, as in MySQL; at the very end of the text
/// it is two minus signs, which keeps the digest law simple.
fn comment_end(b: &[u8], i: usize) -> Option<usize> {
    let line_end = || {
        b[i..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(b.len(), |p| i + p)
    };
    match b[i] {
        b'/' if b.get(i + 1) == Some(&b'*') => Some(block_end(b, i).0),
        b'#' => Some(line_end()),
        b'-' if b.get(i + 1) == Some(&b'-') && b.get(i + 2).is_some_and(|&c| is_space(c)) => {
            Some(line_end())
        }
        _ => None,
    }
}

/// The end (exclusive) of the `/*` comment at `b[i]`, and whether `*/`
/// closed it.
fn block_end(b: &[u8], i: usize) -> (usize, bool) {
    let body = i + 2;
    match b[body..].windows(2).position(|w| w == b"*/") {
        Some(p) => (body + p + 2, true),
        None => (b.len(), false),
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
