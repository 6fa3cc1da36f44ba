//! The log flags every command takes, `LOG_LEVEL` and `LOG_FORMAT`. `replicate` applies them over its
//! config's `logging` section; the other commands over the defaults (info, text, stderr).

use clap::Args;
use tracing::level_filters::LevelFilter;

use super::error::CliError;
use crate::log::Format;

#[derive(Debug, Args)]
pub(super) struct LogArgs {
    /// Log level: error, warn, info, debug (default: LOG_LEVEL, then the config, then info).
    #[arg(long = "log-level", global = true)]
    log_level: Option<String>,
    /// Log line format: text or json (default: LOG_FORMAT, then the config's `logging.type`,
    /// then text).
    #[arg(long = "log-format", global = true)]
    log_format: Option<String>,
}

/// What the command line and the environment say about logging; `None` leaves the default (or
/// the config's setting) in place.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Overrides {
    level: Option<LevelFilter>,
    format: Option<Format>,
    /// A `LOG_LEVEL` that names no level: an error for the long-running commands, a warning
    /// for the others (a variable of that common name may be set for another program).
    bad_env: Option<String>,
}

impl Overrides {
    /// `-log-level` wins over `LOG_LEVEL`, `-log-format` over `LOG_FORMAT` (`env_format`); a
    /// bad flag value or `LOG_FORMAT` is an error.
    pub(super) fn from_args(
        a: &LogArgs,
        env: Option<String>,
        env_format: Option<String>,
    ) -> Result<Overrides, CliError> {
        let flag = match &a.log_level {
            Some(l) => {
                Some(crate::log::parse_level(l).ok_or_else(|| CliError::LogLevel(l.clone()))?)
            }
            None => None,
        };
        let (env_level, bad_env) = match env.filter(|v| !v.is_empty()) {
            Some(v) => match crate::log::parse_level(&v) {
                Some(l) => (Some(l), None),
                None => (None, Some(v)),
            },
            None => (None, None),
        };
        let format = match (&a.log_format, env_format.filter(|v| !v.trim().is_empty())) {
            (Some(f), _) => Some(Format::parse(f).ok_or_else(|| CliError::LogFormat(f.clone()))?),
            (None, Some(v)) => Some(Format::parse(v.trim()).ok_or(CliError::EnvLogFormat(v))?),
            (None, None) => None,
        };
        Ok(Overrides {
            level: flag.or(env_level),
            format,
            bad_env: bad_env.filter(|_| flag.is_none()),
        })
    }

    /// Sets what was asked for.
    pub(super) fn apply(&self) {
        if let Some(l) = self.level {
            crate::log::set_filter(l);
        }
        if let Some(f) = self.format {
            crate::log::set_format(f);
        }
    }

    /// Says that a `LOG_LEVEL` naming no level is ignored.
    pub(super) fn warn_bad_env(&self) {
        if let Some(v) = &self.bad_env {
            crate::stdout::errln!(
                "memsync: warning: LOG_LEVEL={v:?} names no log level (error, warn, info, debug, trace); ignored"
            );
        }
    }

    /// Fails on a `LOG_LEVEL` that names no level.
    pub(super) fn check_env(&self) -> Result<(), CliError> {
        match &self.bad_env {
            Some(v) => Err(CliError::EnvLogLevel(v.clone())),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(level: Option<&str>, format: Option<&str>) -> LogArgs {
        LogArgs {
            log_level: level.map(Into::into),
            log_format: format.map(Into::into),
        }
    }

    #[test]
    fn the_flag_wins_over_the_environment() {
        let o =
            Overrides::from_args(&args(Some("warn"), None), Some("debug".into()), None).unwrap();
        assert_eq!(o.level, Some(LevelFilter::WARN));
        let o = Overrides::from_args(&args(None, None), Some("debug".into()), None).unwrap();
        assert_eq!(o.level, Some(LevelFilter::DEBUG));
        assert_eq!(
            Overrides::from_args(&args(None, None), None, None).unwrap(),
            Overrides::default()
        );
        let o = Overrides::from_args(&args(None, Some("JSON")), None, None).unwrap();
        assert_eq!(o.format, Some(Format::Json));
    }

    #[test]
    fn bad_values() {
        let e = Overrides::from_args(&args(Some("loud"), None), None, None).unwrap_err();
        assert_eq!(e.to_string(), "unknown log level \"loud\"");
        assert!(Overrides::from_args(&args(None, Some("xml")), None, None).is_err());
        // A bad LOG_LEVEL only fails the commands that check it, unless the flag overrides it.
        let o = Overrides::from_args(&args(None, None), Some("loud".into()), None).unwrap();
        assert_eq!(o.level, None);
        assert_eq!(
            o.check_env().unwrap_err().to_string(),
            "LOG_LEVEL=\"loud\": unknown log level (error, warn, info, debug, trace)"
        );
        let o = Overrides::from_args(&args(Some("info"), None), Some("loud".into()), None).unwrap();
        assert!(o.check_env().is_ok());
    }

    #[test]
    fn log_format_from_the_environment_under_the_flag() {
        let o = Overrides::from_args(&args(None, None), None, Some("json".into())).unwrap();
        assert_eq!(o.format, Some(Format::Json));
        let o = Overrides::from_args(&args(None, Some("text")), None, Some("json".into())).unwrap();
        assert_eq!(o.format, Some(Format::Text));
        let e = Overrides::from_args(&args(None, None), None, Some("xml".into())).unwrap_err();
        assert_eq!(
            e.to_string(),
            "LOG_FORMAT=\"xml\": unknown log format (text or json)"
        );
        // A flag makes a bad variable irrelevant.
        assert!(Overrides::from_args(&args(None, Some("json")), None, Some("xml".into())).is_ok());
    }
}
