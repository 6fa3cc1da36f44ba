//! `install-service` and the commands around it, run as the real binary: the systemd unit passes
//! `systemd-analyze verify`, the launchd plist parses with Python's plistlib, the sc.exe command
//! lines quote paths with spaces, `--dry-run` writes nothing and prints no secret, and a real
//! install (systemctl replaced by `/bin/true` through MEMSYNC_SYSTEMCTL) leaves the environment
//! file readable by its owner only.

mod common;
#[path = "service/support.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::BIN;
use support::*;

#[test]
fn generated_systemd_units_pass_systemd_analyze_verify() {
    let h = Host::new();
    for (flag, user) in [("--user", true), ("--system", false)] {
        let out = h.ok(
            &[
                "install-service",
                "--dry-run",
                flag,
                "--platform",
                "systemd",
            ],
            // sudo names the user a system service runs as (User=); systemd-analyze warns
            // about `nobody`, so another user of every Debian system.
            &[("SUDO_USER", "daemon")],
        );
        let path = if user {
            h.unit_path()
        } else {
            PathBuf::from("/etc/systemd/system/mcp-memory-sync.service")
        };
        let unit = shown_file(&out, &path);
        let exec = format!("ExecStart=\"{}\" run\n", h.exe.display());
        assert!(unit.contains(&exec), "{unit}");
        assert!(unit.contains("Restart=on-failure\n"), "{unit}");
        assert!(unit.contains("EnvironmentFile="), "{unit}");
        assert_eq!(unit.contains("User=daemon\n"), !user, "{unit}");
        // verify exits 0 even on unknown keys and bad values: its stderr must be empty too.
        let (ok, err) = verify(&unit, user);
        assert!(
            ok && err.is_empty(),
            "{flag} unit does not verify: {err}\n{unit}"
        );
        // The check can fail: the same unit with a command that does not exist does not pass.
        let broken = unit.replace(&exec, "ExecStart=/nonexistent/memsync run\n");
        let (ok, err) = verify(&broken, user);
        assert!(!ok || !err.is_empty(), "a broken unit verified");
    }
}

#[test]
fn generated_plist_parses_with_plistlib() {
    let h = Host::new();
    let out = h.ok(
        &["install-service", "--dry-run", "--platform", "launchd"],
        &[],
    );
    assert_no_secret(&out);
    let path = h
        .home
        .join("Library/LaunchAgents/com.mcp.memory.sync.plist");
    assert!(
        out.contains(&format!("=== write {} (mode 0600)", path.display())),
        "{out}"
    );
    let text = shown_file(&out, &path);
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("agent.plist");
    std::fs::write(&file, &text).unwrap();
    let o = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import json, plistlib, sys; print(json.dumps(plistlib.load(open(sys.argv[1], 'rb'))))",
        ])
        .arg(&file)
        .output()
        .expect("/usr/bin/python3 not runnable: the plist test needs Python's plistlib");
    assert!(
        o.status.success(),
        "plistlib refused the plist: {}\n{text}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let log = h.home.join("Library/Logs/mcp-memory-sync/memsync.log");
    let log = log.to_str().unwrap();
    assert_eq!(v["Label"], "com.mcp.memory.sync");
    assert_eq!(
        v["ProgramArguments"],
        serde_json::json!([h.exe.to_str().unwrap(), "run"])
    );
    assert_eq!(v["RunAtLoad"], true);
    assert_eq!(v["KeepAlive"]["SuccessfulExit"], false);
    assert_eq!(v["StandardOutPath"], log);
    assert_eq!(v["StandardErrorPath"], log);
    assert_eq!(v["WorkingDirectory"], h.home.to_str().unwrap());
    let env = &v["EnvironmentVariables"];
    assert_eq!(env["SYNC_INTERVAL"], "60");
    assert_eq!(env["REMOTE_MEMORY_API_KEY"], "********");
    assert_eq!(env["LITESTREAM_SECRET_ACCESS_KEY"], "********");
    assert!(
        env.get("PATH").is_none() && env.get("HOME").is_none(),
        "{env}"
    );
    let cmds: Vec<&str> = out.lines().filter(|l| l.starts_with("=== run ")).collect();
    assert_eq!(cmds.len(), 2, "{out}");
    assert!(
        cmds[1].starts_with("=== run launchctl bootstrap gui/"),
        "{out}"
    );
}

#[test]
fn sc_exe_command_lines_quote_paths_with_spaces() {
    let h = Host::new();
    let out = h.ok(
        &["install-service", "--dry-run", "--platform", "windows"],
        &[],
    );
    assert_no_secret(&out);
    let exe = h.exe.display();
    let want = [
        format!(
            r#"=== run sc.exe create "MCP Memory Sync" binPath= "\"{exe}\" run --windows-service --secrets-file C:\ProgramData\memsync\secrets\service.json" start= auto DisplayName= "MCP Memory Sync""#
        ),
        r#"=== run sc.exe description "MCP Memory Sync" "MCP Memory Sync: memsync replication and memory sync""#.into(),
        r#"=== run sc.exe failure "MCP Memory Sync" reset= 86400 actions= restart/10000/restart/10000/restart/10000"#.into(),
        r#"=== run sc.exe failureflag "MCP Memory Sync" 1   (a failure is ignored)"#.into(),
        format!(
            r#"=== run reg.exe add "HKLM\SYSTEM\CurrentControlSet\Services\MCP Memory Sync" /v Environment /t REG_MULTI_SZ /d MEMSYNC_WORKDIR={}\0REMOTE_MEMORY_HOST=memories.example\0SYNC_INTERVAL=60 /f"#,
            h.work.display()
        ),
        r#"=== run icacls.exe C:\ProgramData\memsync\secrets /inheritance:r /grant:r *S-1-5-18:(OI)(CI)F *S-1-5-32-544:(OI)(CI)F"#.into(),
        r#"=== run sc.exe start "MCP Memory Sync""#.into(),
    ];
    let got: Vec<&str> = out.lines().filter(|l| l.starts_with("=== run ")).collect();
    assert_eq!(got, want);
    // The secrets go to a file in that directory, after its ACL, masked in a dry run.
    let (acl, file) = (
        out.find("=== run icacls.exe").unwrap(),
        out.find(r"=== write C:\ProgramData\memsync\secrets\service.json")
            .unwrap(),
    );
    assert!(acl < file, "{out}");
    assert!(
        out.contains(
            r#"{"LITESTREAM_SECRET_ACCESS_KEY":"********","REMOTE_MEMORY_API_KEY":"********"}"#
        ),
        "{out}"
    );
    // Another system's commands are only ever printed.
    let o = h.memsync(&["install-service", "--platform", "windows"], &[]);
    assert_one_line_error(&o, &["--platform windows", "only with --dry-run"]);
    // The service's log file, read by PowerShell (Windows has no tail).
    let out = h.ok(&["logs", "-f", "--dry-run", "--platform", "windows"], &[]);
    assert!(
        out.contains(r#"=== run powershell.exe -NoProfile -NonInteractive -Command "Get-Content -Tail 200 -Wait -LiteralPath 'C:\ProgramData\memsync\memsync.log'""#),
        "{out}"
    );
    // Outside Windows the service host refuses in one line.
    let o = h.memsync(&["run", "--windows-service"], &[]);
    assert_one_line_error(&o, &["--windows-service outside Windows"]);
}

#[test]
fn dry_run_writes_nothing_and_masks_secrets() {
    let h = Host::new();
    let xdg = h.home.join("xdg config");
    std::fs::create_dir(&xdg).unwrap();
    // The service tools, if run, would leave a mark.
    let tool = h.work.join("tool");
    let mark = h.work.join("ran");
    std::fs::write(
        &tool,
        format!("#!/bin/sh\necho \"$@\" >> '{}'\n", mark.display()),
    )
    .unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let tool = tool.to_str().unwrap();
    let before = tree(h.dir.path());
    for platform in ["systemd", "launchd", "windows"] {
        for action in [
            "install-service",
            "uninstall-service",
            "start-service",
            "stop-service",
            "restart-service",
            "status-service",
        ] {
            for scope in ["--user", "--system"] {
                let out = h.ok(
                    &[action, "--dry-run", scope, "--platform", platform],
                    &[
                        ("XDG_CONFIG_HOME", xdg.to_str().unwrap()),
                        ("MEMSYNC_SYSTEMCTL", tool),
                        ("MEMSYNC_LAUNCHCTL", tool),
                    ],
                );
                assert!(
                    out.starts_with("dry run: nothing is written or run\n"),
                    "{out}"
                );
                assert_no_secret(&out);
            }
        }
    }
    // The systemd environment file is shown masked, with the plain setting as it is.
    let out = h.ok(&["install-service", "--dry-run"], &[]);
    let env = shown_file(&out, &h.env_path());
    assert!(
        env.contains("REMOTE_MEMORY_API_KEY=\"********\"\n"),
        "{env}"
    );
    assert!(env.contains("SYNC_INTERVAL=\"60\"\n"), "{env}");
    assert!(out.contains(&format!("=== write {} (mode 0600)", h.env_path().display())));
    assert_eq!(tree(h.dir.path()), before, "a dry run changed files");
    assert!(!mark.exists(), "a dry run ran a command");
    // The same tool does leave its mark when memsync runs it (the check above can fail).
    h.ok(&["start-service"], &[("MEMSYNC_SYSTEMCTL", tool)]);
    let ran = std::fs::read_to_string(&mark).unwrap();
    assert_eq!(ran, "--user start mcp-memory-sync.service\n");
    assert!(!Path::new("/etc/systemd/system/mcp-memory-sync.service").exists());
}

#[test]
fn install_writes_the_env_file_0600_and_uninstall_removes_it() {
    let h = Host::new();
    let true_ = [("MEMSYNC_SYSTEMCTL", "/bin/true")];
    let out = h.ok(&["install-service"], &true_);
    assert_no_secret(&out);
    assert!(
        out.starts_with("ran systemctl --user show --property=Version\nwrote "),
        "the manager is asked before anything is written: {out}"
    );
    assert!(
        out.contains("ran systemctl --user daemon-reload\n"),
        "{out}"
    );
    assert!(
        out.contains("ran systemctl --user enable --now mcp-memory-sync.service\n"),
        "{out}"
    );
    let env_meta = std::fs::metadata(h.env_path()).unwrap();
    assert_eq!(env_meta.permissions().mode() & 0o777, 0o600);
    let dir_meta = std::fs::metadata(h.env_path().parent().unwrap()).unwrap();
    assert_eq!(dir_meta.permissions().mode() & 0o777, 0o700);
    let env = std::fs::read_to_string(h.env_path()).unwrap();
    assert!(
        env.contains(&format!("REMOTE_MEMORY_API_KEY=\"{API_KEY}\"\n")),
        "{env}"
    );
    assert!(env.contains(&format!("LITESTREAM_SECRET_ACCESS_KEY=\"{S3_SECRET}\"\n")));
    assert!(!env.contains("MEMSYNC_SYSTEMCTL"), "{env}");
    let unit = std::fs::read_to_string(h.unit_path()).unwrap();
    assert_no_secret(&unit);
    let unit_mode = std::fs::metadata(h.unit_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(unit_mode & 0o777, 0o644);
    // The path has a `%`, which systemd reads as a specifier unless doubled.
    let env_line = format!(
        "EnvironmentFile={}\n",
        h.env_path().display().to_string().replace('%', "%%")
    );
    assert!(unit.contains(&env_line), "{unit}");
    let (ok, err) = verify(&unit, true);
    assert!(
        ok && err.is_empty(),
        "installed unit does not verify: {err}"
    );
    // No temporary file is left beside them.
    let names: Vec<_> = std::fs::read_dir(h.env_path().parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["service.env"]);

    // The control commands find the user unit and pass systemctl's exit code on.
    for (cmd, code) in [("status-service", 0), ("start-service", 0)] {
        let o = h.memsync(&[cmd], &true_);
        assert_eq!(o.status.code(), Some(code), "{cmd}");
    }
    let o = h.memsync(&["status-service"], &[("MEMSYNC_SYSTEMCTL", "/bin/false")]);
    assert_eq!(o.status.code(), Some(1));

    let out = h.ok(&["uninstall-service"], &true_);
    assert!(
        out.contains("ran systemctl --user disable --now mcp-memory-sync.service"),
        "{out}"
    );
    assert!(!h.unit_path().exists() && !h.env_path().exists());
    // The folder the install made for the settings goes too, emptied.
    assert!(!h.env_path().parent().unwrap().exists());
}

#[test]
fn failures_are_one_line_saying_what_and_where() {
    let h = Host::new();
    let o = h.memsync(
        &["install-service"],
        &[("MEMSYNC_SYSTEMCTL", "/nonexistent/systemctl")],
    );
    assert_one_line_error(
        &o,
        &[
            "systemctl not found",
            "MEMSYNC_SYSTEMCTL=/nonexistent/systemctl",
        ],
    );
    let o = h.memsync(&["start-service"], &[("PATH", "/nonexistent")]);
    assert_one_line_error(&o, &["systemctl not found", "PATH", "MEMSYNC_SYSTEMCTL"]);
    let o = h.memsync(&["install-service"], &[("MEMSYNC_SYSTEMCTL", "/bin/false")]);
    assert_one_line_error(
        &o,
        &["systemctl --user show --property=Version failed (exit 1)"],
    );
    // The real systemctl, without a user session bus (no XDG_RUNTIME_DIR): its reason, in one line.
    let which = Command::new("sh")
        .args(["-c", "command -v systemctl"])
        .output()
        .unwrap();
    assert!(
        which.status.success(),
        "systemctl not found: scripts/harness.sh installs Debian's systemd"
    );
    let o = h.memsync(&["restart-service"], &[]);
    assert_one_line_error(
        &o,
        &[
            "systemctl --user restart mcp-memory-sync.service failed",
            "bus",
        ],
    );
    // install asks the manager before it writes: nothing is left behind.
    let before = tree(h.dir.path());
    let o = h.memsync(&["install-service"], &[]);
    assert_one_line_error(
        &o,
        &["systemctl --user show --property=Version failed", "bus"],
    );
    assert_eq!(tree(h.dir.path()), before, "a failed install left files");
    let o = Command::new(&h.exe)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .args(["install-service", "--dry-run"])
        .output()
        .unwrap();
    assert_one_line_error(&o, &["no home directory", "--system"]);
    let o = h.memsync(&["install-service", "--platform", "bsd", "--dry-run"], &[]);
    assert_one_line_error(&o, &["--platform bsd", "systemd, launchd or windows"]);
}

#[test]
fn logs_reads_the_journal_or_the_log_file() {
    let h = Host::new();
    let out = h.ok(&["logs", "-f", "--dry-run"], &[]);
    assert!(
        out.contains("=== run journalctl --user -u mcp-memory-sync.service -f\n"),
        "{out}"
    );
    let out = h.ok(&["logs", "--dry-run", "--platform", "launchd"], &[]);
    let log = h.home.join("Library/Logs/mcp-memory-sync/memsync.log");
    assert!(
        out.contains(&format!("=== run tail -n 200 '{}'\n", log.display())),
        "{out}"
    );
}

#[test]
fn unknown_commands_suggest_the_service_commands() {
    for (typed, want) in [
        ("install", "install-service"),
        ("restart", "restart-service"),
        ("uninstall", "uninstall-service"),
    ] {
        let o = Command::new(BIN).arg(typed).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("tip: a similar subcommand exists: '{want}'")),
            "{typed}: {err}"
        );
    }
}

/// A config file that refers to a variable of its own (`$REPLICA_DIR`) and runs an `exec` child:
/// the service carries that variable (else the service's config would not expand) and PATH
/// (else the child gets the service manager's), and a litestream.yml where the installer ran
/// becomes the service's config.
#[test]
fn the_service_carries_what_its_config_refers_to() {
    let h = Host::new();
    std::fs::write(
        h.work.join("litestream.yml"),
        "exec: my-app --serve\ndbs:\n  - path: /srv/app.db\n    replicas:\n      - path: ${REPLICA_DIR}/app\n",
    )
    .unwrap();
    let true_ = [
        ("MEMSYNC_SYSTEMCTL", "/bin/true"),
        ("REPLICA_DIR", "/backups"),
        ("UNRELATED", "not carried"),
    ];
    h.ok(&["install-service"], &true_);
    let env = std::fs::read_to_string(h.env_path()).unwrap();
    assert!(env.contains("REPLICA_DIR=\"/backups\"\n"), "{env}");
    let path = std::env::var("PATH").unwrap();
    assert!(env.contains(&format!("PATH=\"{path}\"\n")), "{env}");
    assert!(!env.contains("UNRELATED"), "{env}");
    assert!(
        env.contains(&format!(
            "MEMSYNC_CONFIG=\"{}\"\n",
            h.work.join("litestream.yml").display()
        )),
        "{env}"
    );
    h.ok(&["uninstall-service"], &true_);
}

/// A config the service could not load is refused at install, naming it: otherwise the service
/// would fail at every start, seen only in its log.
#[test]
fn a_config_that_does_not_load_installs_nothing() {
    let h = Host::new();
    std::fs::write(
        h.work.join("litestream.yml"),
        "dbs:\n  - path: /srv/app.db\n    replicas:\n      - type: s4\n        path: /b\n",
    )
    .unwrap();
    let before = tree(h.dir.path());
    let o = h.memsync(&["install-service"], &[("MEMSYNC_SYSTEMCTL", "/bin/true")]);
    assert_one_line_error(&o, &["the service would not start", "litestream.yml", "s4"]);
    assert_eq!(tree(h.dir.path()), before, "a refused install left files");
    // A variable the config needs and the environment lacks is the same refusal.
    std::fs::write(
        h.work.join("litestream.yml"),
        "dbs:\n  - path: /srv/app.db\n    replicas:\n      - url: s3://${BUCKET}/app\n",
    )
    .unwrap();
    let before = tree(h.dir.path());
    let o = h.memsync(&["install-service"], &[("MEMSYNC_SYSTEMCTL", "/bin/true")]);
    assert_one_line_error(&o, &["the service would not start", "BUCKET"]);
    assert_eq!(tree(h.dir.path()), before, "a refused install left files");
}

/// Nothing configured (no config file, no replica variable, no memory server): `memsync run`
/// would exit at once, so a service would restart in a loop. Refused, dry run too, nothing
/// written.
#[test]
fn nothing_to_run_installs_nothing() {
    let h = Host::new();
    let before = tree(h.dir.path());
    for args in [&["install-service"][..], &["install-service", "--dry-run"]] {
        let o = h.memsync(
            args,
            &[
                ("MEMSYNC_SYSTEMCTL", "/bin/true"),
                ("REMOTE_MEMORY_HOST", ""),
            ],
        );
        assert_one_line_error(&o, &["the service would not start", "nothing to run"]);
        assert_eq!(
            tree(h.dir.path()),
            before,
            "{args:?}: a refused install left files"
        );
    }
}
