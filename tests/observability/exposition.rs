//! A strict reader of the Prometheus text exposition format, and one scrape of it.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::get;

/// One sample: name, labels, value.
#[derive(Debug, Clone)]
pub struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn valid_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':');
    chars.next().is_some_and(ok_first) && chars.all(|c| ok_first(c) || c.is_ascii_digit())
}

/// Parses `{a="x",b="y"}` (escapes `\\`, `\"`, `\n` only); returns the labels and the rest.
fn parse_labels(s: &str) -> (BTreeMap<String, String>, &str) {
    let mut labels = BTreeMap::new();
    let mut rest = s.strip_prefix('{').unwrap();
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return (labels, r);
        }
        let (name, r) = rest.split_once("=\"").expect("label name then =\"");
        assert!(valid_name(name, false), "bad label name {name:?}");
        let mut value = String::new();
        let mut chars = r.char_indices();
        let end = loop {
            let (i, c) = chars.next().expect("unterminated label value");
            match c {
                '"' => break i,
                '\\' => match chars.next().expect("escape at end").1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    o => panic!("bad escape \\{o}"),
                },
                '\n' => panic!("raw newline in a label value"),
                c => value.push(c),
            }
        };
        assert!(
            labels.insert(name.to_owned(), value).is_none(),
            "label {name} twice"
        );
        rest = &r[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// Parses the text exposition format strictly: every family has `# HELP` and `# TYPE` before
/// its samples, appears once, and its samples are together; names and labels are valid;
/// values are numbers; no sample twice; counters are not negative; histogram buckets have `le`.
pub fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashSet<String> = HashSet::new();
    let mut closed: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    assert!(text.ends_with('\n'), "no final newline");
    let mut enter = |family: &str, current: &mut Option<String>| {
        if current.as_deref() != Some(family) {
            if let Some(c) = current.take() {
                closed.insert(c);
            }
            assert!(!closed.contains(family), "family {family} split:\n{text}");
            *current = Some(family.to_owned());
        }
    };
    for line in text.lines() {
        assert!(!line.is_empty(), "empty line");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(valid_name(name, true), "bad name {name}");
            assert!(helps.insert(name.to_owned()), "HELP {name} twice");
            assert!(!types.contains_key(name), "HELP {name} after its TYPE");
            enter(name, &mut current);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "bad type {kind}"
            );
            assert!(helps.contains(name), "TYPE {name} without HELP");
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "TYPE {name} twice"
            );
            enter(name, &mut current);
        } else if line.starts_with('#') {
            continue;
        } else {
            let end = line.find(['{', ' ']).expect("sample without value");
            let name = &line[..end];
            assert!(valid_name(name, true), "bad sample name {name:?}");
            let (labels, rest) = if line[end..].starts_with('{') {
                parse_labels(&line[end..])
            } else {
                (BTreeMap::new(), &line[end..])
            };
            let mut fields = rest
                .strip_prefix(' ')
                .expect("space before value")
                .split(' ');
            let v = fields.next().unwrap();
            let value: f64 = match v {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                "NaN" => f64::NAN,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value {v:?} in {line}")),
            };
            if let Some(ts) = fields.next() {
                ts.parse::<i64>().expect("timestamp");
            }
            assert!(fields.next().is_none(), "trailing text in {line}");
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    let base = name.strip_suffix(s)?;
                    matches!(
                        types.get(base).map(String::as_str),
                        Some("histogram" | "summary")
                    )
                    .then_some(base)
                })
                .unwrap_or(name);
            assert!(types.contains_key(family), "sample {name} without TYPE");
            assert_eq!(
                current.as_deref(),
                Some(family),
                "{name} outside its family"
            );
            match types[family].as_str() {
                "counter" => assert!(value >= 0.0, "negative counter {line}"),
                "histogram" if name.ends_with("_bucket") => assert!(labels.contains_key("le")),
                _ => {}
            }
            assert!(
                seen.insert((name.to_owned(), labels.clone())),
                "{line} twice"
            );
            out.push(Sample {
                name: name.to_owned(),
                labels,
                value,
            });
        }
    }
    out
}

/// The scene's figures at one scrape.
pub struct Scrape(Vec<Sample>);

impl Scrape {
    pub fn take(port: u16) -> Scrape {
        let (code, body) = get(port, "/metrics").expect("metrics answer");
        assert_eq!(code, 200, "{body}");
        Scrape(parse_exposition(&body))
    }

    pub fn value(&self, name: &str, replica: Option<&str>) -> f64 {
        self.0
            .iter()
            .find(|s| s.name == name && s.labels.get("replica").map(String::as_str) == replica)
            .unwrap_or_else(|| panic!("no {name} {replica:?}"))
            .value
    }
}

#[test]
fn the_exposition_parser_refuses_what_prometheus_would() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{db=\"x\\\"y\"} 1\n";
    assert_eq!(parse_exposition(ok)[0].labels["db"], "x\"y");
    for bad in [
        // Samples of one family split by another.
        "# HELP a A.\n# TYPE a gauge\na 1\n# HELP b B.\n# TYPE b gauge\nb 1\na{x=\"1\"} 2\n",
        // No TYPE.
        "a 1\n",
        // A bad escape.
        "# HELP a A.\n# TYPE a gauge\na{x=\"\\t\"} 1\n",
        // Not a number.
        "# HELP a A.\n# TYPE a gauge\na one\n",
    ] {
        let r = std::panic::catch_unwind(|| parse_exposition(bad));
        assert!(r.is_err(), "accepted:\n{bad}");
    }
}
