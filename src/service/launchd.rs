//! The launchd agent (or daemon, `--system`): `memsync run` kept alive while it fails, its
//! output in `~/Library/Logs/mcp-memory-sync/memsync.log`.
//!
//! The environment goes in the property list's `EnvironmentVariables`, and the file is written
//! with mode 0600: launchd reads an agent's plist as its user, so nobody else needs to read it,
//! and one file is simpler than a second one memsync would have to read at start.

use super::{
    Action, Cmd, DESCRIPTION, FileWrite, LABEL, Plan, Program, RESTART_SECS, Scope, ServiceError,
    Spec, Step,
};
use crate::xmltext::escape as xml;

fn string(s: &str) -> String {
    format!("<string>{}</string>", xml(s))
}

/// The property list's text.
pub fn plist(spec: &Spec, log: &str, workdir: &str) -> String {
    let mut p = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <plist version=\"1.0\">\n<dict>\n",
    );
    p.push_str(&format!(
        "  <!-- {} (written by memsync install-service) -->\n",
        xml(DESCRIPTION)
    ));
    p.push_str(&format!("  <key>Label</key>\n  {}\n", string(LABEL)));
    p.push_str("  <key>ProgramArguments</key>\n  <array>\n");
    p.push_str(&format!("    {}\n", string(&spec.exe.to_string_lossy())));
    for a in &spec.args {
        p.push_str(&format!("    {}\n", string(a)));
    }
    p.push_str("  </array>\n");
    p.push_str("  <key>EnvironmentVariables</key>\n  <dict>\n");
    for v in &spec.env.vars {
        p.push_str(&format!(
            "    <key>{}</key>\n    {}\n",
            xml(&v.name),
            string(&v.value)
        ));
    }
    p.push_str("  </dict>\n");
    if let (Scope::System, Some(user)) = (spec.scope, &spec.run_as) {
        p.push_str(&format!("  <key>UserName</key>\n  {}\n", string(user)));
    }
    p.push_str(&format!(
        "  <key>WorkingDirectory</key>\n  {}\n",
        string(workdir)
    ));
    p.push_str("  <key>RunAtLoad</key>\n  <true/>\n");
    // Started again when it exits with an error (or a signal), not after a clean stop.
    p.push_str("  <key>KeepAlive</key>\n  <dict>\n    <key>SuccessfulExit</key>\n    <false/>\n  </dict>\n");
    p.push_str(&format!(
        "  <key>ThrottleInterval</key>\n  <integer>{RESTART_SECS}</integer>\n"
    ));
    // memsync flushes what is committed on SIGTERM before it exits.
    p.push_str("  <key>ExitTimeOut</key>\n  <integer>60</integer>\n");
    p.push_str("  <key>ProcessType</key>\n  <string>Background</string>\n");
    p.push_str(&format!(
        "  <key>StandardOutPath</key>\n  {}\n",
        string(log)
    ));
    p.push_str(&format!(
        "  <key>StandardErrorPath</key>\n  {}\n",
        string(log)
    ));
    p.push_str("</dict>\n</plist>\n");
    p
}

/// `gui/<uid>` for an agent, `system` for a daemon.
fn domain(spec: &Spec) -> String {
    match spec.scope {
        Scope::User => format!("gui/{}", spec.uid),
        Scope::System => "system".into(),
    }
}

fn launchctl(args: &[&str]) -> Cmd {
    Cmd::new(Program::Launchctl, args)
}

/// The plan for `action`.
pub fn plan(action: Action, spec: &Spec) -> Result<Plan, ServiceError> {
    let scope = spec.scope;
    let domain = domain(spec);
    let target = format!("{domain}/{LABEL}");
    let t = target.as_str();
    let mut p = Plan::default();
    match action {
        Action::Install => {
            let path = spec.layout.launchd_plist(scope)?;
            let log_dir = spec.layout.launchd_log_dir(scope)?;
            let log = spec.layout.launchd_log(scope)?;
            let workdir = match (scope, &spec.layout.home) {
                (Scope::User, Some(h)) => h.to_string_lossy().into_owned(),
                _ => "/".into(),
            };
            let text = plist(spec, &log.to_string_lossy(), &workdir);
            if let Some(dir) = path.parent() {
                p.steps.push(Step::Mkdir {
                    path: dir.to_path_buf(),
                    mode: 0o755,
                });
            }
            p.steps.push(Step::Mkdir {
                path: log_dir,
                mode: 0o755,
            });
            p.steps.push(Step::Write(FileWrite {
                path: path.clone(),
                mode: 0o600,
                content: text,
            }));
            // A service loaded from an earlier install is unloaded first (fails if there is none).
            p.steps
                .push(Step::Run(launchctl(&["bootout", t]).lenient()));
            p.steps.push(Step::Run(launchctl(&[
                "bootstrap",
                &domain,
                &path.to_string_lossy(),
            ])));
            p.notes.push(format!("logs: {}", log.display()));
        }
        Action::Uninstall => {
            let path = spec.layout.launchd_plist(scope)?;
            p.steps
                .push(Step::Run(launchctl(&["bootout", t]).lenient()));
            p.steps.push(Step::Remove(path));
        }
        Action::Start => p.steps.push(Step::Run(launchctl(&["kickstart", t]))),
        // A clean exit (memsync exits 0 on SIGTERM after flushing) is not restarted.
        Action::Stop => p.steps.push(Step::Run(launchctl(&["kill", "SIGTERM", t]))),
        Action::Restart => p.steps.push(Step::Run(launchctl(&["kickstart", "-k", t]))),
        Action::Status => p
            .steps
            .push(Step::Run(launchctl(&["print", t]).passthrough())),
        Action::Logs { follow } => {
            let log = spec
                .layout
                .launchd_log(scope)?
                .to_string_lossy()
                .into_owned();
            let mut args = vec!["-n", "200"];
            if follow {
                args.push("-F");
            }
            args.push(&log);
            p.steps
                .push(Step::Run(Cmd::new(Program::Tail, &args).passthrough()));
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::super::Layout;
    use super::super::env::{Env, Var};
    use super::*;
    use std::path::PathBuf;

    fn spec() -> Spec {
        Spec {
            exe: PathBuf::from("/Users/a b/bin/memsync"),
            args: vec!["run".into()],
            env: Env {
                vars: vec![Var {
                    name: "MCP_API_KEY".into(),
                    value: "k<&>".into(),
                    secret: true,
                }],
            },
            scope: Scope::User,
            layout: Layout {
                home: Some("/Users/a b".into()),
                config_home: None,
            },
            uid: 501,
            run_as: None,
        }
    }

    #[test]
    fn agent_plan() {
        let p = plan(Action::Install, &spec()).unwrap();
        let f = p.files().next().unwrap();
        assert_eq!(
            f.path,
            PathBuf::from("/Users/a b/Library/LaunchAgents/com.mcp.memory.sync.plist")
        );
        assert_eq!(f.mode, 0o600);
        assert!(f.content.contains("<string>k&lt;&amp;&gt;</string>"));
        assert!(
            f.content
                .contains("<string>/Users/a b/Library/Logs/mcp-memory-sync/memsync.log</string>")
        );
        let cmds: Vec<String> = p.commands().map(|c| c.args.join(" ")).collect();
        assert_eq!(
            cmds,
            [
                "bootout gui/501/com.mcp.memory.sync",
                "bootstrap gui/501 /Users/a b/Library/LaunchAgents/com.mcp.memory.sync.plist"
            ]
        );
    }
}
