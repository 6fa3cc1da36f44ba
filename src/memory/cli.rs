//! The memory-sync subcommands and their flags.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::MemoryError;
use super::commands;
use super::ctx::Ctx;
use super::maintenance;
use super::outcome::Outcome;
use super::progress;
use super::pull::PullOptions;
use super::queue;
use super::runner::{self, hold};
use super::settings::{ConflictPolicy, Overrides, Settings};
use super::store::StoreInput;

/// Flags every memory command takes; they override the environment and `sync_config.json`.
#[derive(Debug, Args, Default)]
pub struct RemoteArgs {
    /// Settings file (default: $SYNC_CONFIG_PATH, then ~/.mcp_memory_staging/sync_config.json).
    #[arg(long = "sync-config")]
    sync_config: Option<PathBuf>,
    /// Server host (REMOTE_MEMORY_HOST).
    #[arg(long = "host")]
    host: Option<String>,
    /// Server port (REMOTE_MEMORY_PORT), 1-65535.
    #[arg(long = "port", value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,
    /// http or https (REMOTE_MEMORY_PROTOCOL).
    #[arg(long = "protocol")]
    protocol: Option<String>,
    /// API key (REMOTE_MEMORY_API_KEY or MCP_API_KEY).
    #[arg(long = "api-key")]
    api_key: Option<String>,
    /// PEM file of extra trusted certificates (REMOTE_MEMORY_CA_FILE).
    #[arg(long = "ca-file")]
    ca_file: Option<PathBuf>,
    /// Accept any server certificate (REMOTE_MEMORY_INSECURE).
    #[arg(long = "insecure")]
    insecure: bool,
    /// Staging database (STAGING_DB_PATH).
    #[arg(long = "staging-db")]
    staging_db: Option<PathBuf>,
    /// Local mcp-memory-service database (MCP_MEMORY_SQLITE_PATH).
    #[arg(long = "memory-db", alias = "db")]
    memory_db: Option<PathBuf>,
    /// Replica URL of the server's database, read by pull (REMOTE_MEMORY_REPLICA).
    #[arg(long = "replica-url")]
    replica: Option<String>,
    /// Conflict policy: merge, local, remote or manual (SYNC_CONFLICT_RESOLUTION).
    #[arg(long = "conflict")]
    conflict: Option<String>,
    /// Echo the sync log on stderr (SYNC_VERBOSE).
    #[arg(long = "verbose")]
    verbose: bool,
}

impl RemoteArgs {
    pub(crate) fn overrides(&self) -> Overrides {
        Overrides {
            config: self.sync_config.clone(),
            host: self.host.clone(),
            port: self.port,
            protocol: self.protocol.clone(),
            api_key: self.api_key.clone(),
            ca_file: self.ca_file.clone(),
            insecure: self.insecure,
            staging_db: self.staging_db.clone(),
            memory_db: self.memory_db.clone(),
            replica: self.replica.clone(),
            conflict: self.conflict.clone(),
            verbose: self.verbose,
            config_may_be_missing: false,
        }
    }
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The memory's text (several words are joined with spaces; `-` reads standard input,
    /// less one trailing newline).
    #[arg(required = true)]
    content: Vec<String>,
    /// Comma-separated tags.
    #[arg(long = "tags")]
    tags: Option<String>,
    /// Memory type (default note).
    #[arg(long = "type")]
    memory_type: Option<String>,
    /// Project name (default: the current folder's name).
    #[arg(long = "project")]
    project: Option<String>,
    /// Stage locally without trying the server.
    #[arg(long = "offline")]
    offline: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Let the server's version win over local edits and conflicts for this pull.
    #[arg(long = "force")]
    force: bool,
    /// Show what would be added, changed and removed; change nothing.
    #[arg(long = "dry-run")]
    dry_run: bool,
    /// Only memories with any of these comma-separated tags.
    #[arg(long = "tags")]
    tags: Option<String>,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pull: PullArgs,
    /// Keep syncing every SYNC_INTERVAL seconds until SIGINT/SIGTERM.
    #[arg(long = "watch")]
    watch: bool,
}

#[derive(Debug, Subcommand)]
pub enum MemoryCommand {
    /// Store a memory on the server, or stage it locally when the server is away.
    Store(StoreArgs),
    /// Send staged memories to the server (exit 3: refused rows stay failed; 4: conflicts open;
    /// 5: the server went away, the rest stays pending; see `memsync help`).
    Push {
        /// Also retry rows the server refused before.
        #[arg(long = "retry-failed")]
        retry_failed: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Bring the server's memories into the local mcp-memory-service database.
    Pull(PullArgs),
    /// Stage local changes, pull, apply, push.
    Sync(SyncArgs),
    /// Staged, failed and conflicting memories, last pull and push, the server's state.
    Status(RemoteArgs),
    /// List staged rows: id, state, tries, tags, the start of the text and the server's last
    /// error (the ID that `edit` and `drop` take).
    Staged {
        /// Every row, also those already pushed or dropped.
        #[arg(long = "all")]
        all: bool,
        /// Only rows in this state: pending, failed, conflict, pushed or resolved.
        #[arg(long = "state", conflicts_with = "all")]
        state: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Take one pending or failed staged row out of the queue, without `reset`: it is not sent
    /// to the server (a JSON copy of the row is written first, next to the staging database).
    Drop {
        /// The row's id (memsync staged).
        id: i64,
        /// Do not ask (needed without a terminal).
        #[arg(long = "yes")]
        yes: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Change one pending or failed staged row's tags or type; a failed row becomes pending
    /// (a JSON copy of the row as it was is written first).
    Edit {
        /// The row's id (memsync staged).
        id: i64,
        /// New comma-separated tags (they replace the row's tags).
        #[arg(long = "tags")]
        tags: Option<String>,
        /// New memory type.
        #[arg(long = "type")]
        memory_type: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Create (or migrate) the staging database.
    Init {
        /// Also write the effective settings (without the API key) where memsync reads its
        /// settings file: --sync-config, else $SYNC_CONFIG_PATH, else
        /// ~/.mcp_memory_staging/sync_config.json.
        #[arg(long = "write-config")]
        write_config: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Drop staged memories and sync state (a JSON copy is written first).
    Reset {
        /// Do not ask.
        #[arg(long = "yes")]
        yes: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Check and rebuild the staging database.
    Repair(RemoteArgs),
    /// Settings and staged memories as JSON.
    Export {
        /// Output file (default: standard output).
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Integrity of the local memory database and of the staging database.
    VerifyDb(RemoteArgs),
    /// Prune old confirmed staging rows and optimize both databases.
    Optimize(RemoteArgs),
    /// Move local memories older than a duration to a JSON archive file.
    Archive {
        /// e.g. "90 days", 12w, 1y.
        #[arg(long = "older-than")]
        older_than: String,
        /// Archive file (default: <staging folder>/archive/archive-<time>.json).
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        #[arg(long = "dry-run")]
        dry_run: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Counts and timings from the sync log.
    Metrics(RemoteArgs),
    /// List open conflicts and settle them.
    ResolveConflicts {
        /// merge, local or remote (without it: ask on a terminal, else list).
        #[arg(long = "strategy")]
        strategy: Option<String>,
        /// Only this conflict.
        #[arg(long = "id")]
        id: Option<i64>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

fn split_tags(s: &Option<String>) -> Vec<String> {
    s.as_deref()
        .unwrap_or("")
        .split(',')
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

fn ctx(r: &RemoteArgs) -> Result<Ctx, MemoryError> {
    let c = Ctx::new(Settings::load(&r.overrides())?);
    if c.settings.verbose || c.settings.debug {
        progress::disable();
    }
    Ok(c)
}

/// `store -`: standard input, less one trailing newline (as `git commit -F -`).
fn strip_one_newline(mut s: String) -> String {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    s
}

fn pull_opts(a: &PullArgs) -> PullOptions {
    PullOptions {
        dry_run: a.dry_run,
        force: a.force,
        tags: split_tags(&a.tags),
    }
}

/// Parses "90 days", "90days", "12w".
fn parse_age(s: &str) -> Result<std::time::Duration, MemoryError> {
    let compact: String = s.split_whitespace().collect();
    humantime::parse_duration(&compact)
        .map_err(|e| MemoryError::Invalid(format!("--older-than {s:?}: {e} (e.g. \"90 days\")")))
}

/// Runs one memory command: the text for standard output and how it ended (its exit code:
/// see [`Outcome`]). Commands that change anything hold the staging database while they run;
/// `store`, read-only commands and dry runs do not.
pub fn run(cmd: MemoryCommand) -> Result<(String, Outcome), MemoryError> {
    let r = dispatch(cmd);
    progress::clear();
    r
}

fn done(r: Result<String, MemoryError>) -> Result<(String, Outcome), MemoryError> {
    r.map(|t| (t, Outcome::Done))
}

fn dispatch(cmd: MemoryCommand) -> Result<(String, Outcome), MemoryError> {
    match cmd {
        MemoryCommand::Store(a) => {
            let r = &a.remote;
            let content = if a.content.len() == 1 && a.content[0] == "-" {
                strip_one_newline(std::io::read_to_string(std::io::stdin()).map_err(|source| {
                    MemoryError::Io {
                        what: "standard input".into(),
                        source,
                    }
                })?)
            } else {
                a.content.join(" ")
            };
            let input = StoreInput {
                content,
                tags: split_tags(&a.tags),
                memory_type: a.memory_type,
                project: a.project,
                offline: a.offline,
            };
            done(super::store::store(&ctx(r)?, &input))
        }
        MemoryCommand::Push {
            retry_failed,
            remote,
        } => runner::push(&ctx(&remote)?, retry_failed),
        MemoryCommand::Pull(a) => runner::pull(&ctx(&a.remote)?, &pull_opts(&a)),
        MemoryCommand::Sync(a) => {
            let c = ctx(&a.pull.remote)?;
            let opts = pull_opts(&a.pull);
            if a.watch {
                runner::watch(&c, &opts)
            } else if opts.dry_run {
                done(commands::sync(&c, &opts))
            } else {
                let _lock = hold(&c, "sync")?;
                let text = commands::sync(&c, &opts)?;
                Ok(runner::finished(&c, text))
            }
        }
        MemoryCommand::Status(r) => done(super::status::status(&ctx(&r)?)),
        MemoryCommand::Staged { all, state, remote } => {
            done(queue::list(&ctx(&remote)?, all, state.as_deref()))
        }
        MemoryCommand::Drop { id, yes, remote } => {
            let c = ctx(&remote)?;
            let _lock = hold(&c, "drop")?;
            done(queue::drop_row(&c, id, yes))
        }
        MemoryCommand::Edit {
            id,
            tags,
            memory_type,
            remote,
        } => {
            let c = ctx(&remote)?;
            let _lock = hold(&c, "edit")?;
            let tags = tags.is_some().then(|| split_tags(&tags));
            done(queue::edit_row(&c, id, tags, memory_type))
        }
        MemoryCommand::Init {
            write_config,
            remote,
        } => {
            // The settings file it is asked to write need not exist yet.
            let o = Overrides {
                config_may_be_missing: write_config,
                ..remote.overrides()
            };
            let c = Ctx::new(Settings::load(&o)?);
            let _lock = hold(&c, "init")?;
            done(maintenance::init(&c, write_config))
        }
        MemoryCommand::Reset { yes, remote } => {
            let c = ctx(&remote)?;
            let _lock = hold(&c, "reset")?;
            done(maintenance::reset(&c, yes))
        }
        MemoryCommand::Repair(r) => {
            let c = ctx(&r)?;
            let _lock = hold(&c, "repair")?;
            done(maintenance::repair(&c))
        }
        MemoryCommand::Export { output, remote } => {
            done(maintenance::export(&ctx(&remote)?, output.as_deref()))
        }
        MemoryCommand::VerifyDb(r) => done(maintenance::verify_db(&ctx(&r)?)),
        MemoryCommand::Optimize(r) => {
            let c = ctx(&r)?;
            let _lock = hold(&c, "optimize")?;
            done(maintenance::optimize(&c))
        }
        MemoryCommand::Archive {
            older_than,
            output,
            dry_run,
            remote,
        } => {
            let age = parse_age(&older_than)?;
            let c = ctx(&remote)?;
            let _lock = if dry_run {
                None
            } else {
                Some(hold(&c, "archive")?)
            };
            done(maintenance::archive(&c, age, output.as_deref(), dry_run))
        }
        MemoryCommand::Metrics(r) => done(maintenance::metrics(&ctx(&r)?)),
        MemoryCommand::ResolveConflicts {
            strategy,
            id,
            remote,
        } => {
            let s = strategy
                .as_deref()
                .map(|s| {
                    ConflictPolicy::parse(s)
                        .filter(|p| *p != ConflictPolicy::Manual)
                        .ok_or_else(|| {
                            MemoryError::Invalid(format!(
                                "--strategy {s:?}: expected merge, local or remote"
                            ))
                        })
                })
                .transpose()?;
            let c = ctx(&remote)?;
            let _lock = hold(&c, "resolve-conflicts")?;
            done(maintenance::resolve_conflicts(&c, s, id))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_input_loses_one_trailing_newline() {
        assert_eq!(strip_one_newline("a\n".into()), "a");
        assert_eq!(strip_one_newline("a\r\n".into()), "a");
        assert_eq!(strip_one_newline("a\n\n".into()), "a\n");
        assert_eq!(strip_one_newline("a".into()), "a");
        assert_eq!(strip_one_newline(String::new()), "");
    }

    #[test]
    fn ages_parse_with_spaces() {
        assert_eq!(parse_age("90 days").unwrap().as_secs(), 90 * 86400);
        assert_eq!(parse_age("2w").unwrap().as_secs(), 14 * 86400);
        assert!(parse_age("soon").is_err());
    }
}
