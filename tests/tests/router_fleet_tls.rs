//! etcd over TLS, with etcd's own authentication, as a fleet uses it: real
//! etcd processes started here with certificates made here.
//!
//! - TLS and a user with a password: `fleet put`/`get` and a router that
//!   reads its configuration, registers and shows up in `fleet status`; a
//!   wrong password and an unknown CA are refused with a clear error;
//! - TLS with client certificates (`--client-cert-auth`): the router's
//!   certificate is its login; without one, etcd refuses.
//!
//! The router here fronts no live MySQL server (its one server's port is
//! closed): what is tested is its link to etcd.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use causeway_e2e::fleet::router_bin;
use causeway_e2e::free_port;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

const KEY: &str = "/causeway/tls/config";

/// A configuration document that validates (its server is not up).
const DOC: &str = r#"[[hostgroups]]
name = "primary"
role = "writer"

[[servers]]
name = "db1"
host = "127.0.0.1"
port = 1
hostgroup = "primary"

[[users]]
name = "app"
password = "app-secret"
"#;

/// Files in a folder of their own under the target directory.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Result<Scratch> {
        let dir = router_bin()?
            .parent()
            .context("target")?
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }

    fn write(&self, name: &str, text: &str) -> Result<PathBuf> {
        let p = self.0.join(name);
        std::fs::write(&p, text)?;
        Ok(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate
/// whose common name is `root`, written as PEM files.
struct Pki {
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
    other_ca: PathBuf,
}

fn pki(s: &Scratch) -> Result<Pki> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "causeway test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let mut sp = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let sk = KeyPair::generate()?;
    let server = sp.signed_by(&sk, &ca)?;
    let mut cp = CertificateParams::new(Vec::<String>::new())?;
    cp.distinguished_name.push(DnType::CommonName, "root");
    cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let ck = KeyPair::generate()?;
    let client = cp.signed_by(&ck, &ca)?;
    let mut op = CertificateParams::new(Vec::<String>::new())?;
    op.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let other = CertifiedIssuer::self_signed(op, KeyPair::generate()?)?;
    Ok(Pki {
        ca: s.write("ca.pem", &ca.pem())?,
        server: (
            s.write("server.pem", &server.pem())?,
            s.write("server.key", &sk.serialize_pem())?,
        ),
        client: (
            s.write("client.pem", &client.pem())?,
            s.write("client.key", &ck.serialize_pem())?,
        ),
        other_ca: s.write("other-ca.pem", &other.pem())?,
    })
}

/// One etcd over TLS; killed when dropped.
struct Etcd {
    child: Child,
    url: String,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn etcd(s: &Scratch, name: &str, pki: &Pki, client_cert_auth: bool) -> Result<Etcd> {
    let (client, peer) = (free_port()?, free_port()?);
    let url = format!("https://127.0.0.1:{client}");
    let mut cmd = Command::new("etcd");
    cmd.args(["--name", name])
        .arg(format!("--data-dir={}", s.0.join(name).display()))
        .arg(format!("--listen-client-urls={url}"))
        .arg(format!("--advertise-client-urls={url}"))
        .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
        .arg(format!(
            "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
        ))
        .arg(format!("--initial-cluster={name}=http://127.0.0.1:{peer}"))
        .arg(format!("--cert-file={}", pki.server.0.display()))
        .arg(format!("--key-file={}", pki.server.1.display()))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(s.0.join(format!("{name}.log"))).context("etcd's log")?);
    if client_cert_auth {
        cmd.arg("--client-cert-auth")
            .arg(format!("--trusted-ca-file={}", pki.ca.display()));
    }
    let e = Etcd {
        child: cmd.spawn().context("starting etcd")?,
        url,
    };
    let start = Instant::now();
    loop {
        let mut args = vec!["endpoint".to_string(), "health".to_string()];
        if client_cert_auth {
            args.push(format!("--cert={}", pki.client.0.display()));
            args.push(format!("--key={}", pki.client.1.display()));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        if etcdctl(&e, pki, &args)?.status.success() {
            return Ok(e);
        }
        ensure!(
            start.elapsed() < Duration::from_secs(30),
            "etcd did not answer (log: {})",
            s.0.join(format!("{name}.log")).display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn etcdctl(e: &Etcd, pki: &Pki, args: &[&str]) -> Result<Output> {
    Ok(Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &e.url])
        .arg(format!("--cacert={}", pki.ca.display()))
        .args(args)
        .output()?)
}

/// `causeway-router fleet ARGS` against `e`.
fn fleet(e: &Etcd, extra: &[&str], args: &[&str]) -> Result<Output> {
    Ok(Command::new(router_bin()?)
        .args(["fleet", "--config-etcd", &e.url, "--config-key", KEY])
        .args(extra)
        .args(args)
        .env_remove("CAUSEWAY_ROUTER_CONFIG")
        .env("RUST_BACKTRACE", "0")
        .output()?)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A router reading its configuration from `e`; killed when dropped.
struct RouterProcess(Child);

impl Drop for RouterProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn router(s: &Scratch, e: &Etcd, extra: &[&str], id: &str) -> Result<RouterProcess> {
    let listen = format!("127.0.0.1:{}", free_port()?);
    Ok(RouterProcess(
        Command::new(router_bin()?)
            .args(["--config-etcd", &e.url, "--config-key", KEY])
            .args(extra)
            .args(["--router-id", id, "--listen", &listen])
            .args(["--metrics-listen", "off", "--admin-listen", "off"])
            .env_remove("CAUSEWAY_ROUTER_CONFIG")
            .env_remove("CAUSEWAY_ROUTER_PID_FILE")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(s.0.join(format!("{id}.log")))?)
            .spawn()?,
    ))
}

/// Waits until `fleet status` lists `id` on the latest revision.
fn until_registered(e: &Etcd, extra: &[&str], id: &str, log: &Path) -> Result<()> {
    let start = Instant::now();
    loop {
        let o = fleet(e, extra, &["status"])?;
        let t = text(&o);
        if o.status.success() && t.contains(id) {
            return Ok(());
        }
        ensure!(
            start.elapsed() < Duration::from_secs(20),
            "{id} did not register: {t}\nits log: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn tls_and_a_user_with_a_password() -> Result<()> {
    let s = Scratch::new("etcd-tls-auth")?;
    let pki = pki(&s)?;
    let e = etcd(&s, "auth", &pki, false)?;
    for args in [
        &["user", "add", "root", "--new-user-password=root-secret"][..],
        &["user", "grant-role", "root", "root"][..],
        &["auth", "enable"][..],
    ] {
        let o = etcdctl(&e, &pki, args)?;
        ensure!(o.status.success(), "etcdctl {args:?}: {}", text(&o));
    }
    let pw = s.write("etcd.password", "root-secret\n")?;
    let doc = s.write("router.toml", DOC)?;
    let ca = pki.ca.to_str().context("path")?.to_string();
    let pw = pw.to_str().context("path")?.to_string();
    let good = [
        "--etcd-ca",
        &ca,
        "--etcd-user",
        "root",
        "--etcd-password-file",
        &pw,
    ];
    let doc = doc.to_str().context("path")?;

    let o = fleet(&e, &good, &["put", doc])?;
    ensure!(o.status.success(), "put: {}", text(&o));
    let o = fleet(&e, &good, &["get"])?;
    ensure!(
        o.status.success() && text(&o).contains("name = \"db1\""),
        "get: {}",
        text(&o)
    );

    // A wrong password, no password, another CA: refused, said clearly.
    let bad_pw = s.write("bad.password", "nope\n")?;
    let bad_pw = bad_pw.to_str().context("path")?;
    let o = fleet(
        &e,
        &[
            "--etcd-ca",
            &ca,
            "--etcd-user",
            "root",
            "--etcd-password-file",
            bad_pw,
        ],
        &["get"],
    )?;
    ensure!(!o.status.success(), "a wrong password was taken");
    ensure!(text(&o).contains("authentication failed"), "{}", text(&o));
    let o = fleet(&e, &["--etcd-ca", &ca], &["get"])?;
    ensure!(!o.status.success(), "a get without a user was answered");
    let other = pki.other_ca.to_str().context("path")?;
    let o = fleet(
        &e,
        &[
            "--etcd-ca",
            other,
            "--etcd-user",
            "root",
            "--etcd-password-file",
            &pw,
        ],
        &["get"],
    )?;
    ensure!(
        !o.status.success(),
        "a server certificate from another CA was trusted"
    );
    // TLS without a CA file is a configuration error, before any connect.
    let o = fleet(
        &e,
        &["--etcd-user", "root", "--etcd-password-file", &pw],
        &["get"],
    )?;
    ensure!(text(&o).contains("TLS needs etcd.ca_file"), "{}", text(&o));

    // A router on this etcd: it reads the document, registers under its
    // lease, and `fleet status` shows it on the latest revision.
    let log = s.0.join("tls-1.log");
    let _r = router(&s, &e, &good, "tls-1")?;
    until_registered(&e, &good, "tls-1", &log)?;
    Ok(())
}

#[test]
fn tls_with_client_certificates() -> Result<()> {
    let s = Scratch::new("etcd-tls-certs")?;
    let pki = pki(&s)?;
    let e = etcd(&s, "certs", &pki, true)?;
    let doc = s.write("router.toml", DOC)?;
    let doc = doc.to_str().context("path")?;
    let ca = pki.ca.to_str().context("path")?.to_string();
    let cert = pki.client.0.to_str().context("path")?.to_string();
    let key = pki.client.1.to_str().context("path")?.to_string();
    let with_cert = ["--etcd-ca", &ca, "--etcd-cert", &cert, "--etcd-key", &key];
    let o = fleet(&e, &with_cert, &["put", "--no-resolve", doc])?;
    ensure!(o.status.success(), "put: {}", text(&o));
    // Without a certificate the TLS handshake is refused.
    let o = fleet(&e, &["--etcd-ca", &ca], &["get"])?;
    ensure!(
        !o.status.success(),
        "etcd answered a client without a certificate"
    );
    // A certificate without its key is a configuration error.
    let o = fleet(&e, &["--etcd-ca", &ca, "--etcd-cert", &cert], &["get"])?;
    ensure!(
        text(&o).contains("cert_file and key_file go together"),
        "{}",
        text(&o)
    );
    let log = s.0.join("certs-1.log");
    let _r = router(&s, &e, &with_cert, "certs-1")?;
    until_registered(&e, &with_cert, "certs-1", &log)?;
    Ok(())
}
