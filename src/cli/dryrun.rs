//! `restore -dry-run`: which replica, restore point and files a restore would use, from the
//! same listing and plan the restore makes; nothing is written.

use std::collections::HashMap;

use replica_formats::plan_restore;

use super::common::{fmt_ts, open_client};
use super::error::CliError;
use crate::config::ReplicaConfig;
use crate::restore::{RestoreError, RestoreOptions};

/// Prints the plan of the replica a restore would read (the newest first, as the restore
/// ranks them), or fails as the restore would.
pub(super) fn restore_dry_run(
    reps: &[ReplicaConfig],
    rt: &tokio::runtime::Runtime,
    opts: &RestoreOptions,
    json: bool,
) -> Result<(), CliError> {
    let out = opts.output.display();
    // With `-json`, one object: the plan (Litestream's `source`, `target_path`, `min_txid`,
    // `max_txid`, `files`), or why nothing would be done.
    let nothing = |line: String| {
        if json {
            let j = serde_json::json!({"dry_run": true, "restore": false, "reason": line});
            crate::stdout::outln!("{j}");
        } else {
            crate::stdout::outln!("{line}");
        }
    };
    if opts.output.exists() && !opts.force {
        if opts.if_db_not_exists {
            nothing(format!(
                "dry run: {out} exists; -if-db-not-exists: nothing to do"
            ));
            return Ok(());
        }
        return Err(CliError::Restore {
            source: Box::new(RestoreError::OutputExists(out.to_string())),
            asked: String::new(),
        });
    }
    let reps = super::pick::answering(reps, rt, opts.target)?;
    let mut last = None;
    for r in &reps {
        let client = match open_client(r) {
            Ok(c) => c,
            Err(CliError::MissingReplica(name)) if opts.if_replica_exists => {
                last = Some(Ok(format!(
                    "dry run: replica {name} was never made; -if-replica-exists: nothing to do"
                )));
                continue;
            }
            Err(e) => {
                last = Some(Err(e));
                continue;
            }
        };
        let files = match rt.block_on(client.list_sized()) {
            Ok(f) => f,
            Err(e) => {
                last = Some(Err(RestoreError::from(e).into()));
                continue;
            }
        };
        if files.is_empty() && opts.if_replica_exists {
            last = Some(Ok(format!(
                "dry run: replica {} holds no backup; -if-replica-exists: nothing to do",
                client.name()
            )));
            continue;
        }
        let sizes: HashMap<_, _> = files.iter().cloned().collect();
        let keys: Vec<_> = files.into_iter().map(|(k, _)| k).collect();
        let plan = match plan_restore(&keys, opts.target) {
            Ok(p) => p,
            Err(source) => {
                last = Some(Err(CliError::Restore {
                    source: Box::new(RestoreError::Plan {
                        replica: client.name().to_owned(),
                        source,
                        held: String::new(),
                    }),
                    asked: String::new(),
                }));
                continue;
            }
        };
        let bytes: u64 = plan.files().filter_map(|k| sizes.get(k)).sum();
        let at = plan
            .files()
            .last()
            .map_or(plan.snapshot.timestamp(), |k| k.timestamp());
        if json {
            let listed: Vec<serde_json::Value> = plan
                .files()
                .map(|k| serde_json::json!({"path": k.path(), "size": sizes.get(k)}))
                .collect();
            let j = serde_json::json!({
                "dry_run": true,
                "restore": true,
                "source": client.name(),
                "target_path": opts.output,
                "min_txid": plan.snapshot.min_txid().to_string(),
                "max_txid": plan.txid.to_string(),
                "timestamp": fmt_ts(at),
                "files": listed,
                "bytes": bytes,
            });
            crate::stdout::outln!("{j}");
            return Ok(());
        }
        crate::stdout::outln!(
            "dry run: would restore {out} from replica {} at position {} ({}): a snapshot at {} and {} segments, {bytes} bytes to read; nothing written",
            client.name(),
            plan.txid,
            fmt_ts(at),
            plan.snapshot.max_txid(),
            plan.segments.len()
        );
        return Ok(());
    }
    match last {
        Some(Ok(line)) => {
            nothing(line);
            Ok(())
        }
        Some(Err(e)) => Err(e),
        None => Err(CliError::Arguments("no replica")),
    }
}
