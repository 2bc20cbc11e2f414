//! Progress on a terminal: drawn on stderr, hidden when stderr is not a terminal (piped, in CI),
//! so scripted output stays clean.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `len` units, labelled `what`.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(&format!(
        "{{spinner}} {{wide_bar}} {{percent}}% {what} {{msg}}"
    )) {
        bar.set_style(style);
    }
    bar
}

/// A spinner that counts `what` as they complete (the total is not known in advance).
pub fn counter(what: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    if let Ok(style) =
        ProgressStyle::with_template(&format!("{{spinner}} {{pos}} {what} {{elapsed}}"))
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}
