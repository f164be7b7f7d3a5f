//! Export of a document's text (at any version) as plain text, Markdown, JSON or HTML.

use serde::Serialize;

use crate::document::Document;

/// Output formats of [`export`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Txt,
    Md,
    Json,
    Html,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "txt" | "text" => Ok(Format::Txt),
            "md" | "markdown" => Ok(Format::Md),
            "json" => Ok(Format::Json),
            "html" => Ok(Format::Html),
            other => Err(format!("unknown format {other:?}: use txt, md, json or html")),
        }
    }
}

/// What an export says about the document besides its text.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ExportMeta {
    /// File name shown in titles and used to pick a Markdown code-block language.
    pub name: String,
    /// Heads of the exported version, as hex change hashes.
    pub heads: Vec<String>,
    /// Author names of the changes up to that version, sorted.
    pub authors: Vec<String>,
    /// Number of changes up to that version.
    pub change_count: usize,
}

impl ExportMeta {
    /// Metadata of the current version of `doc` (pending edits are committed first).
    pub fn of(doc: &mut Document, name: &str) -> Self {
        let heads = doc.heads().to_vec();
        Self::at(doc, name, &heads)
    }

    /// Metadata of the version of `doc` at `heads`: its heads, and the changes and
    /// authors up to it (not the current ones).
    pub fn at(doc: &mut Document, name: &str, heads: &[automerge::ChangeHash]) -> Self {
        let all = doc.change_log();
        let by_hash: std::collections::HashMap<_, _> = all.iter().map(|c| (c.hash, c)).collect();
        let mut upto = std::collections::HashSet::new();
        let mut todo: Vec<automerge::ChangeHash> = heads.to_vec();
        while let Some(h) = todo.pop() {
            if upto.insert(h)
                && let Some(c) = by_hash.get(&h)
            {
                todo.extend(c.deps.iter().copied());
            }
        }
        let log: Vec<_> = all.iter().filter(|c| upto.contains(&c.hash)).collect();
        let mut authors: Vec<String> = log.iter().filter_map(|c| c.author.clone()).collect();
        authors.sort();
        authors.dedup();
        ExportMeta {
            name: name.to_owned(),
            heads: heads.iter().map(|h| h.to_string()).collect(),
            authors,
            change_count: log.len(),
        }
    }
}

/// How the text ends its lines.
pub fn line_ending(text: &str) -> &'static str {
    let crlf = text.matches("\r\n").count();
    let lf = text.matches('\n').count();
    match (crlf, lf) {
        (0, 0) => "none",
        (0, _) => "lf",
        (c, l) if c == l => "crlf",
        _ => "mixed",
    }
}

#[derive(Serialize)]
struct JsonExport<'a> {
    format: &'static str,
    #[serde(flatten)]
    meta: &'a ExportMeta,
    chars: usize,
    lines: usize,
    line_ending: &'static str,
    text: &'a str,
}

/// `text` rendered in `format`.
pub fn export(text: &str, format: Format, meta: &ExportMeta) -> String {
    match format {
        Format::Txt => text.to_owned(),
        Format::Md => markdown(text, &meta.name),
        Format::Json => {
            let doc = JsonExport {
                format: "tandem-export/1",
                meta,
                chars: text.chars().count(),
                lines: line_count(text),
                line_ending: line_ending(text),
                text,
            };
            let mut out = serde_json::to_string_pretty(&doc).expect("plain data serializes");
            out.push('\n');
            out
        }
        Format::Html => html(text, meta),
    }
}

fn line_count(text: &str) -> usize {
    if text.is_empty() { 0 } else { text.matches('\n').count() + usize::from(!text.ends_with('\n')) }
}

fn extension(name: &str) -> &str {
    name.rsplit_once('.').map_or("", |(_, ext)| ext)
}

/// Markdown files stay as they are; anything else becomes a fenced code block whose
/// fence is longer than any backtick run inside, so no content can close it early.
fn markdown(text: &str, name: &str) -> String {
    let ext = extension(name).to_ascii_lowercase();
    if matches!(ext.as_str(), "md" | "markdown" | "mdown" | "mkd") {
        return text.to_owned();
    }
    let longest_run = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat((longest_run + 1).max(3));
    let lang: String = ext.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let mut out = format!("{fence}{lang}\n{text}");
    if !text.is_empty() && !text.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&fence);
    out.push('\n');
    out
}

/// Escape text for HTML element content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
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

fn html(text: &str, meta: &ExportMeta) -> String {
    let name = escape_html(&meta.name);
    let authors = escape_html(&meta.authors.join(", "));
    let version = meta.heads.iter().map(|h| &h[..h.len().min(12)]).collect::<Vec<_>>().join(" ");
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="tandem">
<title>{name}</title>
<style>
body {{ margin: 2rem auto; max-width: 60rem; padding: 0 1rem; font-family: system-ui, sans-serif; color: #1d1d1f; background: #fff; }}
header {{ border-bottom: 1px solid #ddd; margin-bottom: 1rem; }}
h1 {{ font-size: 1.3rem; margin: 0 0 .3rem; }}
dl {{ display: grid; grid-template-columns: max-content auto; gap: .1rem 1rem; font-size: .85rem; color: #555; }}
dd {{ margin: 0; }}
pre {{ white-space: pre-wrap; overflow-wrap: anywhere; tab-size: 4; font: .9rem/1.45 ui-monospace, monospace; }}
@media (prefers-color-scheme: dark) {{ body {{ color: #e6e6e6; background: #161616; }} dl {{ color: #aaa; }} header {{ border-color: #333; }} }}
</style>
</head>
<body>
<header>
<h1>{name}</h1>
<dl>
<dt>Authors</dt><dd>{authors}</dd>
<dt>Changes</dt><dd>{changes}</dd>
<dt>Version</dt><dd><code>{version}</code></dd>
</dl>
</header>
<pre>{body}</pre>
</body>
</html>
"#,
        changes = meta.change_count,
        body = escape_html(text),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str) -> ExportMeta {
        ExportMeta {
            name: name.into(),
            heads: vec!["ab".repeat(32)],
            authors: vec!["ada".into()],
            change_count: 2,
        }
    }

    #[test]
    fn markdown_fence_outlasts_backticks_in_the_text() {
        let out = export("a ```` b", Format::Md, &meta("x.rs"));
        assert!(out.starts_with("`````rs\n"), "{out}");
        assert!(out.ends_with("\n`````\n"));
        assert_eq!(export("# title\n", Format::Md, &meta("notes.md")), "# title\n");
    }

    #[test]
    fn html_escapes_everything_markup_could_use() {
        let out = export("<script>alert('x')</script> & \"q\"", Format::Html, &meta("<b>.txt"));
        assert!(!out.contains("<script>"));
        assert!(out.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"));
        assert!(out.contains("<title>&lt;b&gt;.txt</title>"));
    }

    #[test]
    fn json_carries_text_and_metadata() {
        let out = export("a\r\nb\r\n", Format::Json, &meta("x.txt"));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["text"], "a\r\nb\r\n");
        assert_eq!(v["line_ending"], "crlf");
        assert_eq!(v["lines"], 2);
        assert_eq!(v["change_count"], 2);
        assert_eq!(v["authors"][0], "ada");
    }
}
