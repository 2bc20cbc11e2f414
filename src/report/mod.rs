//! Reports: terminal tables, JSON, Markdown/HTML, charts.

pub mod table;
