//! The environment a service carries: the settings memsync reads that were set when the
//! service was installed, with secrets told apart so a dry run can mask them.
//!
//! Pure: the caller passes the variables and the current directory in.

use std::path::{Path, PathBuf};

/// What a masked value prints as (fixed width: the length of a secret is not shown either).
pub const MASK: &str = "********";

/// Name prefixes of the variables memsync reads: its own, mcp-memory-service's, Litestream's,
/// memory sync's, the remote server's and the S3 client's.
const PREFIXES: &[&str] = &[
    "MEMSYNC_",
    "MCP_",
    "LITESTREAM_",
    "SYNC_",
    "REMOTE_MEMORY_",
    "AWS_",
];

/// Single variables read outside those prefixes.
const SINGLES: &[&str] = &["STAGING_DB_PATH", "LOG_LEVEL", "LOG_FORMAT"];

/// Variables of the prefixes above that steer the installer or the tests, not the service.
const NOT_CARRIED: &[&str] = &[
    "MEMSYNC_SYSTEMCTL",
    "MEMSYNC_JOURNALCTL",
    "MEMSYNC_LAUNCHCTL",
    "MEMSYNC_HARNESS",
    "MEMSYNC_FAULT",
    "MEMSYNC_FAULT_HOLD",
];
const NOT_CARRIED_PREFIXES: &[&str] = &["MEMSYNC_TEST_"];

/// Name parts that mark a value as a secret (API keys, S3 keys, tokens, passwords).
const SECRET_PARTS: &[&str] = &["KEY", "SECRET", "TOKEN", "PASS", "CREDENTIAL", "AUTH"];

/// One variable of the service's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Var {
    pub name: String,
    pub value: String,
    /// Never printed; written only to files the user alone can read.
    pub secret: bool,
}

/// The service's environment, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    pub vars: Vec<Var>,
}

/// True for a variable name memsync reads (and the service should carry).
pub fn is_carried(name: &str) -> bool {
    let ours = PREFIXES.iter().any(|p| name.starts_with(p)) || SINGLES.contains(&name);
    ours && !NOT_CARRIED.contains(&name)
        && !NOT_CARRIED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// A URL's password masked (a replica URL with credentials in it, whatever its variable's
/// name); any other value as it is.
fn without_password(value: &str) -> String {
    match url::Url::parse(value) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some(MASK));
            u.to_string()
        }
        _ => value.to_owned(),
    }
}

/// True for a name whose value is a secret.
pub fn is_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_PARTS.iter().any(|p| upper.contains(p))
}

/// True for a name whose value is a path (relative ones are made absolute: the service does
/// not start in the directory the installer ran in).
fn is_path(name: &str) -> bool {
    ["_PATH", "_DIR", "_FILE", "_CONFIG", "_BUNDLE", "_WORKDIR"]
        .iter()
        .any(|s| name.ends_with(s))
}

impl Env {
    /// The carried variables among `vars`, and those named in `also` (what the config file
    /// refers to, PATH for an `exec` child). Relative path values are made absolute against
    /// `cwd`; `cwd_config` (a `litestream.yml` in `cwd`, which memsync would have found there)
    /// becomes `MEMSYNC_CONFIG` unless a config variable is already set.
    pub fn collect(
        vars: impl IntoIterator<Item = (String, String)>,
        cwd: &Path,
        cwd_config: Option<&Path>,
        also: &[String],
    ) -> Env {
        let mut out: Vec<Var> = vars
            .into_iter()
            .filter(|(n, _)| is_carried(n) || also.contains(n))
            .map(|(name, value)| {
                let value = if is_path(&name) && !value.is_empty() {
                    absolute(&value, cwd)
                } else {
                    value
                };
                // What the config file refers to is there to be a credential as often as
                // not (`secret-access-key: $S3S`, a URL's `:$PASS@`): never printed either.
                Var {
                    secret: is_secret(&name) || (also.contains(&name) && name != "PATH"),
                    name,
                    value,
                }
            })
            .collect();
        let has_config = out
            .iter()
            .any(|v| v.name == "MEMSYNC_CONFIG" || v.name == "LITESTREAM_CONFIG");
        if let (false, Some(c)) = (has_config, cwd_config) {
            out.push(Var {
                name: "MEMSYNC_CONFIG".into(),
                value: cwd.join(c).to_string_lossy().into_owned(),
                secret: false,
            });
        }
        // Where relative paths in the config (and an `exec` command) were meant from: the
        // service manager starts it in `/` or the home folder otherwise.
        if !out.iter().any(|v| v.name == "MEMSYNC_WORKDIR") {
            out.push(Var {
                name: "MEMSYNC_WORKDIR".into(),
                value: cwd.to_string_lossy().into_owned(),
                secret: false,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out.dedup_by(|a, b| a.name == b.name);
        Env { vars: out }
    }

    /// The same environment with every secret value replaced by [`MASK`], for printing.
    pub fn masked(&self) -> Env {
        Env {
            vars: self
                .vars
                .iter()
                .map(|v| Var {
                    value: if v.secret {
                        MASK.into()
                    } else {
                        without_password(&v.value)
                    },
                    ..v.clone()
                })
                .collect(),
        }
    }
}

/// `~/x` and absolute paths stay as they are (memsync expands `~` itself); others are joined
/// to `cwd`.
fn absolute(value: &str, cwd: &Path) -> String {
    if value.starts_with('~') || Path::new(value).is_absolute() || value.contains("://") {
        return value.to_owned();
    }
    PathBuf::from(cwd)
        .join(value)
        .to_string_lossy()
        .into_owned()
}

/// The environment as a systemd `EnvironmentFile=`: one `NAME="value"` a line, with `\`, `"`,
/// `` ` `` and `$` escaped (systemd's parser unescapes exactly those in double quotes and
/// expands nothing in a service's environment file).
pub fn systemd_env_file(env: &Env) -> String {
    let mut s = String::from(
        "# Environment of the mcp-memory-sync service, written by `memsync install-service`.\n\
         # Readable by its owner only: it may hold API keys.\n",
    );
    for v in &env.vars {
        s.push_str(&v.name);
        s.push_str("=\"");
        for c in v.value.chars() {
            if matches!(c, '\\' | '"' | '`' | '$') {
                s.push('\\');
            }
            s.push(c);
        }
        s.push_str("\"\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// Each variable's name, and whether it is a secret.
    fn names(env: &Env) -> Vec<(&str, bool)> {
        env.vars
            .iter()
            .map(|v| (v.name.as_str(), v.secret))
            .collect()
    }

    #[test]
    fn carries_memsync_settings_only() {
        let env = Env::collect(
            vars(&[
                ("PATH", "/usr/bin"),
                ("HOME", "/home/u"),
                ("REMOTE_MEMORY_HOST", "box"),
                ("REMOTE_MEMORY_API_KEY", "k"),
                ("MCP_API_KEY", "k2"),
                ("SYNC_INTERVAL", "60"),
                ("LITESTREAM_SECRET_ACCESS_KEY", "s"),
                ("STAGING_DB_PATH", "staging.db"),
                ("MEMSYNC_SYSTEMCTL", "/bin/true"),
                ("MEMSYNC_TEST_BIN", "x"),
                ("AWS_SESSION_TOKEN", "t"),
            ]),
            Path::new("/work/dir"),
            None,
            &[],
        );
        let names = names(&env);
        assert_eq!(
            names,
            [
                ("AWS_SESSION_TOKEN", true),
                ("LITESTREAM_SECRET_ACCESS_KEY", true),
                ("MCP_API_KEY", true),
                ("MEMSYNC_WORKDIR", false),
                ("REMOTE_MEMORY_API_KEY", true),
                ("REMOTE_MEMORY_HOST", false),
                ("STAGING_DB_PATH", false),
                ("SYNC_INTERVAL", false),
            ]
        );
        let staging = env.vars.iter().find(|v| v.name == "STAGING_DB_PATH");
        assert_eq!(staging.unwrap().value, "/work/dir/staging.db");
        assert_eq!(
            without_password("http://memsync:bkey@backup:8080/r"),
            format!("http://memsync:{MASK}@backup:8080/r")
        );
        assert_eq!(without_password("/plain/path"), "/plain/path");
        let masked = env.masked();
        assert!(
            masked
                .vars
                .iter()
                .filter(|v| v.secret)
                .all(|v| v.value == MASK)
        );
        assert_eq!(masked.vars[5].value, "box");

        // The service starts where `install-service` ran.
        let workdir = env.vars.iter().find(|v| v.name == "MEMSYNC_WORKDIR");
        assert_eq!(workdir.unwrap().value, "/work/dir");
        // One set by hand is made absolute too.
        let by_hand = Env::collect(
            vars(&[("MEMSYNC_WORKDIR", "my dir")]),
            Path::new("/w"),
            None,
            &[],
        );
        assert_eq!(by_hand.vars[0].value, "/w/my dir");
    }

    #[test]
    fn what_the_config_refers_to_is_carried_too() {
        let env = Env::collect(
            vars(&[
                ("BUCKET", "b"),
                ("S3_SECRET", "s"),
                ("PATH", "/opt/app/bin:/usr/bin"),
                ("OTHER", "x"),
            ]),
            Path::new("/srv"),
            None,
            &["BUCKET".into(), "S3_SECRET".into(), "PATH".into()],
        );
        let names = names(&env);
        assert_eq!(
            names,
            // What the config refers to is never printed (PATH aside).
            [
                ("BUCKET", true),
                ("MEMSYNC_WORKDIR", false),
                ("PATH", false),
                ("S3_SECRET", true)
            ]
        );
    }

    #[test]
    fn a_litestream_yml_in_the_directory_becomes_the_config() {
        let env = Env::collect(
            vec![],
            Path::new("/srv"),
            Some(Path::new("litestream.yml")),
            &[],
        );
        assert_eq!(env.vars[0].name, "MEMSYNC_CONFIG");
        assert_eq!(env.vars[0].value, "/srv/litestream.yml");
        let set = Env::collect(
            vars(&[("LITESTREAM_CONFIG", "/etc/l.yml")]),
            Path::new("/srv"),
            Some(Path::new("litestream.yml")),
            &[],
        );
        assert_eq!(set.vars.len(), 2);
        assert_eq!(set.vars[0].value, "/etc/l.yml");
    }

    #[test]
    fn env_file_escapes_what_systemd_unescapes() {
        let env = Env {
            vars: vec![Var {
                name: "MCP_API_KEY".into(),
                value: r#"a"b\c$d`e f"#.into(),
                secret: true,
            }],
        };
        let text = systemd_env_file(&env);
        assert!(
            text.ends_with("MCP_API_KEY=\"a\\\"b\\\\c\\$d\\`e f\"\n"),
            "{text}"
        );
    }
}
