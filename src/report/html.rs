//! HTML building blocks: escaping, tables, and an Arrow batch as a table. Every string that comes
//! from data (names, errors, config values) goes through `escape`.

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};

/// `s` with the five HTML-special characters replaced by entities (safe in text and in quoted
/// attributes).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A table with a header row; cells are escaped here.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::from("<table>\n<thead><tr>");
    for h in header {
        out.push_str(&format!("<th>{}</th>", escape(h)));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            out.push_str(&format!("<td>{}</td>", escape(cell)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

/// A two-column table of (key, value) pairs.
pub fn key_values(rows: &[(&str, String)]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|(k, v)| vec![k.to_string(), v.clone()])
        .collect();
    table(&["", ""], &rows).replacen("<thead><tr><th></th><th></th></tr></thead>\n", "", 1)
}

/// The first `limit` rows of `batches` as a table (values formatted by Arrow; null shown empty).
pub fn batches_table(batches: &[RecordBatch], limit: usize) -> anyhow::Result<String> {
    let Some(first) = batches.first() else {
        return Ok("<p>(no rows)</p>\n".into());
    };
    let schema = first.schema();
    let header: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let options = FormatOptions::default().with_null("");
    let mut rows = Vec::new();
    'batches: for b in batches {
        let formatters = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for i in 0..b.num_rows() {
            if rows.len() == limit {
                break 'batches;
            }
            rows.push(formatters.iter().map(|f| f.value(i).to_string()).collect());
        }
    }
    Ok(table(&header, &rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_special_character() {
        assert_eq!(
            escape(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
        let t = table(&["a<b"], &[vec!["</td><script>".into()]]);
        assert!(!t.contains("<script>"), "{t}");
        assert!(t.contains("<th>a&lt;b</th>"), "{t}");
    }
}
