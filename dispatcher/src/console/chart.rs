//! Charts drawn on the server as inline SVG: no script, no bundle, and a screenshot shows them.
//! One kind is enough for the console's questions (how many in each bucket): horizontal bars,
//! each labelled with its count, with the numbers also in the SVG's accessible description.

use maud::{Markup, html};

/// One bar: its label, its count, and a tone (`ok`, `warn`, `bad`, `none`).
pub struct Bar<'a> {
    pub label: &'a str,
    pub count: i64,
    pub tone: &'a str,
}

fn fill(tone: &str) -> &'static str {
    match tone {
        "ok" => "#1e7f3c",
        "warn" => "#b07800",
        "bad" => "#b3261e",
        _ => "#5a6472",
    }
}

/// Horizontal bars scaled to the largest count, titled `title` for screen readers.
pub fn bars(id: &str, title: &str, bars: &[Bar<'_>]) -> Markup {
    const ROW: i64 = 28;
    const LABEL: i64 = 150;
    const WIDTH: i64 = 560;
    let max = bars.iter().map(|b| b.count).max().unwrap_or(0).max(1);
    let height = ROW * bars.len() as i64 + 8;
    let description = bars
        .iter()
        .map(|b| format!("{}: {}", b.label, b.count))
        .collect::<Vec<_>>()
        .join("; ");
    let room = WIDTH - LABEL - 70;
    html! {
        svg id=(id) role="img" viewBox={"0 0 " (WIDTH) " " (height)} width="100%"
            style={"max-width:" (WIDTH) "px"} aria-labelledby={(id) "-title " (id) "-desc"} {
            title id={(id) "-title"} { (title) }
            desc id={(id) "-desc"} { (description) }
            @for (i, bar) in bars.iter().enumerate() {
                @let y = ROW * i as i64 + 4;
                @let length = if bar.count > 0 { (bar.count * room / max).max(2) } else { 0 };
                text x=(LABEL - 8) y=(y + 18) text-anchor="end" font-size="13" fill="#1b1f24" {
                    (bar.label)
                }
                rect x=(LABEL) y=(y + 4) width=(length) height=(ROW - 10) rx="3" fill=(fill(bar.tone)) {}
                text x=(LABEL + length + 6) y=(y + 18) font-size="13" fill="#1b1f24" { (bar.count) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_and_say_their_numbers() {
        let svg = bars(
            "lag",
            "Sync lag",
            &[
                Bar {
                    label: "< 6 h",
                    count: 80,
                    tone: "ok",
                },
                Bar {
                    label: "> 7 d",
                    count: 20,
                    tone: "bad",
                },
                Bar {
                    label: "never",
                    count: 0,
                    tone: "none",
                },
            ],
        )
        .into_string();
        assert!(
            svg.contains("<desc id=\"lag-desc\">&lt; 6 h: 80; &gt; 7 d: 20; never: 0</desc>"),
            "{svg}"
        );
        // 560 - 150 - 70 = 340 px for the largest; a quarter of it for 20; nothing for 0.
        assert!(svg.contains("width=\"340\""), "{svg}");
        assert!(svg.contains("width=\"85\""), "{svg}");
        assert!(svg.contains("width=\"0\""), "{svg}");
    }
}
