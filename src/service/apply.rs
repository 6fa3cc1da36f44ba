//! Carrying a plan out, or printing it (`--dry-run`). The only part of `service` that touches
//! the system.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::quote::{shell, windows_line};
use super::{Cmd, FileWrite, Plan, Platform, Program, ServiceError, Step};

/// What running a plan gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The exit code of the last passthrough command (status, logs), else 0.
    pub code: i32,
}

/// A command as the user would type it.
pub fn command_line(platform: Platform, cmd: &Cmd) -> String {
    let mut all = vec![cmd.program.name().to_string()];
    all.extend(cmd.args.iter().cloned());
    match platform {
        Platform::Windows => windows_line(&all),
        _ => all.iter().map(|a| shell(a)).collect::<Vec<_>>().join(" "),
    }
}

/// The plan as text: every directory, file (path, mode, content) and command, in order.
/// Lines starting `=== ` frame the steps; a file's content is between its `=== write` line and
/// `=== end`.
pub fn render(platform: Platform, plan: &Plan) -> String {
    let mut s = String::from("dry run: nothing is written or run\n");
    for step in &plan.steps {
        match step {
            Step::Mkdir { path, mode } => {
                s.push_str(&format!("=== mkdir {} (mode {mode:04o})\n", path.display()))
            }
            Step::Write(f) => {
                s.push_str(&format!(
                    "=== write {} (mode {:04o})\n",
                    f.path.display(),
                    f.mode
                ));
                s.push_str(&f.content);
                if !f.content.ends_with('\n') {
                    s.push('\n');
                }
                s.push_str("=== end\n");
            }
            Step::Remove(p) => s.push_str(&format!("=== remove {}\n", p.display())),
            Step::RemoveDirIfEmpty(p) => {
                s.push_str(&format!("=== remove {} if empty\n", p.display()))
            }
            Step::Run(c) => {
                let tail = if c.check {
                    ""
                } else {
                    "   (a failure is ignored)"
                };
                s.push_str(&format!("=== run {}{tail}\n", command_line(platform, c)));
            }
            Step::AwaitStopped { service, secs } => s.push_str(&format!(
                "=== wait until the service \"{service}\" has stopped (up to {secs} s)\n"
            )),
        }
    }
    for n in &plan.notes {
        s.push_str(&format!("=== note: {n}\n"));
    }
    s
}

/// Carries `plan` out, saying on stdout what it did; stops at the first failure.
pub fn apply(platform: Platform, plan: &Plan) -> Result<Outcome, ServiceError> {
    let mut code = 0;
    for step in &plan.steps {
        match step {
            Step::Mkdir { path, mode } => mkdir(path, *mode)?,
            Step::Write(f) => {
                write_file(f).map_err(|source| ServiceError::Write {
                    path: f.path.clone(),
                    source,
                })?;
                crate::stdout::noteln!("wrote {} (mode {:04o})", f.path.display(), f.mode);
            }
            Step::Remove(p) => match fs::remove_file(p) {
                Ok(()) => crate::stdout::noteln!("removed {}", p.display()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    crate::stdout::noteln!("{} was not there", p.display())
                }
                Err(source) => {
                    return Err(ServiceError::Remove {
                        path: p.clone(),
                        source,
                    });
                }
            },
            // Something else kept in it (or no such folder) leaves it: only the install's own
            // folder, emptied, goes.
            Step::RemoveDirIfEmpty(p) => {
                if fs::remove_dir(p).is_ok() {
                    crate::stdout::noteln!("removed {}", p.display());
                }
            }
            Step::Run(c) => code = run(platform, c)?,
            #[cfg(windows)]
            Step::AwaitStopped { service, secs } => {
                super::host::await_stopped(service, std::time::Duration::from_secs(*secs))?;
                crate::stdout::noteln!("{service} has stopped");
            }
            #[cfg(not(windows))]
            Step::AwaitStopped { .. } => {
                return Err(ServiceError::Unsupported {
                    what: "waiting for a Windows service",
                });
            }
        }
    }
    for n in &plan.notes {
        crate::stdout::noteln!("note: {n}");
    }
    Ok(Outcome { code })
}

fn mkdir(path: &Path, mode: u32) -> Result<(), ServiceError> {
    let mut b = DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, mode);
    #[cfg(not(unix))]
    let _ = mode;
    b.create(path).map_err(|source| ServiceError::Mkdir {
        path: path.to_path_buf(),
        source,
    })
}

/// Temp file created with the final mode (a secret is never readable by others, not even for a
/// moment), fsync, rename over the old file, fsync of the directory.
fn write_file(f: &FileWrite) -> io::Result<()> {
    let tmp = crate::fsutil::temp_sibling(&f.path);
    let res = (|| {
        let _ = fs::remove_file(&tmp);
        let mut o = OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, f.mode);
        let mut file = o.open(&tmp)?;
        // The umask may have taken bits away: the mode is exactly the one asked for.
        #[cfg(unix)]
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(f.mode))?;
        file.write_all(f.content.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, &f.path)?;
        crate::fsutil::sync_dir(&f.path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// The program's path: its variable's value (`MEMSYNC_SYSTEMCTL`...), else the first match on
/// `PATH`.
fn locate(program: Program) -> Result<PathBuf, ServiceError> {
    if let Some(var) = program.override_var()
        && let Some(p) = std::env::var_os(var).filter(|v| !v.is_empty())
    {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(ServiceError::ProgramMissing {
            program: program.name(),
            looked: format!("{var}={}", p.display()),
            hint: String::new(),
        });
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(p) = std::env::split_paths(&path)
        .map(|d| d.join(program.name()))
        .find(|p| p.is_file())
    {
        return Ok(p);
    }
    let hint = match program.override_var() {
        Some(var) => format!("; install it, or set {var} to its path"),
        None => String::new(),
    };
    Err(ServiceError::ProgramMissing {
        program: program.name(),
        looked: "not on PATH".into(),
        hint,
    })
}

/// Runs one command; its exit code for a passthrough command, else 0 (or an error).
fn run(platform: Platform, c: &Cmd) -> Result<i32, ServiceError> {
    let line = command_line(platform, c);
    let exe = locate(c.program)?;
    let mut cmd = Command::new(&exe);
    cmd.args(&c.args);
    if c.passthrough {
        let status = cmd.status().map_err(|source| ServiceError::Spawn {
            command: line.clone(),
            source,
        })?;
        return Ok(status.code().unwrap_or(1));
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ServiceError::Spawn {
            command: line.clone(),
            source,
        })?;
    if out.status.success() {
        crate::stdout::noteln!("ran {line}");
        return Ok(0);
    }
    let detail = first_line(&out.stderr)
        .or_else(|| first_line(&out.stdout))
        .unwrap_or_else(|| "no output".into());
    let status = match out.status.code() {
        Some(n) => format!("exit {n}"),
        None => "killed by a signal".into(),
    };
    if c.check {
        return Err(ServiceError::Failed {
            command: line,
            status,
            detail,
        });
    }
    crate::stdout::noteln!("ran {line}: failed ({status}: {detail}); going on");
    Ok(0)
}

fn first_line(bytes: &[u8]) -> Option<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
}
