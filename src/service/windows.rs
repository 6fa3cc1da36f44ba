//! The Windows service "MCP Memory Sync", registered with `sc.exe`.
//!
//! The service runs `memsync run --windows-service`, which answers the Service Control Manager
//! (`host.rs`) and logs to [`log_path`]. Settings go in the service's `Environment` registry
//! value, which every local user can read: secret values are left out (and named in a note).

use super::quote::windows_arg;
use super::{
    Action, Cmd, DESCRIPTION, Plan, Program, RESTART_SECS, STOP_SECS, ServiceError, Spec, Step,
    WINDOWS_NAME,
};

/// The service's registry key (its `Environment` value is the service's environment).
pub const REG_KEY: &str = r"HKLM\SYSTEM\CurrentControlSet\Services\MCP Memory Sync";

/// The service's log file: `%ProgramData%\memsync\memsync.log` (a service has no console).
pub fn log_path() -> std::path::PathBuf {
    let base = std::env::var("ProgramData")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| r"C:\ProgramData".into());
    // Spelled with backslashes rather than joined: `--dry-run --platform windows` prints it
    // from other systems too.
    format!(r"{}\memsync\memsync.log", base.trim_end_matches('\\')).into()
}

/// The config variables: on Windows the config file goes on the command line instead.
const CONFIG_VARS: [&str; 2] = ["MEMSYNC_CONFIG", "LITESTREAM_CONFIG"];

/// The service's command line: the executable always quoted (an unquoted path with spaces is
/// the classic service hijack), then its arguments, then `-config` with the config file the
/// installer found: there `sc qc` shows it, and it does not hang on the `Environment` value
/// (which Wine, for one, ignores). The flag that makes `run` answer the service manager is
/// added here.
fn bin_path(spec: &Spec) -> String {
    let exe = spec.exe.to_string_lossy();
    let mut s = format!("\"{exe}\"");
    let config = CONFIG_VARS
        .iter()
        .find_map(|c| spec.env.vars.iter().find(|v| v.name == *c))
        .map(|v| ["-config", v.value.as_str()]);
    for a in spec
        .args
        .iter()
        .map(String::as_str)
        .chain(config.into_iter().flatten())
        .chain(["--windows-service"])
    {
        s.push(' ');
        s.push_str(&windows_arg(a));
    }
    s
}

/// `sc stop` returns while the service is still stopping (shipping what is committed).
fn await_stopped() -> Step {
    Step::AwaitStopped {
        service: WINDOWS_NAME.into(),
        secs: STOP_SECS,
    }
}

fn sc(args: &[&str]) -> Cmd {
    Cmd::new(Program::Sc, args)
}

/// The plan for `action`.
pub fn plan(action: Action, spec: &Spec) -> Result<Plan, ServiceError> {
    let n = WINDOWS_NAME;
    let mut p = Plan::default();
    match action {
        Action::Install => {
            let bin = bin_path(spec);
            let delay = (RESTART_SECS * 1000).to_string();
            let actions = format!("restart/{delay}/restart/{delay}/restart/{delay}");
            p.steps.push(Step::Run(sc(&[
                "create",
                n,
                "binPath=",
                &bin,
                "start=",
                "auto",
                "DisplayName=",
                n,
            ])));
            p.steps
                .push(Step::Run(sc(&["description", n, DESCRIPTION])));
            p.steps.push(Step::Run(sc(&[
                "failure", n, "reset=", "86400", "actions=", &actions,
            ])));
            // Failure actions also when the process exits with an error, not only on a crash.
            // Not every `sc.exe` knows it (Wine's does not): without it a crash still restarts.
            p.steps
                .push(Step::Run(sc(&["failureflag", n, "1"]).lenient()));
            let (secret, plain): (Vec<_>, Vec<_>) = spec
                .env
                .vars
                .iter()
                .filter(|v| !CONFIG_VARS.contains(&v.name.as_str()))
                .partition(|v| v.secret);
            if !plain.is_empty() {
                let data: Vec<String> = plain
                    .iter()
                    .map(|v| format!("{}={}", v.name, v.value))
                    .collect();
                let data = data.join(r"\0");
                p.steps.push(Step::Run(Cmd::new(
                    Program::Reg,
                    &[
                        "add",
                        REG_KEY,
                        "/v",
                        "Environment",
                        "/t",
                        "REG_MULTI_SZ",
                        "/d",
                        &data,
                        "/f",
                    ],
                )));
            }
            if !secret.is_empty() {
                let names: Vec<&str> = secret.iter().map(|v| v.name.as_str()).collect();
                p.notes.push(format!(
                    "not written (the service's registry key is readable by every local user): {}",
                    names.join(", ")
                ));
            }
            p.steps.push(Step::Run(sc(&["start", n])));
        }
        Action::Uninstall => {
            p.steps.push(Step::Run(sc(&["stop", n]).lenient()));
            p.steps.push(await_stopped());
            p.steps.push(Step::Run(sc(&["delete", n])));
        }
        Action::Start => p.steps.push(Step::Run(sc(&["start", n]))),
        Action::Stop => {
            p.steps.push(Step::Run(sc(&["stop", n])));
            p.steps.push(await_stopped());
        }
        Action::Restart => {
            p.steps.push(Step::Run(sc(&["stop", n]).lenient()));
            p.steps.push(await_stopped());
            p.steps.push(Step::Run(sc(&["start", n])));
        }
        Action::Status => p.steps.push(Step::Run(sc(&["query", n]).passthrough())),
        Action::Logs { follow } => {
            // PowerShell's own quoting: single quotes, a quote inside doubled.
            let file = log_path().to_string_lossy().replace('\'', "''");
            let wait = if follow { " -Wait" } else { "" };
            let script = format!("Get-Content -Tail 200{wait} -LiteralPath '{file}'");
            p.steps.push(Step::Run(
                Cmd::new(
                    Program::PowerShell,
                    &["-NoProfile", "-NonInteractive", "-Command", &script],
                )
                .passthrough(),
            ));
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::super::env::{Env, Var};
    use super::super::quote::windows_line;
    use super::super::{Layout, Scope};
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn sc_command_lines_quote_paths_with_spaces() {
        let spec = Spec {
            exe: PathBuf::from(r"C:\Program Files\memsync\memsync.exe"),
            args: vec!["run".into()],
            env: Env {
                vars: vec![
                    Var {
                        name: "MCP_API_KEY".into(),
                        value: "k".into(),
                        secret: true,
                    },
                    Var {
                        name: "MEMSYNC_CONFIG".into(),
                        value: r"C:\My Config\litestream.yml".into(),
                        secret: false,
                    },
                    Var {
                        name: "SYNC_INTERVAL".into(),
                        value: "60".into(),
                        secret: false,
                    },
                ],
            },
            scope: Scope::System,
            layout: Layout::default(),
            uid: 0,
            run_as: None,
        };
        let p = plan(Action::Install, &spec).unwrap();
        let lines: Vec<String> = p
            .commands()
            .map(|c| {
                let mut all = vec![c.program.name().to_string()];
                all.extend(c.args.iter().cloned());
                windows_line(&all)
            })
            .collect();
        assert_eq!(
            lines[0],
            r#"sc.exe create "MCP Memory Sync" binPath= "\"C:\Program Files\memsync\memsync.exe\" run -config \"C:\My Config\litestream.yml\" --windows-service" start= auto DisplayName= "MCP Memory Sync""#
        );
        assert_eq!(
            lines[2],
            r#"sc.exe failure "MCP Memory Sync" reset= 86400 actions= restart/10000/restart/10000/restart/10000"#
        );
        assert_eq!(lines[3], r#"sc.exe failureflag "MCP Memory Sync" 1"#);
        assert_eq!(
            lines[4],
            r#"reg.exe add "HKLM\SYSTEM\CurrentControlSet\Services\MCP Memory Sync" /v Environment /t REG_MULTI_SZ /d SYNC_INTERVAL=60 /f"#
        );
        assert!(!lines.iter().any(|l| l.contains("MCP_API_KEY")));
        assert!(p.notes[0].contains("MCP_API_KEY"));
    }

    #[test]
    fn logs_read_the_service_log_file_and_follow_it() {
        let spec = Spec {
            exe: PathBuf::from(r"C:\memsync.exe"),
            args: vec!["run".into()],
            env: Env { vars: vec![] },
            scope: Scope::System,
            layout: Layout::default(),
            uid: 0,
            run_as: None,
        };
        let p = plan(Action::Logs { follow: true }, &spec).unwrap();
        let c = p.commands().next().unwrap();
        assert_eq!(c.program, Program::PowerShell);
        let script = c.args.last().unwrap();
        assert!(
            script.starts_with("Get-Content -Tail 200 -Wait -LiteralPath '"),
            "{script}"
        );
        assert!(script.ends_with(r"memsync\memsync.log'"), "{script}");
    }

    #[test]
    fn a_stop_waits_for_the_service_to_have_stopped_before_anything_follows() {
        let spec = Spec {
            exe: PathBuf::from(r"C:\memsync.exe"),
            args: vec!["run".into()],
            env: Env { vars: vec![] },
            scope: Scope::System,
            layout: Layout::default(),
            uid: 0,
            run_as: None,
        };
        let shape = |action| -> Vec<String> {
            plan(action, &spec)
                .unwrap()
                .steps
                .iter()
                .map(|s| match s {
                    Step::Run(c) => c.args[0].clone(),
                    Step::AwaitStopped { service, secs } => {
                        assert_eq!((service.as_str(), *secs), (WINDOWS_NAME, STOP_SECS));
                        "wait".into()
                    }
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        assert_eq!(shape(Action::Stop), ["stop", "wait"]);
        assert_eq!(shape(Action::Restart), ["stop", "wait", "start"]);
        assert_eq!(shape(Action::Uninstall), ["stop", "wait", "delete"]);
        assert_eq!(shape(Action::Start), ["start"]);
    }
}
