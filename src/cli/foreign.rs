//! Litestream's commands that memsync does not have, and those whose name memsync uses for
//! memory sync (`status`, `sync`; `reset` is memory sync's own, and left to it): a script written for Litestream gets one line saying what
//! memsync has instead, never a "did you mean" tip toward a command that does something else
//! (`stop db.sqlite` was offered `store`, which would have stored the path as a memory).

use std::ffi::OsString;

/// Why `args` (normalised: `--flag`) is a Litestream command line memsync does not run, if it
/// is one.
pub(super) fn refusal(args: &[OsString]) -> Option<String> {
    let words: Vec<&str> = args.iter().skip(1).filter_map(|a| a.to_str()).collect();
    let (&cmd, rest) = words.split_first()?;
    let flagged = |f: &str| {
        rest.iter()
            .any(|a| *a == f || a.starts_with(&format!("{f}=")))
    };
    // A word not after a flag that takes a value (`status --host h` is memsync's).
    let takes_value =
        |f: &str| f.starts_with("--") && !f.contains('=') && !["--insecure", "--help"].contains(&f);
    let positional = rest
        .iter()
        .enumerate()
        .any(|(i, a)| !a.starts_with('-') && (i == 0 || !takes_value(rest[i - 1])));
    let why = match cmd {
        "start" | "stop" | "register" | "unregister" | "info" | "list" => format!(
            "`{cmd}` is a command of Litestream's control socket, which memsync does not have: replication runs while `memsync replicate` (or the service) runs; `memsync databases` and the config's `addr` (/metrics, /health) show what it replicates"
        ),
        "generations" => "`generations` was Litestream 0.3's: `memsync snapshots` and `memsync wal` list what a replica holds".into(),
        "status" if flagged("--config") || flagged("--json") || positional => "`memsync status` is memory sync's (Litestream's `status DB` is not there): for replication, `memsync databases`, `memsync wal DB`, or the config's `addr` /health".into(),
        "sync" if flagged("--wait") || flagged("--timeout") || flagged("--socket") => "`memsync sync` is memory sync (Litestream's `sync -wait` talks to its control socket, which memsync does not have): replication ships every `sync-interval` on its own".into(),
        _ => return None,
    };
    Some(why)
}

#[cfg(test)]
mod tests {
    fn args(a: &[&str]) -> Vec<std::ffi::OsString> {
        a.iter().map(Into::into).collect()
    }

    #[test]
    fn litestream_command_lines_are_named() {
        for a in [
            &["memsync", "stop", "db.sqlite"][..],
            &["memsync", "status", "--config", "l.yml"],
            &["memsync", "status", "db.sqlite"],
            &["memsync", "sync", "--wait", "db.sqlite"],
        ] {
            assert!(super::refusal(&args(a)).is_some(), "{a:?}");
        }
        for a in [
            &["memsync", "status"][..],
            &["memsync", "status", "--host", "h", "--insecure"],
            &["memsync", "sync", "--dry-run"],
            &["memsync", "store", "stop"],
        ] {
            assert!(super::refusal(&args(a)).is_none(), "{a:?}");
        }
    }
}
