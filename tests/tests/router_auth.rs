//! Authentication through the router: both plugins on the client side, auth
//! switch both ways, caching_sha2 full authentication (TLS and RSA) on both
//! legs, MySQL's access-denied errors, TLS options, COM_CHANGE_USER.

use anyhow::Result;
use causeway_e2e::router::{opts, start_router, Raw};
use causeway_e2e::Topology;
use causeway_router::config::{AuthPlugin, BackendTlsMode, FullAuth, Secret, UserConfig};
use mysql_async::prelude::*;
use mysql_async::{ChangeUserOpts, Conn, OptsBuilder};

fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

async fn current_user(conn: &mut Conn) -> Result<String> {
    Ok(conn
        .query_first::<String, _>("SELECT CURRENT_USER()")
        .await?
        .unwrap_or_default())
}

/// Runs the mysql CLI without blocking the runtime the router runs on.
async fn cli(topo: &Topology, port: u16, extra: &[&str], sql: &str) -> Result<String> {
    let topo = topo.clone();
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let sql = sql.to_string();
    tokio::task::spawn_blocking(move || {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        topo.mysql_batch(port, "APP", &extra, &sql)
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caching_sha2_full_authentication_over_tls_and_rsa() -> Result<()> {
    let topo = Topology::get()?;
    let mut cfg = topo.router_config()?;
    cfg.frontend.caching_sha2_full_auth = FullAuth::Always;
    let router = start_router(cfg).await?;
    for tls in [true, false] {
        // mysql_async: password in clear over TLS, or RSA-encrypted after
        // asking for the router's public key.
        let mut conn = Conn::new(opts(&topo, router.port, "APP", tls)?).await?;
        assert_eq!(current_user(&mut conn).await?, "causeway_app@%");
        conn.disconnect().await?;
    }
    let out = cli(
        &topo,
        router.port,
        &["--ssl-mode=DISABLED", "--get-server-public-key"],
        "SELECT 7",
    )
    .await?;
    assert_eq!(out, "7\n7\n");
    let out = cli(&topo, router.port, &["--ssl-mode=REQUIRED"], "SELECT 8").await?;
    assert_eq!(out, "8\n8\n");
    // Without TLS and without the key exchange, as against MySQL.
    let err = cli(&topo, router.port, &["--ssl-mode=DISABLED"], "SELECT 9")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Authentication requires secure connection"),
        "{err}"
    );
    // A wrong password in full authentication is refused.
    let mut bad = OptsBuilder::from_opts(opts(&topo, router.port, "APP", false)?);
    bad = bad.pass(Some("wrong"));
    let err = Conn::new(bad).await.unwrap_err();
    assert_eq!(server_code(&err), Some(1045), "{err}");
    Ok(())
}

#[tokio::test]
async fn first_login_does_full_authentication_then_the_fast_path() -> Result<()> {
    let topo = Topology::get()?;
    let cfg = topo.router_config()?;
    assert_eq!(cfg.frontend.caching_sha2_full_auth, FullAuth::FirstLogin);
    let router = start_router(cfg).await?;
    let app = topo.user("APP")?;
    // A raw client that only knows the fast path is told to do full auth first...
    let err = Raw::login_as(router.port, &app).await.unwrap_err();
    assert!(err.to_string().contains(r"\x01\x04"), "{err}");
    // ...which a real client does (RSA over plain TCP)...
    let conn = Conn::new(opts(&topo, router.port, "APP", false)?).await?;
    conn.disconnect().await?;
    // ...after which the fast path is enough.
    let mut raw = Raw::login_as(router.port, &app).await?;
    let reply = raw.command(b"\x03SELECT 1").await?;
    assert_eq!(reply.len(), 4, "{reply:?}");
    Ok(())
}

/// A caching_sha2 login whose fast scramble is wrong (computed over another
/// nonce, as some client libraries do after an auth switch), then the right
/// password over RSA; returns the server's packets from the first answer on.
async fn wrong_scramble_then_rsa(port: u16, user: &str, password: &str) -> Result<Vec<Vec<u8>>> {
    use causeway_wire::auth::{caching_sha2_scramble, rsa_encrypt_password};
    use causeway_wire::handshake::HandshakeResponse;
    let (mut raw, g) = Raw::greet(port).await?;
    let resp = HandshakeResponse {
        capabilities: causeway_e2e::router::RAW_CAPS & g.capabilities,
        max_packet_size: 1 << 24,
        charset: 255,
        username: user.as_bytes().to_vec().into(),
        auth_response: caching_sha2_scramble(password.as_bytes(), b"not the greeting's nonce!")
            .into(),
        database: None,
        auth_plugin_name: Some("caching_sha2_password".as_bytes().to_vec().into()),
        ..HandshakeResponse::default()
    };
    let mut out = bytes::BytesMut::new();
    resp.encode(&mut out)?;
    raw.send(1, &out).await?;
    let mut seen = Vec::new();
    loop {
        let Some(p) = raw.read().await? else {
            anyhow::bail!("closed after {seen:?}");
        };
        seen.push(p.payload.to_vec());
        match &p.payload[..] {
            [0x01, 0x04] => raw.send(p.seq + 1, &[0x02]).await?,
            [0x01, pem @ ..] => {
                let nonce = &g.auth_plugin_data[..20];
                let secret = rsa_encrypt_password(password.as_bytes(), nonce, pem)?;
                raw.send(p.seq + 1, &secret).await?;
            }
            _ => return Ok(seen),
        }
    }
}

#[tokio::test]
async fn a_wrong_fast_scramble_falls_back_to_full_authentication() -> Result<()> {
    let topo = Topology::get()?;
    let mut cfg = topo.router_config()?;
    // Even a router that never asks for full authentication by itself
    // answers a scramble that does not match by asking, as MySQL does.
    cfg.frontend.caching_sha2_full_auth = FullAuth::Never;
    let router = start_router(cfg).await?;
    let app = topo.user("APP")?;
    for port in [topo.primary_port, router.port] {
        let seen = wrong_scramble_then_rsa(port, &app.user, &app.password).await?;
        assert_eq!(seen[0], [0x01, 0x04], "port {port}: {seen:?}");
        assert_eq!(seen.last().unwrap()[0], 0x00, "port {port}: {seen:?}");
        // And the wrong password is still refused after the same steps.
        let seen = wrong_scramble_then_rsa(port, &app.user, "not-it").await?;
        let last = seen.last().unwrap();
        assert_eq!(last[0], 0xff, "port {port}: {seen:?}");
        assert_eq!(u16::from_le_bytes([last[1], last[2]]), 1045, "port {port}");
    }
    Ok(())
}

#[tokio::test]
async fn native_password_users_log_in_through_an_auth_switch() -> Result<()> {
    let topo = Topology::get()?;
    let mut cfg = topo.router_config()?;
    cfg.users[0].auth_plugin = AuthPlugin::MysqlNativePassword;
    let router = start_router(cfg).await?;
    for tls in [true, false] {
        // The greeting names caching_sha2_password; the router switches
        // mysql_async to mysql_native_password for this user.
        let mut conn = Conn::new(opts(&topo, router.port, "APP", tls)?).await?;
        assert_eq!(current_user(&mut conn).await?, "causeway_app@%");
        conn.disconnect().await?;
    }
    let mut bad = OptsBuilder::from_opts(opts(&topo, router.port, "APP", true)?);
    bad = bad.pass(Some("wrong"));
    let err = Conn::new(bad).await.unwrap_err();
    assert_eq!(server_code(&err), Some(1045), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_starting_with_native_is_switched_to_caching_sha2() -> Result<()> {
    let topo = Topology::get()?;
    let router = start_router(topo.router_config()?).await?;
    let extra = [
        "--default-auth=mysql_native_password",
        "--ssl-mode=REQUIRED",
    ];
    let out = cli(&topo, router.port, &extra, "SELECT CURRENT_USER()").await?;
    assert_eq!(out, "CURRENT_USER()\ncauseway_app@%\n");
    // An unknown plugin name is answered with a switch too.
    let app = topo.user("APP")?;
    let raw_router = start_router({
        let mut c = topo.router_config()?;
        c.frontend.caching_sha2_full_auth = FullAuth::Never;
        c
    })
    .await?;
    let mut raw = Raw::login(raw_router.port, &app.user, &app.password, "no_such_plugin").await?;
    assert_eq!(raw.command(b"\x0e").await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn wrong_passwords_and_unknown_users_read_like_mysql() -> Result<()> {
    let topo = Topology::get()?;
    let router = start_router(topo.router_config()?).await?;
    for (user, pass) in [("causeway_app", Some("wrong")), ("causeway_app", None)] {
        let attempt = |port: u16| {
            let o = OptsBuilder::from_opts(opts(&topo, port, "APP", true).unwrap())
                .user(Some(user))
                .pass(pass);
            async move { Conn::new(o).await.unwrap_err() }
        };
        let direct = attempt(topo.primary_port).await;
        let routed = attempt(router.port).await;
        assert_eq!(server_code(&routed), Some(1045), "{routed}");
        assert_eq!(direct.to_string(), routed.to_string());
    }
    // MySQL answers an unknown user with an auth switch to sha256_password
    // (which mysql_async does not speak); the router refuses at once, with
    // the same 1045 a wrong password gets.
    let o = OptsBuilder::from_opts(opts(&topo, router.port, "APP", true)?)
        .user(Some("nobody_here"))
        .pass(Some("x"));
    let err = Conn::new(o).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "Server error: `ERROR 1045 (28000): Access denied for user 'nobody_here'@'127.0.0.1' (using password: YES)'"
    );
    assert_eq!(router.shared.metrics.auth_failures.get(), 3);
    // The router still serves.
    let mut conn = Conn::new(opts(&topo, router.port, "APP", true)?).await?;
    conn.ping().await?;
    Ok(())
}

#[tokio::test]
async fn an_unknown_database_is_the_backend_s_error() -> Result<()> {
    let topo = Topology::get()?;
    let router = start_router(topo.router_config()?).await?;
    let attempt = |port: u16| {
        let o = OptsBuilder::from_opts(opts(&topo, port, "APP", true).unwrap())
            .db_name(Some("no_such_db_here"));
        async move { Conn::new(o).await.unwrap_err().to_string() }
    };
    assert_eq!(attempt(topo.primary_port).await, attempt(router.port).await);
    Ok(())
}

#[tokio::test]
async fn tls_required_refuses_plain_clients() -> Result<()> {
    let topo = Topology::get()?;
    let mut cfg = topo.router_config()?;
    cfg.frontend.tls.required = true;
    let router = start_router(cfg).await?;
    let err = Conn::new(opts(&topo, router.port, "APP", false)?)
        .await
        .unwrap_err();
    assert_eq!(server_code(&err), Some(3159), "{err}");
    let mut conn = Conn::new(opts(&topo, router.port, "APP", true)?).await?;
    conn.ping().await?;
    Ok(())
}

#[tokio::test]
async fn backend_tls_modes_and_full_authentication_towards_the_backend() -> Result<()> {
    let topo = Topology::get()?;
    // A fresh backend user: its first login must do full authentication on
    // the backend (the server's cache is empty), by RSA without TLS and in
    // clear over TLS.
    let mut admin = topo.conn(topo.primary_port, "ADMIN").await?;
    for (mode, name) in [
        (BackendTlsMode::Disabled, "cw_rt_plain"),
        (BackendTlsMode::VerifyCa, "cw_rt_tls"),
    ] {
        admin
            .query_drop(format!("DROP USER IF EXISTS '{name}'@'%'"))
            .await?;
        admin
            .query_drop(format!(
                "CREATE USER '{name}'@'%' IDENTIFIED WITH caching_sha2_password BY 'pw-{name}'"
            ))
            .await?;
        let mut cfg = topo.router_config()?;
        cfg.backend.tls.mode = mode;
        cfg.backend.tls.ca_file = Some(topo.primary_data().join("ca.pem"));
        cfg.users.push(UserConfig {
            name: name.to_string(),
            password: Some(Secret(format!("pw-{name}"))),
            ..UserConfig::default()
        });
        let router = start_router(cfg).await?;
        for _ in 0..2 {
            let o = OptsBuilder::from_opts(opts(&topo, router.port, "APP", true)?)
                .user(Some(name))
                .pass(Some(format!("pw-{name}")))
                .db_name(None::<String>);
            let mut conn = Conn::new(o).await?;
            let cipher: Option<(String, String)> = conn
                .query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
                .await?;
            let backend_tls = !cipher.unwrap_or_default().1.is_empty();
            assert_eq!(backend_tls, mode != BackendTlsMode::Disabled, "{mode:?}");
            conn.disconnect().await?;
        }
        admin.query_drop(format!("DROP USER '{name}'@'%'")).await?;
    }
    // verify_identity: the sandbox's certificate is not issued to "localhost".
    let mut cfg = topo.router_config()?;
    cfg.backend.tls.mode = BackendTlsMode::VerifyIdentity;
    cfg.backend.tls.ca_file = Some(topo.primary_data().join("ca.pem"));
    cfg.backend.tls.server_name = Some("localhost".into());
    let router = start_router(cfg).await?;
    let err = Conn::new(opts(&topo, router.port, "APP", true)?)
        .await
        .unwrap_err();
    assert_eq!(server_code(&err), Some(2026), "{err}");
    Ok(())
}

#[tokio::test]
async fn a_wrong_backend_password_is_told_in_the_client_s_terms() -> Result<()> {
    let topo = Topology::get()?;
    let mut cfg = topo.router_config()?;
    let app = topo.user("APP")?;
    cfg.users.push(UserConfig {
        name: "cw_front".to_string(),
        password: Some(Secret("front-pw".into())),
        backend_user: Some(app.user.clone()),
        backend_password: Some(Secret("not-the-backend-password".into())),
        ..UserConfig::default()
    });
    let router = start_router(cfg).await?;
    let front = |db: Option<&str>| {
        OptsBuilder::from_opts(opts(&topo, router.port, "APP", true).unwrap())
            .user(Some("cw_front"))
            .pass(Some("front-pw"))
            .db_name(db.map(str::to_string))
    };
    let check = |e: &mysql_async::Error| match e {
        mysql_async::Error::Server(s) => {
            assert_eq!(s.code, 9007, "{e}");
            assert_eq!(s.state, "28000", "{e}");
            for part in [
                "'cw_front'",
                &format!("'{}'", app.user),
                "Access denied",
                "(1045)",
            ] {
                assert!(s.message.contains(part), "{part} not in {e}");
            }
        }
        _ => panic!("not a server error: {e}"),
    };
    // The client's own login is right: its first statement (mysql_async's
    // settings query) says what failed, and so does a login naming a
    // schema (checked at login).
    check(&Conn::new(front(None)).await.unwrap_err());
    check(&Conn::new(front(Some("causeway"))).await.unwrap_err());
    let text = causeway_common::metrics_http::Render::render(&causeway_router::scrape::Live(
        router.shared.clone(),
    ));
    assert!(
        text.contains("causeway_router_errors_total{kind=\"backend_login\"} 2"),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn change_user_reauthenticates_and_switches_the_backend() -> Result<()> {
    let topo = Topology::get()?;
    let router = start_router(topo.router_config()?).await?;
    let admin = topo.user("ADMIN")?;
    let mut conn = Conn::new(opts(&topo, router.port, "APP", true)?).await?;
    conn.query_drop("SET @marker = 1").await?;
    conn.change_user(
        ChangeUserOpts::default()
            .with_user(Some(admin.user.clone()))
            .with_pass(Some(admin.password.clone())),
    )
    .await?;
    assert_eq!(current_user(&mut conn).await?, "causeway_admin@%");
    let marker: Option<Option<i64>> = conn.query_first("SELECT @marker").await?;
    assert_eq!(marker, Some(None), "the backend session was reset");
    // A wrong password ends the session with 1045.
    let err = conn
        .change_user(
            ChangeUserOpts::default()
                .with_user(Some(admin.user.clone()))
                .with_pass(Some("wrong".to_string())),
        )
        .await
        .unwrap_err();
    assert_eq!(server_code(&err), Some(1045), "{err}");
    Ok(())
}
