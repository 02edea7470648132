//! A reader for server-sent events (`text/event-stream`, HTML Living Standard §9.2.6 "Interpreting
//! an event stream"), fed with the bytes of an answer as they arrive.
//!
//! Only what the API sends is kept: `event` names, `data` and `id`. `retry` is ignored: a
//! function call is never reconnected (that would run the function twice), and the chat,
//! which resumes its stream from the last event id, picks its own delay.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field, or `message` when the event named none.
    pub name: String,
    /// The `data:` lines, joined with newlines.
    pub data: String,
    /// The last event id the stream set, at this event or before (the standard's "last event
    /// ID buffer"), if any.
    pub id: Option<String>,
}

/// Collects lines into events across chunk boundaries.
#[derive(Debug, Default)]
pub struct Parser {
    /// The line read so far (it may be split across chunks, even inside a UTF-8 sequence, so
    /// it is kept as bytes until it ends).
    line: Vec<u8>,
    /// The last byte was a carriage return, so a line feed right after it ends nothing.
    after_cr: bool,
    name: String,
    data: String,
    has_data: bool,
    last_id: Option<String>,
}

impl Parser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads a chunk and returns the events it completed. An event still open when the stream
    /// ends is never returned, as the standard requires: it may have been cut off.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        for &byte in bytes {
            if std::mem::take(&mut self.after_cr) && byte == b'\n' {
                continue;
            }
            match byte {
                b'\n' => self.end_line(&mut events),
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(&mut events);
                }
                _ => self.line.push(byte),
            }
        }
        events
    }

    fn end_line(&mut self, events: &mut Vec<Event>) {
        let raw = std::mem::take(&mut self.line);
        let line = String::from_utf8_lossy(&raw);
        if line.is_empty() {
            self.dispatch(events);
            return;
        }
        if line.starts_with(':') {
            // A comment: servers send these to keep the connection alive.
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (&*line, ""),
        };
        match field {
            "event" => self.name = value.to_owned(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            // An id holding NUL is ignored, as the standard requires.
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            _ => {}
        }
    }

    fn dispatch(&mut self, events: &mut Vec<Event>) {
        let name = std::mem::take(&mut self.name);
        let mut data = std::mem::take(&mut self.data);
        if !std::mem::take(&mut self.has_data) {
            return;
        }
        data.pop();
        events.push(Event {
            name: if name.is_empty() {
                "message".into()
            } else {
                name
            },
            data,
            id: self.last_id.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, data: &str) -> Event {
        Event {
            name: name.into(),
            data: data.into(),
            id: None,
        }
    }

    #[test]
    fn ids_carry_over_to_later_events() {
        let mut p = Parser::new();
        let got = p.feed(b"id: 7\nevent: a\ndata: x\n\ndata: y\n\nid: 9\ndata: z\n\n");
        let ids: Vec<Option<&str>> = got.iter().map(|e| e.id.as_deref()).collect();
        assert_eq!(ids, [Some("7"), Some("7"), Some("9")]);
        assert_eq!(got[0].name, "a");
    }

    #[test]
    fn events_are_read_across_chunks() {
        let stream = "event: progress\ndata: {\"progress\":1}\n\n: keep-alive\n\nevent: result\ndata: {\"a\":\ndata: 1}\n\n";
        // Every split point must give the same events.
        for split in 0..stream.len() {
            let mut p = Parser::new();
            let mut got = p.feed(&stream.as_bytes()[..split]);
            got.extend(p.feed(&stream.as_bytes()[split..]));
            assert_eq!(
                got,
                [
                    event("progress", "{\"progress\":1}"),
                    event("result", "{\"a\":\n1}"),
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn line_endings_and_defaults() {
        let mut p = Parser::new();
        let got = p.feed(b"data:a\r\ndata: b\r\rdata\n\nevent: x\n\nevent:y\ndata: z\n");
        assert_eq!(got, [event("message", "a\nb"), event("message", "")]);
        // The event without a blank line after it is not complete.
        assert!(p.feed(b"").is_empty());
        assert_eq!(p.feed(b"\n"), [event("y", "z")]);
    }

    #[test]
    fn a_carriage_return_split_from_its_line_feed() {
        let mut p = Parser::new();
        let mut got = p.feed(b"data: a\r");
        got.extend(p.feed(b"\n\r"));
        got.extend(p.feed(b"\n"));
        assert_eq!(got, [event("message", "a")]);
    }

    #[test]
    fn multibyte_characters_split_between_chunks() {
        let text = "data: é→✓\n\n".as_bytes();
        let mut p = Parser::new();
        let mut got = p.feed(&text[..7]);
        got.extend(p.feed(&text[7..]));
        assert_eq!(got, [event("message", "é→✓")]);
    }
}
