//! The AIP-160 subset Google Health accepts in `list` filters:
//! `<snake_type>.<member> (>=|<) "<literal>" [AND ...]`.
//!
//! Validation is deliberately strict and reports Google's `ErrorInfo` reasons, so a
//! client bug (a hyphenated type, `<=`, an unquoted timestamp, a member the type lacks)
//! fails here exactly as it would against the real service.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};

use crate::catalog::{DataType, MemberKind};

/// A rejected filter: the `ErrorInfo` reason and a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FilterError {
    pub reason: &'static str,
    pub message: String,
}

fn err(reason: &'static str, message: impl Into<String>) -> FilterError {
    FilterError {
        reason,
        message: message.into(),
    }
}

/// Half-open bounds extracted from a filter. Physical bounds are instants; civil bounds
/// are local wall-clock times (a `.date` bound is the date at midnight).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Bounds {
    pub physical_lo: Option<DateTime<Utc>>,
    pub physical_hi: Option<DateTime<Utc>>,
    pub civil_lo: Option<NaiveDateTime>,
    pub civil_hi: Option<NaiveDateTime>,
}

impl Bounds {
    /// Whether a civil time satisfies the civil bounds.
    pub(crate) fn civil_ok(&self, local: NaiveDateTime) -> bool {
        self.civil_lo.is_none_or(|lo| local >= lo) && self.civil_hi.is_none_or(|hi| local < hi)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Op(String),
    Other(String),
}

fn tokenize(input: &str) -> Result<Vec<Token>, FilterError> {
    let mut tokens = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(e) => s.push(e),
                        None => {
                            return Err(err(
                                "INVALID_DATA_POINT_FILTER_SYNTAX",
                                "Unterminated string literal in filter.",
                            ));
                        }
                    },
                    Some(ch) => s.push(ch),
                    None => {
                        return Err(err(
                            "INVALID_DATA_POINT_FILTER_SYNTAX",
                            "Unterminated string literal in filter.",
                        ));
                    }
                }
            }
            tokens.push(Token::Str(s));
        } else if matches!(c, '<' | '>' | '=' | '!' | ':') {
            let mut op = String::from(c);
            chars.next();
            if let Some(&'=') = chars.peek() {
                op.push('=');
                chars.next();
            }
            tokens.push(Token::Op(op));
        } else if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
            let mut s = String::new();
            while let Some(&ch) = chars.peek() {
                if ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-') {
                    s.push(ch);
                    chars.next();
                } else {
                    break;
                }
            }
            tokens.push(Token::Ident(s));
        } else {
            let mut s = String::from(c);
            chars.next();
            while let Some(&ch) = chars.peek() {
                if ch.is_whitespace() || ch == '"' {
                    break;
                }
                s.push(ch);
                chars.next();
            }
            tokens.push(Token::Other(s));
        }
    }
    Ok(tokens)
}

fn parse_physical(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn parse_civil(s: &str) -> Option<NaiveDateTime> {
    if s.len() == 10 {
        return NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .map(|d| d.and_time(NaiveTime::MIN));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").ok()
}

fn parse_date(s: &str) -> Option<NaiveDate> {
    if s.len() != 10 {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// Parses and validates `filter` for data type `dt`. An empty filter means "everything".
pub(crate) fn parse(dt: &DataType, filter: &str) -> Result<Bounds, FilterError> {
    let tokens = tokenize(filter)?;
    let mut bounds = Bounds::default();
    let snake = dt.snake();
    let mut pos = 0;
    if tokens.is_empty() {
        return Ok(bounds);
    }
    loop {
        // <member>
        let member = match tokens.get(pos) {
            Some(Token::Ident(m)) => m.clone(),
            Some(other) => {
                return Err(err(
                    "INVALID_DATA_POINT_FILTER_SYNTAX",
                    format!("Unexpected token {other:?} in filter; expected a field name."),
                ));
            }
            None => {
                return Err(err(
                    "INVALID_DATA_POINT_FILTER_MISSING_TOKEN",
                    "Filter ends where a comparison was expected.",
                ));
            }
        };
        let (type_part, field) = member.split_once('.').unwrap_or((member.as_str(), ""));
        if type_part.contains('-') {
            return Err(err(
                "INVALID_DATA_POINT_FILTER",
                format!(
                    "Invalid data type '{type_part}' in filter: data types in filters are snake_case (e.g. '{}').",
                    type_part.replace('-', "_")
                ),
            ));
        }
        let kind = if type_part == snake {
            dt.filter_members()
                .iter()
                .find(|(m, _)| *m == field)
                .map(|(_, k)| *k)
        } else {
            None
        };
        let Some(kind) = kind else {
            return Err(err(
                "INVALID_DATA_POINT_FILTER_DATA_TYPE_MEMBER",
                format!("Member '{member}' is not supported for filtering"),
            ));
        };
        // <op>
        let op = match tokens.get(pos + 1) {
            Some(Token::Op(op)) => op.clone(),
            Some(other) => {
                return Err(err(
                    "INVALID_DATA_POINT_FILTER_SYNTAX",
                    format!(
                        "Unexpected token {other:?} after '{member}'; expected a comparison operator."
                    ),
                ));
            }
            None => {
                return Err(err(
                    "INVALID_DATA_POINT_FILTER_MISSING_TOKEN",
                    format!("Missing comparison operator after '{member}'."),
                ));
            }
        };
        if op != ">=" && op != "<" {
            return Err(err(
                "INVALID_DATA_POINT_FILTER",
                format!(
                    "Operator '{op}' is not supported for '{member}'; supported operators are '>=' and '<'."
                ),
            ));
        }
        // <literal>
        let literal = match tokens.get(pos + 2) {
            Some(Token::Str(s)) => s.clone(),
            Some(other) => {
                return Err(err(
                    "INVALID_DATA_POINT_FILTER_SYNTAX",
                    format!(
                        "Expected a quoted string literal after '{member} {op}', found {other:?}."
                    ),
                ));
            }
            None => {
                return Err(err(
                    "INVALID_DATA_POINT_FILTER_MISSING_TOKEN",
                    format!("Missing literal after '{member} {op}'."),
                ));
            }
        };
        let lower = op == ">=";
        match kind {
            MemberKind::Physical => {
                let t = parse_physical(&literal).ok_or_else(|| {
                    err(
                        "INVALID_FILTER_FORMAT",
                        format!("Invalid timestamp '{literal}' for '{member}': expected RFC 3339."),
                    )
                })?;
                if lower {
                    bounds.physical_lo = Some(bounds.physical_lo.map_or(t, |x| x.max(t)));
                } else {
                    bounds.physical_hi = Some(bounds.physical_hi.map_or(t, |x| x.min(t)));
                }
            }
            MemberKind::Civil | MemberKind::Date => {
                let t = if kind == MemberKind::Civil {
                    parse_civil(&literal)
                } else {
                    parse_date(&literal).map(|d| d.and_time(NaiveTime::MIN))
                };
                let t = t.ok_or_else(|| {
                    err(
                        "INVALID_DATA_POINT_FILTER_CIVIL_DATE_TIME_FORMAT",
                        format!(
                            "Invalid civil date/time '{literal}' for '{member}': expected {}.",
                            if kind == MemberKind::Civil {
                                "YYYY-MM-DD[THH:mm:ss]"
                            } else {
                                "YYYY-MM-DD"
                            }
                        ),
                    )
                })?;
                if lower {
                    bounds.civil_lo = Some(bounds.civil_lo.map_or(t, |x| x.max(t)));
                } else {
                    bounds.civil_hi = Some(bounds.civil_hi.map_or(t, |x| x.min(t)));
                }
            }
        }
        pos += 3;
        match tokens.get(pos) {
            None => return Ok(bounds),
            Some(Token::Ident(k)) if k == "AND" => pos += 1,
            Some(Token::Ident(k)) if k == "OR" => {
                if !dt.allows_or() {
                    return Err(err(
                        "INVALID_DATA_POINT_FILTER",
                        format!(
                            "Logical operator 'OR' is not supported for data type {}; use 'AND'.",
                            dt.kebab
                        ),
                    ));
                }
                pos += 1;
            }
            Some(other) => {
                return Err(err(
                    "INVALID_DATA_POINT_FILTER_SYNTAX",
                    format!("Unexpected token {other:?} in filter; expected 'AND'."),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::lookup;

    fn hr() -> &'static DataType {
        lookup("heart-rate").unwrap()
    }

    #[test]
    fn accepts_range() {
        let b = parse(
            hr(),
            r#"heart_rate.sample_time.physical_time >= "2026-11-01T00:00:00Z" AND heart_rate.sample_time.physical_time < "2026-11-02T00:00:00-05:00""#,
        )
        .unwrap();
        assert_eq!(
            b.physical_lo.unwrap().to_rfc3339(),
            "2026-11-01T00:00:00+00:00"
        );
        assert_eq!(
            b.physical_hi.unwrap().to_rfc3339(),
            "2026-11-02T05:00:00+00:00"
        );
        let d = parse(
            lookup("daily-resting-heart-rate").unwrap(),
            r#"daily_resting_heart_rate.date >= "2026-11-01""#,
        )
        .unwrap();
        assert!(d.civil_lo.is_some());
        assert_eq!(parse(hr(), "  ").unwrap(), Bounds::default());
    }

    #[test]
    fn rejects_with_google_reasons() {
        let cases = [
            (
                r#"heart-rate.sample_time.physical_time >= "2026-11-01T00:00:00Z""#,
                "INVALID_DATA_POINT_FILTER",
            ),
            (
                r#"heart_rate.sample_time.physical_time <= "2026-11-01T00:00:00Z""#,
                "INVALID_DATA_POINT_FILTER",
            ),
            (
                r#"heart_rate.sample_time.physical_time > "2026-11-01T00:00:00Z""#,
                "INVALID_DATA_POINT_FILTER",
            ),
            (
                r#"heart_rate.interval.start_time >= "2026-11-01T00:00:00Z""#,
                "INVALID_DATA_POINT_FILTER_DATA_TYPE_MEMBER",
            ),
            (
                r#"steps.interval.start_time >= "2026-11-01T00:00:00Z""#,
                "INVALID_DATA_POINT_FILTER_DATA_TYPE_MEMBER",
            ),
            (
                r#"heart_rate.sample_time.physical_time >= "2026-11-01""#,
                "INVALID_FILTER_FORMAT",
            ),
            (
                r#"heart_rate.sample_time.civil_time >= "2026-11-01T00:00:00Z""#,
                "INVALID_DATA_POINT_FILTER_CIVIL_DATE_TIME_FORMAT",
            ),
            (
                "heart_rate.sample_time.physical_time >= 2026-11-01T00:00:00Z",
                "INVALID_DATA_POINT_FILTER_SYNTAX",
            ),
            (
                "heart_rate.sample_time.physical_time >=",
                "INVALID_DATA_POINT_FILTER_MISSING_TOKEN",
            ),
            (
                r#"heart_rate.sample_time.physical_time >= "2026"#,
                "INVALID_DATA_POINT_FILTER_SYNTAX",
            ),
            (
                r#"heart_rate.sample_time.physical_time >= "2026-11-01T00:00:00Z" OR heart_rate.sample_time.physical_time < "2026-11-02T00:00:00Z""#,
                "INVALID_DATA_POINT_FILTER",
            ),
            (
                r#"heart_rate.sample_time.physical_time >= "2026-11-01T00:00:00Z" AND"#,
                "INVALID_DATA_POINT_FILTER_MISSING_TOKEN",
            ),
        ];
        for (filter, reason) in cases {
            assert_eq!(parse(hr(), filter).unwrap_err().reason, reason, "{filter}");
        }
    }
}
