//! A report as a list of blocks, rendered to Markdown (charts as SVG files next to it) and to one
//! self-contained HTML file (charts inline, no external assets: it opens offline).

use std::path::{Path, PathBuf};

use super::chart::{self, ChartSpec};
use crate::error::Result;
use crate::fsutil::Staged;

/// One piece of a report.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Heading(String),
    Paragraph(String),
    Bullets(Vec<String>),
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// A chart saved as `<name>.svg` (and `<name>.png` on request).
    Chart {
        name: String,
        spec: ChartSpec,
    },
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Document {
    pub title: String,
    pub blocks: Vec<Block>,
}

impl Document {
    pub fn new(title: impl Into<String>) -> Self {
        Document {
            title: title.into(),
            blocks: Vec::new(),
        }
    }
    pub fn heading(&mut self, s: impl Into<String>) {
        self.blocks.push(Block::Heading(s.into()));
    }
    pub fn para(&mut self, s: impl Into<String>) {
        self.blocks.push(Block::Paragraph(s.into()));
    }
    pub fn bullets(&mut self, items: Vec<String>) {
        self.blocks.push(Block::Bullets(items));
    }
    pub fn table(&mut self, header: Vec<String>, rows: Vec<Vec<String>>) {
        self.blocks.push(Block::Table { header, rows });
    }
    pub fn chart(&mut self, name: impl Into<String>, spec: ChartSpec) {
        self.blocks.push(Block::Chart {
            name: name.into(),
            spec,
        });
    }
}

/// Files a report wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub markdown: PathBuf,
    pub html: PathBuf,
    pub charts: Vec<PathBuf>,
}

/// Render every chart first (so a drawing error writes nothing), then write the SVG (and PNG)
/// files, `report.md` and `report.html` into `dir`, each atomically.
pub fn write_report(dir: &Path, doc: &Document, png: bool) -> Result<Written> {
    let mut svgs = Vec::new();
    for b in &doc.blocks {
        if let Block::Chart { name, spec } = b {
            svgs.push((name.clone(), chart::to_svg(spec)?));
        }
    }
    // Every file is written under a temporary name first and all are renamed together: a
    // failure part-way leaves no partial report.
    let mut files = Staged::default();
    let mut charts = Vec::new();
    for (name, svg) in &svgs {
        let p = dir.join(format!("{name}.svg"));
        files.write(&p, svg.as_bytes())?;
        charts.push(p);
    }
    if png {
        for b in &doc.blocks {
            if let Block::Chart { name, spec } = b {
                let p = dir.join(format!("{name}.png"));
                chart::write_png(spec, &files.temp_for(&p)?)?;
                charts.push(p);
            }
        }
    }
    let markdown = dir.join("report.md");
    files.write(&markdown, to_markdown(doc).as_bytes())?;
    let html = dir.join("report.html");
    files.write(&html, to_html(doc, &svgs).as_bytes())?;
    files.commit()?;
    Ok(Written {
        markdown,
        html,
        charts,
    })
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The report as GitHub-flavoured Markdown; charts link to `<name>.svg` next to it.
pub fn to_markdown(doc: &Document) -> String {
    let mut out = format!("# {}\n\n", doc.title);
    for b in &doc.blocks {
        match b {
            Block::Heading(h) => out.push_str(&format!("## {h}\n\n")),
            Block::Paragraph(p) => out.push_str(&format!("{p}\n\n")),
            Block::Bullets(items) => {
                for i in items {
                    out.push_str(&format!("- {i}\n"));
                }
                out.push('\n');
            }
            Block::Table { header, rows } => {
                let cells = |r: &[String]| {
                    format!(
                        "| {} |\n",
                        r.iter().map(|c| md_cell(c)).collect::<Vec<_>>().join(" | ")
                    )
                };
                out.push_str(&cells(header));
                out.push_str(&format!("|{}\n", "---|".repeat(header.len())));
                for r in rows {
                    out.push_str(&cells(r));
                }
                out.push('\n');
            }
            Block::Chart { name, spec } => {
                out.push_str(&format!("![{}]({name}.svg)\n\n", md_cell(spec.title())));
            }
        }
    }
    out
}

/// Escape text for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// SVG for inlining in HTML: the XML prolog and namespace declarations are not needed there
/// (HTML parsers place `<svg>` in the SVG namespace) and would be the only URLs in the file.
fn inline_svg(svg: &str) -> String {
    let start = svg.find("<svg").unwrap_or(0);
    let mut s = svg[start..].to_string();
    for attr in [
        " xmlns=\"http://www.w3.org/2000/svg\"",
        " xmlns:xlink=\"http://www.w3.org/1999/xlink\"",
    ] {
        s = s.replace(attr, "");
    }
    s.replacen(
        "<svg",
        "<svg role=\"img\" style=\"max-width:100%;height:auto\"",
        1,
    )
}

const CSS: &str = "body{font-family:'DejaVu Sans',Verdana,Arial,sans-serif;max-width:960px;margin:2em auto;\
padding:0 1em;color:#222;line-height:1.45}h1{font-size:1.6em;border-bottom:2px solid #0072b2;padding-bottom:.2em}\
h2{font-size:1.25em;margin-top:1.6em}table{border-collapse:collapse;margin:.6em 0 1.2em}\
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}th{background:#f2f5f8}\
tr:nth-child(even) td{background:#fafafa}figure{margin:1em 0}figcaption{font-size:.9em;color:#555}\
svg text{font-family:'DejaVu Sans',Verdana,Arial,sans-serif}";

/// The report as one HTML file with inline CSS and inline SVG charts (`svgs`: name → SVG).
pub fn to_html(doc: &Document, svgs: &[(String, String)]) -> String {
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape_html(&doc.title),
        escape_html(&doc.title)
    );
    for b in &doc.blocks {
        match b {
            Block::Heading(h) => out.push_str(&format!("<h2>{}</h2>\n", escape_html(h))),
            Block::Paragraph(p) => out.push_str(&format!("<p>{}</p>\n", escape_html(p))),
            Block::Bullets(items) => {
                out.push_str("<ul>\n");
                for i in items {
                    out.push_str(&format!("<li>{}</li>\n", escape_html(i)));
                }
                out.push_str("</ul>\n");
            }
            Block::Table { header, rows } => {
                out.push_str("<table>\n");
                // A key-value table has no header worth a row.
                if header.iter().any(|h| !h.is_empty()) {
                    out.push_str("<thead><tr>");
                    for h in header {
                        out.push_str(&format!("<th>{}</th>", escape_html(h)));
                    }
                    out.push_str("</tr></thead>\n");
                }
                out.push_str("<tbody>\n");
                for r in rows {
                    out.push_str("<tr>");
                    for c in r {
                        out.push_str(&format!("<td>{}</td>", escape_html(c)));
                    }
                    out.push_str("</tr>\n");
                }
                out.push_str("</tbody>\n</table>\n");
            }
            Block::Chart { name, spec } => {
                let svg = svgs
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, s)| inline_svg(s))
                    .unwrap_or_default();
                // The title is drawn in the chart; repeat it only for screen readers.
                out.push_str(&format!(
                    "<figure aria-label=\"{}\">\n{svg}\n</figure>\n",
                    escape_html(spec.title())
                ));
            }
        }
    }
    out.push_str("</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::chart::{RefLine, Series};

    fn doc() -> Document {
        let mut d = Document::new("Plan <test>");
        d.heading("Verdict");
        d.para("5 cards & 1 spare");
        d.bullets(vec!["a|b".into()]);
        d.table(
            vec!["gpu".into(), "users".into()],
            vec![vec!["rtx3090".into(), "1,200".into()]],
        );
        d.chart(
            "rate",
            ChartSpec::Lines {
                title: "Rate vs users".into(),
                x_label: "users".into(),
                y_label: "tok/s".into(),
                series: vec![Series {
                    name: "p05".into(),
                    points: vec![(1.0, 2.0), (2.0, 1.0)],
                    markers: false,
                }],
                hlines: vec![RefLine {
                    at: 1.5,
                    label: "SLO".into(),
                }],
                vlines: vec![],
                y_range: None,
            },
        );
        d
    }

    #[test]
    fn markdown_has_tables_and_chart_links() {
        let md = to_markdown(&doc());
        assert!(md.starts_with("# Plan <test>\n"));
        assert!(md.contains("| gpu | users |\n|---|---|\n| rtx3090 | 1,200 |"));
        assert!(md.contains("- a|b"));
        assert!(md.contains("![Rate vs users](rate.svg)"));
    }

    #[test]
    fn html_escapes_and_inlines_svg_without_urls() {
        let svg = chart::to_svg(match &doc().blocks[4] {
            Block::Chart { spec, .. } => spec,
            _ => unreachable!(),
        })
        .unwrap();
        let html = to_html(&doc(), &[("rate".into(), svg)]);
        assert!(html.contains("<title>Plan &lt;test&gt;</title>"));
        assert!(html.contains("5 cards &amp; 1 spare"));
        assert!(html.contains("<svg"));
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(!html.contains("<?xml"));
    }
}
