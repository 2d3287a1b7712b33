//! A minimal HTTP/1.1 client for the load generator: one keep-alive TCP connection per client
//! session, one request at a time, `Content-Length` or chunked bodies. It does the least work a
//! client can do per request, so that on a 2-core machine the client takes as little CPU as
//! possible away from what is measured. [`ReqwestConn`] does the same through reqwest, for
//! comparison (`--client reqwest`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP response: status, the headers the benchmark reads, the body.
#[derive(Debug, Default)]
pub struct HttpResponse {
    pub status: u16,
    pub session_id: Option<String>,
    pub event_stream: bool,
    pub body: Vec<u8>,
}

/// Which client implementation a session uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    Raw,
    Reqwest,
}

/// A connection of either kind.
pub enum Conn {
    Raw(RawConn),
    Reqwest(ReqwestConn),
}

impl Conn {
    pub async fn connect(kind: ClientKind, addr: SocketAddr, path: &str) -> anyhow::Result<Conn> {
        Ok(match kind {
            ClientKind::Raw => Conn::Raw(RawConn::connect(addr, path).await?),
            ClientKind::Reqwest => Conn::Reqwest(ReqwestConn::new(addr, path)?),
        })
    }

    /// POSTs `body` (JSON) with `headers`; `Accept` lists JSON and SSE.
    pub async fn post(
        &mut self,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<HttpResponse> {
        match self {
            Conn::Raw(c) => c.request("POST", headers, body).await,
            Conn::Reqwest(c) => c.request(reqwest::Method::POST, headers, body).await,
        }
    }

    pub async fn delete(&mut self, headers: &[(&str, &str)]) -> anyhow::Result<HttpResponse> {
        match self {
            Conn::Raw(c) => c.request("DELETE", headers, b"").await,
            Conn::Reqwest(c) => c.request(reqwest::Method::DELETE, headers, b"").await,
        }
    }
}

/// The hand-written client.
pub struct RawConn {
    addr: SocketAddr,
    path: String,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr, path: &str) -> anyhow::Result<RawConn> {
        let mut c = RawConn {
            addr,
            path: path.to_owned(),
            stream: None,
            buf: Vec::with_capacity(16 * 1024),
            out: Vec::with_capacity(4 * 1024),
        };
        c.reconnect().await?;
        Ok(c)
    }

    async fn reconnect(&mut self) -> anyhow::Result<()> {
        self.stream = None;
        self.buf.clear();
        let s = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        s.set_nodelay(true)?;
        self.stream = Some(s);
        Ok(())
    }

    /// One request; on any failure the connection is dropped and the next request reconnects.
    pub async fn request(
        &mut self,
        method: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<HttpResponse> {
        if self.stream.is_none() {
            self.reconnect().await?;
        }
        let r = self.exchange(method, headers, body).await;
        if r.is_err() {
            self.stream = None;
            self.buf.clear();
        }
        r
    }

    async fn exchange(
        &mut self,
        method: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<HttpResponse> {
        use std::io::Write as _;
        self.out.clear();
        write!(
            self.out,
            "{method} {} HTTP/1.1\r\nHost: {}\r\nAccept: application/json, text/event-stream\r\n",
            self.path, self.addr
        )?;
        if method == "POST" {
            self.out
                .extend_from_slice(b"Content-Type: application/json\r\n");
        }
        for (k, v) in headers {
            write!(self.out, "{k}: {v}\r\n")?;
        }
        write!(self.out, "Content-Length: {}\r\n\r\n", body.len())?;
        self.out.extend_from_slice(body);
        let stream = self.stream.as_mut().context("not connected")?;
        stream.write_all(&self.out).await?;

        // Head.
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            read_more(stream, &mut self.buf).await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).context("head is not UTF-8")?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {status_line:?}"))?;
        let mut response = HttpResponse {
            status,
            ..HttpResponse::default()
        };
        let mut length = None;
        let mut chunked = false;
        let mut close = false;
        for line in lines {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                length = Some(v.parse::<usize>().context("bad Content-Length")?);
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.to_ascii_lowercase().contains("chunked");
            } else if k.eq_ignore_ascii_case("mcp-session-id") {
                response.session_id = Some(v.to_owned());
            } else if k.eq_ignore_ascii_case("content-type") {
                response.event_stream = v.starts_with("text/event-stream");
            } else if k.eq_ignore_ascii_case("connection") {
                close = v.eq_ignore_ascii_case("close");
            }
        }
        self.buf.drain(..head_end + 4);

        // Body.
        if chunked {
            loop {
                let line_end = loop {
                    if let Some(i) = find(&self.buf, b"\r\n") {
                        break i;
                    }
                    read_more(stream, &mut self.buf).await?;
                };
                let size_text = std::str::from_utf8(&self.buf[..line_end])?;
                let size_text = size_text.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size_text, 16)
                    .with_context(|| format!("bad chunk size {size_text:?}"))?;
                // The chunk and its CRLF (or, for the last chunk, the empty trailer's CRLF).
                let need = line_end + 2 + size + 2;
                while self.buf.len() < need {
                    read_more(stream, &mut self.buf).await?;
                }
                response
                    .body
                    .extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
                self.buf.drain(..need);
                if size == 0 {
                    break;
                }
            }
        } else if let Some(n) = length {
            while self.buf.len() < n {
                read_more(stream, &mut self.buf).await?;
            }
            response.body.extend_from_slice(&self.buf[..n]);
            self.buf.drain(..n);
        } else if status != 204 && status != 304 && !(100..200).contains(&status) {
            // Neither: the body runs to the end of the connection.
            loop {
                match stream.read_buf(&mut self.buf).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            response.body = std::mem::take(&mut self.buf);
            close = true;
        }
        if close {
            self.stream = None;
            self.buf.clear();
        }
        Ok(response)
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<()> {
    buf.reserve(8 * 1024);
    let n = stream.read_buf(buf).await?;
    if n == 0 {
        bail!("the server closed the connection");
    }
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The same through reqwest (its own pool of one keep-alive connection per session).
pub struct ReqwestConn {
    http: reqwest::Client,
    url: String,
}

impl ReqwestConn {
    pub fn new(addr: SocketAddr, path: &str) -> anyhow::Result<ReqwestConn> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(ReqwestConn {
            http,
            url: format!("http://{addr}{path}"),
        })
    }

    async fn request(
        &mut self,
        method: reqwest::Method,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<HttpResponse> {
        let mut rb = self
            .http
            .request(method.clone(), &self.url)
            .header("accept", "application/json, text/event-stream");
        if method == reqwest::Method::POST {
            rb = rb
                .header("content-type", "application/json")
                .body(body.to_vec());
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let r = rb.send().await?;
        let status = r.status().as_u16();
        let session_id = r
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let event_stream = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let body = r.bytes().await?.to_vec();
        Ok(HttpResponse {
            status,
            session_id,
            event_stream,
            body,
        })
    }
}
