//! Cohort compliance in `fitlink status`'s text form. The rule, its flags and the query are
//! `fitlink_shared::compliance` (the console reports the same numbers).

pub use fitlink_shared::compliance::*;

/// The text form: `compliance: 8 of 10 participants wore their tracker ≥10 h on ≥4 of the 7
/// days before 2026-11-04`, then the not-compliant ids with their days worn enough.
pub fn render_text(c: &Compliance, wear: impl Fn(&str) -> Option<i64>) -> String {
    let mut out = format!(
        "compliance: {} of {} participants wore their tracker \u{2265}{} h on \u{2265}{} of the {} days before {}",
        c.compliant, c.participants, c.min_wear_hours, c.min_days, c.window_days, c.as_of
    );
    if c.participants == 0 {
        out.push_str(" (no participants counted: withdrawn ones are not)");
    }
    out.push('\n');
    if c.not_compliant_count > 0 {
        let ids: Vec<String> = c
            .not_compliant
            .iter()
            .map(|id| match wear(id) {
                Some(1) => format!("{id} (1 day)"),
                Some(days) => format!("{id} ({days} days)"),
                None => id.clone(),
            })
            .collect();
        let more = c.not_compliant_count - c.not_compliant.len() as i64;
        out.push_str(&format!("  not compliant: {}", ids.join(", ")));
        if more > 0 {
            out.push_str(&format!(" \u{2026} and {more} more"));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
