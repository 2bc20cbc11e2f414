//! Terminal tables in one house style.

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};

/// Below this many columns a terminal cannot hold a readable wrapped table (some report width 0,
/// e.g. under `script`): the table is printed at its natural width instead.
const MIN_WRAP_WIDTH: u16 = 40;

/// A table in cardplan's terminal style: condensed borders, wrapping to the terminal width when
/// the terminal is wide enough to wrap into.
pub fn new_table() -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    let arrangement = arrangement(t.width());
    t.set_content_arrangement(arrangement);
    t
}

/// Wrap to the terminal's width, unless it reports one too narrow to wrap into.
fn arrangement(terminal_width: Option<u16>) -> ContentArrangement {
    match terminal_width {
        Some(w) if w < MIN_WRAP_WIDTH => ContentArrangement::Disabled,
        _ => ContentArrangement::Dynamic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_of_width_zero_gets_whole_cells() {
        let mut t = Table::new();
        t.set_header(vec!["key", "description"]);
        t.add_row(vec!["fp16", "16-bit weights"]);
        t.set_width(0);
        t.set_content_arrangement(arrangement(Some(0)));
        let text = t.to_string();
        assert!(text.contains("16-bit weights"), "{text}");
        assert!(text.lines().count() <= 5, "{text}");
        assert!(matches!(
            arrangement(Some(120)),
            ContentArrangement::Dynamic
        ));
        assert!(matches!(arrangement(None), ContentArrangement::Dynamic));
    }
}
