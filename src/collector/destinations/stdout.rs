//! `stdout`: one JSON document a line on the collector's standard output (local use, tests).

use std::io::Write;

use async_trait::async_trait;

use super::{Destination, Event, SendOutcome};
use crate::api::StdoutSpec;

/// Writes events to standard output.
#[derive(Debug)]
pub struct StdoutDestination {
    pretty: bool,
}

impl StdoutDestination {
    pub fn new(spec: &StdoutSpec) -> Self {
        StdoutDestination { pretty: spec.pretty }
    }
}

/// Lines of a batch, pretty-printed when asked.
fn render(batch: &[Event], pretty: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(batch.iter().map(|e| e.body.len() + 1).sum());
    for e in batch {
        let pretty_doc = if pretty {
            serde_json::from_slice::<serde_json::Value>(&e.body)
                .ok()
                .and_then(|v| serde_json::to_vec_pretty(&v).ok())
        } else {
            None
        };
        out.extend_from_slice(pretty_doc.as_deref().unwrap_or(&e.body));
        out.push(b'\n');
    }
    out
}

#[async_trait]
impl Destination for StdoutDestination {
    async fn send(&self, batch: &[Event]) -> SendOutcome {
        let buf = render(batch, self.pretty);
        // Local-use destination: a blocking write of one batch is acceptable.
        let mut out = std::io::stdout().lock();
        match out.write_all(&buf).and_then(|()| out.flush()) {
            Ok(()) => SendOutcome::Delivered,
            Err(e) => SendOutcome::Retry {
                reason: format!("stdout: {e}"),
                after: None,
            },
        }
    }
}
