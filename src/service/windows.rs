//! The Windows service "MCP Memory Sync", registered with `sc.exe`.
//!
//! The service runs `memsync run --windows-service`, which answers the Service Control Manager
//! (`host.rs`) and logs to [`log_path`]. Settings go in the service's `Environment` registry
//! value, which every local user can read; secret values go in [`secrets_path`], in a directory
//! only SYSTEM and Administrators may read, which `run --windows-service --secrets-file` loads
//! at start.

use super::env::Var;
use super::quote::windows_arg;
use super::{
    Action, Cmd, DESCRIPTION, FileWrite, Plan, Program, RESTART_SECS, STOP_SECS, ServiceError,
    Spec, Step, WINDOWS_NAME,
};

/// The service's registry key (its `Environment` value is the service's environment).
pub const REG_KEY: &str = r"HKLM\SYSTEM\CurrentControlSet\Services\MCP Memory Sync";

/// `%ProgramData%\memsync\<rest>`, spelled with backslashes rather than joined:
/// `--dry-run --platform windows` prints it from other systems too.
fn program_data(rest: &str) -> std::path::PathBuf {
    let base = std::env::var("ProgramData")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| r"C:\ProgramData".into());
    format!(r"{}\memsync\{rest}", base.trim_end_matches('\\')).into()
}

/// The service's log file: `%ProgramData%\memsync\memsync.log` (a service has no console).
pub fn log_path() -> std::path::PathBuf {
    program_data("memsync.log")
}

/// The directory of the service's secrets, readable by SYSTEM and Administrators only.
fn secrets_dir() -> std::path::PathBuf {
    program_data("secrets")
}

/// The service's secret settings (API keys, S3 keys): a JSON object of name to value, named
/// on the service's command line.
fn secrets_path() -> std::path::PathBuf {
    program_data(r"secrets\service.json")
}

/// The secrets file's content for `vars`.
fn secrets_json(vars: &[&Var]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = vars
        .iter()
        .map(|v| (v.name.clone(), serde_json::Value::String(v.value.clone())))
        .collect();
    serde_json::Value::Object(map).to_string() + "\n"
}

/// The settings in a secrets file's `text`.
#[cfg_attr(not(windows), allow(dead_code))]
pub fn parse_secrets(text: &str) -> Result<Vec<(String, String)>, String> {
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|e| e.to_string())?;
    map.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            _ => Err(format!("{k}: not a string")),
        })
        .collect()
}

/// The config variables: on Windows the config file goes on the command line instead.
const CONFIG_VARS: [&str; 2] = ["MEMSYNC_CONFIG", "LITESTREAM_CONFIG"];

/// The service's command line: the executable always quoted (an unquoted path with spaces is
/// the classic service hijack), then its arguments, then `-config` with the config file the
/// installer found: there `sc qc` shows it, and it does not hang on the `Environment` value
/// (which Wine, for one, ignores). The flag that makes `run` answer the service manager is
/// added here, and `--secrets-file` when there are secret settings.
fn bin_path(spec: &Spec) -> String {
    let exe = spec.exe.to_string_lossy();
    let mut s = format!("\"{exe}\"");
    let config = CONFIG_VARS
        .iter()
        .find_map(|c| spec.env.vars.iter().find(|v| v.name == *c))
        .map(|v| ["-config", v.value.as_str()]);
    let secrets_file = secrets_path().to_string_lossy().into_owned();
    let secrets = spec
        .env
        .vars
        .iter()
        .any(|v| v.secret)
        .then_some(["--secrets-file", secrets_file.as_str()]);
    for a in spec
        .args
        .iter()
        .map(String::as_str)
        .chain(config.into_iter().flatten())
        .chain(["--windows-service"])
        .chain(secrets.into_iter().flatten())
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
            if secret.is_empty() {
                p.steps.push(Step::Remove(secrets_path()));
            } else {
                // The directory's ACL first (inherited by what is written in it): SYSTEM and
                // Administrators, by SID (the names are translated on other languages).
                let dir = secrets_dir();
                p.steps.push(Step::Mkdir {
                    path: dir.clone(),
                    mode: 0o700,
                });
                p.steps.push(Step::Run(Cmd::new(
                    Program::Icacls,
                    &[
                        &dir.to_string_lossy(),
                        "/inheritance:r",
                        "/grant:r",
                        "*S-1-5-18:(OI)(CI)F",
                        "*S-1-5-32-544:(OI)(CI)F",
                    ],
                )));
                p.steps.push(Step::Write(FileWrite {
                    path: secrets_path(),
                    mode: 0o600,
                    content: secrets_json(&secret),
                }));
            }
            p.steps.push(Step::Run(sc(&["start", n])));
        }
        Action::Uninstall => {
            p.steps.push(Step::Run(sc(&["stop", n]).lenient()));
            p.steps.push(await_stopped());
            p.steps.push(Step::Run(sc(&["delete", n])));
            p.steps.push(Step::Remove(secrets_path()));
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
            r#"sc.exe create "MCP Memory Sync" binPath= "\"C:\Program Files\memsync\memsync.exe\" run -config \"C:\My Config\litestream.yml\" --windows-service --secrets-file C:\ProgramData\memsync\secrets\service.json" start= auto DisplayName= "MCP Memory Sync""#
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
        // The secret goes to a file in a directory whose ACL is set first.
        assert!(
            lines[5].starts_with("icacls.exe ")
                && lines[5].ends_with(
                    r"\memsync\secrets /inheritance:r /grant:r *S-1-5-18:(OI)(CI)F *S-1-5-32-544:(OI)(CI)F"
                ),
            "{}",
            lines[5]
        );
        let steps: Vec<&Step> = p.steps.iter().collect();
        let at = |f: &dyn Fn(&Step) -> bool| steps.iter().position(|s| f(s)).unwrap();
        let mkdir = at(&|s| matches!(s, Step::Mkdir { path, .. } if *path == secrets_dir()));
        let acl = at(&|s| matches!(s, Step::Run(c) if c.program == Program::Icacls));
        let write = at(&|s| matches!(s, Step::Write(f) if f.path == secrets_path()));
        assert!(mkdir < acl && acl < write);
        let Step::Write(f) = steps[write] else {
            unreachable!()
        };
        assert_eq!(
            parse_secrets(&f.content).unwrap(),
            [("MCP_API_KEY".to_string(), "k".to_string())]
        );
        assert!(!f.content.contains("SYNC_INTERVAL"));
        assert!(
            plan(Action::Uninstall, &spec)
                .unwrap()
                .steps
                .contains(&Step::Remove(secrets_path()))
        );
    }

    /// `C:\memsync.exe run`, no environment.
    fn plain_spec() -> Spec {
        Spec {
            exe: PathBuf::from(r"C:\memsync.exe"),
            args: vec!["run".into()],
            env: Env { vars: vec![] },
            scope: Scope::System,
            layout: Layout::default(),
            uid: 0,
            run_as: None,
        }
    }

    #[test]
    fn secrets_files_round_trip_and_refuse_what_is_not_text() {
        let v = Var {
            name: "K".into(),
            value: "a\"b\nc".into(),
            secret: true,
        };
        let text = secrets_json(&[&v]);
        assert_eq!(
            parse_secrets(&text).unwrap(),
            [("K".to_string(), "a\"b\nc".to_string())]
        );
        assert!(parse_secrets(r#"{"K": 1}"#).is_err());
        assert!(parse_secrets("K=v").is_err());
        // No secrets: an old file goes.
        let p = plan(Action::Install, &plain_spec()).unwrap();
        assert!(p.steps.contains(&Step::Remove(secrets_path())));
    }

    #[test]
    fn logs_read_the_service_log_file_and_follow_it() {
        let spec = plain_spec();
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
        let spec = plain_spec();
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
                    Step::Remove(p) if *p == secrets_path() => "remove secrets".into(),
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        assert_eq!(shape(Action::Stop), ["stop", "wait"]);
        assert_eq!(shape(Action::Restart), ["stop", "wait", "start"]);
        assert_eq!(
            shape(Action::Uninstall),
            ["stop", "wait", "delete", "remove secrets"]
        );
        assert_eq!(shape(Action::Start), ["start"]);
    }
}
