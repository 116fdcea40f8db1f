//! `scripts/sandbox` itself: a second sandbox runs beside the shared one in
//! its own folder, `up` twice and `down` without `up` say so and change
//! nothing, and `down` leaves no process and no listening port behind.

use std::net::TcpStream;
use std::path::Path;
use std::process::Output;

use anyhow::{ensure, Context, Result};
use causeway_e2e::{parse_env_file, sandbox, workspace_root};

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn second_sandbox_up_status_down_leaves_nothing_behind() -> Result<()> {
    let dir = workspace_root().join(format!("target/sandbox-script-test-{}", std::process::id()));

    let down_first = sandbox(&dir, &["down"])?;
    ensure!(
        down_first.status.success(),
        "down without up: {}",
        text(&down_first)
    );
    ensure!(
        text(&down_first).contains("no sandbox"),
        "down without up says so"
    );
    ensure!(!dir.exists(), "down without up created {dir:?}");

    let up = sandbox(&dir, &["up"])?;
    ensure!(up.status.success(), "up failed: {}", text(&up));
    let result = check_running(&dir);
    if result.is_err() {
        sandbox(&dir, &["down"])?;
    }
    result?;
    ensure!(!dir.exists(), "down left {dir:?} behind");
    Ok(())
}

fn check_running(dir: &Path) -> Result<()> {
    let env = parse_env_file(&std::fs::read_to_string(dir.join("topology.env"))?);
    let topo: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("topology.json"))?)?;
    let servers = topo["servers"].as_array().context("servers")?;
    ensure!(servers.len() == 3, "three servers in topology.json");
    let ports: Vec<u16> = servers
        .iter()
        .map(|s| s["port"].as_u64().map(|p| p as u16))
        .collect::<Option<_>>()
        .context("ports")?;
    let pids: Vec<u32> = servers
        .iter()
        .map(|s| s["pid"].as_u64().map(|p| p as u32))
        .collect::<Option<_>>()
        .context("pids")?;
    ensure!(
        env["CAUSEWAY_PRIMARY_PORT"] == ports[0].to_string(),
        "env and json agree on the primary port"
    );
    for &port in &ports {
        ensure!(
            TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "nothing listens on {port}"
        );
    }

    let status = sandbox(dir, &["status"])?;
    let status_text = text(&status);
    ensure!(status.status.success(), "status failed: {status_text}");
    ensure!(
        status_text.matches("io=Yes sql=Yes").count() == 2,
        "status shows two running replicas: {status_text}"
    );
    // The router's dashboard, on its metrics port, named in both.
    let dashboard = env
        .get("CAUSEWAY_DASHBOARD_URL")
        .context("no CAUSEWAY_DASHBOARD_URL in topology.env")?;
    ensure!(
        status_text.contains(&format!("dashboard: {dashboard}")),
        "status does not point at the dashboard: {status_text}"
    );
    let page = causeway_e2e::http_get(dashboard)?;
    ensure!(
        page.contains("<title>Causeway router</title>"),
        "{dashboard} is not the dashboard: {page}"
    );

    // The router's admin interface, with the operator named in topology.env.
    let admin_port = env
        .get("CAUSEWAY_ROUTER_ADMIN_PORT")
        .context("no CAUSEWAY_ROUTER_ADMIN_PORT in topology.env")?;
    let out = std::process::Command::new(&env["CAUSEWAY_MYSQL"])
        .args([
            "--no-defaults",
            "-h127.0.0.1",
            "-P",
            admin_port,
            &format!("-u{}", env["CAUSEWAY_ROUTER_ADMIN_USER"]),
            &format!("-p{}", env["CAUSEWAY_ROUTER_ADMIN_PASSWORD"]),
            "--batch",
            "--skip-column-names",
            "-e",
            "SELECT name FROM servers ORDER BY name",
        ])
        .output()?;
    ensure!(
        out.status.success() && text(&out).starts_with("primary\nreplica1\nreplica2\n"),
        "the admin interface did not list the servers: {}",
        text(&out)
    );
    ensure!(
        status_text.contains(&format!("admin interface: 127.0.0.1:{admin_port}")),
        "status does not point at the admin interface: {status_text}"
    );

    let again = sandbox(dir, &["up"])?;
    ensure!(!again.status.success(), "up twice must refuse");
    ensure!(
        text(&again).contains("already up"),
        "up twice says so: {}",
        text(&again)
    );
    ensure!(
        sandbox(dir, &["status"])?.status.success(),
        "up twice did damage"
    );

    let down = sandbox(dir, &["down"])?;
    ensure!(down.status.success(), "down failed: {}", text(&down));
    for &pid in &pids {
        ensure!(!pid_alive(pid), "mysqld pid {pid} survived down");
    }
    for &port in &ports {
        ensure!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still listening after down"
        );
    }
    Ok(())
}
