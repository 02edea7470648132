//! Printing for people (tables) and for scripts (JSON), and reading fields out of the API's
//! JSON answers for the tables.

use std::io::{self, Write};

use comfy_table::{CellAlignment, ContentArrangement, presets};
use serde_json::Value;

/// Standard output for a command's results. When the reader has gone away (`| head`, a pager
/// closed early) nobody is left to read anything more, so the program ends at once with
/// success, as `cat` does when SIGPIPE stops it. Rust ignores SIGPIPE, and `print!` panics on
/// the write error instead. Other write errors are returned.
pub struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        end_if_closed(io::stdout().lock().write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        end_if_closed(io::stdout().lock().flush())
    }
}

/// Ends the program with success when `result` says the reader of standard output went away.
fn end_if_closed<T>(result: io::Result<T>) -> io::Result<T> {
    if let Err(e) = &result
        && e.kind() == io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
    result
}

/// Writes to [`Stdout`] (what `out!` and `outln!` expand to). Any failure other than a closed
/// pipe (a full disk, say) ends the program with an error, since the results are lost.
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    // One lock for the whole text, so a line is never split by another thread's output.
    let written = end_if_closed(io::stdout().lock().write_fmt(args));
    if let Err(e) = written {
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// A table for the terminal.
pub struct Table(comfy_table::Table);

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        // No borders: the columns line up on their own, and plain rows are easy to grep.
        let mut table = comfy_table::Table::new();
        table
            .load_preset(presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header(headers.iter().map(|h| h.to_ascii_uppercase()));
        Self(table)
    }

    /// A two-column table of names and values, for showing one object.
    pub fn details(rows: Vec<(&str, String)>) -> Self {
        let mut table = comfy_table::Table::new();
        table
            .load_preset(presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Dynamic);
        for (name, value) in rows {
            table.add_row(vec![format!("{name}:"), value]);
        }
        Self(table)
    }

    /// Right-aligns the given columns (numbers).
    pub fn align_right(&mut self, columns: &[usize]) {
        for &i in columns {
            if let Some(column) = self.0.column_mut(i) {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.0.add_row(cells);
    }

    /// Prints it.
    pub fn print(&self) {
        outln!("{}", self.0);
    }

    /// Prints it, or `empty` when it has no rows.
    pub fn print_or(&self, empty: &str) {
        if self.0.row_count() == 0 {
            outln!("{empty}");
        } else {
            self.print();
        }
    }
}

/// Prints a value as indented JSON.
pub fn print_json(value: &Value) {
    outln!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// A field as text for a table: strings as they are, `-` for null or missing.
pub fn text(value: &Value, key: &str) -> String {
    match value.pointer(&pointer(key)) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(true)) => "yes".into(),
        Some(Value::Bool(false)) => "no".into(),
        Some(other) => other.to_string(),
    }
}

/// A field as a string, if it is one.
pub fn str_field<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.pointer(&pointer(key)).and_then(Value::as_str)
}

/// A time field, shortened for a table: `2026-01-02 03:04:05Z` instead of RFC 3339 with
/// milliseconds.
pub fn time(value: &Value, key: &str) -> String {
    match str_field(value, key) {
        Some(t) => short_time(t),
        None => "-".into(),
    }
}

/// Shortens RFC 3339 text for a table.
pub fn short_time(t: &str) -> String {
    let t = t.replacen('T', " ", 1);
    match (t.find('.'), t.ends_with('Z')) {
        (Some(dot), true) => format!("{}Z", &t[..dot]),
        _ => t,
    }
}

/// `a.b` to the JSON pointer `/a/b`.
fn pointer(key: &str) -> String {
    format!("/{}", key.replace('.', "/"))
}

/// Cuts text to `max` characters with an ellipsis, for wide cells.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Whether a character takes no visible room: Unicode format characters (zero-width spaces and
/// joiners, bidirectional controls, tag characters), variation selectors and the like. Text that
/// a model reads can hide instructions in them, so a reviewer must be shown them.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFFB}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// A JSON value on one line with every invisible character written as `\u{…}`, for reviewing
/// definitions; `(absent)` for a value that is not there.
pub fn reviewable(value: Option<&Value>) -> String {
    let Some(value) = value else {
        return "(absent)".into();
    };
    // JSON already escapes control characters; the invisible ones it leaves alone.
    let json = value.to_string();
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if is_invisible(c) {
            out.push_str(&format!("\\u{{{:04X}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// Text from a connector's server made safe for a terminal: control characters other than line
/// feeds and tabs are written as `\u{…}`, so a server cannot move the cursor, rewrite earlier
/// lines or change the terminal's settings with escape sequences. Only for terminals: a script
/// reading the output gets the text as it came.
pub fn terminal_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\t' => out.push(c),
            c if c.is_control() => out.push_str(&format!("\\u{{{:X}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// A size for people: bytes, KiB or MiB.
pub fn human_bytes(bytes: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;
    if bytes < KIB {
        format!("{bytes} bytes")
    } else if bytes < MIB {
        format!("{} KiB", bytes.div_ceil(KIB))
    } else {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    }
}

/// How many bytes base64 text decodes to, without decoding it.
pub fn base64_decoded_len(text: &str) -> u64 {
    let text = text.trim_end();
    let padding = text.bytes().rev().take_while(|&b| b == b'=').count() as u64;
    (text.len() as u64 / 4 * 3).saturating_sub(padding)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fields_for_tables() {
        let v = json!({"a": {"b": "x"}, "n": null, "t": "2026-01-02T03:04:05.123Z", "ok": true, "k": 3});
        assert_eq!(text(&v, "a.b"), "x");
        assert_eq!(text(&v, "n"), "-");
        assert_eq!(text(&v, "missing"), "-");
        assert_eq!(text(&v, "ok"), "yes");
        assert_eq!(text(&v, "k"), "3");
        assert_eq!(time(&v, "t"), "2026-01-02 03:04:05Z");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }

    #[test]
    fn hidden_characters_are_shown_for_review() {
        let v = json!("Looks up\u{200B}words\u{E0041}\n");
        assert_eq!(
            reviewable(Some(&v)),
            r#""Looks up\u{200B}words\u{E0041}\n""#
        );
        assert_eq!(reviewable(None), "(absent)");
        assert_eq!(reviewable(Some(&json!({"a": 1}))), r#"{"a":1}"#);
    }

    #[test]
    fn terminal_text_loses_its_escape_sequences() {
        assert_eq!(
            terminal_safe("ok\r\nred \x1b[31mtext\tend\rover"),
            "ok\nred \\u{1B}[31mtext\tend\\u{D}over"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(human_bytes(12), "12 bytes");
        assert_eq!(human_bytes(12 * 1024), "12 KiB");
        assert_eq!(human_bytes(12 * 1024 + 1), "13 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(base64_decoded_len("aGVsbG8="), 5);
        assert_eq!(base64_decoded_len("aGVsbG8h"), 6);
        assert_eq!(base64_decoded_len(""), 0);
    }
}
