//! A decoder for `text/event-stream` bodies, fed the bytes as they arrive and handing back the
//! `data` of each complete event.
//!
//! It follows the WHATWG HTML standard, §9.2.6 "Interpreting an event stream": lines end in
//! CRLF, LF or CR; a line starting with a colon is a comment; `data` lines of one event are
//! joined with LF; an empty line dispatches the event; an event with no data is not
//! dispatched. Chat-completion streams use only `data`, so `event`, `id` and `retry` are read
//! and ignored.

/// The stream broke a rule this decoder enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SseError {
    /// One line, or one event's data, grew past the limit.
    TooLong(usize),
    /// A line is not UTF-8.
    NotUtf8,
}

/// Incremental event-stream decoder with a bound on the size of a line and of an event.
#[derive(Debug)]
pub(crate) struct SseDecoder {
    /// Bytes of the current, not yet terminated, line.
    line: Vec<u8>,
    /// The data of the current event, each line followed by LF.
    data: String,
    /// A CR ended the last line; an LF right after it belongs to the same line break.
    after_cr: bool,
    /// Nothing has been decoded yet (a leading byte-order mark is dropped).
    at_start: bool,
    max_len: usize,
}

impl SseDecoder {
    /// A decoder that refuses a line or an event longer than `max_len` bytes.
    pub(crate) fn new(max_len: usize) -> Self {
        Self {
            line: Vec::new(),
            data: String::new(),
            after_cr: false,
            at_start: true,
            max_len,
        }
    }

    /// Decodes `bytes`, appending the data of every event they complete to `out`.
    pub(crate) fn feed(&mut self, bytes: &[u8], out: &mut Vec<String>) -> Result<(), SseError> {
        let mut rest = bytes;
        if self.after_cr && rest.first() == Some(&b'\n') {
            rest = &rest[1..];
        }
        self.after_cr = false;
        while !rest.is_empty() {
            match rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
                Some(at) => {
                    self.push(&rest[..at])?;
                    self.end_line(out)?;
                    let crlf = rest[at] == b'\r' && rest.get(at + 1) == Some(&b'\n');
                    if rest[at] == b'\r' && at + 1 == rest.len() {
                        // The LF of a CRLF may arrive in the next piece.
                        self.after_cr = true;
                    }
                    rest = &rest[at + if crlf { 2 } else { 1 }..];
                }
                None => {
                    self.push(rest)?;
                    rest = &[];
                }
            }
        }
        Ok(())
    }

    /// The stream ended. The standard discards an event the stream ends in the middle of; this
    /// decoder is a little kinder and dispatches an event whose lines all ended, even if the
    /// empty line after them never came. A last line without its line break is discarded: it
    /// is most likely cut short.
    pub(crate) fn finish(&mut self, out: &mut Vec<String>) {
        self.line.clear();
        self.dispatch(out);
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if self.line.len() + bytes.len() > self.max_len {
            return Err(SseError::TooLong(self.max_len));
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn end_line(&mut self, out: &mut Vec<String>) -> Result<(), SseError> {
        let bytes = std::mem::take(&mut self.line);
        let mut line = std::str::from_utf8(&bytes).map_err(|_| SseError::NotUtf8)?;
        if self.at_start {
            self.at_start = false;
            line = line.strip_prefix('\u{feff}').unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        if field == "data" {
            if self.data.len() + value.len() + 1 > self.max_len {
                return Err(SseError::TooLong(self.max_len));
            }
            self.data.push_str(value);
            self.data.push('\n');
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<String>) {
        if self.data.is_empty() {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop();
        out.push(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(text: &str, piece: usize) -> Vec<String> {
        let mut decoder = SseDecoder::new(1024);
        let mut out = Vec::new();
        for chunk in text.as_bytes().chunks(piece) {
            decoder.feed(chunk, &mut out).unwrap();
        }
        decoder.finish(&mut out);
        out
    }

    #[test]
    fn events_survive_every_split() {
        let text = "\u{feff}: keep-alive\r\ndata: {\"a\":\"é\"}\r\n\r\nevent: x\rdata: one\rdata:two\r\rdata: [DONE]\n\n";
        let expected = vec!["{\"a\":\"é\"}", "one\ntwo", "[DONE]"];
        for piece in 1..text.len() {
            assert_eq!(decode_in_pieces(text, piece), expected, "pieces of {piece}");
        }
    }

    #[test]
    fn a_crlf_split_between_pieces_is_one_line_break() {
        let mut decoder = SseDecoder::new(1024);
        let mut out = Vec::new();
        decoder.feed(b"data: a\r", &mut out).unwrap();
        decoder.feed(b"\ndata: b\r", &mut out).unwrap();
        decoder.feed(b"\n\r", &mut out).unwrap();
        decoder.feed(b"\n", &mut out).unwrap();
        assert_eq!(out, vec!["a\nb"]);
    }

    #[test]
    fn an_event_without_data_is_not_dispatched() {
        assert!(decode_in_pieces("event: ping\n\n: comment\n\nid: 3\n\n", 5).is_empty());
    }

    #[test]
    fn at_the_end_complete_lines_count_and_a_cut_line_does_not() {
        assert_eq!(decode_in_pieces("data: [DONE]\n", 4), vec!["[DONE]"]);
        assert!(decode_in_pieces("data: {\"cut", 4).is_empty());
    }

    #[test]
    fn a_line_or_an_event_past_the_limit_is_refused() {
        let mut decoder = SseDecoder::new(16);
        let mut out = Vec::new();
        assert_eq!(
            decoder.feed(&[b'x'; 17], &mut out),
            Err(SseError::TooLong(16))
        );
        let mut decoder = SseDecoder::new(16);
        let err = decoder.feed(b"data: 0123456789\ndata: 0123456789\n", &mut out);
        assert_eq!(err, Err(SseError::TooLong(16)));
    }

    #[test]
    fn a_line_that_is_not_utf8_is_refused() {
        let mut decoder = SseDecoder::new(16);
        assert_eq!(
            decoder.feed(b"data: \xff\n", &mut Vec::new()),
            Err(SseError::NotUtf8)
        );
    }
}
