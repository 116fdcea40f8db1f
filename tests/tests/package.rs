//! The Debian packages, end to end, on this machine's real root: built by
//! `scripts/package` from the debug binaries the suite already built,
//! installed with `dpkg -i`, the accounts of `dist/grants.sql` created on
//! a sandbox of this test's own, three readers (the `causeway-reader@`
//! template, one per server) and the router started as their units say
//! (under systemd when it is PID 1, else their `ExecStart` lines run as
//! the units' user), a causal read through the packaged router, a reload
//! by the unit's `ExecReload`, then `dpkg --purge` and nothing left.
//!
//! It needs root (dpkg, the system user). A file lock keeps two test
//! processes from installing at once; an install left by a crashed run is
//! refused with what to run, not purged behind the operator's back.

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use causeway_e2e::{free_port, http_get, workspace_root, Topology};
use causeway_router::metrics::parse_series;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, SslOpts};

const PACKAGES: [&str; 2] = ["causeway-router", "causeway-reader"];
const SERVERS: [&str; 3] = ["primary", "replica1", "replica2"];
const ETC: &str = "/etc/causeway";
const UNITS: &str = "/lib/systemd/system";

/// Everything the packages install and the purge must take away.
const INSTALLED: [&str; 14] = [
    "/usr/bin/causeway-router",
    "/usr/bin/causeway-reader",
    "/lib/systemd/system/causeway-router.service",
    "/lib/systemd/system/causeway-reader@.service",
    "/etc/causeway/router.toml",
    "/etc/causeway/reader-mysql.toml",
    "/usr/share/man/man1/causeway-router.1.gz",
    "/usr/share/man/man1/causeway-reader.1.gz",
    "/usr/share/doc/causeway-router/changelog.gz",
    "/usr/share/doc/causeway-reader/changelog.gz",
    "/usr/share/doc/causeway-reader/grants.sql",
    "/usr/share/causeway/grants.sql",
    "/usr/share/causeway/grafana-causeway.json",
    "/usr/share/doc/causeway-router/examples/router.toml",
];

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev}", pkg])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"i"))
}

fn account_exists(db: &str, name: &str) -> bool {
    Command::new("getent")
        .args([db, name])
        .status()
        .is_ok_and(|s| s.success())
}

/// `Key=value` lines of a unit's `[Service]` section, in order.
fn service_lines(unit: &str) -> Vec<(String, String)> {
    let mut in_service = false;
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if in_service && !line.starts_with('#') {
            if let Some((k, v)) = line.split_once('=') {
                out.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
    }
    out
}

fn service_value<'a>(lines: &'a [(String, String)], key: &str) -> Result<&'a str> {
    lines
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .with_context(|| format!("the unit has no {key}="))
}

/// The services, started and stopped as the units say.
#[derive(Debug, Default)]
struct Services {
    /// Without systemd: the processes, by unit name.
    children: Vec<(String, Child)>,
    /// With systemd: the units started.
    units: Vec<String>,
}

impl Services {
    fn systemd() -> bool {
        Path::new("/run/systemd/system").is_dir()
    }

    /// Starts `unit` (`causeway-router.service`, `causeway-reader@primary.service`).
    fn start(&mut self, unit: &str, log_dir: &Path) -> Result<()> {
        if Services::systemd() {
            run(Command::new("systemctl").args(["start", unit]))?;
            self.units.push(unit.to_string());
            return Ok(());
        }
        let (file, instance) = match unit.split_once('@') {
            Some((name, rest)) => (
                format!("{name}@.service"),
                rest.trim_end_matches(".service").to_string(),
            ),
            None => (unit.to_string(), String::new()),
        };
        let text = fs::read_to_string(Path::new(UNITS).join(&file))
            .with_context(|| format!("reading the installed {file}"))?;
        let lines = service_lines(&text);
        let exec = service_value(&lines, "ExecStart")?.replace("%i", &instance);
        let user = service_value(&lines, "User")?;
        let group = service_value(&lines, "Group")?;
        let argv: Vec<&str> = exec.split_whitespace().collect();
        let mut cmd = Command::new("setpriv");
        // As systemd would: the unit's user and group, no new privileges.
        cmd.args([
            &format!("--reuid={user}"),
            &format!("--regid={group}"),
            "--clear-groups",
            "--no-new-privs",
            "--",
        ])
        .args(&argv)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        for (k, v) in &lines {
            if k == "Environment" {
                let (name, value) = v.split_once('=').context("Environment= without =")?;
                cmd.env(name, value);
            }
        }
        let log = File::create(log_dir.join(format!("{unit}.log")))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {exec} as {user}"))?;
        self.children.push((unit.to_string(), child));
        Ok(())
    }

    /// Runs the unit's `ExecReload` (or `systemctl reload`).
    fn reload(&mut self, unit: &str) -> Result<()> {
        if Services::systemd() {
            run(Command::new("systemctl").args(["reload", unit]))?;
            return Ok(());
        }
        let text = fs::read_to_string(Path::new(UNITS).join(unit))?;
        let lines = service_lines(&text);
        let pid = self
            .children
            .iter()
            .find(|(u, _)| u == unit)
            .map(|(_, c)| c.id())
            .with_context(|| format!("{unit} is not running"))?;
        let exec = service_value(&lines, "ExecReload")?.replace("$MAINPID", &pid.to_string());
        let argv: Vec<&str> = exec.split_whitespace().collect();
        run(Command::new(argv[0]).args(&argv[1..]))?;
        Ok(())
    }

    /// Whether every process still runs (an early exit is a failure with
    /// its log).
    fn check_alive(&mut self, log_dir: &Path) -> Result<()> {
        for (unit, child) in &mut self.children {
            if let Some(status) = child.try_wait()? {
                let log =
                    fs::read_to_string(log_dir.join(format!("{unit}.log"))).unwrap_or_default();
                bail!("{unit} exited ({status}):\n{log}");
            }
        }
        Ok(())
    }

    fn stop(&mut self) {
        for unit in self.units.drain(..) {
            let _ = Command::new("systemctl").args(["stop", &unit]).status();
        }
        for (_, mut child) in self.children.drain(..) {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The installation: on drop (a failed assertion), the services stop, the
/// test's own files go and the packages are purged, so a failure leaves
/// the machine as it was.
#[derive(Debug, Default)]
struct Install {
    services: Services,
    /// Files the test wrote into /etc/causeway (not the packages').
    created: Vec<PathBuf>,
}

impl Install {
    fn write(&mut self, name: &str, text: &str) -> Result<()> {
        let path = Path::new(ETC).join(name);
        fs::write(&path, text).with_context(|| format!("writing {path:?}"))?;
        // Readable by the services' group only, as README.Debian says.
        run(Command::new("chown").args(["root:causeway", path.to_str().unwrap_or("")]))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640))?;
        if !self.created.contains(&path) {
            self.created.push(path);
        }
        Ok(())
    }

    /// Stops everything, removes the test's files and purges the packages.
    fn remove(&mut self) -> Result<()> {
        self.services.stop();
        for path in self.created.drain(..) {
            // router.toml is the package's conffile: the purge takes it.
            if !path.ends_with("router.toml") {
                let _ = fs::remove_file(path);
            }
        }
        run(Command::new("dpkg").arg("--purge").args(PACKAGES))?;
        Ok(())
    }
}

impl Drop for Install {
    fn drop(&mut self) {
        if installed(PACKAGES[0]) || installed(PACKAGES[1]) {
            if let Err(e) = self.remove() {
                eprintln!("cleaning up the packages failed: {e:#}");
            }
        }
    }
}

/// The accounts of `grants.sql` as installed, created on the sandbox's
/// primary, with the passwords MySQL generated: (user, password) by the
/// file's name for them. The sandbox already has a `causeway_monitor` of
/// its own, so the names get a `pkgtest_` prefix here; the privileges and
/// hosts are the file's.
fn create_accounts(topo: &Topology) -> Result<HashMap<String, (String, String)>> {
    let grants = fs::read_to_string("/usr/share/causeway/grants.sql")?;
    let renames = [
        ("causeway_repl", "pkgtest_repl"),
        ("causeway_monitor", "pkgtest_monitor"),
        ("app", "pkgtest_app"),
    ];
    let mut sql = grants.clone();
    for (from, to) in renames {
        sql = sql
            .replace(&format!("'{from}'@"), &format!("'{to}'@"))
            .replace(&format!(" ON {from}.*"), &format!(" ON {to}.*"));
    }
    for (from, to) in renames {
        ensure!(
            grants.contains(&format!("CREATE USER '{from}'@")),
            "grants.sql creates no {from}"
        );
        // A rerun on the same sandbox replaces the accounts.
        sql = format!("DROP USER IF EXISTS '{to}'@'%';\n{sql}");
    }
    sql = format!("CREATE DATABASE IF NOT EXISTS pkgtest_app;\n{sql}");
    let admin = topo.user("ADMIN")?;
    let out = topo.mysql_cli(&[
        "--no-defaults",
        "-h127.0.0.1",
        &format!("-P{}", topo.primary_port),
        &format!("-u{}", admin.user),
        &format!("-p{}", admin.password),
        "--batch",
        "--skip-column-names",
        "-e",
        &sql,
    ])?;
    ensure!(
        out.status.success(),
        "grants.sql failed on the primary: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    let mut accounts = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if let [user, _host, password, ..] = f[..] {
            if let Some((from, _)) = renames.iter().find(|(_, to)| *to == user) {
                accounts.insert(from.to_string(), (user.to_string(), password.to_string()));
            }
        }
    }
    ensure!(
        accounts.len() == 3,
        "expected a generated password for each of the 3 accounts, got:\n{text}"
    );
    Ok(accounts)
}

/// The sum of series `name` with label `label` = `value` (any when empty).
fn metric_sum(text: &str, name: &str, label: &str, value: &str) -> f64 {
    parse_series(text, name)
        .iter()
        .filter(|s| label.is_empty() || s.label(label) == value)
        .map(|s| s.value)
        .sum()
}

async fn wait_until(what: &str, mut ok: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if ok()? {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_install_serve_a_causal_read_and_purge_without_a_trace() -> Result<()> {
    ensure!(
        run(Command::new("id").arg("-u"))?.trim() == "0",
        "this test installs packages: run it as root"
    );
    let topo = Topology::isolated("package")?;
    let repo = workspace_root();
    // The debug binaries the suite built (`cargo nextest run --workspace`
    // builds both for their packages' own integration tests; the sandbox
    // builds them too). Building them here would rebuild their
    // dependencies with the features of a plain `cargo build`, minutes on
    // CI; --version below says whether they are from HEAD.
    let bin_dir = target_dir().join("debug");
    for pkg in PACKAGES {
        ensure!(
            bin_dir.join(pkg).exists(),
            "{:?} missing: cargo build -p causeway-router -p causeway-reader first",
            bin_dir.join(pkg)
        );
    }

    let lock_path = std::env::temp_dir().join("causeway-package-test.lock");
    let lock = File::create(&lock_path)?;
    lock.lock().context("locking the package test")?;
    for pkg in PACKAGES {
        ensure!(
            !installed(pkg),
            "{pkg} is installed already (a previous run?): dpkg --purge {}",
            PACKAGES.join(" ")
        );
    }
    ensure!(
        !Path::new(ETC).exists() && !account_exists("passwd", "causeway"),
        "{ETC} or the causeway user exists already: this test would not know what to leave"
    );

    let out_dir = topo.dir.join("debs");
    let _ = fs::remove_dir_all(&out_dir);
    let debs = run(Command::new(repo.join("scripts/package")).args([
        "--bin-dir",
        bin_dir.to_str().context("target dir")?,
        "--out",
        out_dir.to_str().context("sandbox dir")?,
        "--compress",
        "none",
    ]))?;
    let debs: Vec<&str> = debs.lines().collect();
    ensure!(debs.len() == 2, "scripts/package printed {debs:?}");

    let mut install = Install::default();
    run(Command::new("dpkg").arg("-i").args(&debs))?;
    for path in INSTALLED {
        ensure!(Path::new(path).exists(), "{path} is not installed");
    }
    ensure!(
        account_exists("passwd", "causeway"),
        "postinst made no causeway user"
    );
    let conffiles = run(Command::new("dpkg-query").args([
        "-W",
        "-f=${Conffiles}\n",
        "causeway-router",
        "causeway-reader",
    ]))?;
    for f in [
        "/etc/causeway/router.toml",
        "/etc/causeway/reader-mysql.toml",
    ] {
        ensure!(conffiles.contains(f), "{f} is not a conffile:\n{conffiles}");
    }

    // --version: version, the commit built (HEAD), the profile.
    let head =
        run(Command::new("git")
            .current_dir(&repo)
            .args(["rev-parse", "--short=7", "HEAD"]))?;
    let version = env!("CARGO_PKG_VERSION");
    for pkg in PACKAGES {
        let line = run(Command::new(format!("/usr/bin/{pkg}")).arg("--version"))?;
        assert_eq!(
            line.trim(),
            format!("{pkg} {version} (commit {}, debug)", head.trim()),
            "{pkg} --version"
        );
    }

    // The accounts of grants.sql, and the files README.Debian names.
    let accounts = create_accounts(&topo)?;
    let (repl_user, repl_pw) = &accounts["causeway_repl"];
    let (mon_user, mon_pw) = &accounts["causeway_monitor"];
    let (app_user, app_pw) = &accounts["app"];
    install.write("reader.password", repl_pw)?;
    install.write("monitor.password", mon_pw)?;
    install.write("app.password", app_pw)?;
    let mut random = [0u8; 24];
    std::io::Read::read_exact(&mut File::open("/dev/urandom")?, &mut random)?;
    let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
    install.write("reader.token", &token)?;

    let ports = topo.server_ports();
    let mut reader_ports = Vec::new();
    let mut reader_metrics = Vec::new();
    for (i, name) in SERVERS.iter().enumerate() {
        let (native, metrics) = (free_port()?, free_port()?);
        reader_ports.push(native);
        reader_metrics.push(metrics);
        install.write(
            &format!("reader-{name}.toml"),
            &format!(
                "[mysql]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{repl_user}\"\n\
                 password_file = \"{ETC}/reader.password\"\nserver_id = {}\n\
                 [publish]\nlisten = \"127.0.0.1:{native}\"\nproxysql_listen = \"127.0.0.1:{}\"\n\
                 token_file = \"{ETC}/reader.token\"\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n",
                ports[i],
                2000 + i,
                free_port()?
            ),
        )?;
    }
    let (router_port, router_metrics) = (free_port()?, free_port()?);
    let mut router_toml = format!(
        "[frontend]\nlisten = \"127.0.0.1:{router_port}\"\n\
         [[hostgroups]]\nname = \"primary\"\nrole = \"writer\"\n\
         [[hostgroups]]\nname = \"replicas\"\nrole = \"reader\"\nwriter = \"primary\"\n\
         [[consistent_pairs]]\nreader = \"replicas\"\nwriter = \"primary\"\nscope = \"session\"\n"
    );
    for (i, name) in SERVERS.iter().enumerate() {
        let group = if i == 0 { "primary" } else { "replicas" };
        router_toml += &format!(
            "[[servers]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {}\n\
             hostgroup = \"{group}\"\nreader = \"127.0.0.1:{}\"\n\
             reader_token_file = \"{ETC}/reader.token\"\n",
            ports[i], reader_ports[i]
        );
    }
    router_toml += &format!(
        "[monitor]\nuser = \"{mon_user}\"\npassword_file = \"{ETC}/monitor.password\"\n\
         [[users]]\nname = \"{app_user}\"\npassword_file = \"{ETC}/app.password\"\n\
         [metrics]\nlisten = \"127.0.0.1:{router_metrics}\"\n"
    );
    install.write("router.toml", &router_toml)?;
    // --check as the operator runs it, as the services' user.
    run(Command::new("setpriv").args([
        "--reuid=causeway",
        "--regid=causeway",
        "--clear-groups",
        "/usr/bin/causeway-router",
        "--config",
        "/etc/causeway/router.toml",
        "--check",
    ]))?;

    let logs = topo.dir.join("package-logs");
    fs::create_dir_all(&logs)?;
    for name in SERVERS {
        install
            .services
            .start(&format!("causeway-reader@{name}.service"), &logs)?;
    }
    install.services.start("causeway-router.service", &logs)?;

    // Every reader follows its server and the router hears all three.
    let router_url = format!("http://127.0.0.1:{router_metrics}/metrics");
    wait_until("the router to follow the three packaged readers", || {
        install.services.check_alive(&logs)?;
        let text = http_get(&router_url).unwrap_or_default();
        Ok(
            metric_sum(&text, "causeway_router_reader_connected", "", "") == 3.0
                && metric_sum(&text, "causeway_router_server_up", "", "") == 3.0,
        )
    })
    .await?;

    // A causal read: each write, then its read in the same session, which
    // must see it. The last reads come 100 ms after their write, when the
    // replicas have it, so some are served there.
    let opts = OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(router_port)
        .user(Some(app_user.clone()))
        .pass(Some(app_pw.clone()))
        .db_name(Some("pkgtest_app"))
        // Not the replica's unix socket that `SELECT @@socket` names.
        .prefer_socket(false)
        // Over TLS (the router's self-signed certificate): the password
        // needs no RSA key, which a debug build takes seconds to generate.
        .ssl_opts(SslOpts::default().with_danger_accept_invalid_certs(true));
    // The table, by the sandbox's administrator: grants.sql gives the
    // application DML only.
    topo.mysql_batch(
        topo.primary_port,
        "ADMIN",
        &[],
        "CREATE TABLE IF NOT EXISTS pkgtest_app.t (id INT PRIMARY KEY, v INT); \
         DELETE FROM pkgtest_app.t",
    )?;
    let mut c = Conn::new(opts)
        .await
        .context("logging in through the packaged router")?;
    let rounds: i64 = 40;
    for i in 0..rounds {
        // Text statements: a prepared one would pin the session.
        c.query_drop(format!("INSERT INTO t (id, v) VALUES ({i}, {})", i * 10))
            .await?;
        if i >= rounds - 10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let v: Option<i64> = c
            .query_first(format!("SELECT v FROM t WHERE id = {i}"))
            .await?;
        assert_eq!(v, Some(i * 10), "read {i} did not see its own write");
    }
    drop(c);
    let text = http_get(&router_url)?;
    let causal = metric_sum(&text, "causeway_router_causal_reads_total", "", "");
    let on_replicas = metric_sum(
        &text,
        "causeway_router_causal_reads_total",
        "served",
        "replica",
    );
    assert!(
        causal >= rounds as f64 && on_replicas >= 1.0,
        "causal reads: {causal} counted, {on_replicas} on replicas, of {rounds}:\n{text}"
    );

    // build_info in a real scrape of both programs.
    let labels = format!(
        "{{version=\"{version}\",commit=\"{}\",profile=\"debug\"}} 1",
        head.trim()
    );
    ensure!(
        text.contains(&format!("causeway_router_build_info{labels}")),
        "no causeway_router_build_info{labels} in\n{text}"
    );
    let reader_text = http_get(&format!("http://127.0.0.1:{}/metrics", reader_metrics[0]))?;
    ensure!(
        reader_text.contains(&format!("causeway_reader_build_info{labels}")),
        "no causeway_reader_build_info{labels} in\n{reader_text}"
    );

    // The unit's reload: the router reads its configuration again.
    install.services.reload("causeway-router.service")?;
    wait_until("the reload", || {
        let text = http_get(&router_url).unwrap_or_default();
        Ok(metric_sum(&text, "causeway_router_reloads_total", "", "") == 1.0)
    })
    .await?;
    install.services.check_alive(&logs)?;

    // Purge: nothing of the packages is left.
    install.remove()?;
    for pkg in PACKAGES {
        ensure!(!installed(pkg), "{pkg} is still installed after the purge");
    }
    for path in INSTALLED
        .iter()
        .copied()
        .chain([ETC, "/usr/share/causeway"])
    {
        ensure!(!Path::new(path).exists(), "{path} is left after the purge");
    }
    ensure!(
        !account_exists("passwd", "causeway") && !account_exists("group", "causeway"),
        "the causeway user or group is left after the purge"
    );
    drop(lock);
    Ok(())
}

/// The router.toml the package ships as /etc/causeway/router.toml and the
/// README's copy of it (the first-run section) are the same settings, and
/// both are a valid configuration.
#[test]
fn the_shipped_router_toml_is_the_readmes_and_validates() -> Result<()> {
    let root = workspace_root();
    let shipped = root.join("router/dist/router.toml");
    let readme = fs::read_to_string(root.join("README.md"))?;
    let section = readme
        .split_once("## Run it against your own servers")
        .context("README.md has no first-run section")?
        .1;
    let block = section
        .split_once("```toml\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .context("no toml block in the first-run section")?
        .0;
    let settings = |text: &str| -> Vec<String> {
        text.lines()
            .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    };
    assert_eq!(
        settings(block),
        settings(&fs::read_to_string(&shipped)?),
        "README.md's router.toml and router/dist/router.toml differ"
    );
    let cfg = causeway_router::config::Config::from_file(&shipped)?;
    cfg.validate()?;
    assert_eq!(cfg.servers.len(), 3);
    assert_eq!(cfg.consistent_pairs.len(), 1);
    Ok(())
}
