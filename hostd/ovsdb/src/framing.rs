//! Splitting a byte stream into JSON values.
//!
//! OVSDB (RFC 7047) and ovs-vswitchd's unixctl socket send JSON-RPC messages
//! back to back with no delimiter: two replies and a notification can share
//! one read, and one message can span many reads. [`JsonSplitter`] scans the
//! bytes once (tracking nesting depth, strings and escapes, as OVS's own
//! `lib/jsonrpc.c` does) and hands out each complete top-level value. Bytes
//! are never rescanned, so a 10 MiB monitor reply read in 64 KiB chunks costs
//! one pass, not one per chunk (which `serde_json`'s stream deserializer over
//! a growing buffer would cost).

use thiserror::Error;

/// The stream is not JSON-RPC framing.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// A top-level value that is not an object or array (JSON-RPC messages are objects).
    #[error("unexpected byte {byte:#04x} between messages at stream offset {offset}")]
    Garbage { byte: u8, offset: u64 },
    /// A message larger than the configured limit.
    #[error("a message exceeds {limit} bytes")]
    TooLarge { limit: usize },
    /// A complete value that serde_json rejects.
    #[error("malformed JSON message: {0}")]
    Json(String),
}

/// Incremental splitter: feed bytes with [`JsonSplitter::push`], take whole
/// values with [`JsonSplitter::next_value`].
#[derive(Debug)]
pub struct JsonSplitter {
    buf: Vec<u8>,
    /// Bytes of `buf` already scanned (all belong to the value in progress).
    scanned: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// Offset of `buf[0]` in the whole stream, for error messages.
    base: u64,
    limit: usize,
}

impl Default for JsonSplitter {
    fn default() -> Self {
        Self::new(256 * 1024 * 1024)
    }
}

impl JsonSplitter {
    /// A splitter refusing single messages above `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            scanned: 0,
            depth: 0,
            in_string: false,
            escaped: false,
            base: 0,
            limit,
        }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that do not yet form a whole message.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message's bytes, or `None` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        // Skip whitespace before a value.
        if self.depth == 0 && !self.in_string {
            let skip = self
                .buf
                .iter()
                .take_while(|b| b.is_ascii_whitespace())
                .count();
            if skip > 0 {
                self.buf.drain(..skip);
                self.base += skip as u64;
                self.scanned = 0;
            }
            match self.buf.first() {
                None => return Ok(None),
                Some(b'{') | Some(b'[') => {}
                Some(&byte) => {
                    return Err(FrameError::Garbage {
                        byte,
                        offset: self.base,
                    })
                }
            }
        }
        let mut i = self.scanned;
        while i < self.buf.len() {
            let b = self.buf[i];
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
            } else {
                match b {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => {
                        // Scanning starts at a '{' or '[', so depth >= 1 here.
                        self.depth = self.depth.saturating_sub(1);
                        if self.depth == 0 {
                            let frame: Vec<u8> = self.buf.drain(..=i).collect();
                            self.base += frame.len() as u64;
                            self.scanned = 0;
                            return Ok(Some(frame));
                        }
                    }
                    _ => {}
                }
            }
            i += 1;
        }
        self.scanned = i;
        if self.buf.len() > self.limit {
            return Err(FrameError::TooLarge { limit: self.limit });
        }
        Ok(None)
    }

    /// The next complete message parsed as JSON, or `None` if more bytes are needed.
    pub fn next_value(&mut self) -> Result<Option<serde_json::Value>, FrameError> {
        match self.next_frame()? {
            None => Ok(None),
            Some(f) => serde_json::from_slice(&f)
                .map(Some)
                .map_err(|e| FrameError::Json(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stream() -> (Vec<u8>, Vec<serde_json::Value>) {
        let values = vec![
            json!({"id": 1, "result": [{"uuid": ["uuid", "5f1c"]}], "error": null}),
            json!({"id": null, "method": "update", "params": [null, {"Bridge": {"x": {"new": {"name": "br}{\"0"}}}}]}),
            json!({"id": 2, "result": {"note": "braces in strings: {[\\\"]} and unicode \u{e9}"}, "error": null}),
            json!({"id": "echo", "method": "echo", "params": []}),
            json!([1, [2, {"a": "]"}]]),
        ];
        let mut bytes = Vec::new();
        for (i, v) in values.iter().enumerate() {
            bytes.extend(serde_json::to_vec(v).unwrap());
            if i % 2 == 1 {
                bytes.extend(b" \n\t");
            }
        }
        (bytes, values)
    }

    fn split_with(bytes: &[u8], chunks: impl Iterator<Item = usize>) -> Vec<serde_json::Value> {
        let mut s = JsonSplitter::default();
        let mut out = Vec::new();
        let mut pos = 0;
        for n in chunks {
            if pos >= bytes.len() {
                break;
            }
            let end = (pos + n.max(1)).min(bytes.len());
            s.push(&bytes[pos..end]);
            pos = end;
            while let Some(v) = s.next_value().unwrap() {
                out.push(v);
            }
        }
        assert_eq!(s.pending(), 0, "bytes left over");
        out
    }

    #[test]
    fn concatenated_messages_in_one_read() {
        let (bytes, values) = stream();
        assert_eq!(split_with(&bytes, std::iter::once(bytes.len())), values);
    }

    #[test]
    fn every_single_split_point() {
        let (bytes, values) = stream();
        for cut in 1..bytes.len() {
            let got = split_with(&bytes, [cut, bytes.len()].into_iter());
            assert_eq!(got, values, "split at {cut}");
        }
    }

    #[test]
    fn byte_at_a_time_and_pseudo_random_chunks() {
        let (bytes, values) = stream();
        assert_eq!(split_with(&bytes, std::iter::repeat(1)), values);
        // A fixed LCG: arbitrary but reproducible chunk sizes 1..=40.
        for seed in 1..50u64 {
            let mut x = seed;
            let sizes = std::iter::from_fn(move || {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                Some((x >> 33) as usize % 40 + 1)
            });
            assert_eq!(split_with(&bytes, sizes), values, "seed {seed}");
        }
    }

    #[test]
    fn garbage_and_malformed_are_errors() {
        let mut s = JsonSplitter::default();
        s.push(b"{\"id\":1} x");
        assert!(s.next_value().unwrap().is_some());
        assert_eq!(
            s.next_value(),
            Err(FrameError::Garbage {
                byte: b'x',
                offset: 9
            })
        );
        let mut s = JsonSplitter::default();
        s.push(b"{\"a\":1}}");
        assert!(s.next_value().unwrap().is_some());
        assert!(matches!(s.next_value(), Err(FrameError::Garbage { .. })));
        let mut s = JsonSplitter::default();
        s.push(b"[1,2}");
        assert!(matches!(s.next_value(), Err(FrameError::Json(_))));
    }

    #[test]
    fn size_limit() {
        let mut s = JsonSplitter::new(16);
        s.push(b"{\"a\":\"0123456789abcdef\"");
        assert_eq!(s.next_value(), Err(FrameError::TooLarge { limit: 16 }));
    }
}
