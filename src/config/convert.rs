//! Conversion of the raw serde structs into the typed config, applying global
//! (top-level) replica defaults and built-in defaults.

use std::time::Duration;

use serde_saphyr::Spanned;

use super::dir::DirKeys;
use super::raw::{RawConfig, RawDb, RawReplica, yaml_error};
use super::scalars;
use super::url::{is_url, kind_of_type, parse_target};
use super::*;

pub(crate) struct Ctx<'a> {
    pub file: &'a Path,
    pub cwd: &'a Path,
    pub home: Option<String>,
}

/// Lines of each db entry and of its replicas, for validation messages.
pub(crate) struct DbSpan {
    pub line: u64,
    pub replicas: Vec<u64>,
}

/// Deserializes `text` and converts it; returns the config and the lines of its entries.
pub(crate) fn parse_and_convert(
    text: &str,
    ctx: &Ctx,
) -> Result<(Config, Vec<DbSpan>), ConfigError> {
    let raw: Option<RawConfig> =
        serde_saphyr::from_str(text).map_err(|e| yaml_error(&e, ctx.file))?;
    let Some(raw) = raw else {
        return Err(ctx.invalid(None, "no databases configured".to_owned()));
    };
    ctx.convert(raw)
}

pub(super) fn line_of<T>(s: &Spanned<T>) -> u64 {
    s.referenced.line()
}

/// Global replica defaults from the top level.
struct Globals {
    sync_interval: Option<Duration>,
    retention: Option<Duration>,
    retention_check_interval: Option<Duration>,
    snapshot_interval: Option<Duration>,
    bucket: Option<String>,
    region: Option<String>,
    endpoint: Option<String>,
    force_path_style: Option<bool>,
    skip_verify: Option<bool>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
}

impl Ctx<'_> {
    pub(super) fn invalid(&self, line: Option<u64>, what: String) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            line,
            what,
        }
    }

    fn convert(&self, raw: RawConfig) -> Result<(Config, Vec<DbSpan>), ConfigError> {
        let logging = match &raw.logging {
            Some(l) => self.logging(l)?,
            None => LoggingConfig::default(),
        };
        let tiers = self.tiers(&raw.l0_retention, &raw.levels)?;
        let g = Globals {
            sync_interval: scalars::duration(self, &raw.sync_interval, "sync-interval")?,
            retention: scalars::duration(self, &raw.retention, "retention")?,
            retention_check_interval: scalars::duration(
                self,
                &raw.retention_check_interval,
                "retention-check-interval",
            )?,
            snapshot_interval: scalars::duration(
                self,
                &raw.snapshot_interval,
                "snapshot-interval",
            )?,
            bucket: raw.bucket,
            region: raw.region,
            endpoint: raw.endpoint,
            force_path_style: raw.force_path_style,
            skip_verify: raw.skip_verify,
            access_key_id: raw.access_key_id,
            secret_access_key: raw.secret_access_key,
        };
        let mut dbs = Vec::new();
        let mut dirs = Vec::new();
        let mut spans = Vec::new();
        for (i, db) in raw.dbs.unwrap_or_default().into_iter().enumerate() {
            let (db, span, dir) = self.db(i, db, &g)?;
            match dir {
                Some((pattern, recursive, watch)) => dirs.push(DirConfig {
                    dir: db.path.clone(),
                    pattern,
                    recursive,
                    watch,
                    template: db,
                    line: span.line,
                }),
                None => {
                    dbs.push(db);
                    spans.push(span);
                }
            }
        }
        let exec = match raw.exec {
            Some(e) => match crate::exec::split(&e.value) {
                Ok(_) => Some(e.value),
                Err(why) => return Err(self.invalid(Some(line_of(&e)), format!("`exec`: {why}"))),
            },
            None => None,
        };
        let config = Config {
            dbs,
            dirs,
            addr: raw.addr,
            logging,
            source: self.file.to_path_buf(),
            tiers,
            exec,
        };
        Ok((config, spans))
    }

    fn db(
        &self,
        i: usize,
        db: Spanned<RawDb>,
        g: &Globals,
    ) -> Result<(DbConfig, DbSpan, Option<DirKeys>), ConfigError> {
        let line = line_of(&db);
        let raw = db.value;
        let dir =
            super::dir::keys(i, line, &raw).map_err(|(l, what)| self.invalid(Some(l), what))?;
        let path = match (&raw.path, &raw.dir) {
            (Some(p), None) => scalars::path(self, p, "path")?,
            (None, Some(d)) => scalars::path(self, d, "dir")?,
            (Some(_), Some(d)) => {
                return Err(self.invalid(
                    Some(line_of(d)),
                    format!("dbs[{i}] has both `path` and `dir`; use one"),
                ));
            }
            (None, None) => {
                return Err(self.invalid(
                    Some(line),
                    format!("dbs[{i}] has no `path` (or `dir` and `pattern`)"),
                ));
            }
        };
        let meta_path = raw
            .meta_path
            .as_ref()
            .map(|p| scalars::path(self, p, "meta-path"))
            .transpose()?;
        let replicas = match (raw.replicas, raw.replica) {
            (Some(_), Some(r)) => {
                return Err(self.invalid(
                    Some(line_of(&r)),
                    format!(
                        "db {} has both `replica` and `replicas`; use one",
                        path.display()
                    ),
                ));
            }
            (Some(list), None) => list,
            (None, Some(r)) => vec![r],
            (None, None) => Vec::new(),
        };
        if replicas.is_empty() {
            return Err(self.invalid(
                Some(line),
                format!(
                    "db {} has no replicas (add `replica:` or `replicas:`)",
                    path.display()
                ),
            ));
        }
        let span = DbSpan {
            line,
            replicas: replicas.iter().map(line_of).collect(),
        };
        let replicas = replicas
            .into_iter()
            .map(|r| self.replica(r, g))
            .collect::<Result<_, _>>()?;
        let d = |v, key, default| {
            Ok::<_, ConfigError>(scalars::duration(self, v, key)?.unwrap_or(default))
        };
        let db = DbConfig {
            monitor_interval: d(
                &raw.monitor_interval,
                "monitor-interval",
                DEFAULT_MONITOR_INTERVAL,
            )?,
            checkpoint_interval: d(
                &raw.checkpoint_interval,
                "checkpoint-interval",
                DEFAULT_CHECKPOINT_INTERVAL,
            )?,
            busy_timeout: d(&raw.busy_timeout, "busy-timeout", DEFAULT_BUSY_TIMEOUT)?,
            min_checkpoint_page_count: scalars::count(
                self,
                &raw.min_checkpoint_page_count,
                "min-checkpoint-page-count",
                DEFAULT_MIN_CHECKPOINT_PAGE_COUNT,
            )?,
            truncate_page_n: scalars::count(
                self,
                &raw.truncate_page_n,
                "truncate-page-n",
                DEFAULT_TRUNCATE_PAGE_N,
            )?,
            spool_budget: scalars::size(
                self,
                &raw.spool_budget,
                "spool-budget",
                DEFAULT_SPOOL_BUDGET,
            )?,
            path,
            meta_path,
            replicas,
            found_in_dir: false,
        };
        Ok((db, span, dir))
    }

    /// Litestream's `webdav-url`, `webdav-username` and `webdav-password`, as the one `url`
    /// memsync reads (the user and password in it are sent as Basic auth).
    fn fold_webdav_keys(&self, r: &mut RawReplica) -> Result<(), ConfigError> {
        let Some(w) = r.webdav_url.take() else {
            if r.webdav_username.is_some() || r.webdav_password.is_some() {
                return Err(self.invalid(
                    None,
                    "`webdav-username` or `webdav-password` without `webdav-url`".into(),
                ));
            }
            return Ok(());
        };
        let line = Some(line_of(&w));
        if r.url.is_some() || r.path.is_some() {
            return Err(self.invalid(
                line,
                "replica has `webdav-url` and `url` or `path`: give the whole address in `webdav-url`"
                    .into(),
            ));
        }
        let bad = |msg: String| ConfigError::BadUrl {
            file: Some(self.file.to_path_buf()),
            line,
            url: w.value.clone(),
            msg,
        };
        let mut u = ::url::Url::parse(&w.value).map_err(|e| bad(e.to_string()))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(bad(
                "`webdav-url` takes an http:// or https:// address".into()
            ));
        }
        let cannot = |_| bad("this address takes no user or password".into());
        if let Some(user) = r.webdav_username.take() {
            u.set_username(&user).map_err(cannot)?;
        }
        if let Some(password) = r.webdav_password.take() {
            u.set_password(Some(&password)).map_err(cannot)?;
        }
        let mut spanned = w.clone();
        spanned.value = u.to_string();
        r.url = Some(spanned);
        Ok(())
    }

    fn replica(&self, r: Spanned<RawReplica>, g: &Globals) -> Result<ReplicaConfig, ConfigError> {
        let line = Some(line_of(&r));
        let mut r = r.value;
        self.fold_webdav_keys(&mut r)?;
        // `file:/abs` as `file:///abs` from here on.
        if let Some(url) = r.url.as_mut() {
            let normal = super::url::file_colon(&url.value)
                .map_err(|msg| ConfigError::BadUrl {
                    file: Some(self.file.to_path_buf()),
                    line: Some(line_of(url)),
                    url: url.value.clone(),
                    msg,
                })?
                .into_owned();
            url.value = normal;
        }
        if let (Some(_), Some(url)) = (&r.path, &r.url) {
            return Err(self.invalid(
                Some(line_of(url)),
                "replica has both `path` and `url`; use one".into(),
            ));
        }
        let kind = match (&r.kind, &r.url) {
            (Some(t), url) => {
                let kind = kind_of_type(&t.value).map_err(|m| self.invalid(Some(line_of(t)), m))?;
                if let Some(url) = url.as_ref().filter(|u| is_url(&u.value)) {
                    let scheme = url.value.split("://").next().unwrap_or_default();
                    if kind_of_type(scheme).ok() != Some(kind) {
                        return Err(self.invalid(
                            Some(line_of(t)),
                            format!(
                                "replica type {:?} does not match url {:?}",
                                t.value, url.value
                            ),
                        ));
                    }
                }
                kind
            }
            (None, Some(url)) if is_url(&url.value) => {
                url.value.split("://").next().unwrap_or_default()
            }
            (None, _) if r.bucket.is_some() => "s3",
            (None, _) => "file",
        };
        let mut target = match &r.url {
            Some(url) => {
                let bad = |msg| ConfigError::BadUrl {
                    file: Some(self.file.to_path_buf()),
                    line: Some(line_of(url)),
                    url: url.value.clone(),
                    msg,
                };
                if !is_url(&url.value) {
                    return Err(bad(
                        "expected scheme://... (use `path:` for a directory)".into()
                    ));
                }
                parse_target(&url.value, self.cwd, self.home.as_deref()).map_err(bad)?
            }
            None => match kind_of_type(kind).unwrap_or("file") {
                "file" => match &r.path {
                    Some(p) => ReplicaTarget::File {
                        path: scalars::path(self, p, "path")?,
                    },
                    None => {
                        return Err(
                            self.invalid(line, "file replica has no `path` or `url`".into())
                        );
                    }
                },
                "s3" => {
                    if let Some(p) = r.path.as_ref().filter(|p| is_url(&p.value)) {
                        scalars::path(self, p, "path")?; // reports the URL-in-path error
                    }
                    let Some(bucket) = r
                        .bucket
                        .as_ref()
                        .map(|b| b.value.clone())
                        .or_else(|| g.bucket.clone())
                    else {
                        return Err(self.invalid(
                            line,
                            "s3 replica has no `bucket` (or `url: s3://BUCKET/PATH`)".into(),
                        ));
                    };
                    ReplicaTarget::S3 {
                        bucket,
                        path: r
                            .path
                            .as_ref()
                            .map(|p| p.value.trim_matches('/').to_string())
                            .unwrap_or_default(),
                        endpoint: None,
                        region: None,
                        force_path_style: false,
                        skip_verify: false,
                        access_key_id: None,
                        secret_access_key: None,
                    }
                }
                _ => {
                    return Err(
                        self.invalid(line, "http replica needs `url: http(s)://HOST/PATH`".into())
                    );
                }
            },
        };
        if let ReplicaTarget::S3 {
            bucket,
            endpoint,
            region,
            force_path_style,
            skip_verify,
            access_key_id,
            secret_access_key,
            ..
        } = &mut target
        {
            if let Some(b) = r
                .bucket
                .as_ref()
                .filter(|b| r.url.is_some() && b.value != *bucket)
            {
                return Err(self.invalid(
                    Some(line_of(b)),
                    format!(
                        "`bucket` {:?} conflicts with the bucket {bucket:?} in `url`",
                        b.value
                    ),
                ));
            }
            if bucket.is_empty() {
                return Err(self.invalid(line, "s3 replica has an empty `bucket`".into()));
            }
            *endpoint = endpoint.take().or(r.endpoint).or(g.endpoint.clone());
            *region = region.take().or(r.region).or(g.region.clone());
            *force_path_style |= r.force_path_style.or(g.force_path_style).unwrap_or(false);
            *skip_verify |= r.skip_verify.or(g.skip_verify).unwrap_or(false);
            *access_key_id = r.access_key_id.or(g.access_key_id.clone());
            *secret_access_key = r.secret_access_key.or(g.secret_access_key.clone());
        } else {
            let s3_only = [
                ("bucket", r.bucket.is_some()),
                ("endpoint", r.endpoint.is_some()),
                ("region", r.region.is_some()),
                ("force-path-style", r.force_path_style.is_some()),
                ("skip-verify", r.skip_verify.is_some()),
                ("access-key-id", r.access_key_id.is_some()),
                ("secret-access-key", r.secret_access_key.is_some()),
            ];
            if let Some((key, _)) = s3_only.iter().find(|(_, set)| *set) {
                return Err(self.invalid(
                    line,
                    format!(
                        "`{key}` only applies to s3 replicas, not {} replicas",
                        target.kind()
                    ),
                ));
            }
        }
        let name = match &r.name {
            Some(n) if n.value.trim().is_empty() => {
                return Err(self.invalid(Some(line_of(n)), "replica `name` is empty".into()));
            }
            Some(n) => n.value.clone(),
            // As Litestream names it: by its `type` when one is given (`webdav`), else by kind.
            None => r
                .kind
                .as_ref()
                .map(|t| t.value.trim().to_ascii_lowercase())
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| target.kind().to_string()),
        };
        let d = |v, key, global: Option<Duration>| {
            Ok::<_, ConfigError>(scalars::duration(self, v, key)?.or(global))
        };
        Ok(ReplicaConfig {
            name,
            target,
            sync_interval: d(&r.sync_interval, "sync-interval", g.sync_interval)?
                .unwrap_or(DEFAULT_SYNC_INTERVAL),
            retention: d(&r.retention, "retention", g.retention)?.unwrap_or(DEFAULT_RETENTION),
            retention_check_interval: d(
                &r.retention_check_interval,
                "retention-check-interval",
                g.retention_check_interval,
            )?
            .unwrap_or(DEFAULT_RETENTION_CHECK_INTERVAL),
            snapshot_interval: d(
                &r.snapshot_interval,
                "snapshot-interval",
                g.snapshot_interval,
            )?,
            takeover: r.takeover.unwrap_or(false),
        })
    }
}
