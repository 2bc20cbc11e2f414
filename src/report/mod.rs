//! Reports: terminal tables, number formatting, charts, and Markdown/HTML documents.

pub mod calibrate;
pub mod chart;
pub mod doc;
pub mod format;
pub mod plan;
pub mod table;
pub mod whatif;
