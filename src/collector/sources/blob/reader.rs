//! Turning the bytes read from a blob into units: only whole lines (a partial last line is left
//! for the next read, unless the blob is final), cut into units of at most [`UNIT_BYTES`], each
//! carrying the offset reached after it.

use bytes::Bytes;

/// Largest unit, in bytes (a unit may be larger when one line is).
pub const UNIT_BYTES: usize = 256 * 1024;
/// Largest read of one Get Blob (memory bound per container).
pub const READ_BYTES: u64 = 8 * 1024 * 1024;

/// The whole lines of `chunk` read at `start`: `(units, offset after the last whole line)`.
/// Each unit is `(start offset, bytes)`. With `last` (the blob will not grow any more and the
/// chunk reaches its end), a final line without a newline counts as whole.
pub fn whole_lines(start: u64, chunk: &Bytes, last: bool) -> (Vec<(u64, Bytes)>, u64) {
    let complete = if last {
        chunk.len()
    } else {
        match memchr_last_newline(chunk) {
            Some(i) => i + 1,
            None => 0,
        }
    };
    let mut units = Vec::new();
    let mut at = 0usize;
    while at < complete {
        let mut end = (at + UNIT_BYTES).min(complete);
        if end < complete {
            // Cut after a newline at or before `end`, or after the first newline past it.
            end = match chunk[at..end].iter().rposition(|b| *b == b'\n') {
                Some(i) => at + i + 1,
                None => chunk[end..complete]
                    .iter()
                    .position(|b| *b == b'\n')
                    .map_or(complete, |i| end + i + 1),
            };
        }
        let piece = chunk.slice(at..end);
        if piece.iter().any(|b| !b.is_ascii_whitespace()) {
            units.push((start + at as u64, piece));
        }
        at = end;
    }
    (units, start + complete as u64)
}

fn memchr_last_newline(b: &[u8]) -> Option<usize> {
    b.iter().rposition(|c| *c == b'\n')
}

/// The NDJSON of an archive object: gunzipped when it is gzip (by its magic bytes).
pub fn archive_text(name: &str, body: Bytes) -> Result<Bytes, String> {
    if body.len() >= 2 && body[0] == 0x1f && body[1] == 0x8b {
        use std::io::Read;
        let mut out = Vec::with_capacity(body.len() * 4);
        flate2::read::MultiGzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .map_err(|e| format!("{name}: not valid gzip: {e}"))?;
        Ok(Bytes::from(out))
    } else {
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_last_line_is_left_for_the_next_read() {
        let chunk = Bytes::from_static(b"{\"a\":1}\n{\"a\":2}\n{\"a\":");
        let (units, next) = whole_lines(100, &chunk, false);
        assert_eq!(units.len(), 1);
        assert_eq!(units[0].0, 100);
        assert_eq!(&units[0].1[..], b"{\"a\":1}\n{\"a\":2}\n");
        assert_eq!(next, 116);
        // Nothing whole yet: nothing read.
        let (units, next) = whole_lines(7, &Bytes::from_static(b"{\"a\""), false);
        assert!(units.is_empty());
        assert_eq!(next, 7);
        // A final blob: the last line counts.
        let (units, next) = whole_lines(0, &Bytes::from_static(b"{\"a\":1}\n{\"a\":2}"), true);
        assert_eq!(units.len(), 1);
        assert_eq!(next, 15);
    }

    #[test]
    fn units_are_cut_at_newlines_and_bounded() {
        let line = format!("{{\"pad\":\"{}\"}}\n", "x".repeat(1000));
        let text = Bytes::from(line.repeat(600));
        let (units, next) = whole_lines(0, &text, false);
        assert_eq!(next as usize, text.len());
        assert!(units.len() >= 2);
        let mut expect = 0u64;
        for (start, bytes) in &units {
            assert_eq!(*start, expect);
            assert!(bytes.len() <= UNIT_BYTES);
            assert_eq!(bytes.last(), Some(&b'\n'));
            expect += bytes.len() as u64;
        }
        assert_eq!(expect, next);
    }

    #[test]
    fn gzip_archives_are_unpacked_and_plain_ones_kept() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"{\"id\":1}\n").unwrap();
        let packed = Bytes::from(gz.finish().unwrap());
        assert_eq!(&archive_text("a", packed).unwrap()[..], b"{\"id\":1}\n");
        assert_eq!(&archive_text("a", Bytes::from_static(b"{}\n")).unwrap()[..], b"{}\n");
        assert!(archive_text("a", Bytes::from_static(&[0x1f, 0x8b, 0, 1])).is_err());
    }
}
