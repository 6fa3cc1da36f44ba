//! Where each setting's value comes from: flag, environment variable, settings file. Every
//! source's value is checked, also one that a higher source overrides, and an error names
//! the source that holds the bad value.

use std::time::Duration;

use super::SettingsError;

/// What an older `memsync export` wrote where the API key was.
pub(super) const EXPORT_PLACEHOLDER: &str = "(set, not exported)";

pub(super) fn invalid(source_name: &str, value: &str, expected: &'static str) -> SettingsError {
    SettingsError::Invalid {
        source_name: source_name.to_owned(),
        value: value.to_owned(),
        expected,
    }
}

/// The environment and the settings file's name, for looking values up and naming them.
pub(super) struct Sources<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    file: String,
}

impl<'a> Sources<'a> {
    pub fn new(env: &'a dyn Fn(&str) -> Option<String>) -> Sources<'a> {
        Sources {
            env,
            file: "settings file".into(),
        }
    }

    /// From now on, file values are named after `file`.
    pub fn set_file(&mut self, file: &std::path::Path) {
        self.file = file.display().to_string();
    }

    /// How a settings-file key is named in messages.
    pub fn file_key(&self, key: &str) -> String {
        format!("{} key {key}", self.file)
    }

    /// An environment variable; empty counts as unset.
    pub fn var(&self, name: &str) -> Option<String> {
        (self.env)(name).filter(|v| !v.trim().is_empty())
    }

    pub fn flag(&self, name: &str) -> Result<Option<bool>, SettingsError> {
        self.var(name)
            .map(|v| match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(invalid(name, &v, "1/true/yes/on or 0/false/no/off")),
            })
            .transpose()
    }

    /// The values given for one setting, highest precedence first, each with its source's
    /// name: the flag, the variables in order, the file's `key`.
    pub fn layers(
        &self,
        flag: Option<(String, &str)>,
        vars: &[&str],
        file: Option<String>,
        key: &str,
    ) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> =
            flag.map(|(v, n)| (v, n.to_owned())).into_iter().collect();
        out.extend(
            vars.iter()
                .filter_map(|n| self.var(n).map(|v| (v, (*n).to_owned()))),
        );
        out.extend(file.map(|v| (v, format!("{} key {key}", self.file))));
        out
    }

    /// The highest source's value, after checking every source's: a bad value is an error
    /// wherever it sits.
    pub fn pick<T>(
        &self,
        layers: Vec<(String, String)>,
        expected: &'static str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, SettingsError> {
        let mut first = None;
        for (value, from) in layers {
            let v = parse(&value).ok_or_else(|| invalid(&from, &value, expected))?;
            first.get_or_insert(v);
        }
        Ok(first)
    }
}

pub(super) fn protocol(v: &str) -> Option<String> {
    let p = v.trim().to_ascii_lowercase();
    (p == "http" || p == "https").then_some(p)
}

pub(super) fn host(v: &str) -> Option<String> {
    let host = v.trim();
    let ipv6 = host
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<std::net::Ipv6Addr>()
        .is_ok();
    let bad = host.is_empty()
        || host.contains('/')
        || host.contains('@')
        || (host.contains(':') && !ipv6);
    // What the HTTP client will take as a host (no blanks, valid international names).
    let as_url = if ipv6 && !host.starts_with('[') {
        format!("http://[{host}]/")
    } else {
        format!("http://{host}/")
    };
    (!bad && url::Url::parse(&as_url).is_ok()).then(|| host.to_owned())
}

pub(super) fn port(v: &str) -> Option<u16> {
    v.trim().parse::<u16>().ok().filter(|&p| p != 0)
}

/// Any key but the placeholder an older export wrote, without the whitespace around it (a
/// key read from a file keeps its newline), and with no control character inside.
pub(super) fn api_key(v: &str) -> Option<String> {
    let k = v.trim();
    (k != EXPORT_PLACEHOLDER && !k.is_empty() && !k.chars().any(char::is_control))
        .then(|| k.to_owned())
}

pub(super) fn seconds(v: &str) -> Option<Duration> {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e7)
        .map(Duration::from_secs_f64)
}

pub(super) fn whole_seconds(v: &str) -> Option<Duration> {
    v.trim()
        .parse::<u64>()
        .ok()
        .filter(|&s| s > 0)
        .map(Duration::from_secs)
}

pub(super) fn positive(v: &str) -> Option<usize> {
    v.trim().parse::<usize>().ok().filter(|&n| n > 0)
}

pub(super) fn count(v: &str) -> Option<u32> {
    v.trim().parse::<u32>().ok()
}
