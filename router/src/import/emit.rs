//! A [`Conversion`] as TOML text: the sections the importer fills, values
//! that differ from Causeway's defaults, then what was not converted and
//! what differs, one comment line each. Pure; `Config::from_toml` of the
//! text gives back the converted `Config` (tested).

use std::fmt::Write as _;
use std::time::Duration;

use super::convert::{Conversion, Note};
use crate::config::{
    BackendConfig, BackendTls, BackendTlsMode, FrontendConfig, MonitorConfig, Role, RoutingConfig,
    ServerConfig, UserConfig,
};
use crate::config::{ConsistentPair, QueryRuleConfig};

/// The whole file; `source` names what was read, in the header.
pub fn emit(conv: &Conversion, source: &str) -> String {
    let c = &conv.config;
    let mut out = String::new();
    out.push_str(&format!(
        "# Causeway router configuration converted from ProxySQL ({}) by\n\
         # `causeway-router import-proxysql`. ProxySQL's hostgroup N is \"hgN\" here.\n\
         # What could not be converted is listed at the end. Check with:\n\
         #   causeway-router --check --config THIS_FILE\n",
        one_line(source)
    ));
    frontend(&mut out, &c.frontend);
    backend(&mut out, &c.backend);
    for h in &c.hostgroups {
        out.push_str("\n[[hostgroups]]\n");
        kv(&mut out, "name", &s(&h.name));
        kv(
            &mut out,
            "role",
            &s(match h.role {
                Role::Writer => "writer",
                Role::Reader => "reader",
            }),
        );
        if let Some(w) = &h.writer {
            kv(&mut out, "writer", &s(w));
        }
    }
    for srv in &c.servers {
        server(&mut out, srv);
    }
    for p in &c.consistent_pairs {
        pair(&mut out, p);
    }
    for u in &c.users {
        user(&mut out, u);
    }
    for r in &c.query_rules {
        rule(&mut out, r);
    }
    routing(&mut out, &c.routing);
    monitor(&mut out, &c.monitor);
    notes(
        &mut out,
        "Not converted (no equivalent in Causeway)",
        &conv.not_converted,
    );
    notes(&mut out, "Converted, with differences", &conv.differences);
    out
}

fn notes(out: &mut String, title: &str, notes: &[Note]) {
    if notes.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n# ---- {title}: {} ----", notes.len());
    for n in notes {
        let _ = writeln!(out, "# {}: {}", one_line(&n.origin), one_line(&n.what));
    }
}

fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

fn kv(out: &mut String, key: &str, value: &str) {
    let _ = writeln!(out, "{key} = {value}");
}

/// A TOML string: literal (`'...'`) when it can be, so regexes read as
/// written; otherwise basic, escaped.
fn s(text: &str) -> String {
    if !text.contains('\'') && !text.chars().any(char::is_control) {
        return format!("'{text}'");
    }
    let mut q = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\t' => q.push_str("\\t"),
            '\r' => q.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(q, "\\u{:04X}", u32::from(c));
            }
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

fn d(duration: Duration) -> String {
    s(&humantime::format_duration(duration).to_string())
}

fn tls_mode(m: BackendTlsMode) -> &'static str {
    match m {
        BackendTlsMode::Disabled => "disabled",
        BackendTlsMode::Required => "required",
        BackendTlsMode::VerifyCa => "verify_ca",
        BackendTlsMode::VerifyIdentity => "verify_identity",
    }
}

fn frontend(out: &mut String, f: &FrontendConfig) {
    let def = FrontendConfig::default();
    if *f == def {
        return;
    }
    out.push_str("\n[frontend]\n");
    if f.listen != def.listen {
        kv(out, "listen", &s(&f.listen.to_string()));
    }
    if f.max_connections != def.max_connections {
        kv(out, "max_connections", &f.max_connections.to_string());
    }
    if f.idle_timeout != def.idle_timeout {
        kv(out, "idle_timeout", &d(f.idle_timeout));
    }
    if f.max_packet_size != def.max_packet_size {
        kv(out, "max_packet_size", &f.max_packet_size.to_string());
    }
}

fn backend(out: &mut String, b: &BackendConfig) {
    let def = BackendConfig::default();
    if *b == def {
        return;
    }
    out.push_str("\n[backend]\n");
    if b.connect_timeout != def.connect_timeout {
        kv(out, "connect_timeout", &d(b.connect_timeout));
    }
    if b.tls != def.tls {
        out.push_str("\n[backend.tls]\n");
        kv(out, "mode", &s(tls_mode(b.tls.mode)));
    }
}

fn server(out: &mut String, srv: &ServerConfig) {
    let def = ServerConfig::default();
    out.push_str("\n[[servers]]\n");
    kv(out, "host", &s(&srv.host));
    kv(out, "port", &srv.port.to_string());
    kv(out, "hostgroup", &s(&srv.hostgroup));
    if srv.weight != def.weight {
        kv(out, "weight", &srv.weight.to_string());
    }
    if srv.max_connections != def.max_connections {
        kv(out, "max_connections", &srv.max_connections.to_string());
    }
    if let Some(lag) = srv.max_replication_lag {
        kv(out, "max_replication_lag", &d(lag));
    }
    if let Some(BackendTls { mode, .. }) = &srv.tls {
        kv(out, "tls", &format!("{{ mode = {} }}", s(tls_mode(*mode))));
    }
    if let Some(r) = &srv.reader {
        kv(out, "reader", &s(r));
    }
    if let Some(f) = &srv.reader_token_file {
        kv(out, "reader_token_file", &s(&f.to_string_lossy()));
    }
}

fn scope_name<T: serde::Serialize>(scope: &T) -> String {
    serde_json::to_value(scope)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn pair(out: &mut String, p: &ConsistentPair) {
    out.push_str("\n[[consistent_pairs]]\n");
    kv(out, "reader", &s(&p.reader));
    kv(out, "writer", &s(&p.writer));
    kv(out, "scope", &s(&scope_name(&p.scope)));
    kv(out, "max_wait", &d(p.max_wait));
}

fn user(out: &mut String, u: &UserConfig) {
    let def = UserConfig::default();
    out.push_str("\n[[users]]\n");
    kv(out, "name", &s(&u.name));
    if let Some(pw) = &u.password {
        kv(out, "password", &s(&pw.0));
    }
    if let Some(env) = &u.password_env {
        kv(out, "password_env", &s(env));
    }
    if let Some(hg) = &u.default_hostgroup {
        kv(out, "default_hostgroup", &s(hg));
    }
    if u.max_connections != def.max_connections {
        kv(out, "max_connections", &u.max_connections.to_string());
    }
}

fn rule(out: &mut String, r: &QueryRuleConfig) {
    out.push_str("\n[[query_rules]]\n");
    for (key, value) in [
        ("name", &r.name),
        ("user", &r.user),
        ("schema", &r.schema),
        ("client_addr", &r.client_addr),
        ("match_pattern", &r.match_pattern),
        ("match_digest", &r.match_digest),
    ] {
        if let Some(v) = value {
            kv(out, key, &s(v));
        }
    }
    if r.negate {
        kv(out, "negate", "true");
    }
    if let Some(v) = &r.destination {
        kv(out, "destination", &s(v));
    }
    if let Some(c) = &r.consistency {
        kv(out, "consistency", &s(&scope_name(c)));
    }
    if let Some(m) = r.multiplex {
        kv(out, "multiplex", &m.to_string());
    }
    if let Some(t) = r.backend_timeout {
        kv(out, "backend_timeout", &d(t));
    }
    if r.chain {
        kv(out, "chain", "true");
    }
}

fn routing(out: &mut String, r: &RoutingConfig) {
    if r.writer_is_also_reader != RoutingConfig::default().writer_is_also_reader {
        out.push_str("\n[routing]\n");
        kv(
            out,
            "writer_is_also_reader",
            &r.writer_is_also_reader.to_string(),
        );
    }
}

fn monitor(out: &mut String, m: &MonitorConfig) {
    let def = MonitorConfig::default();
    out.push_str("\n[monitor]\n");
    if m.enabled != def.enabled {
        kv(out, "enabled", &m.enabled.to_string());
    }
    for (key, v, dv) in [
        ("interval", m.interval, def.interval),
        ("connect_timeout", m.connect_timeout, def.connect_timeout),
        ("query_timeout", m.query_timeout, def.query_timeout),
    ] {
        if v != dv {
            kv(out, key, &d(v));
        }
    }
    kv(out, "user", &s(&m.user));
    if let Some(pw) = &m.password {
        kv(out, "password", &s(&pw.0));
    }
    if m.shun_after_errors != def.shun_after_errors {
        kv(out, "shun_after_errors", &m.shun_after_errors.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_survive_toml() {
        for text in [
            "plain",
            r"^SELECT .* FROM `?t` WHERE id = \?$",
            "it's",
            "quote \" and back\\slash 'both'",
            "tab\tnew\nline",
        ] {
            let doc = format!("v = {}\n", s(text));
            let parsed: std::collections::BTreeMap<String, String> =
                causeway_common::config::parse_toml(&doc, std::path::Path::new("t.toml")).unwrap();
            assert_eq!(parsed["v"], text, "{doc}");
        }
    }
}
