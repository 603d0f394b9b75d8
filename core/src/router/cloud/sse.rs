//! A small Server-Sent Events reader (the subset OpenAI-compatible servers use).
//!
//! Lines are `field: value`; `data` lines accumulate (joined with `\n`) until a blank line ends
//! the event; lines starting with `:` are comments; other fields (`event`, `id`, `retry`) are
//! ignored. `data: [DONE]` is the OpenAI end-of-stream marker. Both `\n` and `\r\n` line ends are
//! accepted. Lines and events are bounded so a hostile server cannot exhaust memory.

use std::io::{self, BufRead, Read};

/// One event.
#[derive(Debug, PartialEq)]
pub(crate) enum SseEvent {
    /// The data of one event (several `data:` lines joined with `\n`).
    Data(String),
    /// `data: [DONE]`.
    Done,
}

/// Why reading failed.
#[derive(Debug)]
pub(crate) enum SseError {
    /// The underlying reader failed (timeouts included).
    Io(io::Error),
    /// A line or an event exceeded the size bound, or was not UTF-8.
    Malformed(&'static str),
    /// The stream ended in the middle of an event.
    TruncatedEvent,
}

pub(crate) struct SseReader<R> {
    inner: R,
    max_event: usize,
    line: Vec<u8>,
}

impl<R: BufRead> SseReader<R> {
    pub(crate) fn new(inner: R, max_event: usize) -> Self {
        Self { inner, max_event, line: Vec::new() }
    }

    /// The next event, or `None` at a clean end of stream (EOF between events).
    pub(crate) fn next_event(&mut self) -> Result<Option<SseEvent>, SseError> {
        let mut data: Option<String> = None;
        let mut data_lines = 0usize;
        loop {
            self.line.clear();
            let limit = self.max_event as u64 + 2;
            let n = (&mut self.inner).take(limit).read_until(b'\n', &mut self.line).map_err(SseError::Io)?;
            if n == 0 {
                return match data {
                    Some(_) => Err(SseError::TruncatedEvent),
                    None => Ok(None),
                };
            }
            if self.line.last() != Some(&b'\n') {
                if n as u64 >= limit {
                    return Err(SseError::Malformed("line too long"));
                }
                // EOF in the middle of a line.
                return Err(SseError::TruncatedEvent);
            }
            self.line.pop();
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            if self.line.is_empty() {
                match data.take() {
                    Some(d) if d == "[DONE]" => return Ok(Some(SseEvent::Done)),
                    Some(d) => return Ok(Some(SseEvent::Data(d))),
                    None => continue,
                }
            }
            if self.line.first() == Some(&b':') {
                continue;
            }
            let line = std::str::from_utf8(&self.line).map_err(|_| SseError::Malformed("not UTF-8"))?;
            let (field, value) = match line.find(':') {
                Some(i) => (&line[..i], line[i + 1..].strip_prefix(' ').unwrap_or(&line[i + 1..])),
                None => (line, ""),
            };
            if field == "data" {
                let d = data.get_or_insert_with(String::new);
                if data_lines > 0 {
                    d.push('\n');
                }
                data_lines += 1;
                if d.len() + value.len() > self.max_event {
                    return Err(SseError::Malformed("event too large"));
                }
                d.push_str(value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &str) -> Vec<Result<SseEvent, String>> {
        let mut r = SseReader::new(io::Cursor::new(input.as_bytes().to_vec()), 64);
        let mut out = Vec::new();
        loop {
            match r.next_event() {
                Ok(Some(e)) => out.push(Ok(e)),
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(format!("{e:?}")));
                    break;
                }
            }
        }
        out
    }

    #[test]
    fn parses_events_comments_and_done() {
        let ev = all(
            ": keep-alive\r\n\r\ndata: {\"a\":1}\r\n\r\nevent: x\nid: 3\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n",
        );
        assert_eq!(
            ev,
            vec![Ok(SseEvent::Data("{\"a\":1}".into())), Ok(SseEvent::Data("line1\nline2".into())), Ok(SseEvent::Done)]
        );
    }

    #[test]
    fn data_without_space_and_empty_data() {
        assert_eq!(all("data:x\n\ndata\n\n"), vec![Ok(SseEvent::Data("x".into())), Ok(SseEvent::Data(String::new()))]);
    }

    #[test]
    fn truncation_is_detected() {
        // EOF inside a line, and EOF after data but before the blank line.
        assert!(matches!(all("data: {\"a\"").last(), Some(Err(e)) if e.contains("Truncated")));
        assert!(matches!(all("data: {}\n").last(), Some(Err(e)) if e.contains("Truncated")));
        assert_eq!(all(""), vec![]);
    }

    #[test]
    fn oversized_lines_are_rejected() {
        let long = format!("data: {}\n\n", "x".repeat(200));
        assert!(matches!(all(&long).last(), Some(Err(e)) if e.contains("Malformed")));
        let many = "data: 0123456789\n".repeat(10) + "\n";
        assert!(matches!(all(&many).last(), Some(Err(e)) if e.contains("Malformed")));
    }
}
