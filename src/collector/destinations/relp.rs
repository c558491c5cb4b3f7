//! A RELP client session: the Reliable Event Logging Protocol of rsyslog (`imrelp`, librelp),
//! used by the `syslog` destination's `relp` and `relpTls` transports.
//!
//! Written here because crates.io has no RELP client (the crate named `relp` is a linear
//! programming solver); the protocol is small. It follows librelp's specification (`doc/relp.md`
//! in the librelp sources) and what rsyslog's imrelp answers:
//! - Frame: `TXNR SP COMMAND SP DATALEN [SP DATA] LF`; TXNR 1..=999 999 999 then back to 1,
//!   0 for hints from the server; DATALEN the byte count of DATA.
//! - Session: `open` with the offers `relp_version=0`, `relp_software=...`, `commands=syslog`;
//!   the server's `rsp` must be `200` and must offer `syslog` among its commands, else the
//!   client must not send messages.
//! - Each message is one `syslog` command; the server answers each with an `rsp` in command
//!   order: `200 OK` (it has taken the message) or `500 <text>`. Up to [`WINDOW`] commands
//!   are outstanding at once (librelp's default window).
//! - `0 serverclose 0`: the server is going away; whatever is not answered is not taken.
//!
//! What an acknowledgement means: rsyslog answers `200` once the message is in its main queue,
//! not once an action has written it. A receiver that must not lose acknowledged messages when
//! it is killed needs a queue that survives that (`main_queue(queue.type="Direct")`, or a
//! disk-assisted queue); the README says so.
//!
//! A message is delivered when its `200` arrives. When the connection breaks, the messages
//! without an answer are not delivered and are sent again on a new session: at least once, with
//! at most [`WINDOW`] duplicates per broken session (messages the server took but whose answer
//! was lost).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;

/// Commands outstanding at once (librelp's default window size).
pub const WINDOW: usize = 128;
/// Largest frame accepted from the server (answers are short).
const MAX_FRAME: usize = 64 * 1024;
/// Largest transaction number; the next one is 1.
const MAX_TXNR: u32 = 999_999_999;
/// Time the server has to answer `open`.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames written in one go while the window is open.
const WRITE_CHUNK: usize = 256 * 1024;

/// What became of one message sent on a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageOutcome {
    /// `200`: the receiver has it.
    Acked,
    /// Any other status: the receiver did not take it; its text.
    Refused(String),
    /// No answer before the session ended; why.
    Unanswered(String),
}

/// One frame received from the server.
#[derive(Debug, PartialEq, Eq)]
struct Frame {
    txnr: u32,
    command: String,
    data: Vec<u8>,
}

/// An open RELP session over a byte stream (TCP or TLS).
pub struct RelpSession<S> {
    stream: S,
    /// Transaction number of the next command.
    next_txnr: u32,
    /// Bytes read but not yet parsed.
    pending: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> RelpSession<S> {
    /// Send `open` and check the server's answer: status 200, offering `syslog`.
    pub async fn open(stream: S) -> Result<Self, String> {
        let mut session = RelpSession {
            stream,
            next_txnr: 1,
            pending: Vec::new(),
        };
        let offers = format!(
            "relp_version=0\nrelp_software=siembridge,{},https://github.com/siembridge\ncommands=syslog",
            env!("CARGO_PKG_VERSION")
        );
        let txnr = session.take_txnr();
        let mut frame = Vec::new();
        encode(&mut frame, txnr, "open", offers.as_bytes());
        let answer = tokio::time::timeout(OPEN_TIMEOUT, async {
            session
                .stream
                .write_all(&frame)
                .await
                .map_err(|e| format!("RELP open: {e}"))?;
            session.stream.flush().await.map_err(|e| format!("RELP open: {e}"))?;
            loop {
                let f = read_frame(&mut session.stream, &mut session.pending).await?;
                if f.txnr == 0 {
                    if f.command == "serverclose" {
                        return Err("RELP open: the server closed the session".to_string());
                    }
                    continue;
                }
                return Ok(f);
            }
        })
        .await
        .map_err(|_| "RELP open: no answer".to_string())??;
        if answer.command != "rsp" || answer.txnr != txnr {
            return Err(format!(
                "RELP open: expected rsp {txnr}, got {} {}",
                answer.command, answer.txnr
            ));
        }
        let text = String::from_utf8_lossy(&answer.data);
        let (status, offers) = text.split_once('\n').unwrap_or((&text, ""));
        if !status.starts_with("200") {
            return Err(format!("RELP open refused: {}", printable(status)));
        }
        let syslog_offered = offers.lines().any(|l| {
            l.strip_prefix("commands=")
                .is_some_and(|c| c.split(',').any(|c| c.trim() == "syslog"))
        });
        if !syslog_offered {
            return Err("RELP open: the server does not offer the syslog command".to_string());
        }
        Ok(session)
    }

    /// Whether the idle session is still open: the server sends nothing unasked except the
    /// `serverclose` hint, so anything readable (or the end of the stream) means it is closing.
    pub async fn still_open(&mut self) -> bool {
        if !self.pending.is_empty() {
            return false;
        }
        let mut buf = [0u8; 256];
        // A read that would block (the zero timeout elapses) means nothing is there.
        tokio::time::timeout(Duration::ZERO, self.stream.read(&mut buf))
            .await
            .is_err()
    }

    /// Send each message as a `syslog` command, at most [`WINDOW`] unanswered at a time, and
    /// wait for every answer. Returns one outcome per message and whether the session can be
    /// used again (false once anything went wrong on it).
    pub async fn send(&mut self, messages: &[Vec<u8>]) -> (Vec<MessageOutcome>, bool) {
        let txnrs: Vec<u32> = messages.iter().map(|_| self.take_txnr()).collect();
        let window = Semaphore::new(WINDOW);
        let (mut reader, mut writer) = tokio::io::split(&mut self.stream);
        let pending = &mut self.pending;

        let write = async {
            let mut buf = Vec::with_capacity(WRITE_CHUNK);
            for (m, &txnr) in messages.iter().zip(&txnrs) {
                let permit = match window.try_acquire() {
                    Ok(p) => p,
                    Err(_) => {
                        // The window is full: put out what is buffered, then wait for answers.
                        flush(&mut writer, &mut buf).await?;
                        window
                            .acquire()
                            .await
                            .map_err(|_| "the session ended while waiting for answers".to_string())?
                    }
                };
                permit.forget();
                encode(&mut buf, txnr, "syslog", m);
                if buf.len() >= WRITE_CHUNK {
                    flush(&mut writer, &mut buf).await?;
                }
            }
            flush(&mut writer, &mut buf).await
        };

        let read = async {
            let mut outcomes = Vec::with_capacity(messages.len());
            let mut failure = None;
            while outcomes.len() < messages.len() {
                let frame = match read_frame(&mut reader, pending).await {
                    Ok(f) => f,
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                };
                if frame.txnr == 0 {
                    if frame.command == "serverclose" {
                        failure = Some("the server closed the session (serverclose)".to_string());
                        break;
                    }
                    continue; // another hint: nothing to do
                }
                let expected = txnrs[outcomes.len()];
                if frame.command != "rsp" || frame.txnr != expected {
                    failure = Some(format!(
                        "protocol error: expected rsp {expected}, got {} {}",
                        printable(&frame.command),
                        frame.txnr
                    ));
                    break;
                }
                let text = String::from_utf8_lossy(&frame.data);
                let status = text.lines().next().unwrap_or("");
                outcomes.push(if status.starts_with("200") {
                    MessageOutcome::Acked
                } else {
                    MessageOutcome::Refused(printable(status))
                });
                window.add_permits(1);
            }
            // Wake a writer waiting for room: no more answers will come.
            window.close();
            (outcomes, failure)
        };

        let (written, (mut outcomes, failure)) = tokio::join!(write, read);
        let usable = failure.is_none() && written.is_ok();
        if outcomes.len() < messages.len() {
            let why = match (failure, written) {
                (Some(f), _) => f,
                (None, Err(w)) => w,
                (None, Ok(())) => "no answer".to_string(),
            };
            outcomes.resize(messages.len(), MessageOutcome::Unanswered(why));
        }
        (outcomes, usable)
    }

    fn take_txnr(&mut self) -> u32 {
        let t = self.next_txnr;
        self.next_txnr = if t >= MAX_TXNR { 1 } else { t + 1 };
        t
    }
}

async fn flush<W: AsyncWrite + Unpin>(w: &mut W, buf: &mut Vec<u8>) -> Result<(), String> {
    if !buf.is_empty() {
        w.write_all(buf).await.map_err(|e| format!("write: {e}"))?;
        buf.clear();
    }
    w.flush().await.map_err(|e| format!("write: {e}"))
}

/// Append one frame: `TXNR SP COMMAND SP DATALEN [SP DATA] LF`.
fn encode(out: &mut Vec<u8>, txnr: u32, command: &str, data: &[u8]) {
    out.extend_from_slice(format!("{txnr} {command} {}", data.len()).as_bytes());
    if !data.is_empty() {
        out.push(b' ');
        out.extend_from_slice(data);
    }
    out.push(b'\n');
}

/// Read until one whole frame is buffered in `pending`, and take it out.
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, pending: &mut Vec<u8>) -> Result<Frame, String> {
    loop {
        if let Some((frame, used)) = parse(pending)? {
            pending.drain(..used);
            return Ok(frame);
        }
        let mut buf = [0u8; 8192];
        match r.read(&mut buf).await {
            Ok(0) => return Err("the server closed the connection".to_string()),
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// A whole frame at the start of `buf` and the bytes it takes, `None` when more is needed.
fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, String> {
    let bad = |what: &str| {
        format!(
            "protocol error: {what} in {:?}",
            printable_bytes(&buf[..buf.len().min(64)])
        )
    };
    // Header: TXNR SP COMMAND SP DATALEN, then SP DATA or directly LF.
    let mut fields = Vec::with_capacity(3);
    let mut start = 0;
    let mut i = 0;
    while fields.len() < 3 {
        let Some(&b) = buf.get(i) else {
            if i > 64 {
                return Err(bad("header too long"));
            }
            return Ok(None);
        };
        if b == b' ' || (b == b'\n' && fields.len() == 2) {
            fields.push(&buf[start..i]);
            start = i + 1;
        } else if i - start > 32 {
            return Err(bad("header field too long"));
        }
        i += 1;
    }
    let number = |f: &[u8]| -> Option<usize> {
        if f.is_empty() || f.len() > 9 || !f.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(f).ok()?.parse().ok()
    };
    let txnr = number(fields[0]).ok_or_else(|| bad("bad TXNR"))? as u32;
    let command = std::str::from_utf8(fields[1])
        .ok()
        .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_alphabetic()))
        .ok_or_else(|| bad("bad COMMAND"))?
        .to_string();
    let datalen = number(fields[2]).ok_or_else(|| bad("bad DATALEN"))?;
    if datalen > MAX_FRAME {
        return Err(bad("frame too large"));
    }
    // `i` is past the byte that ended DATALEN: a LF when there is no data, else a SP.
    let ended_by = buf[i - 1];
    let (data, end) = if datalen == 0 {
        if ended_by != b'\n' {
            // Tolerate `DATALEN SP LF`.
            match buf.get(i) {
                None => return Ok(None),
                Some(b'\n') => (Vec::new(), i + 1),
                Some(_) => return Err(bad("missing trailer")),
            }
        } else {
            (Vec::new(), i)
        }
    } else {
        if ended_by != b' ' {
            return Err(bad("missing data"));
        }
        if buf.len() < i + datalen + 1 {
            return Ok(None);
        }
        if buf[i + datalen] != b'\n' {
            return Err(bad("missing trailer"));
        }
        (buf[i..i + datalen].to_vec(), i + datalen + 1)
    };
    Ok(Some((Frame { txnr, command, data }, end)))
}

/// Server text made safe for a log line or a status: printable ASCII, bounded.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' })
        .take(200)
        .collect()
}

fn printable_bytes(b: &[u8]) -> String {
    printable(&String::from_utf8_lossy(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_with_and_without_data() {
        let mut out = Vec::new();
        encode(&mut out, 7, "syslog", b"<13>1 - - - - - - hi\nthere");
        encode(&mut out, 8, "close", b"");
        assert_eq!(out, b"7 syslog 26 <13>1 - - - - - - hi\nthere\n8 close 0\n");

        let (f, used) = parse(b"1 rsp 6 200 OK\n0 serverclose 0\n").unwrap().unwrap();
        assert_eq!(
            (f.txnr, f.command.as_str(), &f.data[..], used),
            (1, "rsp", &b"200 OK"[..], 15)
        );
        let (f, used) = parse(b"0 serverclose 0\n").unwrap().unwrap();
        assert_eq!(
            (f.txnr, f.command.as_str(), f.data.len(), used),
            (0, "serverclose", 0, 16)
        );
    }

    #[test]
    fn partial_frames_wait_for_more_and_garbage_is_an_error() {
        for cut in 0..16 {
            assert_eq!(parse(&b"12 rsp 6 200 OK\n"[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert!(parse(b"x rsp 6 200 OK\n").is_err());
        assert!(parse(b"1 rsp 6 200 OKX").is_err());
        assert!(parse(b"1 rsp 9999999 ").is_err());
        assert!(parse(b"1 r$p 1 x\n").is_err());
        assert!(parse(&[b'1'; 200]).is_err());
    }

    #[test]
    fn transaction_numbers_wrap_to_one() {
        let (a, _b) = tokio::io::duplex(64);
        let mut s = RelpSession {
            stream: a,
            next_txnr: MAX_TXNR,
            pending: Vec::new(),
        };
        assert_eq!(s.take_txnr(), MAX_TXNR);
        assert_eq!(s.take_txnr(), 1);
    }
}
