//! A scriptable hostile HTTP/1.1 receiver for fault tests: a script picks the answer to each
//! request (a status with headers and body, a redirect, a `Retry-After`, an echo of the request
//! headers, a request that hangs, a connection closed before or in the middle of the answer), and
//! the receiver records every request and which record ids it stored.
//!
//! Written on a bare TCP listener (with `httparse` for the request head) rather than on axum or
//! hyper because the faults are below what a server framework lets a handler do: closing the
//! connection after reading a request without a byte of answer, or after half a body.
//!
//! Record ids are found in a request body (gzip undone) by their shape, `rid-` and six digits,
//! so the same receiver counts records for every destination's wire format (NDJSON, HEC
//! envelopes, `_bulk` lines, Sekoia's JSON strings).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as received.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Header names in lower case, in order.
    pub headers: Vec<(String, String)>,
    /// The body, gzip undone when `content-encoding: gzip`.
    pub body: Vec<u8>,
    /// Record ids in the body, in order.
    pub ids: Vec<String>,
}

impl Request {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    /// Everything received, head and body, as text (to look for a secret).
    pub fn text(&self) -> String {
        let mut t = format!("{} {}\n", self.method, self.path);
        for (k, v) in &self.headers {
            t.push_str(&format!("{k}: {v}\n"));
        }
        t.push_str(&String::from_utf8_lossy(&self.body));
        t
    }
}

/// What the receiver does with one request.
#[derive(Clone, Debug)]
pub enum Answer {
    /// Answer `status` with `headers` and `body`; the request's records count as stored when
    /// `stores` (a lying receiver answers 2xx and stores nothing).
    Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
        stores: bool,
    },
    /// Store the records, then never answer (until the client closes the connection).
    Hang,
    /// Store the records, then close the connection without a byte of answer.
    Close,
    /// Store the records, send `200` with half of a JSON body, then close.
    CloseMidResponse,
}

impl Answer {
    /// `200` with an empty JSON object; stores the records.
    pub fn ok() -> Self {
        Answer::json(200, "{}")
    }

    /// `status` with a JSON body; stores the records when 2xx.
    pub fn json(status: u16, body: &str) -> Self {
        Answer::Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
            stores: (200..300).contains(&status),
        }
    }

    /// `status` with a text body; stores the records when 2xx.
    pub fn status(status: u16, body: &str) -> Self {
        Answer::Reply {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.to_string(),
            stores: (200..300).contains(&status),
        }
    }

    /// A 2xx (or any status) that stores nothing: a receiver that loses what it acknowledged.
    pub fn lie(status: u16, body: &str) -> Self {
        Answer::Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
            stores: false,
        }
    }

    /// A redirect to `location`.
    pub fn redirect(status: u16, location: &str) -> Self {
        Answer::Reply {
            status,
            headers: vec![("location".into(), location.to_string())],
            body: String::new(),
            stores: false,
        }
    }

    /// `status` with a `Retry-After`.
    pub fn retry_after(status: u16, value: &str) -> Self {
        Answer::Reply {
            status,
            headers: vec![("retry-after".into(), value.to_string())],
            body: "slow down".into(),
            stores: false,
        }
    }

    /// `status` whose body echoes the request's headers (as some proxies and debug endpoints do).
    pub fn echo_headers(status: u16, request: &Request) -> Self {
        let mut body = String::from("request was:\n");
        for (k, v) in &request.headers {
            body.push_str(&format!("{k}: {v}\n"));
        }
        Answer::Reply {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body,
            stores: (200..300).contains(&status),
        }
    }

    fn stores(&self) -> bool {
        match self {
            Answer::Reply { stores, .. } => *stores,
            Answer::Hang | Answer::Close | Answer::CloseMidResponse => true,
        }
    }
}

/// The script: request number (from 1, per receiver) and request to answer.
pub type Script = Arc<dyn Fn(usize, &Request) -> Answer + Send + Sync>;

#[derive(Default)]
struct State {
    requests: Vec<Request>,
    /// Per record id, the epochs it was stored in (one entry per time).
    stored: BTreeMap<String, Vec<u32>>,
}

/// A running hostile receiver on 127.0.0.1.
#[derive(Clone)]
pub struct Hostile {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    script: Arc<Mutex<Script>>,
    epoch: Arc<AtomicU32>,
    /// Milliseconds every request takes before its answer (a slow receiver).
    latency_ms: Arc<AtomicU64>,
}

impl Hostile {
    /// Start a receiver answering as `script` says.
    pub async fn start(script: impl Fn(usize, &Request) -> Answer + Send + Sync + 'static) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let h = Hostile {
            addr: listener.local_addr().unwrap(),
            state: Arc::default(),
            script: Arc::new(Mutex::new(Arc::new(script))),
            epoch: Arc::default(),
            latency_ms: Arc::default(),
        };
        let server = h.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let server = server.clone();
                tokio::spawn(async move { server.connection(stream).await });
            }
        });
        h
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Replace the script.
    pub fn set_script(&self, script: impl Fn(usize, &Request) -> Answer + Send + Sync + 'static) {
        *self.script.lock().unwrap() = Arc::new(script);
    }

    /// Tag records stored from now on with `epoch` (e.g. the collector run).
    pub fn set_epoch(&self, epoch: u32) {
        self.epoch.store(epoch, Ordering::Relaxed);
    }

    /// Make every request take `latency` before it is answered.
    pub fn set_latency(&self, latency: Duration) {
        self.latency_ms.store(latency.as_millis() as u64, Ordering::Relaxed);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Number of requests so far.
    pub fn request_count(&self) -> usize {
        self.state.lock().unwrap().requests.len()
    }

    /// Per record id, the epochs it was stored in.
    pub fn stored(&self) -> BTreeMap<String, Vec<u32>> {
        self.state.lock().unwrap().stored.clone()
    }

    /// Number of records stored (with repeats).
    pub fn stored_count(&self) -> usize {
        self.state.lock().unwrap().stored.values().map(Vec::len).sum()
    }

    async fn connection(&self, mut stream: TcpStream) {
        let mut buf = Vec::new();
        loop {
            let Some(request) = read_request(&mut stream, &mut buf).await else {
                return;
            };
            // The epoch of the sender: read before the latency, during which the epoch may move on.
            let epoch = self.epoch.load(Ordering::Relaxed);
            let latency = self.latency_ms.load(Ordering::Relaxed);
            if latency > 0 {
                tokio::time::sleep(Duration::from_millis(latency)).await;
            }
            let answer = {
                let script = self.script.lock().unwrap().clone();
                let mut state = self.state.lock().unwrap();
                state.requests.push(request.clone());
                let n = state.requests.len();
                let answer = script(n, &request);
                if answer.stores() {
                    for id in &request.ids {
                        state.stored.entry(id.clone()).or_default().push(epoch);
                    }
                }
                answer
            };
            match answer {
                Answer::Reply {
                    status, headers, body, ..
                } => {
                    let mut head = format!("HTTP/1.1 {status} Scripted\r\ncontent-length: {}\r\n", body.len());
                    for (k, v) in headers {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                    head.push_str("\r\n");
                    if stream.write_all(head.as_bytes()).await.is_err()
                        || stream.write_all(body.as_bytes()).await.is_err()
                    {
                        return;
                    }
                }
                Answer::Hang => {
                    // Until the client gives up and closes.
                    let mut sink = [0u8; 1024];
                    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                    return;
                }
                Answer::Close => return,
                Answer::CloseMidResponse => {
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 64\r\n\r\n{\"text\":\"Succ",
                        )
                        .await;
                    let _ = stream.flush().await;
                    return;
                }
            }
        }
    }
}

/// Read one request (head and `content-length` body) from `stream`; `None` at end of stream.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Request> {
    let mut chunk = [0u8; 16 * 1024];
    let (head_len, method, path, headers) = loop {
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut slots);
        match parsed.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                break (
                    len,
                    parsed.method.unwrap_or_default().to_string(),
                    parsed.path.unwrap_or_default().to_string(),
                    headers,
                );
            }
            Ok(httparse::Status::Partial) => {}
            Err(_) => return None,
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_len + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut body: Vec<u8> = buf[head_len..head_len + length].to_vec();
    buf.drain(..head_len + length);
    if headers
        .iter()
        .any(|(k, v)| k == "content-encoding" && v.eq_ignore_ascii_case("gzip"))
    {
        let mut plain = Vec::new();
        if flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut plain).is_ok() {
            body = plain;
        }
    }
    let ids = record_ids(&body);
    Some(Request {
        method,
        path,
        headers,
        body,
        ids,
    })
}

/// The record ids (`rid-` and six digits) in `body`, in order.
pub fn record_ids(body: &[u8]) -> Vec<String> {
    let mut ids = Vec::new();
    let mut i = 0;
    while i + 10 <= body.len() {
        if &body[i..i + 4] == b"rid-" && body[i + 4..i + 10].iter().all(u8::is_ascii_digit) {
            ids.push(String::from_utf8_lossy(&body[i..i + 10]).into_owned());
            i += 10;
        } else {
            i += 1;
        }
    }
    ids
}

/// The id of record `n`.
pub fn record_id(n: usize) -> String {
    format!("rid-{n:06}")
}
