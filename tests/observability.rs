//! The Grafana dashboard (`deploy/grafana/fitlink.json`) and the Prometheus alert rules
//! (`deploy/prometheus/alerts.yml`) name only series the fleet exports, with only the labels
//! those metrics carry (`shared/src/telemetry/catalog.rs`): a renamed metric or a typo in a label
//! fails here instead of leaving an empty panel or an alert that can never fire. The dashboard's
//! panels are well formed, every alert carries what an operator needs and has its section in
//! `docs/operations.md`, and the alerts' jobs are the scrape config's.
//!
//! The PromQL reading is deliberately small (no parser dependency): string literals are blanked
//! out, metric names are the `fitlink_…` identifiers, a `{…}` right after one is its selector,
//! and a `by`/`without` clause applies to the parenthesised argument of its aggregation (before
//! or after the clause), an `on`/`ignoring` clause to the group around its binary operator.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use fitlink_shared::telemetry::catalog::{self, Kind, Metric};

/// Labels Prometheus attaches to every scraped series.
const TARGET_LABELS: &[&str] = &["job", "instance"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Reading PromQL.

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// `expr` with the contents of every string literal (`"…"`, `'…'`, `` `…` ``) replaced by
/// spaces, quotes kept: offsets stay the same, and nothing inside a label value (a regex with
/// `,`, `}` or a name-like word) is mistaken for structure.
fn blank_strings(expr: &str) -> Vec<u8> {
    let mut out = expr.as_bytes().to_vec();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < out.len() {
        let b = out[i];
        match quote {
            None => {
                if matches!(b, b'"' | b'\'' | b'`') {
                    quote = Some(b);
                }
            }
            Some(q) if b == q => quote = None,
            Some(q) => {
                if b == b'\\' && q != b'`' && i + 1 < out.len() {
                    out[i] = b' ';
                    i += 1;
                }
                out[i] = b' ';
            }
        }
        i += 1;
    }
    out
}

fn skip_space(m: &[u8], mut i: usize) -> usize {
    while i < m.len() && m[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The index of the `)` closing the `(` at `open`.
fn closing(m: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, &b) in m.iter().enumerate().skip(open) {
        match b {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// The index of the `(` opened before `close` and closed at it.
fn opening(m: &[u8], close: usize) -> Option<usize> {
    let mut depth = 0usize;
    for i in (0..=close).rev() {
        match m[i] {
            b')' => depth += 1,
            b'(' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// The innermost parenthesised group around `at`, or the whole expression.
fn enclosing(m: &[u8], at: usize) -> (usize, usize) {
    let mut depth = 0usize;
    for i in (0..at).rev() {
        match m[i] {
            b')' => depth += 1,
            b'(' if depth == 0 => return (i, closing(m, i).unwrap_or(m.len() - 1)),
            b'(' => depth -= 1,
            _ => {}
        }
    }
    (0, m.len().saturating_sub(1))
}

/// A `fitlink_…` series named in an expression, where it starts and ends.
struct Series {
    name: String,
    start: usize,
    end: usize,
}

/// Every `fitlink_…` identifier outside string literals.
fn series_in(m: &[u8]) -> Vec<Series> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < m.len() {
        if m[i..].starts_with(b"fitlink_") && (i == 0 || !is_ident(m[i - 1])) {
            let end = (i..m.len()).find(|&j| !is_ident(m[j])).unwrap_or(m.len());
            found.push(Series {
                name: String::from_utf8_lossy(&m[i..end]).into_owned(),
                start: i,
                end,
            });
            i = end;
        } else {
            i += 1;
        }
    }
    found
}

/// The labels a series of `metric` may be selected or grouped by.
fn allowed_labels(metric: &Metric, series: &str) -> Vec<&'static str> {
    let mut labels: Vec<&'static str> = metric.labels.to_vec();
    labels.extend_from_slice(TARGET_LABELS);
    if matches!(metric.kind, Kind::Histogram { .. }) && series.ends_with("_bucket") {
        labels.push("le");
    }
    labels
}

/// Label names of a comma-separated list (`a, b`) or selector body (`a="x", b=~"y"`).
fn label_names(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.bytes()
                .take_while(|&b| is_ident(b))
                .map(char::from)
                .collect::<String>()
        })
        .collect()
}

/// Everything wrong with one PromQL expression: a `fitlink_…` series no metric exports, a label
/// a selected metric does not carry, a grouping label its aggregated metrics do not carry.
fn problems(expr: &str) -> Vec<String> {
    let m = blank_strings(expr);
    let text = String::from_utf8_lossy(&m).into_owned();
    let series = series_in(&m);
    let mut problems = Vec::new();

    for s in &series {
        let Some(metric) = catalog::metric_of_series(&s.name) else {
            problems.push(format!(
                "`{}` is not a series of any metric in CATALOG",
                s.name
            ));
            continue;
        };
        let open = skip_space(&m, s.end);
        if open < m.len() && m[open] == b'{' {
            let Some(close) = (open..m.len()).find(|&j| m[j] == b'}') else {
                problems.push(format!("unclosed selector after `{}`", s.name));
                continue;
            };
            let allowed = allowed_labels(metric, &s.name);
            for label in label_names(&text[open + 1..close]) {
                if !allowed.contains(&label.as_str()) {
                    problems.push(format!(
                        "`{}` has no label `{label}` (its labels: {allowed:?})",
                        s.name
                    ));
                }
            }
        }
    }

    for keyword in ["by", "without", "on", "ignoring"] {
        let mut from = 0;
        while let Some(found) = text[from..].find(keyword) {
            let at = from + found;
            from = at + keyword.len();
            let after = at + keyword.len();
            if (at > 0 && is_ident(m[at - 1])) || (after < m.len() && is_ident(m[after])) {
                continue;
            }
            let open = skip_space(&m, after);
            if open >= m.len() || m[open] != b'(' {
                continue;
            }
            let Some(close) = closing(&m, open) else {
                problems.push(format!("unclosed `{keyword} (` in `{expr}`"));
                continue;
            };
            let labels = label_names(&text[open + 1..close]);
            let scope = if matches!(keyword, "by" | "without") {
                // `sum by (l) (arg)` or `sum (arg) by (l)`.
                let next = skip_space(&m, close + 1);
                let before = (0..at).rev().find(|&j| !m[j].is_ascii_whitespace());
                if next < m.len() && m[next] == b'(' {
                    closing(&m, next).map(|end| (next, end))
                } else if let Some(end) = before.filter(|&j| m[j] == b')') {
                    opening(&m, end).map(|start| (start, end))
                } else {
                    None
                }
            } else {
                Some(enclosing(&m, at))
            };
            let Some((start, end)) = scope else {
                problems.push(format!(
                    "cannot find what `{keyword} ({})` groups in `{expr}`",
                    labels.join(", ")
                ));
                continue;
            };
            for s in series.iter().filter(|s| s.start > start && s.end <= end) {
                let Some(metric) = catalog::metric_of_series(&s.name) else {
                    continue; // reported above
                };
                let allowed = allowed_labels(metric, &s.name);
                for label in &labels {
                    if !allowed.contains(&label.as_str()) {
                        problems.push(format!(
                            "`{keyword} ({label})` over `{}`, which has no label `{label}` (its labels: {allowed:?})",
                            s.name
                        ));
                    }
                }
            }
        }
    }
    problems
}

/// Every `fitlink_…` word of a whole file (descriptions and annotations included) that names no
/// exported series.
fn unknown_names(text: &str) -> BTreeSet<String> {
    series_in(text.as_bytes())
        .into_iter()
        .map(|s| s.name)
        .filter(|name| catalog::metric_of_series(name).is_none())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The dashboard.

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read("deploy/grafana/fitlink.json"))
        .expect("deploy/grafana/fitlink.json is valid JSON")
}

/// Every panel, rows' nested panels included.
fn all_panels(dashboard: &serde_json::Value) -> Vec<&serde_json::Value> {
    fn walk<'a>(panels: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
        for panel in panels.as_array().into_iter().flatten() {
            out.push(panel);
            if let Some(nested) = panel.get("panels") {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

fn exprs_of(panel: &serde_json::Value) -> Vec<&str> {
    panel["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["expr"].as_str())
        .filter(|e| !e.trim().is_empty())
        .collect()
}

#[test]
fn the_dashboard_uses_only_described_metrics_and_labels() {
    let dashboard = dashboard();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for panel in all_panels(&dashboard) {
        for expr in exprs_of(panel) {
            checked += 1;
            for problem in problems(expr) {
                wrong.push(format!("panel {:?}: {problem}", panel["title"]));
            }
        }
    }
    assert!(checked >= 20, "only {checked} expressions found");
    let unknown = unknown_names(&read("deploy/grafana/fitlink.json"));
    assert!(
        unknown.is_empty(),
        "the dashboard names undescribed series: {unknown:?}"
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_dashboards_panels_are_well_formed() {
    let dashboard = dashboard();
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()));
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        variables
            .iter()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
        "a Prometheus data source variable"
    );

    let panels = all_panels(&dashboard);
    let mut ids = HashSet::new();
    for panel in &panels {
        let id = panel["id"].as_u64().expect("every panel has a numeric id");
        assert!(ids.insert(id), "panel id {id} is used twice");
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "panel {id} has no title");
        assert!(
            !exprs_of(panel).is_empty(),
            "panel {title:?} has no target with an expr"
        );
    }

    // The top-level grid: inside 24 columns, no two panels overlapping.
    let boxes: Vec<(String, [u64; 4])> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let g = &p["gridPos"];
            let n = |k: &str| g[k].as_u64().unwrap_or_else(|| panic!("{p}: gridPos.{k}"));
            (p["title"].to_string(), [n("x"), n("y"), n("w"), n("h")])
        })
        .collect();
    for (title, [x, _, w, h]) in &boxes {
        assert!(*w > 0 && *h > 0 && x + w <= 24, "{title} is off the grid");
    }
    for (i, (a, [ax, ay, aw, ah])) in boxes.iter().enumerate() {
        for (b, [bx, by, bw, bh]) in &boxes[i + 1..] {
            let apart = ax + aw <= *bx || bx + bw <= *ax || ay + ah <= *by || by + bh <= *ay;
            assert!(apart, "{a} and {b} overlap");
        }
    }
}

#[test]
fn every_metric_in_the_catalog_is_on_the_dashboard() {
    let dashboard = dashboard();
    let mut shown = HashSet::new();
    for panel in all_panels(&dashboard) {
        for expr in exprs_of(panel) {
            for s in series_in(&blank_strings(expr)) {
                if let Some(metric) = catalog::metric_of_series(&s.name) {
                    shown.insert(metric.name);
                }
            }
        }
    }
    let missing: Vec<_> = catalog::CATALOG
        .iter()
        .map(|m| m.name)
        .filter(|n| !shown.contains(n))
        .collect();
    assert!(missing.is_empty(), "no panel shows {missing:?}");
}

// ---------------------------------------------------------------------------------------------
// The alert rules.

#[derive(Debug, Default)]
struct Rule {
    alert: String,
    expr: String,
    has_for: bool,
    severity: Option<String>,
    summary: bool,
    description: bool,
    runbook: Option<String>,
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn unquote(value: &str) -> String {
    let v = value.trim();
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner.to_owned();
        }
    }
    v.to_owned()
}

/// The rules of a Prometheus rule file, read line by line (`- alert:` starts a rule; `expr` may
/// be a plain scalar or a `|` / `>` block).
fn rules(text: &str) -> Vec<Rule> {
    let lines: Vec<&str> = text.lines().collect();
    let mut rules: Vec<Rule> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start().trim_start_matches("- ");
        i += 1;
        if line.trim_start().starts_with('#') {
            continue;
        }
        let Some((key, value)) = trimmed.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if key == "alert" {
            rules.push(Rule {
                alert: value.to_owned(),
                ..Rule::default()
            });
            continue;
        }
        let Some(rule) = rules.last_mut() else {
            continue;
        };
        match key {
            "expr" if value.starts_with('|') || value.starts_with('>') => {
                let mut block = Vec::new();
                while i < lines.len()
                    && (lines[i].trim().is_empty() || indent(lines[i]) > indent(line))
                {
                    block.push(lines[i].trim());
                    i += 1;
                }
                rule.expr = block.join("\n");
            }
            "expr" => rule.expr = unquote(value),
            "for" => rule.has_for = true,
            "severity" => rule.severity = Some(unquote(value)),
            "summary" => rule.summary = !value.is_empty(),
            "description" => rule.description = !value.is_empty(),
            "runbook" => rule.runbook = Some(unquote(value)),
            _ => {}
        }
    }
    rules
}

/// GitHub's anchor of a Markdown heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn the_alert_rules_use_only_described_metrics_and_labels() {
    let text = read("deploy/prometheus/alerts.yml");
    let rules = rules(&text);
    assert!(rules.len() >= 10, "only {} rules read", rules.len());
    let mut wrong = Vec::new();
    for rule in &rules {
        assert!(!rule.expr.is_empty(), "{} has no expr", rule.alert);
        for problem in problems(&rule.expr) {
            wrong.push(format!("{}: {problem}", rule.alert));
        }
    }
    let unknown = unknown_names(&text);
    assert!(
        unknown.is_empty(),
        "the rules name undescribed series: {unknown:?}"
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_alert_says_how_bad_it_is_and_where_its_runbook_is() {
    let rules = rules(&read("deploy/prometheus/alerts.yml"));
    let operations = read("docs/operations.md");
    let anchors: HashSet<String> = operations
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect();
    for rule in &rules {
        let name = &rule.alert;
        assert!(rule.has_for, "{name} has no `for`");
        assert!(
            matches!(
                rule.severity.as_deref(),
                Some("critical" | "warning" | "info")
            ),
            "{name}: severity {:?}",
            rule.severity
        );
        assert!(rule.summary && rule.description, "{name}: annotations");
        let runbook = rule.runbook.as_deref().unwrap_or_default();
        let want = format!("docs/operations.md#{}", name.to_lowercase());
        assert_eq!(runbook, want, "{name}'s runbook");
        assert!(
            anchors.contains(&name.to_lowercase()),
            "docs/operations.md has no section {name}"
        );
    }
}

#[test]
fn the_alerts_jobs_are_the_scrape_configs() {
    let config = read("deploy/prometheus/prometheus.yml");
    let jobs: HashSet<&str> = config
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- job_name:"))
        .map(str::trim)
        .collect();
    assert!(
        config.lines().any(|l| l.trim().starts_with("- alerts.yml")),
        "prometheus.yml loads alerts.yml"
    );
    for rule in rules(&read("deploy/prometheus/alerts.yml")) {
        for (at, _) in rule.expr.match_indices("job=\"") {
            let job = rule.expr[at + 5..].split('"').next().unwrap();
            assert!(jobs.contains(job), "{}: no scrape job {job}", rule.alert);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The reader itself.

#[test]
fn the_reader_accepts_what_the_catalog_describes() {
    for expr in [
        r#"sum by (table) (rate(fitlink_writer_rows_total[$__rate_interval]))"#,
        r#"sum(rate(fitlink_writer_rows_total{table="steps_intraday"}[5m])) by (table, instance)"#,
        r#"histogram_quantile(0.9, sum by (le) (rate(fitlink_writer_batch_seconds_bucket[5m])))"#,
        r#"rate(fitlink_writer_batch_seconds_sum[5m]) / rate(fitlink_writer_batch_seconds_count[5m])"#,
        r#"max by (queue) (fitlink_queue_consumers{queue=~".+[.]results([.]p[0-9]+)?"}) == 0"#,
        r#"fitlink_queue_messages{queue=~"a,b}c fitlink_nope by (x)", job="fitlink-dispatcher"} > 0"#,
        r#"sum by (provider) (rate(fitlink_provider_requests_total{status=~"5.."}[15m])) / on (provider) sum by (provider) (rate(fitlink_provider_requests_total[15m]))"#,
        r#"up{job=~"fitlink-.*"} == 0"#,
    ] {
        assert_eq!(problems(expr), Vec::<String>::new(), "{expr}");
    }
}

#[test]
fn the_reader_catches_typos() {
    let cases = [
        // A misspelt metric, alone and in a selector.
        (
            "rate(fitlink_writer_rows_totl[5m])",
            "fitlink_writer_rows_totl",
        ),
        (
            r#"sum(fitlink_queue_mesages{queue="fitlink.jobs"})"#,
            "fitlink_queue_mesages",
        ),
        // A histogram's series of a metric that is not one.
        (
            "rate(fitlink_writer_rows_total_bucket[5m])",
            "fitlink_writer_rows_total_bucket",
        ),
        // A misspelt label: in a selector, a leading and a trailing `by`, `without`, `on`.
        (r#"fitlink_writer_rows_total{tabel="sleep"}"#, "tabel"),
        (
            r#"fitlink_provider_requests_total{provider="fitbit", stauts="429"}"#,
            "stauts",
        ),
        (
            "sum by (tabel) (rate(fitlink_writer_rows_total[5m]))",
            "tabel",
        ),
        (
            "sum(rate(fitlink_writer_rows_total[5m])) by (tabel)",
            "tabel",
        ),
        (
            "sum without (tabel) (rate(fitlink_writer_rows_total[5m]))",
            "tabel",
        ),
        (
            "sum by (provider) (rate(fitlink_provider_requests_total[5m])) / on (provder) sum by (provider) (rate(fitlink_provider_requests_total[5m]))",
            "provder",
        ),
        // A label of another metric, and `le` on what has no buckets.
        (
            "sum by (queue) (fitlink_writer_dead_lettered_total)",
            "queue",
        ),
        (
            "histogram_quantile(0.9, sum by (le) (rate(fitlink_writer_batches_total[5m])))",
            "le",
        ),
    ];
    for (expr, culprit) in cases {
        let found = problems(expr);
        assert!(
            found.iter().any(|p| p.contains(culprit)),
            "`{expr}`: expected a problem naming {culprit}, got {found:?}"
        );
    }
}

#[test]
fn the_rule_reader_reads_plain_and_block_exprs() {
    let text = r#"
groups:
  - name: g
    rules:
      - alert: One
        expr: fitlink_grants_expiring > 10
        for: 1h
        labels:
          severity: warning
        annotations:
          summary: "s"
          description: d
          runbook: "docs/operations.md#one"
      - alert: Two
        expr: >-
          sum(increase(fitlink_writer_dead_lettered_total[1h])) > 0
          or fitlink_queue_messages{queue="x"} > 0
        for: 5m
"#;
    let rules = rules(text);
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].expr, "fitlink_grants_expiring > 10");
    assert_eq!(rules[0].severity.as_deref(), Some("warning"));
    assert_eq!(rules[0].runbook.as_deref(), Some("docs/operations.md#one"));
    assert!(rules[0].has_for && rules[0].summary && rules[0].description);
    assert_eq!(
        rules[1].expr,
        "sum(increase(fitlink_writer_dead_lettered_total[1h])) > 0\nor fitlink_queue_messages{queue=\"x\"} > 0"
    );
    assert!(rules[1].severity.is_none());
    assert_eq!(anchor(" FitlinkNoWriter"), "fitlinknowriter");
    assert_eq!(anchor(" Operations: the alerts"), "operations-the-alerts");
}
