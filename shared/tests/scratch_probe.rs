use chrono::{NaiveDate, NaiveDateTime, DateTime, Utc};
use fitlink_shared::domain::*;
#[test]
fn probe() {
    for t in ["9999-12-31T23:59:59-01:00", "0000-01-01T00:00:00+01:00", "0000-01-01T00:00:00Z"] {
        let r = UtcInstant::parse(t);
        println!("{t} -> {:?} -> {:?}", r.clone().map(|x| x.to_text()), r.map(|x| UtcInstant::parse(&x.to_text())));
    }
    for t in ["+12345-01-01", "-0001-01-01", "0000-01-01", "12345-01-01"] {
        println!("date {t} -> {:?}", parse_date_or_instant(t).map(format_instant));
    }
    for t in ["+262143-12-31T23:00:00", "+12345-01-01T00:00:00.000", "2019-11-07T12:00:58.000"] {
        println!("ndt {t} -> {:?}", NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f"));
    }
    let d = NaiveDate::from_ymd_opt(99999,1,1).unwrap();
    let s = serde_json::to_string(&d).unwrap();
    println!("nd {s} -> {:?}", serde_json::from_str::<NaiveDate>(&s));
    for t in ["\"9999-12-31T23:59:59-05:00\"", "\"+10000-01-01T00:00:00Z\"", "\"2026-11-01 05:30:00Z\"", "\"2026-11-01T05:30:00\""] {
        println!("dt {t} -> {:?}", serde_json::from_str::<DateTime<Utc>>(t));
    }
}
