//! Structure-aware mutations of JSON documents: take a valid payload as a [`Value`], change a
//! few of its nodes (replace a value with one of another type or a hostile one, delete a key,
//! add one, swap two values, duplicate or reverse an array), then possibly cut the text at a
//! random byte. Shrinking removes mutations one by one, so a failure reports the smallest change
//! of a real payload that breaks the parser.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Which of n things: `pick % n` (shrinks toward the first).
type Pick = usize;

fn index(pick: Pick, len: usize) -> usize {
    pick % len.max(1)
}

/// One step of the way from a node to a child.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    At(usize),
}

#[derive(Debug, Clone)]
pub enum Mutation {
    /// The scalar (leaf) at the index becomes a hostile value of its own kind: a number another
    /// number (or a number in a string), a string another string.
    Tweak(Pick, Value, Value),
    /// The node at the index becomes the value.
    Replace(Pick, Value),
    /// The node at the index leaves its object or array.
    Delete(Pick),
    /// The nearest object at or above the node gets the key (a key of the document, so a member
    /// appears where it does not belong, or a fresh one) with the value.
    Insert(Pick, Pick, Value),
    /// Two nodes trade places (a string where a number was, an object where an array was).
    Swap(Pick, Pick),
    /// The nearest array at or above the node repeats one of its items.
    Duplicate(Pick, Pick),
    /// The nearest array at or above the node is reversed (times that run backwards).
    Reverse(Pick),
}

/// A few mutations, then possibly a cut of the text.
#[derive(Debug, Clone)]
pub struct Plan {
    pub mutations: Vec<Mutation>,
    pub cut: Option<Pick>,
}

impl Plan {
    /// Applies the plan to `doc` and returns the text that the parser gets.
    pub fn apply(&self, mut doc: Value) -> String {
        for mutation in &self.mutations {
            mutate(&mut doc, mutation);
        }
        let mut text = doc.to_string();
        if let Some(cut) = &self.cut {
            let mut at = index(*cut, text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            text.truncate(at);
        }
        text
    }
}

/// Numbers that break parsers: boundaries, out of range for the target type, negative,
/// fractional, and numbers sent as strings.
pub fn hostile_number() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(i64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(u64::MAX)),
        Just(json!(i32::MAX)),
        Just(json!(1e308)),
        Just(json!(-1e308)),
        Just(json!(5e-324)),
        Just(json!(0.5)),
        Just(json!(-0.0)),
        (-5i64..5).prop_map(|n| json!(n)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        Just(json!("9223372036854775807")),
        Just(json!("9223372036854775808")),
        Just(json!("-9223372036854775809")),
        Just(json!("-1")),
        Just(json!("72.5")),
        Just(json!("1e400")),
        any::<i64>().prop_map(|n| json!(n.to_string())),
    ]
    .boxed()
}

/// Strings that break parsers: empty, blank, not-a-number spellings, hostile dates, times,
/// durations and zones, control and bidi characters, a huge one.
pub fn hostile_string() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(json!("")),
        Just(json!(" ")),
        Just(json!("NaN")),
        Just(json!("Infinity")),
        Just(json!("-inf")),
        Just(json!("0x48")),
        Just(json!("-14400")),
        Just(json!("-14400s")),
        Just(json!("-64801s")),
        Just(json!("1e400s")),
        Just(json!("NaNs")),
        Just(json!("s")),
        Just(json!("2026-13-40")),
        Just(json!("2026-11-01")),
        Just(json!("2026-11-01 05:30")),
        Just(json!("2026-11-01T05:30:00")),
        Just(json!("2026-11-01T05:30:00Z")),
        Just(json!("2026-11-01T05:30:00.000")),
        Just(json!("9999-12-31T23:59:59-23:59")),
        Just(json!("0000-01-01T00:00:00+23:59")),
        Just(json!("+10000-01-01T00:00:00Z")),
        Just(json!("+262142-12-31T23:59:59.999")),
        Just(json!("-262143-01-01T00:00:00")),
        Just(json!("9999-12-31T23:59:59.999")),
        Just(json!("0000-01-01T00:00:00")),
        Just(json!("11/03/2026 10:00")),
        Just(json!("00:00:00")),
        Just(json!("24:00:00")),
        Just(json!("23:59:60")),
        Just(json!("25:61")),
        Just(json!("second")),
        Just(json!("minute")),
        Just(json!("America/New_York")),
        Just(json!("Mars/Olympus_Mons")),
        Just(json!("\u{0}\u{202e}ß\u{1F600}")),
        Just(json!("x".repeat(10_000))),
        "[ -~]{0,40}".prop_map(Value::String),
        any::<String>().prop_map(Value::String),
    ]
    .boxed()
}

/// Any hostile value: the numbers and strings above, the other JSON types, shapes found where
/// a scalar belongs, and nesting deeper than serde_json allows.
pub fn hostile_value() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => hostile_number(),
        3 => hostile_string(),
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => Just(json!({})),
        1 => Just(json!([])),
        1 => Just(json!({"year": 2026, "month": 13, "day": 40})),
        1 => Just(json!({"year": -262144, "month": 1, "day": 1})),
        1 => Just(json!([{"time": "23:59:59", "value": 1}])),
        1 => (1usize..300).prop_map(nested),
    ]
    .boxed()
}

/// An array nested `depth` deep (serde_json refuses more than 128 levels).
fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |inner, _| json!([inner]))
}

fn mutation(values: BoxedStrategy<Value>) -> impl Strategy<Value = Mutation> {
    prop_oneof![
        5 => (any::<Pick>(), hostile_number(), hostile_string())
            .prop_map(|(at, n, s)| Mutation::Tweak(at, n, s)),
        3 => (any::<Pick>(), values.clone()).prop_map(|(at, v)| Mutation::Replace(at, v)),
        3 => any::<Pick>().prop_map(Mutation::Delete),
        2 => (any::<Pick>(), any::<Pick>(), values)
            .prop_map(|(at, key, v)| Mutation::Insert(at, key, v)),
        2 => (any::<Pick>(), any::<Pick>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        1 => (any::<Pick>(), any::<Pick>()).prop_map(|(a, b)| Mutation::Duplicate(a, b)),
        1 => any::<Pick>().prop_map(Mutation::Reverse),
    ]
}

/// 1 to 3 mutations with values from `values`; one plan in four also cuts the text.
pub fn plan_with(values: BoxedStrategy<Value>) -> impl Strategy<Value = Plan> {
    (
        prop::collection::vec(mutation(values), 1..=3),
        prop::option::weighted(0.25, any::<Pick>()),
    )
        .prop_map(|(mutations, cut)| Plan { mutations, cut })
}

/// Bodies for a parser whose documented payload is `doc`: mostly mutations of it, sometimes
/// arbitrary text or bytes.
pub fn body(doc: Value) -> BoxedStrategy<String> {
    body_with(doc, hostile_value())
}

/// [`body`] with mutations drawing their values from `values`.
pub fn body_with(doc: Value, values: BoxedStrategy<Value>) -> BoxedStrategy<String> {
    prop_oneof![
        8 => plan_with(values).prop_map(move |plan| plan.apply(doc.clone())),
        1 => any::<String>(),
        1 => prop::collection::vec(any::<u8>(), 0..200)
            .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
    ]
    .boxed()
}

/// Every node's path, root first, in document order.
fn paths(doc: &Value) -> Vec<Vec<Step>> {
    fn walk(node: &Value, path: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
        out.push(path.clone());
        match node {
            Value::Object(map) => {
                for (key, child) in map {
                    path.push(Step::Key(key.clone()));
                    walk(child, path, out);
                    path.pop();
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    path.push(Step::At(i));
                    walk(child, path, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(doc, &mut Vec::new(), &mut out);
    out
}

fn keys(doc: &Value) -> Vec<String> {
    let mut keys = Vec::new();
    for path in paths(doc) {
        if let Some(Step::Key(key)) = path.last() {
            keys.push(key.clone());
        }
    }
    keys
}

fn node_mut<'a>(doc: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    path.iter().try_fold(doc, |node, step| match step {
        Step::Key(key) => node.get_mut(key.as_str()),
        Step::At(i) => node.get_mut(*i),
    })
}

fn node<'a>(doc: &'a Value, path: &[Step]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |node, step| match step {
        Step::Key(key) => node.get(key.as_str()),
        Step::At(i) => node.get(*i),
    })
}

/// The path of the nearest node at or above `path` that satisfies `is`.
fn nearest(doc: &Value, path: &[Step], is: impl Fn(&Value) -> bool) -> Option<Vec<Step>> {
    (0..=path.len())
        .rev()
        .map(|len| &path[..len])
        .find(|p| node(doc, p).is_some_and(&is))
        .map(<[Step]>::to_vec)
}

fn mutate(doc: &mut Value, mutation: &Mutation) {
    let all = paths(doc);
    let pick = |at: &Pick| all[index(*at, all.len())].clone();
    match mutation {
        Mutation::Tweak(at, number, string) => {
            let leaves: Vec<&Vec<Step>> = all
                .iter()
                .filter(|p| node(doc, p).is_some_and(|v| !v.is_object() && !v.is_array()))
                .collect();
            if leaves.is_empty() {
                return;
            }
            let path = leaves[index(*at, leaves.len())].clone();
            if let Some(node) = node_mut(doc, &path) {
                *node = if node.is_string() { string } else { number }.clone();
            }
        }
        Mutation::Replace(at, value) => {
            if let Some(node) = node_mut(doc, &pick(at)) {
                *node = value.clone();
            }
        }
        Mutation::Delete(at) => {
            let path = pick(at);
            let Some((last, parent)) = path.split_last() else {
                *doc = Value::Null;
                return;
            };
            match (node_mut(doc, parent), last) {
                (Some(Value::Object(map)), Step::Key(key)) => {
                    map.remove(key);
                }
                (Some(Value::Array(items)), Step::At(i)) if *i < items.len() => {
                    items.remove(*i);
                }
                _ => {}
            }
        }
        Mutation::Insert(at, key, value) => {
            let names = keys(doc);
            let name = if names.is_empty() {
                "dataPoints".to_owned()
            } else {
                names[index(*key, names.len())].clone()
            };
            let Some(target) = nearest(doc, &pick(at), Value::is_object) else {
                let mut map = Map::new();
                map.insert(name, value.clone());
                *doc = Value::Object(map);
                return;
            };
            if let Some(Value::Object(map)) = node_mut(doc, &target) {
                map.insert(name, value.clone());
            }
        }
        Mutation::Swap(a, b) => {
            let (a, b) = (pick(a), pick(b));
            // A node cannot trade places with its own ancestor.
            if a.starts_with(&b) || b.starts_with(&a) {
                return;
            }
            let (Some(va), Some(vb)) = (node(doc, &a).cloned(), node(doc, &b).cloned()) else {
                return;
            };
            if let Some(n) = node_mut(doc, &a) {
                *n = vb;
            }
            if let Some(n) = node_mut(doc, &b) {
                *n = va;
            }
        }
        Mutation::Duplicate(at, item) => {
            if let Some(target) = nearest(doc, &pick(at), |v| {
                v.as_array().is_some_and(|a| !a.is_empty())
            }) && let Some(Value::Array(items)) = node_mut(doc, &target)
            {
                let copy = items[index(*item, items.len())].clone();
                items.push(copy);
            }
        }
        Mutation::Reverse(at) => {
            if let Some(target) = nearest(doc, &pick(at), Value::is_array)
                && let Some(Value::Array(items)) = node_mut(doc, &target)
            {
                items.reverse();
            }
        }
    }
}

#[test]
fn mutations_change_what_they_say() {
    let doc = json!({"a": [1, 2, 3], "b": {"c": "x"}});
    // Paths in order: root, a, a[0], a[1], a[2], b, b.c.
    let mut d = doc.clone();
    mutate(&mut d, &Mutation::Delete(2));
    assert_eq!(d, json!({"a": [2, 3], "b": {"c": "x"}}));
    let mut d = doc.clone();
    mutate(&mut d, &Mutation::Swap(1, 6));
    assert_eq!(d, json!({"a": "x", "b": {"c": [1, 2, 3]}}));
    let mut d = doc.clone();
    mutate(&mut d, &Mutation::Reverse(3));
    assert_eq!(d, json!({"a": [3, 2, 1], "b": {"c": "x"}}));
    let mut d = doc.clone();
    mutate(&mut d, &Mutation::Insert(6, 0, json!(7)));
    assert_eq!(d, json!({"a": [1, 2, 3], "b": {"c": "x", "a": 7}}));
    let plan = Plan {
        mutations: vec![Mutation::Replace(6, json!(null))],
        cut: Some(10),
    };
    assert_eq!(plan.apply(doc), r#"{"a":[1,2,"#);
}
