//! The tiny HTTP endpoint that serves Prometheus text: `GET /metrics` (and
//! `HEAD`), plus whatever other paths a program adds ([`Pages`]: the
//! router's dashboard); 404 for any other path, 405 for any other method on
//! a path served, 400 for a request line that is not HTTP; one request per
//! connection, bounded request size and time. The metrics themselves
//! (names, registration) stay with each program; this module only needs
//! something that renders them, see [`Render`] (implemented for a
//! prometheus-client [`Registry`]).

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

/// A page served beside `/metrics`, rendered for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its body.
    pub body: Vec<u8>,
}

/// Paths a program serves beside `/metrics` (GET and HEAD only; every
/// answer says `Cache-Control: no-store`: they are live).
pub trait Pages: Send + Sync {
    /// Whether `path` (without its query string) is one of them, without
    /// rendering it: other methods get 405 there, other paths 404.
    fn serves(&self, path: &str) -> bool;
    /// The page at `path`, rendered now (`None`: 404).
    fn page(&self, path: &str) -> Option<Page>;
}

/// No page beside `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPages;

impl Pages for NoPages {
    fn serves(&self, _: &str) -> bool {
        false
    }
    fn page(&self, _: &str) -> Option<Page> {
        None
    }
}

/// Binds the endpoint.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves the metrics over plain HTTP/1.1 until the task is dropped.
pub async fn serve<R: Render + ?Sized + 'static>(listener: TcpListener, metrics: Arc<R>) {
    serve_with(listener, metrics, Arc::new(NoPages)).await
}

/// Serves the metrics and `pages` over plain HTTP/1.1 until the task is
/// dropped.
pub async fn serve_with<R, P>(listener: TcpListener, metrics: Arc<R>, pages: Arc<P>)
where
    R: Render + ?Sized + 'static,
    P: Pages + ?Sized + 'static,
{
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
        let pages = pages.clone();
        tokio::spawn(async move {
            if answer(sock, &*metrics, &*pages, WRITE_TIMEOUT)
                .await
                .is_err()
            {
                debug!(%peer, "metrics request not read");
            }
        });
    }
}

/// Reads one request head (up to the blank line, [`MAX_REQUEST`] bytes, or
/// EOF) and answers it with the metrics or a page. `Err` when the request
/// could not be read in time; write errors are the client's business, and
/// writing gives up after `write_timeout`.
async fn answer<R: Render + ?Sized, P: Pages + ?Sized>(
    mut sock: TcpStream,
    metrics: &R,
    pages: &P,
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
    let (status, extra, body, with_body) = respond(request_line(&buf[..n]), metrics, pages);
    let head = format!(
        "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let body = if with_body { body } else { Vec::new() };
    // A scraper that stops reading must not hold the task (and its socket)
    // forever.
    let _ = tokio::time::timeout(write_timeout, async {
        sock.write_all(head.as_bytes()).await?;
        sock.write_all(&body).await?;
        sock.shutdown().await
    })
    .await;
    Ok(())
}

/// The status line, extra headers, body and whether to send the body, for
/// a request line (`None`: not HTTP).
fn respond<R: Render + ?Sized, P: Pages + ?Sized>(
    request: Option<(&str, &str)>,
    metrics: &R,
    pages: &P,
) -> (&'static str, String, Vec<u8>, bool) {
    const TEXT: &str = "text/plain; charset=utf-8";
    let plain = |status, body: &str, with_body| {
        (
            status,
            format!("Content-Type: {TEXT}\r\n"),
            body.as_bytes().to_vec(),
            with_body,
        )
    };
    let Some((method, path)) = request else {
        return plain("400 Bad Request", "not an HTTP request\n", true);
    };
    let read = method == "GET" || method == "HEAD";
    let known = path == "/metrics" || pages.serves(path);
    if known && !read {
        return (
            "405 Method Not Allowed",
            format!("Allow: GET, HEAD\r\nContent-Type: {TEXT}\r\n"),
            b"only GET and HEAD are served here\n".to_vec(),
            true,
        );
    }
    let not_found = || {
        plain(
            "404 Not Found",
            "not found; the metrics are at /metrics\n",
            method != "HEAD",
        )
    };
    if path == "/metrics" {
        return (
            "200 OK",
            "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n".to_string(),
            metrics.render().into_bytes(),
            method == "GET",
        );
    }
    if !known {
        return not_found();
    }
    match pages.page(path) {
        Some(page) => (
            "200 OK",
            format!(
                "Content-Type: {}\r\nCache-Control: no-store\r\n",
                page.content_type
            ),
            page.body,
            method == "GET",
        ),
        None => not_found(),
    }
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
            answer(sock, &big, &NoPages, Duration::from_millis(200)),
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
    async fn pages_are_served_beside_the_metrics() {
        struct Site;
        impl Pages for Site {
            fn serves(&self, path: &str) -> bool {
                matches!(path, "/" | "/page" | "/gone")
            }
            fn page(&self, path: &str) -> Option<Page> {
                (path != "/gone").then(|| Page {
                    content_type: "text/html; charset=utf-8",
                    body: format!("<p>{path}</p>").into_bytes(),
                })
            }
        }
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(serve_with(
            listener,
            Arc::new(|| "m 1\n".to_string()),
            Arc::new(Site),
        ));
        let resp = get(addr, b"GET /page?x=1 HTTP/1.1\r\n\r\n").await;
        assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
        assert!(
            resp.contains("Content-Type: text/html; charset=utf-8\r\n"),
            "{resp}"
        );
        assert!(resp.contains("Cache-Control: no-store\r\n"), "{resp}");
        assert!(resp.ends_with("\r\n\r\n<p>/page</p>"), "{resp}");
        let resp = get(addr, b"GET / HTTP/1.1\r\n\r\n").await;
        assert!(resp.ends_with("<p>/</p>"), "{resp}");
        let resp = get(addr, b"HEAD /page HTTP/1.1\r\n\r\n").await;
        assert!(resp.contains("Content-Length: 12\r\n"), "{resp}");
        assert!(resp.ends_with("\r\n\r\n"), "{resp}");
        let resp = get(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(resp.ends_with("m 1\n"), "{resp}");
        for (request, status) in [
            (
                &b"POST /page HTTP/1.1\r\n\r\n"[..],
                "HTTP/1.1 405 Method Not Allowed\r\n",
            ),
            (b"GET /gone HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found\r\n"),
            (b"GET /other HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found\r\n"),
            (b"PUT /other HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found\r\n"),
            (b"GET /page\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n"),
        ] {
            let resp = get(addr, request).await;
            assert!(resp.starts_with(status), "{request:?}: {resp}");
            assert!(!resp.contains("<p>"), "{request:?}: {resp}");
        }
        task.abort();
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
