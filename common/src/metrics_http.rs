//! The tiny HTTP endpoint that serves Prometheus text: `GET /metrics` (and
//! `HEAD`), 404 for any other path, 405 for any other method, 400 for a
//! request line that is not HTTP; one request per connection, bounded
//! request size and time. The metrics themselves (names, registration) stay with each
//! program; this module only needs something that renders them, see
//! [`Render`] (implemented for a prometheus-client [`Registry`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

/// The largest request head read; the rest is ignored.
const MAX_REQUEST: usize = 4096;
/// How long a client has to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client has to take the response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Something that renders the Prometheus text exposition.
pub trait Render: Send + Sync {
    /// The whole exposition, rendered now.
    fn render(&self) -> String;
}

impl Render for Registry {
    fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, self);
        out
    }
}

impl<F: Fn() -> String + Send + Sync> Render for F {
    fn render(&self) -> String {
        self()
    }
}

/// Binds the endpoint.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves the metrics over plain HTTP/1.1 until the task is dropped.
pub async fn serve<R: Render + ?Sized + 'static>(listener: TcpListener, metrics: Arc<R>) {
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            if answer(sock, &*metrics, WRITE_TIMEOUT).await.is_err() {
                debug!(%peer, "metrics request not read");
            }
        });
    }
}

/// Reads one request head (up to the blank line, [`MAX_REQUEST`] bytes, or
/// EOF) and answers it with the metrics. `Err` when the request could not be
/// read in time; write errors are the client's business, and writing gives
/// up after `write_timeout`.
async fn answer<R: Render + ?Sized>(
    mut sock: TcpStream,
    metrics: &R,
    write_timeout: Duration,
) -> Result<(), ()> {
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut n = 0;
    let read = tokio::time::timeout(READ_TIMEOUT, async {
        while n < buf.len() {
            let k = sock.read(&mut buf[n..]).await?;
            if k == 0 {
                break;
            }
            n += k;
            if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return Err(());
    }
    let (status, extra, body, with_body) = match request_line(&buf[..n]) {
        Some((method, "/metrics")) if method == "GET" || method == "HEAD" => (
            "200 OK",
            "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n",
            metrics.render(),
            method == "GET",
        ),
        Some((_, "/metrics")) => (
            "405 Method Not Allowed",
            "Allow: GET, HEAD\r\nContent-Type: text/plain; charset=utf-8\r\n",
            "only GET and HEAD are served here\n".to_string(),
            true,
        ),
        Some((method, _)) => (
            "404 Not Found",
            "Content-Type: text/plain; charset=utf-8\r\n",
            "not found; the metrics are at /metrics\n".to_string(),
            method != "HEAD",
        ),
        None => (
            "400 Bad Request",
            "Content-Type: text/plain; charset=utf-8\r\n",
            "not an HTTP request\n".to_string(),
            true,
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let body = if with_body { body } else { String::new() };
    // A scraper that stops reading must not hold the task (and its socket)
    // forever.
    let _ = tokio::time::timeout(write_timeout, async {
        sock.write_all(head.as_bytes()).await?;
        sock.write_all(body.as_bytes()).await?;
        sock.shutdown().await
    })
    .await;
    Ok(())
}

/// The method and the path (without its query string) of an HTTP/1.x
/// request line; `None` when the head does not start with one.
fn request_line(head: &[u8]) -> Option<(&str, &str)> {
    let end = head.iter().position(|&b| b == b'\r' || b == b'\n')?;
    let line = std::str::from_utf8(&head[..end]).ok()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || !version.starts_with("HTTP/1.")
        || method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
    {
        return None;
    }
    let path = target.split('?').next().unwrap_or_default();
    Some((method, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).await.unwrap();
        resp
    }

    #[tokio::test]
    async fn endpoint_answers_http() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(|| "causeway_test_total 1\n".to_string());
        let task = tokio::spawn(serve(listener, metrics));
        let resp = get(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        task.abort();
        assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
        assert!(resp.contains("Content-Length: 22\r\n"), "{resp}");
        assert!(resp.ends_with("\r\n\r\ncauseway_test_total 1\n"), "{resp}");
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_the_response_is_dropped() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (sock, _) = listener.accept().await.unwrap();
        client
            .write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        // Far more than the socket buffers hold, and never read.
        let big = || "x".repeat(64 << 20);
        let started = std::time::Instant::now();
        let answered = tokio::time::timeout(
            Duration::from_secs(5),
            answer(sock, &big, Duration::from_millis(200)),
        )
        .await;
        assert!(matches!(answered, Ok(Ok(()))), "{answered:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(client);
    }

    #[test]
    fn a_registry_renders_its_metrics() {
        let mut registry = Registry::default();
        let c = prometheus_client::metrics::counter::Counter::<u64>::default();
        registry.register("causeway_test_things", "things seen", c.clone());
        c.inc_by(2);
        let text = registry.render();
        assert!(
            text.contains("# HELP causeway_test_things things seen"),
            "{text}"
        );
        assert!(text.contains("causeway_test_things_total 2"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[tokio::test]
    async fn renders_for_each_request() {
        struct Count(std::sync::atomic::AtomicU32);
        impl Render for Count {
            fn render(&self) -> String {
                let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                format!("n {n}\n")
            }
        }
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics: Arc<dyn Render> = Arc::new(Count(0.into()));
        let task = tokio::spawn(serve(listener, metrics));
        let first = get(addr, b"GET /metrics HTTP/1.0\r\n\r\n").await;
        let second = get(addr, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n").await;
        task.abort();
        assert!(first.ends_with("n 0\n"), "{first}");
        assert!(second.ends_with("n 1\n"), "{second}");
    }

    #[tokio::test]
    async fn a_client_that_hangs_up_gets_an_answer_anyway() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(serve(listener, Arc::new(|| "x\n".to_string())));
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
        s.shutdown().await.unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).await.unwrap();
        task.abort();
        assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
    }

    #[tokio::test]
    async fn other_paths_methods_and_garbage_are_refused() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(serve(listener, Arc::new(|| "m 1\n".to_string())));
        let cases: [(&[u8], &str); 7] = [
            (b"GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found\r\n"),
            (
                b"GET /metricsx HTTP/1.1\r\n\r\n",
                "HTTP/1.1 404 Not Found\r\n",
            ),
            (
                b"POST /metrics HTTP/1.1\r\n\r\n",
                "HTTP/1.1 405 Method Not Allowed\r\n",
            ),
            (
                b"DELETE /metrics HTTP/1.1\r\n\r\n",
                "HTTP/1.1 405 Method Not Allowed\r\n",
            ),
            (
                b"\x16\x03\x01garbage\r\n\r\n",
                "HTTP/1.1 400 Bad Request\r\n",
            ),
            (b"GET /metrics\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n"),
            (b"HEAD /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK\r\n"),
        ];
        for (request, status) in cases {
            let resp = get(addr, request).await;
            assert!(resp.starts_with(status), "{request:?}: {resp}");
            assert!(!resp.contains("m 1"), "{request:?}: {resp}");
        }
        let resp = get(addr, b"POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(resp.contains("Allow: GET, HEAD\r\n"), "{resp}");
        let resp = get(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(resp.contains("Content-Length: 4\r\n"), "{resp}");
        task.abort();
    }
}
