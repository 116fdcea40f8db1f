//! A real headless browser for the dashboard's test: Debian's Chromium
//! driven by its chromedriver over the W3C WebDriver protocol (plain HTTP
//! and JSON, spoken here in a few lines rather than through a client
//! crate), and a PNG reader that tells a real screenshot from a blank one.
//!
//! `scripts/lib/ensure-tools.sh` (`ensure_browser`) installs `chromium` and
//! `chromium-driver`; without them [`Browser::start`] fails, saying so.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

/// A headless Chromium session; the session and its chromedriver end when
/// it is dropped.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

/// The path of `program` on `PATH`.
fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(program))
        .find(|p| p.is_file())
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session
    /// with a `width` x `height` window.
    pub fn start(width: u32, height: u32) -> Result<Browser> {
        let (Some(chromium), Some(chromedriver)) = (which("chromium"), which("chromedriver"))
        else {
            bail!(
                "chromium and chromedriver are needed (Debian: apt-get install chromium \
                 chromium-driver; scripts/lib/ensure-tools.sh's ensure_browser, run by \
                 scripts/test, installs them)"
            );
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", chromedriver.display()))?;
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
        };
        let started = Instant::now();
        loop {
            if let Ok(v) = browser.call("GET", "/status", None) {
                if v["value"]["ready"] == json!(true) {
                    break;
                }
            }
            ensure!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not get ready on port {port} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.to_string_lossy(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--hide-scrollbars",
                         "--force-device-scale-factor=1",
                         format!("--window-size={width},{height}")],
            },
        }}});
        let v = browser
            .call("POST", "/session", Some(caps))
            .context("starting a Chromium session")?;
        browser.session = v["value"]["sessionId"]
            .as_str()
            .with_context(|| format!("no session id in {v}"))?
            .to_string();
        Ok(browser)
    }

    /// Loads `url` and waits for the page's load event.
    pub fn goto(&self, url: &str) -> Result<()> {
        self.session_call("POST", "/url", json!({ "url": url }))
            .map(drop)
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the
    /// page and returns what it returns.
    pub fn execute(&self, script: &str, args: Value) -> Result<Value> {
        self.session_call(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": args }),
        )
    }

    /// A PNG screenshot of the window.
    pub fn screenshot(&self) -> Result<Vec<u8>> {
        let v = self.call(
            "GET",
            &format!("/session/{}/screenshot", self.session),
            None,
        )?;
        let b64 = v["value"].as_str().context("no screenshot data")?;
        base64_decode(b64)
    }

    fn session_call(&self, method: &str, path: &str, body: Value) -> Result<Value> {
        let v = self.call(
            method,
            &format!("/session/{}{path}", self.session),
            Some(body),
        )?;
        Ok(v["value"].clone())
    }

    /// One WebDriver command; a WebDriver error is an `Err` with its message.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )?;
        // chromedriver keeps the connection open whatever the request
        // says: read what Content-Length announces (or the chunks).
        let mut raw = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        let body = loop {
            let n = s.read(&mut buf)?;
            raw.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&raw);
            if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                let head = head.to_ascii_lowercase();
                let length = head.lines().find_map(|l| {
                    l.strip_prefix("content-length:")
                        .and_then(|v| v.trim().parse::<usize>().ok())
                });
                match length {
                    Some(len) if rest.len() >= len => break rest[..len].to_string(),
                    None if head.contains("chunked") && rest.ends_with("0\r\n\r\n") => {
                        break dechunk(rest)?
                    }
                    None if n == 0 => break rest.to_string(),
                    _ => {}
                }
            }
            ensure!(
                n > 0,
                "chromedriver {method} {path}: closed mid-answer: {text:?}"
            );
        };
        let v: Value = serde_json::from_str(&body)
            .with_context(|| format!("chromedriver {method} {path}: {body:?}"))?;
        if let Some(err) = v["value"]["error"].as_str() {
            bail!(
                "chromedriver {method} {path}: {err}: {}",
                v["value"]["message"].as_str().unwrap_or("")
            );
        }
        Ok(v)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn dechunk(mut s: &str) -> Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").context("a chunk without its size")?;
        let n = usize::from_str_radix(size.trim(), 16).context("a chunk size")?;
        if n == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..n).context("a short chunk")?);
        s = rest.get(n + 2..).unwrap_or("");
    }
}

fn base64_decode(text: &str) -> Result<Vec<u8>> {
    let value = |c: u8| -> Result<u32> {
        Ok(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => bail!("not base64: {c:?}"),
        } as u32)
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Ok(out)
}

/// What a PNG holds, as far as telling a screenshot from a blank image goes.
#[derive(Debug, Clone, PartialEq)]
pub struct PngStats {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Distinct colours (counted up to 65,536).
    pub colours: usize,
    /// Share of the pixels that differ from the most common colour.
    pub not_background: f64,
}

/// Decodes an 8-bit RGB or RGBA PNG (what Chromium writes) far enough to
/// count its colours: chunks, zlib, scanline filters.
pub fn png_stats(png: &[u8]) -> Result<PngStats> {
    ensure!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG (no signature)"
    );
    let mut at = 8;
    let (mut width, mut height, mut channels) = (0u32, 0u32, 0usize);
    let mut idat = Vec::new();
    while at + 8 <= png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into()?) as usize;
        let kind = &png[at + 4..at + 8];
        let data = png
            .get(at + 8..at + 8 + len)
            .context("a truncated PNG chunk")?;
        match kind {
            b"IHDR" => {
                width = u32::from_be_bytes(data[0..4].try_into()?);
                height = u32::from_be_bytes(data[4..8].try_into()?);
                ensure!(data[8] == 8, "bit depth {} (8 expected)", data[8]);
                channels = match data[9] {
                    2 => 3,
                    6 => 4,
                    t => bail!("PNG colour type {t} (RGB or RGBA expected)"),
                };
                ensure!(data[12] == 0, "an interlaced PNG");
            }
            b"IDAT" => idat.extend_from_slice(data),
            b"IEND" => break,
            _ => {}
        }
        at += 12 + len;
    }
    ensure!(width > 0 && height > 0 && channels > 0, "no IHDR");
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .context("inflating the image data")?;
    let stride = width as usize * channels;
    ensure!(
        raw.len() == (stride + 1) * height as usize,
        "image data of {} bytes for {width}x{height}",
        raw.len()
    );
    let mut prev = vec![0u8; stride];
    let mut line = vec![0u8; stride];
    let mut counts: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    for row in raw.chunks(stride + 1) {
        let (filter, data) = (row[0], &row[1..]);
        for i in 0..stride {
            let a = if i >= channels { line[i - channels] } else { 0 };
            let b = prev[i];
            let c = if i >= channels { prev[i - channels] } else { 0 };
            let predictor = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
                4 => paeth(a, b, c),
                f => bail!("PNG filter type {f}"),
            };
            line[i] = data[i].wrapping_add(predictor);
        }
        for px in line.chunks(channels) {
            let rgb = u32::from_be_bytes([0, px[0], px[1], px[2]]);
            if counts.len() < 65_536 || counts.contains_key(&rgb) {
                *counts.entry(rgb).or_default() += 1;
            }
        }
        std::mem::swap(&mut prev, &mut line);
    }
    let total = width as usize * height as usize;
    let background = counts.values().copied().max().unwrap_or(0);
    Ok(PngStats {
        width,
        height,
        colours: counts.len(),
        not_background: 1.0 - background as f64 / total as f64,
    })
}

fn paeth(a: u8, b: u8, c: u8) -> u8 {
    let p = i16::from(a) + i16::from(b) - i16::from(c);
    let (pa, pb, pc) = (
        (p - i16::from(a)).abs(),
        (p - i16::from(b)).abs(),
        (p - i16::from(c)).abs(),
    );
    if pa <= pb && pa <= pc {
        a
    } else if pb <= pc {
        b
    } else {
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_chunks_decode() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8h").unwrap(), b"hello!");
        assert_eq!(base64_decode("aGk=\n").unwrap(), b"hi");
        assert!(base64_decode("a*").is_err());
        assert_eq!(
            dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap(),
            "abcde"
        );
    }

    /// A PNG of `w` x `h` RGB pixels from `pixel(x, y)`, each row with
    /// filter `filter` (0: none, 1: sub, 2: up).
    fn png(w: u32, h: u32, filter: u8, pixel: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
        use std::io::Write as _;
        let mut raw = Vec::new();
        let mut prev = vec![0u8; w as usize * 3];
        for y in 0..h {
            raw.push(filter);
            let line: Vec<u8> = (0..w).flat_map(|x| pixel(x, y)).collect();
            for (i, &v) in line.iter().enumerate() {
                raw.push(match filter {
                    1 if i >= 3 => v.wrapping_sub(line[i - 3]),
                    2 => v.wrapping_sub(prev[i]),
                    _ => v,
                });
            }
            prev = line;
        }
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&raw).unwrap();
        let idat = z.finish().unwrap();
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut chunk = |kind: &[u8], data: &[u8]| {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            out.extend_from_slice(kind);
            out.extend_from_slice(data);
            out.extend_from_slice(&[0; 4]); // CRC: not checked here
        };
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        chunk(b"IHDR", &ihdr);
        chunk(b"IDAT", &idat);
        chunk(b"IEND", &[]);
        out
    }

    #[test]
    fn a_blank_image_is_told_from_a_drawn_one() {
        for filter in [0, 1, 2] {
            let blank = png_stats(&png(40, 30, filter, |_, _| [15, 20, 25])).unwrap();
            assert_eq!((blank.width, blank.height), (40, 30));
            assert_eq!(blank.colours, 1);
            assert_eq!(blank.not_background, 0.0);
            let drawn = png_stats(&png(40, 30, filter, |x, y| {
                if x < 20 {
                    [15, 20, 25]
                } else {
                    [x as u8 * 5, y as u8 * 7, 200]
                }
            }))
            .unwrap();
            assert_eq!(drawn.colours, 1 + 20 * 30, "filter {filter}");
            assert!((drawn.not_background - 0.5).abs() < 1e-9);
        }
        assert!(png_stats(b"GIF89a").is_err());
    }
}
