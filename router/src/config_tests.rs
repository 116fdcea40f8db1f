use super::*;

const MINIMAL: &str = "[[hostgroups]]\nname = \"w\"\n[[servers]]\nhostgroup = \"w\"\n\
                       [[users]]\nname = \"app\"\npassword = \"pw\"\n";

#[test]
fn defaults_listen_on_6033_and_validate_with_a_user() {
    let c = Config::from_toml(MINIMAL, Path::new("r.toml")).unwrap();
    c.validate().unwrap();
    assert_eq!(c.frontend.listen.port(), 6033);
    assert_eq!(c.servers[0].port, 3306);
    assert_eq!(c.servers[0].name(), "127.0.0.1:3306");
    assert_eq!(c.users[0].auth_plugin, AuthPlugin::CachingSha2Password);
}

#[test]
fn the_example_file_parses_and_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/router.toml");
    let c = Config::from_file(&path).unwrap();
    c.validate().unwrap();
    assert_eq!(c.users.len(), 2);
    assert_eq!(c.frontend.idle_timeout, Duration::from_secs(8 * 3600));
    assert_eq!(c.hostgroups.len(), 2);
    assert_eq!(c.servers.len(), 2);
    assert_eq!(c.consistent_pairs[0].scope, Scope::Session);
    assert_eq!(c.query_rules.len(), 1);
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
}

#[test]
fn user_and_router_scopes_are_configurable_like_the_others() {
    let text = "[[hostgroups]]\nname = \"w\"\n[[hostgroups]]\nname = \"r\"\nrole = \"reader\"\n\
                writer = \"w\"\n[[servers]]\nhostgroup = \"w\"\n\
                [[consistent_pairs]]\nreader = \"r\"\nwriter = \"w\"\nscope = \"router\"\n\
                [[users]]\nname = \"app\"\npassword = \"pw\"\nconsistency = \"user\"\n\
                [[query_rules]]\nmatch_pattern = \"^SELECT\"\nconsistency = \"router\"\n";
    let c = Config::from_toml(text, Path::new("r.toml")).unwrap();
    c.validate().unwrap();
    assert_eq!(c.consistent_pairs[0].scope, Scope::Router);
    assert_eq!(c.users[0].consistency, Some(Scope::User));
    assert_eq!(c.query_rules[0].consistency, Some(Scope::Router));
}

// The message format (`path:line:column: message`) is
// causeway_common::config's; here: unknown keys are refused.
#[test]
fn unknown_key_is_refused_at_its_line() {
    let err =
        Config::from_toml("[[servers]]\nport = 3306\nprot = 1\n", Path::new("c.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Parse { line: 3, .. }), "{err}");
    assert!(err.to_string().contains("prot"), "{err}");
}

#[test]
fn validate_collects_every_error() {
    let text = "[frontend]\nidle_timeout = \"0s\"\n[frontend.tls]\ncert_file = \"c.pem\"\n\
                [[hostgroups]]\nname = \"w\"\n[[servers]]\nhostgroup = \"w\"\n\
                [[users]]\nname = \"a\"\npassword = \"x\"\npassword_env = \"Y\"\n\
                [[users]]\nname = \"a\"\n";
    let c = Config::from_toml(text, Path::new("r.toml")).unwrap();
    let ConfigError::Invalid(errors) = c.validate().unwrap_err() else {
        panic!("expected Invalid");
    };
    assert_eq!(errors.len(), 4, "{errors:?}");
}

#[test]
fn topology_errors_name_what_is_wrong() {
    let text = "[[hostgroups]]\nname = \"r\"\nrole = \"reader\"\nwriter = \"nope\"\n\
                [[servers]]\nhostgroup = \"missing\"\nmax_connections = 0\n\
                reader = \"no-port\"\n\
                [[servers]]\nhostgroup = \"r\"\n\
                [servers.reader_tls]\nmode = \"verify_ca\"\n\
                [[consistent_pairs]]\nreader = \"r\"\nwriter = \"r\"\n\
                [[query_rules]]\nmatch_pattern = \"(\"\ndestination = \"zz\"\n\
                [[users]]\nname = \"a\"\ndefault_hostgroup = \"q\"\n";
    let c = Config::from_toml(text, Path::new("r.toml")).unwrap();
    let ConfigError::Invalid(errors) = c.validate().unwrap_err() else {
        panic!("expected Invalid");
    };
    let all = errors.join("\n");
    for needle in [
        "writer \"nope\" is not a writer hostgroup",
        "no writer hostgroup",
        "hostgroup \"missing\" is not a hostgroup",
        "max_connections must be > 0",
        "reader \"no-port\" is not host:port",
        "reader_tls without a reader address",
        "servers[1].reader_tls.mode verify_ca / verify_identity needs servers[1].reader_tls.ca_file",
        "is defined twice",
        "consistent_pairs[0]: writer \"r\"",
        "query_rules[0]",
        "destination \"zz\"",
        "default_hostgroup \"q\"",
    ] {
        assert!(all.contains(needle), "{needle} missing from:\n{all}");
    }
}

#[test]
fn backend_compression_is_read_and_its_level_checked() {
    use causeway_wire::compress::Algorithm;
    let text = format!("{MINIMAL}[backend]\ncompression = \"zstd\"\nzstd_level = 7\n");
    let c = Config::from_toml(&text, Path::new("r.toml")).unwrap();
    assert_eq!(c.backend.compression_algorithm(), Some(Algorithm::Zstd(7)));
    assert!(c.validate().is_ok());
    let default = Config::from_toml(MINIMAL, Path::new("r.toml")).unwrap();
    assert_eq!(default.backend.compression_algorithm(), None);
    let text = format!("{MINIMAL}[backend]\ncompression = \"zstd\"\nzstd_level = 23\n");
    let c = Config::from_toml(&text, Path::new("r.toml")).unwrap();
    let ConfigError::Invalid(errors) = c.validate().unwrap_err() else {
        panic!("expected Invalid");
    };
    assert!(
        errors.iter().any(|e| e.contains("zstd_level")),
        "{errors:?}"
    );
    let text = format!("{MINIMAL}[backend]\ncompression = \"lz4\"\n");
    assert!(Config::from_toml(&text, Path::new("r.toml")).is_err());
}

#[test]
fn secrets_never_print() {
    let c = Config::from_toml(MINIMAL, Path::new("r.toml")).unwrap();
    assert!(!format!("{c:?}").contains("\"pw\""));
}

#[test]
fn monitor_defaults_and_toml() {
    let c: MonitorConfig = parse_toml("", Path::new("m.toml")).unwrap();
    assert_eq!(c, MonitorConfig::default());
    assert!(c.enabled && c.read_only_check && c.lag_check);
    assert_eq!(c.interval, Duration::from_secs(1));
    assert_eq!(c.user, "causeway_monitor");
    assert_eq!(c.shun_after_errors, 3);
    assert!(c.validate().is_empty());

    let c: MonitorConfig = parse_toml(
        "interval = \"250ms\"\nquery_timeout = \"2s\"\npassword = \"pw\"\nlag_check = false\n",
        Path::new("m.toml"),
    )
    .unwrap();
    assert_eq!(c.interval, Duration::from_millis(250));
    assert_eq!(c.query_timeout, Duration::from_secs(2));
    assert!(!c.lag_check);
    assert_eq!(c.resolve_password().unwrap(), b"pw");
    assert!(!format!("{c:?}").contains("\"pw\""));

    let err = parse_toml::<MonitorConfig>("intervall = \"1s\"", Path::new("m.toml")).unwrap_err();
    assert!(err.to_string().contains("intervall"), "{err}");
}

#[test]
fn a_monitor_without_a_password_source_is_warned_about() {
    // No [monitor] section: on, as causeway_monitor, with no password.
    let c = Config::from_toml(MINIMAL, Path::new("r.toml")).unwrap();
    c.validate().unwrap();
    let warnings = c.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    for needle in [
        "\"causeway_monitor\"",
        "monitor.password_env",
        "monitor.password_file",
    ] {
        assert!(warnings[0].contains(needle), "{needle}: {warnings:?}");
    }
    for source in [
        "password = \"pw\"",
        "password_env = \"E\"",
        "password_file = \"/f\"",
        "enabled = false",
    ] {
        let text = format!("{MINIMAL}[monitor]\n{source}\n");
        let c = Config::from_toml(&text, Path::new("r.toml")).unwrap();
        assert!(c.warnings().is_empty(), "{source}: {:?}", c.warnings());
    }
}

#[test]
fn monitor_validate_collects_every_problem() {
    let c = MonitorConfig {
        interval: Duration::ZERO,
        query_timeout: Duration::ZERO,
        shun_after_errors: 0,
        user: String::new(),
        password: Some(Secret("a".into())),
        password_env: Some("B".into()),
        ..MonitorConfig::default()
    };
    let errors = c.validate();
    assert_eq!(errors.len(), 5, "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("monitor.interval")));
    assert!(errors.iter().any(|e| e.contains("at most one")));
    // No user is fine when the monitor is off.
    let off = MonitorConfig {
        enabled: false,
        user: String::new(),
        ..MonitorConfig::default()
    };
    assert!(off.validate().is_empty());
    assert!(off.resolve_password().unwrap().is_empty());
}

#[test]
fn stats_and_query_log_sections_are_read_and_checked() {
    let c = Config::from_toml(MINIMAL, Path::new("r.toml")).unwrap();
    assert!(c.stats.digests && !c.query_log.enabled);
    let text = format!(
        "{MINIMAL}[stats]\ndigests = false\nmax_digests = 0\n\
         [query_log]\nenabled = true\npath = \"q.log\"\nsample = 2.0\n"
    );
    let c = Config::from_toml(&text, Path::new("r.toml")).unwrap();
    assert!(!c.stats.digests);
    let ConfigError::Invalid(errors) = c.validate().unwrap_err() else {
        panic!("expected Invalid");
    };
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("stats.max_digests")));
    assert!(errors.iter().any(|e| e.contains("query_log.sample")));
    let text = format!("{MINIMAL}[query_log]\nenable = true\n");
    let err = Config::from_toml(&text, Path::new("r.toml")).unwrap_err();
    assert!(err.to_string().contains("enable"), "{err}");
}
