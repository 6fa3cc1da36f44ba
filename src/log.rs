//! Logging through `tracing`: memsync's own events (target `memsync::*`) become one line each,
//! `<RFC 3339 time, ms> <LEVEL> <message>` (then any structured fields as ` key=value`), or one
//! JSON object `{"time":..,"level":..,"msg":.., fields...}` when asked for, on stdout or stderr
//! (the config's `logging` section, as Litestream). Events of dependencies (hyper, object_store)
//! are not shown: their debug output is not what a user of `-log-level debug` is after.
//!
//! The level can change while running (the config is read after the command line), so it sits
//! behind a `reload` layer; where lines go and their shape are two flags read per event.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{Layer, Registry, reload};

static TO_STDOUT: AtomicBool = AtomicBool::new(false);
static JSON: AtomicBool = AtomicBool::new(false);
static LEVEL: OnceLock<reload::Handle<LevelFilter, Registry>> = OnceLock::new();
/// Where lines go instead of stdout or stderr, when set (a Windows service has neither).
static FILE: OnceLock<std::sync::Mutex<std::fs::File>> = OnceLock::new();

/// Past this size a log file is moved to `<name>.1` (replacing the one before) when opened.
#[cfg_attr(not(windows), allow(dead_code))]
const ROTATE_BYTES: u64 = 10 << 20;

/// Sends every line to `path` from now on (appended; the directory is created; a file past
/// 10 MB is first moved to `<path>.1`).
#[cfg_attr(not(windows), allow(dead_code))]
pub fn to_file(path: &std::path::Path) -> std::io::Result<()> {
    init();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if std::fs::metadata(path).is_ok_and(|m| m.len() > ROTATE_BYTES) {
        let mut old = path.as_os_str().to_owned();
        old.push(".1");
        std::fs::rename(path, old)?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let _ = FILE.set(std::sync::Mutex::new(f));
    Ok(())
}

/// The level a process starts with.
pub const DEFAULT_LEVEL: LevelFilter = LevelFilter::INFO;

/// Line shape: `text` (the default) or `json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `<time> <LEVEL> <message>`.
    Text,
    /// One JSON object per line.
    Json,
}

impl Format {
    /// Parses `text|human|json` (Litestream's `logging.type` says `text` or `json`).
    pub fn parse(s: &str) -> Option<Format> {
        match s.to_ascii_lowercase().as_str() {
            "text" | "human" => Some(Format::Text),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// Installs the process's subscriber (once; later calls do nothing): level info, text, stderr.
/// A library user that installed its own subscriber keeps it.
pub fn init() {
    LEVEL.get_or_init(|| {
        let (filter, handle) = reload::Layer::new(DEFAULT_LEVEL);
        let subscriber = Registry::default().with(filter).with(Lines);
        let _ = tracing::subscriber::set_global_default(subscriber);
        handle
    });
}

/// Where and how lines are written (the config's `logging.stderr` and `logging.type`).
pub fn set_output(stdout: bool, json: bool) {
    init();
    TO_STDOUT.store(stdout, Ordering::Relaxed);
    JSON.store(json, Ordering::Relaxed);
}

/// Sets the line shape, keeping where lines go.
/// Whether log lines are JSON (`-log-format json`): other lines a command echoes to the log's
/// stream follow suit.
pub fn is_json() -> bool {
    JSON.load(Ordering::Relaxed)
}

pub fn set_format(format: Format) {
    init();
    JSON.store(format == Format::Json, Ordering::Relaxed);
}

/// Sets the most verbose level shown.
pub fn set_filter(level: LevelFilter) {
    init();
    if let Some(h) = LEVEL.get() {
        let _ = h.reload(level);
    }
}

/// Verbosity as a number: 0 error, 1 warn, 2 info, 3 debug (kept for older call sites).
pub fn set_level(level: u8) {
    set_filter(match level {
        0 => LevelFilter::ERROR,
        1 => LevelFilter::WARN,
        2 => LevelFilter::INFO,
        _ => LevelFilter::DEBUG,
    });
}

/// Parses `error|warn|info|debug|trace` (`warning` too). `trace` means debug: memsync has no
/// finer events, and dependencies' are not shown.
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    match s.to_ascii_lowercase().as_str() {
        "error" => Some(LevelFilter::ERROR),
        "warn" | "warning" => Some(LevelFilter::WARN),
        "info" => Some(LevelFilter::INFO),
        "debug" | "trace" => Some(LevelFilter::DEBUG),
        _ => None,
    }
}

/// The layer that writes lines.
struct Lines;

fn ours(m: &Metadata<'_>) -> bool {
    m.target() == "memsync" || m.target().starts_with("memsync::")
}

impl<S: Subscriber> Layer<S> for Lines {
    fn register_callsite(&self, m: &'static Metadata<'static>) -> Interest {
        if ours(m) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, m: &Metadata<'_>, _: Context<'_, S>) -> bool {
        ours(m)
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let line = format_line(
            &now,
            *event.metadata().level(),
            event,
            JSON.load(Ordering::Relaxed),
        );
        if let Some(f) = FILE.get() {
            let _ = writeln!(f.lock().unwrap_or_else(|p| p.into_inner()), "{line}");
        } else if TO_STDOUT.load(Ordering::Relaxed) {
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        } else {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        }
    }
}

/// What an event says: its message and its other fields, in order.
#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, f: &Field, value: &str) {
        if f.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.rest.push((f.name(), value.to_owned()));
        }
    }

    fn record_debug(&mut self, f: &Field, value: &dyn std::fmt::Debug) {
        if f.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.rest.push((f.name(), format!("{value:?}")));
        }
    }
}

/// Anything carrying fields: an event, or (in tests) a ready list.
trait Record {
    fn record(&self, v: &mut Fields);
}

impl Record for Event<'_> {
    fn record(&self, v: &mut Fields) {
        Event::record(self, v);
    }
}

fn format_line(now: &str, level: Level, event: &impl Record, json: bool) -> String {
    let mut f = Fields::default();
    event.record(&mut f);
    let mut line = String::with_capacity(64 + f.message.len());
    if json {
        let s = |x: &str| serde_json::Value::from(x).to_string();
        let _ = write!(
            line,
            "{{\"time\":{},\"level\":{},\"msg\":{}",
            s(now),
            s(level.as_str()),
            s(&f.message)
        );
        for (k, v) in &f.rest {
            let _ = write!(line, ",{}:{}", s(k), s(v));
        }
        line.push('}');
    } else {
        let _ = write!(line, "{now} {level} {}", f.message);
        for (k, v) in &f.rest {
            let _ = write!(line, " {k}={v}");
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Given(&'static str, Vec<(&'static str, &'static str)>);

    impl Record for Given {
        fn record(&self, v: &mut Fields) {
            v.message = self.0.to_owned();
            v.rest = self.1.iter().map(|(k, x)| (*k, x.to_string())).collect();
        }
    }

    const NOW: &str = "2026-01-02T03:04:05.678Z";

    #[test]
    fn text_lines_keep_their_shape() {
        let g = Given("replicating 1 database(s)", vec![]);
        assert_eq!(
            format_line(NOW, Level::INFO, &g, false),
            "2026-01-02T03:04:05.678Z INFO replicating 1 database(s)"
        );
        let g = Given("shipped", vec![("db", "/a b.db")]);
        assert_eq!(
            format_line(NOW, Level::WARN, &g, false),
            "2026-01-02T03:04:05.678Z WARN shipped db=/a b.db"
        );
    }

    #[test]
    fn json_lines_escape_and_carry_fields() {
        let g = Given("a \"quoted\"\nline\u{1}", vec![("db", "x")]);
        let line = format_line(NOW, Level::ERROR, &g, true);
        assert_eq!(
            line,
            r#"{"time":"2026-01-02T03:04:05.678Z","level":"ERROR","msg":"a \"quoted\"\nline\u0001","db":"x"}"#
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["msg"], "a \"quoted\"\nline\u{1}");
    }

    #[test]
    fn levels_and_formats_parse() {
        assert_eq!(parse_level("error"), Some(LevelFilter::ERROR));
        assert_eq!(parse_level("WARNING"), Some(LevelFilter::WARN));
        assert_eq!(parse_level("warn"), Some(LevelFilter::WARN));
        assert_eq!(parse_level("Info"), Some(LevelFilter::INFO));
        assert_eq!(parse_level("debug"), Some(LevelFilter::DEBUG));
        assert_eq!(parse_level("trace"), Some(LevelFilter::DEBUG));
        assert_eq!(parse_level("loud"), None);
        assert_eq!(parse_level(""), None);
        assert_eq!(Format::parse("json"), Some(Format::Json));
        assert_eq!(Format::parse("TEXT"), Some(Format::Text));
        assert_eq!(Format::parse("human"), Some(Format::Text));
        assert_eq!(Format::parse("yaml"), None);
    }

    #[test]
    fn only_memsync_events_are_shown() {
        use tracing::callsite::Identifier;
        struct Cs;
        impl tracing::callsite::Callsite for Cs {
            fn set_interest(&self, _: Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unreachable!()
            }
        }
        static CS: Cs = Cs;
        let meta = |target: &'static str| {
            Metadata::new(
                "e",
                target,
                Level::INFO,
                None,
                None,
                None,
                tracing::field::FieldSet::new(&[], Identifier(&CS)),
                tracing::metadata::Kind::EVENT,
            )
        };
        assert!(ours(&meta("memsync")));
        assert!(ours(&meta("memsync::replicate::shipper")));
        assert!(!ours(&meta("memsyncx")));
        assert!(!ours(&meta("hyper_util::client")));
    }
}
