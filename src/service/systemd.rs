//! The systemd unit: `memsync run` restarted on failure, its environment in a separate file
//! only its owner reads (`EnvironmentFile=`), its output in the journal.

use super::env::systemd_env_file;
use super::quote::{systemd_path, systemd_word};
use super::{
    Action, Cmd, DESCRIPTION, FileWrite, NAME, Plan, Program, RESTART_SECS, STOP_SECS, Scope,
    ServiceError, Spec, Step,
};

/// The unit file's text.
pub fn unit(spec: &Spec, env_file: &str) -> String {
    let exec: Vec<String> = std::iter::once(spec.exe.to_string_lossy().into_owned())
        .chain(spec.args.iter().cloned())
        .map(|w| systemd_word(&w))
        .collect();
    let mut u = String::new();
    u.push_str("# Written by `memsync install-service`; `memsync uninstall-service` removes it.\n");
    u.push_str("[Unit]\n");
    u.push_str(&format!("Description={DESCRIPTION}\n"));
    if spec.scope == Scope::System {
        // A user manager has no network-online.target of its own.
        u.push_str("Wants=network-online.target\nAfter=network-online.target\n");
    }
    u.push_str("\n[Service]\nType=simple\n");
    u.push_str(&format!("ExecStart={}\n", exec.join(" ")));
    u.push_str(&format!("EnvironmentFile={}\n", systemd_path(env_file)));
    if let (Scope::System, Some(user)) = (spec.scope, &spec.run_as) {
        u.push_str(&format!("User={}\n", systemd_path(user)));
    }
    u.push_str("Restart=on-failure\n");
    // An `-exec` child that a stop's SIGTERM (or SIGINT) ended gives memsync its 128 + signal
    // code, as a shell would: that is a clean stop, not a failure to restart from.
    u.push_str("SuccessExitStatus=130 143\n");
    u.push_str(&format!("RestartSec={RESTART_SECS}\n"));
    // memsync flushes what is committed on SIGTERM before it exits, and passes the stop on to
    // an `-exec` child itself: SIGTERM goes to memsync only, the rest is killed only if the
    // stop times out.
    u.push_str(&format!("KillMode=mixed\nTimeoutStopSec={STOP_SECS}\n"));
    u.push_str(&format!("SyslogIdentifier={NAME}\n"));
    u.push_str("\n[Install]\n");
    u.push_str(match spec.scope {
        Scope::User => "WantedBy=default.target\n",
        Scope::System => "WantedBy=multi-user.target\n",
    });
    u
}

fn systemctl(scope: Scope, args: &[&str]) -> Cmd {
    let mut all = Vec::with_capacity(args.len() + 1);
    if scope == Scope::User {
        all.push("--user");
    }
    all.extend_from_slice(args);
    Cmd::new(Program::Systemctl, &all)
}

/// The plan for `action`.
pub fn plan(action: Action, spec: &Spec) -> Result<Plan, ServiceError> {
    let scope = spec.scope;
    let unit_name = format!("{NAME}.service");
    let u = unit_name.as_str();
    let mut p = Plan::default();
    match action {
        Action::Install => {
            let unit_path = spec.layout.systemd_unit(scope)?;
            let env_dir = spec.layout.env_dir(scope)?;
            let env_file = spec.layout.env_file(scope)?;
            let env_text = systemd_env_file(&spec.env);
            let unit_text = unit(spec, &env_file.to_string_lossy());
            // Can the service manager be reached (a user manager needs the session bus)? Asked
            // before anything is written, so a failure leaves nothing behind.
            p.steps
                .push(Step::Run(systemctl(scope, &["show", "--property=Version"])));
            if let Some(dir) = unit_path.parent() {
                p.steps.push(Step::Mkdir {
                    path: dir.to_path_buf(),
                    mode: 0o755,
                });
            }
            p.steps.push(Step::Mkdir {
                path: env_dir,
                mode: 0o700,
            });
            p.steps.push(Step::Write(FileWrite {
                path: env_file,
                mode: 0o600,
                content: env_text,
            }));
            p.steps.push(Step::Write(FileWrite {
                path: unit_path,
                mode: 0o644,
                content: unit_text,
            }));
            p.steps
                .push(Step::Run(systemctl(scope, &["daemon-reload"])));
            p.steps
                .push(Step::Run(systemctl(scope, &["enable", "--now", u])));
            p.notes.push(format!(
                "memsync status-service shows it; memsync logs shows its log (journalctl{} -u {u})",
                if scope == Scope::User { " --user" } else { "" }
            ));
            if scope == Scope::User {
                p.notes.push(
                    "a user service runs while you are logged in; to keep it running after logout: loginctl enable-linger"
                        .into(),
                );
            }
        }
        Action::Uninstall => {
            let unit_path = spec.layout.systemd_unit(scope)?;
            let env_file = spec.layout.env_file(scope)?;
            p.steps.push(Step::Run(
                systemctl(scope, &["disable", "--now", u]).lenient(),
            ));
            p.steps.push(Step::Remove(unit_path));
            if let Some(dir) = env_file.parent() {
                p.steps.push(Step::Remove(env_file.clone()));
                p.steps.push(Step::RemoveDirIfEmpty(dir.to_path_buf()));
            }
            p.steps
                .push(Step::Run(systemctl(scope, &["daemon-reload"])));
        }
        Action::Start => p.steps.push(Step::Run(systemctl(scope, &["start", u]))),
        Action::Stop => p.steps.push(Step::Run(systemctl(scope, &["stop", u]))),
        Action::Restart => p.steps.push(Step::Run(systemctl(scope, &["restart", u]))),
        Action::Status => p.steps.push(Step::Run(
            systemctl(scope, &["status", "--no-pager", u]).passthrough(),
        )),
        Action::Logs { follow } => {
            let mut args = Vec::new();
            if scope == Scope::User {
                args.push("--user");
            }
            args.extend_from_slice(&["-u", u]);
            if follow {
                args.push("-f");
            }
            p.steps.push(Step::Run(
                Cmd::new(Program::Journalctl, &args).passthrough(),
            ));
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::super::{Env, Layout};
    use super::*;
    use std::path::PathBuf;

    fn spec(scope: Scope) -> Spec {
        Spec {
            exe: PathBuf::from("/opt/my tools/memsync"),
            args: vec!["run".into()],
            env: Env::default(),
            scope,
            layout: Layout {
                home: Some("/home/u".into()),
                config_home: None,
            },
            uid: 1000,
            run_as: Some("u".into()),
        }
    }

    #[test]
    fn user_unit() {
        let s = spec(Scope::User);
        let text = unit(&s, "/home/u/.config/mcp-memory-sync/service.env");
        assert!(
            text.contains("ExecStart=\"/opt/my tools/memsync\" run\n"),
            "{text}"
        );
        assert!(text.contains("EnvironmentFile=/home/u/.config/mcp-memory-sync/service.env\n"));
        assert!(text.contains("Restart=on-failure\nSuccessExitStatus=130 143\nRestartSec=10\n"));
        assert!(text.contains("WantedBy=default.target"));
        assert!(!text.contains("User="));
        assert!(!text.contains("network-online"));
    }

    #[test]
    fn system_unit_runs_as_the_user() {
        let text = unit(&spec(Scope::System), "/etc/mcp-memory-sync/service.env");
        assert!(text.contains("User=u\n"));
        assert!(text.contains("WantedBy=multi-user.target"));
    }

    #[test]
    fn install_writes_env_0600_then_enables() {
        let p = plan(Action::Install, &spec(Scope::User)).unwrap();
        let files: Vec<(String, u32)> = p
            .files()
            .map(|f| (f.path.display().to_string(), f.mode))
            .collect();
        assert_eq!(
            files,
            [
                ("/home/u/.config/mcp-memory-sync/service.env".into(), 0o600),
                (
                    "/home/u/.config/systemd/user/mcp-memory-sync.service".into(),
                    0o644
                ),
            ]
        );
        let cmds: Vec<String> = p.commands().map(|c| c.args.join(" ")).collect();
        assert_eq!(
            cmds,
            [
                "--user show --property=Version",
                "--user daemon-reload",
                "--user enable --now mcp-memory-sync.service"
            ]
        );
        let logs = plan(Action::Logs { follow: true }, &spec(Scope::User)).unwrap();
        let c = logs.commands().next().unwrap();
        assert_eq!(
            (c.program, c.args.join(" ").as_str()),
            (Program::Journalctl, "--user -u mcp-memory-sync.service -f")
        );
    }
}
