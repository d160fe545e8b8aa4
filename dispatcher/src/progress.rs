//! Progress bars for operator commands, only when a person is watching.
//!
//! Commands print their report on stdout and log on stderr; a bar drawn into a log file or a CI
//! transcript is noise, so it is hidden unless stderr is a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` steps labelled `what`, or a hidden one when stderr is not a terminal or the
/// work is too small to be worth watching.
pub(crate) fn bar(len: u64, what: &'static str, min_len: u64) -> ProgressBar {
    if len < min_len || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} ({eta})")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    ProgressBar::new(len).with_style(style).with_message(what)
}
