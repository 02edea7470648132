//! Printing for people (tables) and for scripts (JSON), and reading fields out of the API's
//! JSON answers for the tables.

use comfy_table::{CellAlignment, ContentArrangement, presets};
use serde_json::Value;

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
        println!("{}", self.0);
    }

    /// Prints it, or `empty` when it has no rows.
    pub fn print_or(&self, empty: &str) {
        if self.0.row_count() == 0 {
            println!("{empty}");
        } else {
            self.print();
        }
    }
}

/// Prints a value as indented JSON.
pub fn print_json(value: &Value) {
    println!(
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
}
