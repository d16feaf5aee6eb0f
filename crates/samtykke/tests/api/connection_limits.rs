//! Connection-level limits (issue 24): real sockets against the real server
//! on loopback, with short timeouts so that every test is bounded. Header
//! read, idle and body read timeouts; the per-address and per-process caps;
//! `/metrics` only on the operator listener unless the operator says so;
//! the settings' validation.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use samtykke::config::SandboxSetting;
use samtykke_http::ConnectionLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::{
    fresh_database_url, run_cli, serve_config, spawn_app_configured, Engine, TestApp,
};

const SHORT: ConnectionLimits = ConnectionLimits {
    header_read_timeout: Duration::from_secs(2),
    idle_timeout: Duration::from_secs(10),
    body_read_timeout: Duration::from_secs(1),
    max_connections: 10_000,
    max_connections_per_ip: 256,
};

/// A sandbox server on SQLite with `limits`.
async fn spawn_limited(limits: ConnectionLimits, metrics_on_public_listener: bool) -> TestApp {
    let url = fresh_database_url(Engine::Sqlite).await.unwrap();
    let mut config = serve_config(&url, SandboxSetting::On);
    config.connection_limits = limits;
    config.metrics_on_public_listener = metrics_on_public_listener;
    spawn_app_configured(&url, config).await
}

fn addr(app: &TestApp) -> SocketAddr {
    app.base.trim_start_matches("http://").parse().unwrap()
}

/// A connection to `to` from the loopback address `from` (127.0.0.x: every
/// one of them is this machine), so that a test can be several clients.
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: samtykke\r\n\r\n";

/// Reads one HTTP/1.1 response (headers and a Content-Length body): its
/// status and headers, lowercased.
async fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.expect("read a response");
        assert!(
            n > 0,
            "the connection closed before a response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection closed inside a response body");
        buf.extend_from_slice(&chunk[..n]);
    }
    (status, head)
}

/// Waits (at most `within`) for the server to close `stream`: a read returns
/// end-of-file or a reset. The time it took, or None if it stayed open.
async fn server_closes(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut chunk = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return start.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

/// Asserts that the server closes `stream` between `min` and `max` from now.
async fn assert_closed_between(stream: &mut TcpStream, min: Duration, max: Duration) {
    let closed = server_closes(stream, max + Duration::from_secs(2))
        .await
        .expect("the server closed the connection");
    assert!(closed >= min && closed < max, "closed after {closed:?}");
}

/// A sample of the operator listener's `/metrics`.
async fn metric(app: &TestApp, series: &str) -> f64 {
    let text = app
        .http
        .get(app.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
        .parse()
        .unwrap()
}

/// Waits until the server counts `open` public connections (it notices a
/// client's close when it next reads).
async fn wait_for_open_connections(app: &TestApp, open: f64) {
    let series = r#"samtykke_connections_open{listener="public"}"#;
    for _ in 0..200 {
        if metric(app, series).await == open {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the server never counted {open} open connections");
}

#[tokio::test]
async fn slow_headers_are_closed_within_the_header_timeout_while_others_are_served() {
    let app = spawn_limited(SHORT, false).await;
    let to = addr(&app);
    const ATTACKERS: usize = 200;
    let request = b"GET /healthz HTTP/1.1\r\nHost: samtykke\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut attackers = tokio::task::JoinSet::new();
    for _ in 0..ATTACKERS {
        let mut stream = TcpStream::connect(to).await.unwrap();
        attackers.spawn(async move {
            let opened = Instant::now();
            let (mut read, mut write) = stream.split();
            // One byte every 200 ms, never the end of the headers.
            let drip = async {
                for byte in request {
                    if write.write_all(&[*byte]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                std::future::pending::<()>().await;
            };
            let mut chunk = [0u8; 256];
            let closed = async {
                loop {
                    match read.read(&mut chunk).await {
                        Ok(0) | Err(_) => return opened.elapsed(),
                        Ok(_) => {}
                    }
                }
            };
            tokio::select! {
                () = drip => unreachable!(),
                elapsed = closed => elapsed,
                () = tokio::time::sleep(Duration::from_secs(6)) => panic!("a slow connection stayed open"),
            }
        });
    }

    // Meanwhile a normal client is served quickly, over and over (a new
    // connection each time).
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let start = Instant::now();
        let response = client.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        slowest = slowest.max(start.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        slowest < Duration::from_millis(500),
        "healthz took {slowest:?} under the attack"
    );

    let mut closed_after = Vec::new();
    while let Some(elapsed) = attackers.join_next().await {
        closed_after.push(elapsed.unwrap());
    }
    assert_eq!(closed_after.len(), ATTACKERS);
    let first = closed_after.iter().min().unwrap();
    let last = closed_after.iter().max().unwrap();
    // Closed for the header timeout (2 s from opening), not before, and all
    // of them soon after.
    assert!(
        *first >= Duration::from_millis(1800),
        "closed too early: {first:?}"
    );
    assert!(
        *last < Duration::from_millis(3500),
        "closed too late: {last:?}"
    );
    assert_eq!(
        metric(
            &app,
            r#"samtykke_connections_timed_out_total{listener="public",reason="header_timeout"}"#
        )
        .await,
        ATTACKERS as f64
    );
    wait_for_open_connections(&app, 0.0).await;
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let limits = ConnectionLimits {
        idle_timeout: Duration::from_secs(1),
        header_read_timeout: Duration::from_secs(5),
        ..SHORT
    };
    let app = spawn_limited(limits, false).await;
    let mut stream = TcpStream::connect(addr(&app)).await.unwrap();
    stream.write_all(HEALTHZ).await.unwrap();
    assert_eq!(read_response(&mut stream).await.0, 200);
    // Kept alive: a second request within the idle timeout is served on the
    // same connection.
    tokio::time::sleep(Duration::from_millis(600)).await;
    stream.write_all(HEALTHZ).await.unwrap();
    assert_eq!(read_response(&mut stream).await.0, 200);
    // Then, silent, it is closed one idle timeout after the response.
    assert_closed_between(
        &mut stream,
        Duration::from_millis(900),
        Duration::from_millis(2500),
    )
    .await;

    // A connection that never sends a byte: the same.
    let mut silent = TcpStream::connect(addr(&app)).await.unwrap();
    assert_closed_between(
        &mut silent,
        Duration::from_millis(900),
        Duration::from_millis(2500),
    )
    .await;

    assert_eq!(
        metric(
            &app,
            r#"samtykke_connections_timed_out_total{listener="public",reason="idle_timeout"}"#
        )
        .await,
        2.0
    );
}

#[tokio::test]
async fn a_keep_alive_requests_headers_are_due_a_header_timeout_after_its_first_byte() {
    let limits = ConnectionLimits {
        idle_timeout: Duration::from_secs(3),
        header_read_timeout: Duration::from_secs(1),
        ..SHORT
    };
    let app = spawn_limited(limits, false).await;
    let mut stream = TcpStream::connect(addr(&app)).await.unwrap();
    stream.write_all(HEALTHZ).await.unwrap();
    assert_eq!(read_response(&mut stream).await.0, 200);
    // Idle for longer than the header timeout, but within the idle timeout:
    // still open; the next request starts, and stalls.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost")
        .await
        .unwrap();
    assert_closed_between(
        &mut stream,
        Duration::from_millis(800),
        Duration::from_millis(1800),
    )
    .await;
}

#[tokio::test]
async fn a_stalled_body_is_answered_408_and_the_connection_closed() {
    let app = spawn_limited(SHORT, false).await;
    let mut stream = TcpStream::connect(addr(&app)).await.unwrap();
    let start = Instant::now();
    stream
        .write_all(
            b"POST /oauth2/token HTTP/1.1\r\nHost: samtykke\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type=client_cre",
        )
        .await
        .unwrap();
    let (status, head) = read_response(&mut stream).await;
    let elapsed = start.elapsed();
    assert_eq!(status, 408, "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(2500),
        "{elapsed:?}"
    );
    server_closes(&mut stream, Duration::from_secs(2))
        .await
        .expect("closed after the 408");

    // A body that arrives in time is not affected.
    let (id, secret) = app.sandbox_auth();
    let response = app
        .post_form(
            "/oauth2/token",
            (&id, &secret),
            &[
                ("grant_type", "client_credentials"),
                ("audience", &app.audience("/v1/debt")),
                ("scope", "debt.unsecured.presentation"),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn the_per_address_cap_refuses_the_next_connection_from_that_address_only() {
    let limits = ConnectionLimits {
        max_connections: 100,
        max_connections_per_ip: 3,
        ..SHORT
    };
    let app = spawn_limited(limits, false).await;
    let to = addr(&app);
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = connect_from("127.0.0.1", to).await;
        stream.write_all(HEALTHZ).await.unwrap();
        assert_eq!(read_response(&mut stream).await.0, 200);
        held.push(stream);
    }
    // The fourth from the same address is closed at once.
    let mut fourth = connect_from("127.0.0.1", to).await;
    let _ = fourth.write_all(HEALTHZ).await;
    let closed = server_closes(&mut fourth, Duration::from_secs(1)).await;
    assert!(closed.is_some(), "the fourth connection was not refused");
    // The three keep working, and another address is served.
    for stream in &mut held {
        stream.write_all(HEALTHZ).await.unwrap();
        assert_eq!(read_response(stream).await.0, 200);
    }
    let mut other = connect_from("127.0.0.2", to).await;
    other.write_all(HEALTHZ).await.unwrap();
    assert_eq!(read_response(&mut other).await.0, 200);
    assert_eq!(
        metric(&app, r#"samtykke_connections_refused_total{listener="public",reason="max_connections_per_ip"}"#).await,
        1.0
    );
    // A closed connection gives its place back.
    drop(held.pop());
    wait_for_open_connections(&app, 3.0).await;
    let mut again = connect_from("127.0.0.1", to).await;
    again.write_all(HEALTHZ).await.unwrap();
    assert_eq!(read_response(&mut again).await.0, 200);
}

#[tokio::test]
async fn the_process_cap_refuses_the_next_connection_while_the_others_work() {
    let limits = ConnectionLimits {
        max_connections: 3,
        max_connections_per_ip: 2,
        ..SHORT
    };
    let app = spawn_limited(limits, false).await;
    let to = addr(&app);
    let mut held = Vec::new();
    for from in ["127.0.0.1", "127.0.0.1", "127.0.0.2"] {
        let mut stream = connect_from(from, to).await;
        stream.write_all(HEALTHZ).await.unwrap();
        assert_eq!(read_response(&mut stream).await.0, 200);
        held.push(stream);
    }
    let mut fourth = connect_from("127.0.0.3", to).await;
    let _ = fourth.write_all(HEALTHZ).await;
    assert!(
        server_closes(&mut fourth, Duration::from_secs(1))
            .await
            .is_some(),
        "the fourth connection was not refused"
    );
    for stream in &mut held {
        stream.write_all(HEALTHZ).await.unwrap();
        assert_eq!(read_response(stream).await.0, 200);
    }
    // The operator listener has its own cap: it still answers.
    assert_eq!(
        metric(
            &app,
            r#"samtykke_connections_refused_total{listener="public",reason="max_connections"}"#
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(&app, r#"samtykke_connections_open{listener="public"}"#).await,
        3.0
    );
}

#[tokio::test]
async fn metrics_answer_404_on_the_public_listener_and_200_on_the_admin_listener() {
    let app = spawn_limited(SHORT, false).await;
    let public = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(public.status(), 404);
    let unknown = app.http.get(app.url("/no/such/path")).send().await.unwrap();
    assert_eq!(public.text().await.unwrap(), unknown.text().await.unwrap());
    let admin = app
        .http
        .get(app.admin_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);
    assert!(admin
        .text()
        .await
        .unwrap()
        .contains("samtykke_connections_open"));
    // Probes answer on both; nothing else is on the operator listener.
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            app.http.get(app.url(path)).send().await.unwrap().status(),
            200
        );
        assert_eq!(
            app.http
                .get(app.admin_url(path))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    for path in ["/oauth2/token", "/.well-known/openid-configuration"] {
        assert_eq!(
            app.http
                .get(app.admin_url(path))
                .send()
                .await
                .unwrap()
                .status(),
            404
        );
    }
}

#[tokio::test]
async fn metrics_on_public_listener_makes_them_public() {
    let app = spawn_limited(SHORT, true).await;
    let public = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(public.status(), 200);
    assert!(public.text().await.unwrap().contains("samtykke_build_info"));
    assert_eq!(
        app.http
            .get(app.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn connection_settings_are_validated_at_start() {
    let url = fresh_database_url(Engine::Sqlite).await.unwrap();
    let serve = |extra: &[&str]| {
        let args = [&["serve", "--listen", "127.0.0.1:0"][..], extra].concat();
        let output = run_cli(&url, &args);
        assert!(!output.status.success(), "{extra:?} was accepted");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    assert!(serve(&["--header-read-timeout", "0"])
        .contains("header-read-timeout must be between 1 and 3600 seconds"));
    assert!(serve(&["--idle-timeout", "3601"])
        .contains("idle-timeout must be between 1 and 3600 seconds"));
    assert!(serve(&["--body-read-timeout", "0"])
        .contains("body-read-timeout must be between 1 and 3600 seconds"));
    assert!(serve(&["--max-connections", "0"]).contains("max-connections must be between 1 and"));
    assert!(
        serve(&["--max-connections", "10", "--max-connections-per-ip", "11"])
            .contains("max-connections-per-ip must be between 1 and max-connections (10)")
    );
    assert!(serve(&["--idle-timeout", "soon"]).contains("invalid value 'soon'"));
    assert!(serve(&["--admin-listen", "localhost"])
        .contains("admin-listen must be an IP address and port"));

    // The same from the configuration file.
    let dir = std::env::temp_dir().join(format!(
        "samtykke-connlimits-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("samtykke.toml");
    std::fs::write(&file, "max_connections_per_ip = 0\n").unwrap();
    assert!(serve(&["--config", file.to_str().unwrap()])
        .contains("max-connections-per-ip must be between 1"));
    std::fs::write(&file, "admin_listen = \"127.0.0.1\"\n").unwrap();
    assert!(serve(&["--config", file.to_str().unwrap()])
        .contains("admin-listen must be an IP address and port"));
    let _ = std::fs::remove_dir_all(&dir);

    // An admin listener on an address already taken stops the start.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    assert!(serve(&["--admin-listen", &taken_addr]).contains("admin-listen"));
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight_closes_idle_connections_and_refuses_new_ones() {
    use samtykke::startup::Application;
    use samtykke_core::SystemClock;
    use std::sync::Arc;

    let url = fresh_database_url(Engine::Sqlite).await.unwrap();
    let store = samtykke::storage::open_store(&url).await.unwrap();
    let app = Application::build_with(
        serve_config(&url, SandboxSetting::On),
        store,
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let to = app.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));

    // One keep-alive connection between requests, one request in flight
    // (its body half sent).
    let mut idle = TcpStream::connect(to).await.unwrap();
    idle.write_all(HEALTHZ).await.unwrap();
    assert_eq!(read_response(&mut idle).await.0, 200);
    let mut busy = TcpStream::connect(to).await.unwrap();
    let body = b"grant_type=client_credentials";
    busy.write_all(
        format!("POST /oauth2/token HTTP/1.1\r\nHost: samtykke\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n", body.len()).as_bytes(),
    )
    .await
    .unwrap();
    // `100 Continue` once the handler reads the body: the request is in flight.
    let continue_line = b"HTTP/1.1 100 Continue\r\n\r\n";
    let mut interim = vec![0u8; continue_line.len()];
    busy.read_exact(&mut interim).await.unwrap();
    assert_eq!(interim, continue_line);
    busy.write_all(&body[..10]).await.unwrap();

    stop.send(()).unwrap();
    // The idle connection is closed at once; new connections are refused.
    server_closes(&mut idle, Duration::from_secs(2))
        .await
        .expect("the idle connection closed");
    let mut refused = false;
    for _ in 0..200 {
        if TcpStream::connect(to).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        refused,
        "new connections were still accepted after shutdown"
    );
    assert!(
        !server.is_finished(),
        "the server stopped with a request in flight"
    );

    // The request in flight is answered (no client authentication: 401),
    // then the connection closes and the server stops.
    busy.write_all(&body[10..]).await.unwrap();
    let (status, head) = read_response(&mut busy).await;
    assert_eq!(status, 401, "{head}");
    server_closes(&mut busy, Duration::from_secs(2))
        .await
        .expect("closed after its answer");
    tokio::time::timeout(Duration::from_secs(2), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
