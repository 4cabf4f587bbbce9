#![allow(dead_code)]
//! Shared integration-test support: a small HTTP/1.1 server on std threads that plays
//! LLM providers on 127.0.0.1 with their real wire formats, builders for those replies,
//! and a sandbox that runs the `llm-consensus` binary with an isolated environment.
//!
//! Only std and serde_json are used so that every test binary compiles quickly.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json as j};

/// Model name reported by every canned provider reply.
pub const MODEL: &str = "test-model";
/// Unix timestamp used where a provider reports a creation time.
const CREATED: u64 = 1_700_000_000;

/// Caps that keep a misbehaving client from growing memory without bound.
const MAX_LINE: u64 = 64 * 1024;
const MAX_HEAD: usize = 1024 * 1024;
const MAX_BODY: usize = 64 * 1024 * 1024;

/// After the reply, how long to wait for the client to close before closing ourselves.
/// Draining avoids a TCP reset that could destroy a reply the client has not read yet.
const LINGER: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------

/// One HTTP request as the server received it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The request target including any query string, e.g. `/v1/models/x:generateContent?alt=sse`.
    pub path: String,
    /// Header names are lowercased; values are trimmed; order and duplicates are kept.
    pub headers: Vec<(String, String)>,
    /// The body with any chunked transfer coding removed.
    pub body: Vec<u8>,
}

impl Request {
    /// First value of a header, name matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON; panics with the body text when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body of {} {} is not JSON ({e}): {}",
                self.method,
                self.path,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The path without the query string.
    pub fn path_only(&self) -> &str {
        self.path
            .split_once('?')
            .map_or(self.path.as_str(), |(p, _)| p)
    }

    /// First value of a query parameter, percent-decoded (`+` is a space); `Some("")` for `?key`.
    pub fn query(&self, key: &str) -> Option<String> {
        let (_, query) = self.path.split_once('?')?;
        query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .find_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(k) == key).then(|| percent_decode(v))
            })
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------------------

/// What the server does with one request. Every response carries `Connection: close`;
/// `Content-Length`, `Transfer-Encoding` and `Connection` headers given here are ignored
/// because the server sets the framing itself.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A complete response with Content-Length.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Status line + headers, then each chunk after its delay, written with chunked transfer
    /// encoding (each chunk flushed as it is written); then `end`. Empty chunks are skipped
    /// because a zero-length chunk would terminate the body.
    Stream {
        status: u16,
        headers: Vec<(String, String)>,
        chunks: Vec<(Duration, Vec<u8>)>,
        end: End,
    },
    /// Read the request, then say nothing until the server is dropped (a hung provider).
    Hang,
    /// Read the request and close the socket without answering.
    Close,
    /// Sleep, then give the inner reply (a slow provider).
    Delayed(Duration, Box<Reply>),
}

/// How a `Reply::Stream` ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The terminating zero-length chunk: a complete body.
    Finish,
    /// Close the connection mid-body, without the terminating chunk.
    Abort,
    /// Keep the connection open, silent, until the server is dropped.
    Hang,
}

// ---------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------

type Handler = dyn Fn(&Request, usize) -> Reply + Send + Sync;

struct Shared {
    handler: Box<Handler>,
    state: Mutex<State>,
    /// Signalled when the server stops, so that delays and hangs end early.
    stopped_cv: Condvar,
}

struct State {
    stopped: bool,
    requests: Vec<Request>,
    /// Clones of the open connections, shut down on stop to unblock their threads.
    conns: HashMap<u64, TcpStream>,
    next_conn: u64,
    /// Messages of handler panics, re-raised when the server is dropped.
    panics: Vec<String>,
}

impl Shared {
    /// Poisoning cannot leave the state inconsistent, so it is ignored.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sleeps for `d`; returns true (early) when the server stops.
    fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut st = self.lock();
        loop {
            if st.stopped {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = match self.stopped_cv.wait_timeout(st, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    fn wait_stopped(&self) {
        let mut st = self.lock();
        while !st.stopped {
            st = self.stopped_cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// A fake provider on `127.0.0.1:<random port>`; one thread per connection, one request per
/// connection. Stops when dropped; if a handler panicked, the drop panics with its message
/// (unless the test is already panicking) so that assertions inside handlers fail the test.
pub struct TestServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl TestServer {
    /// `handler(request, index)` decides the reply; index counts requests from 0 in arrival order.
    pub fn start<F>(handler: F) -> TestServer
    where
        F: Fn(&Request, usize) -> Reply + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind test server");
        let addr = listener.local_addr().expect("test server address");
        let shared = Arc::new(Shared {
            handler: Box::new(handler),
            state: Mutex::new(State {
                stopped: false,
                requests: Vec::new(),
                conns: HashMap::new(),
                next_conn: 0,
                panics: Vec::new(),
            }),
            stopped_cv: Condvar::new(),
        });
        let for_thread = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name(format!("test-server-{}", addr.port()))
            .spawn(move || accept_loop(listener, for_thread))
            .expect("spawn test server thread");
        TestServer {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// A server that answers every request with clones of `reply`.
    pub fn always(reply: Reply) -> TestServer {
        TestServer::start(move |_, _| reply.clone())
    }

    /// A server that answers request `i` with `replies[i]`, and 500 once they run out.
    pub fn sequence(replies: Vec<Reply>) -> TestServer {
        TestServer::start(move |req, i| {
            replies.get(i).cloned().unwrap_or_else(|| {
                text(
                    500,
                    "text/plain",
                    &format!(
                        "test server: unexpected request #{i}: {} {}",
                        req.method, req.path
                    ),
                )
            })
        })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.lock().requests.clone()
    }

    /// Number of requests received so far.
    pub fn count(&self) -> usize {
        self.shared.lock().requests.len()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let panics = {
            let mut st = self.shared.lock();
            st.stopped = true;
            for conn in st.conns.values() {
                let _ = conn.shutdown(Shutdown::Both);
            }
            std::mem::take(&mut st.panics)
        };
        self.shared.stopped_cv.notify_all();
        // The accept loop only sees `stopped` once accept() returns, so poke it with a
        // connection; join only if that worked, so that drop can never block for long.
        let woke = TcpStream::connect_timeout(&self.addr, Duration::from_millis(500)).is_ok();
        if let Some(accept) = self.accept.take().filter(|_| woke) {
            let _ = accept.join();
        }
        if !panics.is_empty() && !std::thread::panicking() {
            panic!("test server handler panicked: {}", panics.join("; "));
        }
    }
}

/// A URL on which nothing listens (connections are refused): a provider that is down.
pub fn unused_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind probe port");
    let addr = listener.local_addr().expect("probe address");
    drop(listener);
    format!("http://{addr}")
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        let Ok(stream) = conn else {
            // Transient failures (e.g. out of file descriptors) must not end the server.
            if shared.lock().stopped {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let id = {
            let mut st = shared.lock();
            if st.stopped {
                return;
            }
            let Ok(clone) = stream.try_clone() else {
                continue;
            };
            let id = st.next_conn;
            st.next_conn += 1;
            st.conns.insert(id, clone);
            id
        };
        let for_thread = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name(format!("test-conn-{id}"))
            .spawn(move || {
                serve_connection(&for_thread, &stream);
                close_connection(&for_thread, &stream, id);
            });
        if spawned.is_err() {
            shared.lock().conns.remove(&id);
        }
    }
}

fn serve_connection(shared: &Shared, stream: &TcpStream) {
    // Without this, Nagle's algorithm could merge stream chunks that should arrive apart.
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream);
    let req = match read_request(&mut reader, stream) {
        Ok(req) => req,
        Err(ReadError::Gone) => return,
        Err(ReadError::Bad(msg)) => {
            let reply = text(
                400,
                "text/plain",
                &format!("test server: bad request: {msg}"),
            );
            let _ = send(shared, stream, reply);
            return;
        }
    };
    let index = {
        let mut st = shared.lock();
        st.requests.push(req.clone());
        st.requests.len() - 1
    };
    let reply = match catch_unwind(AssertUnwindSafe(|| (shared.handler)(&req, index))) {
        Ok(reply) => reply,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic".to_string());
            let msg = format!("request #{index} {} {}: {msg}", req.method, req.path);
            shared.lock().panics.push(msg.clone());
            text(
                500,
                "text/plain",
                &format!("test server handler panicked: {msg}"),
            )
        }
    };
    // Write errors mean the client went away, which tests provoke on purpose.
    let _ = send(shared, stream, reply);
}

/// Half-closes, lets the client read to EOF and hang up (bounded by LINGER or server stop),
/// then closes. Also used for `Abort` and `Close`, whose client then sees EOF.
fn close_connection(shared: &Shared, stream: &TcpStream, id: u64) {
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + LINGER;
    let mut buf = [0u8; 4096];
    let mut reader = stream;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    // Dropping the registered clone releases the last descriptor of this socket.
    shared.lock().conns.remove(&id);
}

enum ReadError {
    /// The client closed or reset the connection; nothing to answer.
    Gone,
    /// Malformed request; answered with 400.
    Bad(String),
}

/// Reads one line including its `\n` into `buf`; returns 0 at EOF.
fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> Result<usize, ReadError> {
    buf.clear();
    let n = reader
        .by_ref()
        .take(MAX_LINE)
        .read_until(b'\n', buf)
        .map_err(|_| ReadError::Gone)?;
    if n as u64 == MAX_LINE && buf.last() != Some(&b'\n') {
        return Err(ReadError::Bad("line too long".into()));
    }
    Ok(n)
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn read_request(
    reader: &mut BufReader<&TcpStream>,
    stream: &TcpStream,
) -> Result<Request, ReadError> {
    let bad = |msg: &str| ReadError::Bad(msg.to_string());
    let mut line = Vec::new();
    // Blank lines before the request line are allowed (RFC 9112 §2.2).
    loop {
        if read_line(reader, &mut line)? == 0 {
            return Err(ReadError::Gone);
        }
        if !trim_eol(&line).is_empty() {
            break;
        }
    }
    let request_line =
        String::from_utf8(trim_eol(&line).to_vec()).map_err(|_| bad("request line not UTF-8"))?;
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Bad(format!(
            "malformed request line {request_line:?}"
        )));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ReadError::Bad(format!("unsupported version {version:?}")));
    }

    let mut headers = Vec::new();
    let mut head_size = 0;
    loop {
        if read_line(reader, &mut line)? == 0 {
            return Err(ReadError::Gone);
        }
        head_size += line.len();
        if head_size > MAX_HEAD {
            return Err(bad("header section too large"));
        }
        let raw = trim_eol(&line);
        if raw.is_empty() {
            break;
        }
        let raw = String::from_utf8_lossy(raw);
        let (name, value) = raw
            .split_once(':')
            .ok_or_else(|| ReadError::Bad(format!("malformed header {raw:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }

    let mut req = Request {
        method: method.to_string(),
        path: origin_form(target),
        headers,
        body: Vec::new(),
    };
    let chunked = req.header("transfer-encoding").is_some_and(|te| {
        te.rsplit(',')
            .next()
            .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
    });
    let length = match req.header("content-length") {
        Some(v) if !chunked => {
            // Duplicated values ("12, 12") are allowed when they agree.
            let mut values = v.split(',').map(|x| x.trim().parse::<usize>());
            let first = values.next().and_then(|r| r.ok());
            match first {
                Some(n) if values.all(|r| r.ok() == Some(n)) => n,
                _ => return Err(ReadError::Bad(format!("bad content-length {v:?}"))),
            }
        }
        _ => 0,
    };
    if length > MAX_BODY {
        return Err(bad("body too large"));
    }
    let expects_continue = req
        .header("expect")
        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"));
    if expects_continue && (chunked || length > 0) {
        let mut w = stream;
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(|_| ReadError::Gone)?;
    }
    if chunked {
        req.body = read_chunked(reader)?;
    } else {
        req.body = vec![0; length];
        reader
            .read_exact(&mut req.body)
            .map_err(|_| ReadError::Gone)?;
    }
    Ok(req)
}

/// Turns an absolute-form target (`http://host/p?q`, sent to proxies) into `/p?q`.
fn origin_form(target: &str) -> String {
    let Some((_, rest)) = target.split_once("://") else {
        return target.to_string();
    };
    match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('?') => format!("/{}", &rest[i..]),
        Some(i) => rest[i..].to_string(),
        None => "/".to_string(),
    }
}

fn read_chunked(reader: &mut BufReader<&TcpStream>) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    let mut line = Vec::new();
    loop {
        if read_line(reader, &mut line)? == 0 {
            return Err(ReadError::Gone);
        }
        let size_line = String::from_utf8_lossy(trim_eol(&line)).into_owned();
        let size_text = size_line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .ok()
            .filter(|_| size_text.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| ReadError::Bad(format!("bad chunk size {size_line:?}")))?;
        if size == 0 {
            // Trailer fields up to the blank line; a missing final CRLF is tolerated.
            while read_line(reader, &mut line)? != 0 && !trim_eol(&line).is_empty() {}
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(ReadError::Bad("body too large".into()));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader
            .read_exact(&mut body[start..])
            .map_err(|_| ReadError::Gone)?;
        if read_line(reader, &mut line)? == 0 {
            return Err(ReadError::Gone);
        }
        if !trim_eol(&line).is_empty() {
            return Err(ReadError::Bad("chunk data not followed by CRLF".into()));
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Overloaded",
        _ => "Status",
    }
}

fn response_head(status: u16, headers: &[(String, String)], framing: &str) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        let reserved = ["content-length", "transfer-encoding", "connection"]
            .iter()
            .any(|r| name.eq_ignore_ascii_case(r));
        if !reserved {
            let _ = write!(head, "{name}: {value}\r\n");
        }
    }
    let _ = write!(head, "{framing}\r\nConnection: close\r\n\r\n");
    head.into_bytes()
}

fn send(shared: &Shared, stream: &TcpStream, reply: Reply) -> std::io::Result<()> {
    let mut w = stream;
    match reply {
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let framing = format!("Content-Length: {}", body.len());
            let mut out = response_head(status, &headers, &framing);
            out.extend_from_slice(&body);
            w.write_all(&out)?;
            w.flush()
        }
        Reply::Stream {
            status,
            headers,
            chunks,
            end,
        } => {
            w.write_all(&response_head(
                status,
                &headers,
                "Transfer-Encoding: chunked",
            ))?;
            w.flush()?;
            for (delay, data) in chunks {
                if shared.sleep(delay) {
                    return Ok(());
                }
                if data.is_empty() {
                    continue;
                }
                // One write per chunk, so that each chunk leaves in its own segment.
                let mut frame = format!("{:x}\r\n", data.len()).into_bytes();
                frame.extend_from_slice(&data);
                frame.extend_from_slice(b"\r\n");
                w.write_all(&frame)?;
                w.flush()?;
            }
            match end {
                End::Finish => {
                    w.write_all(b"0\r\n\r\n")?;
                    w.flush()
                }
                End::Abort => Ok(()),
                End::Hang => {
                    shared.wait_stopped();
                    Ok(())
                }
            }
        }
        Reply::Hang => {
            shared.wait_stopped();
            Ok(())
        }
        Reply::Close => Ok(()),
        Reply::Delayed(delay, inner) => {
            if shared.sleep(delay) {
                return Ok(());
            }
            send(shared, stream, *inner)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Generic reply builders
// ---------------------------------------------------------------------------------------

/// A JSON response (`Content-Type: application/json`).
pub fn json(status: u16, body: &Value) -> Reply {
    Reply::Full {
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: serde_json::to_vec(body).expect("serialise JSON reply"),
    }
}

/// A response with any content type and text body.
pub fn text(status: u16, content_type: &str, body: &str) -> Reply {
    Reply::Full {
        status,
        headers: vec![("Content-Type".into(), content_type.into())],
        body: body.as_bytes().to_vec(),
    }
}

/// Sets a response header, replacing any header of the same name (case-insensitive).
/// Looks through `Delayed`; `Hang` and `Close` have no headers and are returned unchanged.
pub fn with_header(mut reply: Reply, name: &str, value: &str) -> Reply {
    match &mut reply {
        Reply::Full { headers, .. } | Reply::Stream { headers, .. } => {
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            headers.push((name.to_string(), value.to_string()));
        }
        Reply::Delayed(_, inner) => {
            let old = std::mem::replace(&mut **inner, Reply::Close);
            **inner = with_header(old, name, value);
        }
        Reply::Hang | Reply::Close => {}
    }
    reply
}

/// A streamed response whose chunks are `events`, sent without delay and ended normally.
pub fn event_stream(status: u16, content_type: &str, events: Vec<String>) -> Reply {
    Reply::Stream {
        status,
        headers: vec![
            ("Content-Type".into(), content_type.into()),
            ("Cache-Control".into(), "no-cache".into()),
        ],
        chunks: events
            .into_iter()
            .map(|e| (Duration::ZERO, e.into_bytes()))
            .collect(),
        end: End::Finish,
    }
}

/// Applies `f` to the chunks and end of a stream, looking through `Delayed`.
/// Panics for replies that are not streams, since that is a mistake in the test.
fn map_stream(mut reply: Reply, f: impl FnOnce(&mut Vec<(Duration, Vec<u8>)>, &mut End)) -> Reply {
    let mut target = &mut reply;
    while let Reply::Delayed(_, inner) = target {
        target = &mut **inner;
    }
    match target {
        Reply::Stream { chunks, end, .. } => f(chunks, end),
        other => panic!("expected a Reply::Stream, got {other:?}"),
    }
    reply
}

/// Gives every chunk of a stream the same delay before it (a slowly generating model).
pub fn paced(reply: Reply, delay: Duration) -> Reply {
    map_stream(reply, |chunks, _| {
        for (d, _) in chunks.iter_mut() {
            *d = delay;
        }
    })
}

/// Keeps only the first `keep` chunks of a stream and ends it with `end`
/// (e.g. `End::Abort`: a provider that dies mid-answer).
pub fn truncated(reply: Reply, keep: usize, end: End) -> Reply {
    map_stream(reply, |chunks, e| {
        chunks.truncate(keep);
        *e = end;
    })
}

/// Re-splits a stream's bytes into chunks of at most `size` bytes, so that events and even
/// UTF-8 characters straddle chunk boundaries. Per-chunk delays are dropped (use `paced` after).
pub fn rechunked(reply: Reply, size: usize) -> Reply {
    assert!(size > 0, "rechunked: size must be positive");
    map_stream(reply, |chunks, _| {
        let all: Vec<u8> = chunks.iter().flat_map(|(_, c)| c.iter().copied()).collect();
        *chunks = all
            .chunks(size)
            .map(|c| (Duration::ZERO, c.to_vec()))
            .collect();
    })
}

fn sse_event(name: Option<&str>, data: &str, eol: &str) -> String {
    match name {
        Some(name) => format!("event: {name}{eol}data: {data}{eol}{eol}"),
        None => format!("data: {data}{eol}{eol}"),
    }
}

// ---------------------------------------------------------------------------------------
// OpenAI chat completions (docs/providers.md, Kinds)
// ---------------------------------------------------------------------------------------

/// A non-streaming `chat.completion` with `finish_reason: "stop"`.
pub fn openai_ok(text: &str, prompt_tokens: u64, completion_tokens: u64) -> Reply {
    let body = j!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0
            }
        },
        "service_tier": "default",
        "system_fingerprint": "fp_test"
    });
    with_header(json(200, &body), "x-request-id", "req_test")
}

/// A streamed chat completion: role delta, one chunk per piece, a `finish_reason: "stop"`
/// chunk, the `choices: []` usage chunk when `usage` is `Some((prompt, completion))`, then
/// `data: [DONE]`. Each event is its own HTTP chunk.
pub fn openai_sse(pieces: &[&str], usage: Option<(u64, u64)>) -> Reply {
    let chunk = |delta: Value, finish: Value| {
        let mut c = j!({
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": MODEL,
            "system_fingerprint": "fp_test",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
        });
        // With include_usage the real API puts `usage: null` on every ordinary chunk.
        if usage.is_some() {
            c["usage"] = Value::Null;
        }
        c.to_string()
    };
    let mut events = vec![chunk(j!({"role": "assistant", "content": ""}), Value::Null)];
    events.extend(
        pieces
            .iter()
            .map(|p| chunk(j!({"content": p}), Value::Null)),
    );
    events.push(chunk(j!({}), j!("stop")));
    if let Some((prompt, completion)) = usage {
        let u = j!({
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": MODEL,
            "system_fingerprint": "fp_test",
            "choices": [],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion
            }
        });
        events.push(u.to_string());
    }
    events.push("[DONE]".to_string());
    let events = events.iter().map(|e| sse_event(None, e, "\n")).collect();
    with_header(
        event_stream(200, "text/event-stream", events),
        "x-request-id",
        "req_test",
    )
}

/// An OpenAI error body: `{"error":{"message","type","param":null,"code"}}`.
pub fn openai_error(status: u16, message: &str, type_: &str, code: Option<&str>) -> Reply {
    let body = j!({"error": {"message": message, "type": type_, "param": null, "code": code}});
    with_header(json(status, &body), "x-request-id", "req_test")
}

// ---------------------------------------------------------------------------------------
// Anthropic Messages (docs/providers.md, Kinds)
// ---------------------------------------------------------------------------------------

/// A non-streaming `message` with one text block and `stop_reason: "end_turn"`.
pub fn anthropic_ok(text: &str, input_tokens: u64, output_tokens: u64) -> Reply {
    let body = j!({
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}
    });
    with_header(json(200, &body), "request-id", "req_test")
}

/// A streamed message: message_start (input tokens), content_block_start, ping, one
/// text_delta per piece, content_block_stop, message_delta (end_turn, cumulative output
/// tokens), message_stop. Each event is its own HTTP chunk.
pub fn anthropic_sse(pieces: &[&str], input_tokens: u64, output_tokens: u64) -> Reply {
    let mut events = vec![
        (
            "message_start",
            j!({"type": "message_start", "message": {
                "id": "msg_test",
                "type": "message",
                "role": "assistant",
                "model": MODEL,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens.min(1)}
            }}),
        ),
        (
            "content_block_start",
            j!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
        ),
        ("ping", j!({"type": "ping"})),
    ];
    events.extend(pieces.iter().map(|p| {
        (
            "content_block_delta",
            j!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": p}}),
        )
    }));
    events.push((
        "content_block_stop",
        j!({"type": "content_block_stop", "index": 0}),
    ));
    events.push((
        "message_delta",
        j!({"type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": output_tokens}}),
    ));
    events.push(("message_stop", j!({"type": "message_stop"})));
    let events = events
        .iter()
        .map(|(name, data)| sse_event(Some(name), &data.to_string(), "\n"))
        .collect();
    with_header(
        event_stream(200, "text/event-stream", events),
        "request-id",
        "req_test",
    )
}

/// An Anthropic error body: `{"type":"error","error":{"type","message"},"request_id"}`.
pub fn anthropic_error(status: u16, type_: &str, message: &str) -> Reply {
    let body = j!({
        "type": "error",
        "error": {"type": type_, "message": message},
        "request_id": "req_test"
    });
    with_header(json(status, &body), "request-id", "req_test")
}

// ---------------------------------------------------------------------------------------
// Gemini (docs/providers.md, Kinds)
// ---------------------------------------------------------------------------------------

fn gemini_response(text: &str, finish: bool, usage: Value) -> Value {
    let mut candidate = j!({"content": {"role": "model", "parts": [{"text": text}]}, "index": 0});
    if finish {
        candidate["finishReason"] = j!("STOP");
    }
    j!({
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": MODEL,
        "responseId": "resp_test"
    })
}

fn gemini_usage(prompt_tokens: u64, candidates_tokens: u64) -> Value {
    j!({
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": candidates_tokens,
        "totalTokenCount": prompt_tokens + candidates_tokens
    })
}

/// A non-streaming GenerateContentResponse with `finishReason: "STOP"`.
pub fn gemini_ok(text: &str, prompt_tokens: u64, candidates_tokens: u64) -> Reply {
    let body = gemini_response(text, true, gemini_usage(prompt_tokens, candidates_tokens));
    json(200, &body)
}

/// A `:streamGenerateContent?alt=sse` stream: one full GenerateContentResponse per piece;
/// the last carries `finishReason: "STOP"` and the final usageMetadata (earlier ones carry
/// prompt-only usage, as the API repeats it). Events are CRLF-separated like Google's.
/// With no pieces, a single empty-text final event is sent.
pub fn gemini_sse(pieces: &[&str], prompt_tokens: u64, candidates_tokens: u64) -> Reply {
    let pieces: &[&str] = if pieces.is_empty() { &[""] } else { pieces };
    let last = pieces.len() - 1;
    let events = pieces
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let usage = if i == last {
                gemini_usage(prompt_tokens, candidates_tokens)
            } else {
                j!({"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens})
            };
            let event = gemini_response(p, i == last, usage);
            sse_event(None, &event.to_string(), "\r\n")
        })
        .collect();
    event_stream(200, "text/event-stream", events)
}

/// A Google RPC error body `{"error":{"code","message","status","details"}}`. With
/// `retry_delay` (e.g. `"38s"`), `details` holds a RetryInfo entry, preceded by a
/// per-minute QuotaFailure entry when `status_name` is `RESOURCE_EXHAUSTED`.
pub fn gemini_error(
    status: u16,
    status_name: &str,
    message: &str,
    retry_delay: Option<&str>,
) -> Reply {
    let mut error = j!({"code": status, "message": message, "status": status_name});
    if let Some(delay) = retry_delay {
        let mut details = Vec::new();
        if status_name == "RESOURCE_EXHAUSTED" {
            details.push(j!({
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [{
                    "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                    "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                    "quotaDimensions": {"location": "global", "model": MODEL},
                    "quotaValue": "10"
                }]
            }));
        }
        details.push(j!({
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": delay
        }));
        error["details"] = Value::Array(details);
    }
    json(status, &j!({ "error": error }))
}

// ---------------------------------------------------------------------------------------
// Ollama native /api/chat (docs/providers.md, Kinds)
// ---------------------------------------------------------------------------------------

const OLLAMA_CREATED_AT: &str = "2026-01-01T00:00:00.000000000Z";

fn ollama_final(text: &str, prompt_eval_count: u64, eval_count: u64) -> Value {
    j!({
        "model": MODEL,
        "created_at": OLLAMA_CREATED_AT,
        "message": {"role": "assistant", "content": text},
        "done": true,
        "done_reason": "stop",
        "total_duration": 1_500_000_000u64,
        "load_duration": 100_000_000u64,
        "prompt_eval_count": prompt_eval_count,
        "prompt_eval_duration": 200_000_000u64,
        "eval_count": eval_count,
        "eval_duration": 1_000_000_000u64
    })
}

/// A non-streaming `/api/chat` reply (`done: true`, `done_reason: "stop"`, counts, durations in ns).
pub fn ollama_ok(text: &str, prompt_eval_count: u64, eval_count: u64) -> Reply {
    json(200, &ollama_final(text, prompt_eval_count, eval_count))
}

/// An NDJSON stream: one `done: false` line per piece, then a `done: true` line with empty
/// content, `done_reason: "stop"` and the counts. Each line is its own HTTP chunk.
pub fn ollama_ndjson(pieces: &[&str], prompt_eval_count: u64, eval_count: u64) -> Reply {
    let mut lines: Vec<String> = pieces
        .iter()
        .map(|p| {
            j!({
                "model": MODEL,
                "created_at": OLLAMA_CREATED_AT,
                "message": {"role": "assistant", "content": p},
                "done": false
            })
            .to_string()
        })
        .collect();
    lines.push(ollama_final("", prompt_eval_count, eval_count).to_string());
    let lines = lines.into_iter().map(|l| l + "\n").collect();
    event_stream(200, "application/x-ndjson", lines)
}

/// An Ollama error body: `{"error":"message"}`.
pub fn ollama_error(status: u16, message: &str) -> Reply {
    json(status, &j!({ "error": message }))
}

// ---------------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------------

/// A temp directory used as HOME/XDG dirs, kept alive as long as the value.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

impl Sandbox {
    /// Creates the directory with empty `config/` and `state/` subdirectories.
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("llm-consensus-test-")
            .tempdir()
            .expect("create sandbox directory");
        for sub in ["config", "state"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("create sandbox subdirectory");
        }
        Sandbox { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `XDG_CONFIG_HOME` of commands from `cmd()`.
    pub fn config_dir(&self) -> PathBuf {
        self.path().join("config")
    }

    /// `XDG_STATE_HOME` of commands from `cmd()`.
    pub fn state_dir(&self) -> PathBuf {
        self.path().join("state")
    }

    /// Writes a file at `name` (relative to the sandbox, parents created); returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
        }
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// The project's binary with a cleared environment: only PATH, HOME (the sandbox),
    /// XDG_CONFIG_HOME (`config/`), XDG_STATE_HOME (`state/`) and NO_COLOR=1. It runs in the
    /// sandbox directory, and is killed after 60 s (override with `.timeout(..)`) so that a
    /// hung binary fails the test instead of stalling the suite.
    pub fn cmd(&self) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::cargo_bin("llm-consensus")
            .expect("the llm-consensus binary is built for integration tests");
        cmd.env_clear()
            .env("HOME", self.path())
            .env("XDG_CONFIG_HOME", self.config_dir())
            .env("XDG_STATE_HOME", self.state_dir())
            .env("NO_COLOR", "1")
            .current_dir(self.path())
            .timeout(Duration::from_secs(60));
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        cmd
    }
}

/// A non-streaming `chat.completion` like [`openai_ok`] that stopped for `finish_reason`
/// (`"length"`: cut at the token limit).
pub fn openai_finished(
    text: &str,
    prompt_tokens: u64,
    completion_tokens: u64,
    finish_reason: &str,
) -> Reply {
    let mut reply = openai_ok(text, prompt_tokens, completion_tokens);
    if let Reply::Full { body, .. } = &mut reply {
        let mut value: Value = serde_json::from_slice(body).expect("openai_ok is JSON");
        value["choices"][0]["finish_reason"] = j!(finish_reason);
        *body = serde_json::to_vec(&value).expect("serialise JSON reply");
    }
    reply
}

/// The seed seat `seat` sends its provider in the run that `report` (`ask --json`)
/// describes: the run's seed plus the seat's index, modulo 2^31 (README, Seeds).
pub fn seat_seed(report: &Value, seat: u64) -> u64 {
    let seed = report["seed"].as_u64().expect("the report has a seed");
    seed.wrapping_add(seat) % (1 << 31)
}

/// A provider that answers each request with `reply` (a [`Reply::Full`]) after `delay`,
/// and records when a client hangs up before that: a call the tool cancelled. One
/// request per connection, like [`TestServer`]; stops when dropped.
pub struct WatchedServer {
    addr: SocketAddr,
    stopped: Arc<std::sync::atomic::AtomicBool>,
    /// Per request: how long after the request arrived the client hung up, or None
    /// when it waited for the answer.
    hangups: Arc<Mutex<Vec<Option<Duration>>>>,
}

impl WatchedServer {
    pub fn start(delay: Duration, reply: Reply) -> WatchedServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind watched server");
        let addr = listener.local_addr().expect("watched server address");
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let hangups = Arc::new(Mutex::new(Vec::new()));
        let (stop, log) = (Arc::clone(&stopped), Arc::clone(&hangups));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (reply, log) = (reply.clone(), Arc::clone(&log));
                std::thread::spawn(move || watch(stream, delay, &reply, &log));
            }
        });
        WatchedServer {
            addr,
            stopped,
            hangups,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Per request so far: when the client hung up before the answer (None: it waited).
    pub fn hangups(&self) -> Vec<Option<Duration>> {
        self.hangups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits up to `within` for `n` requests to be settled (answered or hung up on).
    pub fn settled(&self, n: usize, within: Duration) -> Vec<Option<Duration>> {
        let end = Instant::now() + within;
        while self.hangups().len() < n && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.hangups()
    }
}

impl Drop for WatchedServer {
    fn drop(&mut self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(500));
    }
}

/// Reads one request, then waits `delay` for the client to hang up; answers if it did not.
fn watch(stream: TcpStream, delay: Duration, reply: &Reply, log: &Mutex<Vec<Option<Duration>>>) {
    let mut reader = BufReader::new(&stream);
    let mut line = Vec::new();
    let mut length = 0usize;
    loop {
        match read_line(&mut reader, &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line).to_ascii_lowercase();
        if let Some(v) = text.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if text == "\r\n" || text == "\n" {
            break;
        }
    }
    let mut body = vec![0u8; length.min(MAX_BODY)];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let arrived = Instant::now();
    let mut buf = [0u8; 512];
    let mut conn = &stream;
    loop {
        let left = delay.saturating_sub(arrived.elapsed());
        if left.is_zero() {
            break;
        }
        let _ = stream.set_read_timeout(Some(left.min(Duration::from_millis(20))));
        match conn.read(&mut buf) {
            Ok(0) => {
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Some(arrived.elapsed()));
                return;
            }
            Err(e)
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Some(arrived.elapsed()));
                return;
            }
            _ => {}
        }
    }
    if let Reply::Full {
        status,
        headers,
        body,
    } = reply
    {
        let mut out = response_head(*status, headers, &format!("Content-Length: {}", body.len()));
        out.extend_from_slice(body);
        let _ = conn.write_all(&out);
        let _ = conn.flush();
    }
    log.lock().unwrap_or_else(|e| e.into_inner()).push(None);
    let _ = stream.shutdown(Shutdown::Write);
    let _ = conn.read(&mut buf);
}

impl TestServer {
    /// Empties the log of requests received; a long run (thousands of prompts) would
    /// otherwise hold every one of them.
    pub fn forget_requests(&self) {
        self.shared.lock().requests.clear();
    }
}

impl Sandbox {
    /// The binary as a `std::process::Command` with the environment of [`Sandbox::cmd`]
    /// and no timeout: for a long-lived process driven over its pipes (`mcp`).
    pub fn process(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("llm-consensus"));
        cmd.env_clear()
            .env("HOME", self.path())
            .env("XDG_CONFIG_HOME", self.config_dir())
            .env("XDG_STATE_HOME", self.state_dir())
            .env("NO_COLOR", "1")
            .current_dir(self.path());
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        cmd
    }
}

/// Whether a process runs (a zombie waiting for its reaper does not).
pub fn running(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

/// Whether the process `pid` is gone within 5 s.
pub fn gone_soon(pid: &str) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        if !running(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
