//! The config's top-level settings that are neither databases nor replicas: the restore-point
//! tiers (`l0-retention`, `levels`) and `logging`.

use std::time::Duration;

use serde_saphyr::Spanned;

use super::convert::{Ctx, line_of};
use super::raw::{RawLevel, RawLogging, S, Scalar};
use super::scalars;
use super::*;

impl Ctx<'_> {
    /// `l0-retention` and `levels`, over the defaults of [`Tiers`].
    pub(super) fn tiers(
        &self,
        l0: &S<Scalar>,
        levels: &S<Vec<Spanned<RawLevel>>>,
    ) -> Result<Tiers, ConfigError> {
        let mut t = Tiers::default();
        if let Some(d) = scalars::duration(self, l0, "l0-retention")? {
            t.l0_retention = d;
        }
        let Some(levels) = levels else {
            return Ok(t);
        };
        if levels.value.is_empty() || levels.value.len() > 9 {
            return Err(self.invalid(
                Some(line_of(levels)),
                "`levels` must list between 1 and 9 levels".into(),
            ));
        }
        let defaults = t.levels.clone();
        t.levels.clear();
        for (i, l) in levels.value.iter().enumerate() {
            let Some(interval) = scalars::duration(self, &l.value.interval, "interval")? else {
                return Err(self.invalid(
                    Some(line_of(l)),
                    format!("level {}: `interval` is required", i + 1),
                ));
            };
            if interval.is_zero() {
                return Err(self.invalid(
                    Some(line_of(l)),
                    format!("level {}: `interval` must not be 0", i + 1),
                ));
            }
            // Each level's files hold several of the level below: a level no wider than the
            // one below would merge nothing and break the promised spacing of restore points.
            if let Some(below) = t.levels.last()
                && interval <= below.interval
            {
                return Err(self.invalid(
                    Some(line_of(l)),
                    format!(
                        "level {}: `interval` {} must be longer than level {}'s {}",
                        i + 1,
                        humantime::format_duration(interval),
                        i,
                        humantime::format_duration(below.interval)
                    ),
                ));
            }
            let retention = scalars::duration(self, &l.value.retention, "retention")?
                .unwrap_or_else(|| defaults.get(i).map_or(Duration::ZERO, |d| d.retention));
            t.levels.push(LevelTier {
                interval,
                retention,
            });
        }
        Ok(t)
    }

    pub(super) fn logging(&self, l: &RawLogging) -> Result<LoggingConfig, ConfigError> {
        let mut out = LoggingConfig {
            stderr: l.stderr.unwrap_or(false),
            ..Default::default()
        };
        if let Some(level) = &l.level {
            out.level = match level.value.to_ascii_lowercase().as_str() {
                // Litestream's `trace`: memsync has nothing finer than debug (as -log-level).
                "debug" | "trace" => LogLevel::Debug,
                "info" => LogLevel::Info,
                "warn" | "warning" => LogLevel::Warn,
                "error" => LogLevel::Error,
                v => {
                    return Err(self.invalid(
                        Some(line_of(level)),
                        format!(
                            "logging level {v:?} is not one of trace, debug, info, warn, error"
                        ),
                    ));
                }
            };
        }
        if let Some(kind) = &l.kind {
            out.format = match kind.value.to_ascii_lowercase().as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                v => {
                    return Err(self.invalid(
                        Some(line_of(kind)),
                        format!("logging type {v:?} is not one of text, json"),
                    ));
                }
            };
        }
        Ok(out)
    }
}
