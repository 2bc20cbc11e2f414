//! Reports: terminal tables, number formatting, charts, and Markdown/HTML documents.

pub mod calibrate;
pub mod chart;
pub mod doc;
pub mod fit;
pub mod format;
pub mod list;
pub mod plan;
mod plan_cards;
pub mod plan_interval;
pub mod scatter;
pub mod server;
pub mod simulate;
pub mod step;
pub mod table;
pub mod validate;
pub mod validate_doc;
pub mod whatif;
