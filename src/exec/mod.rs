//! Litestream's `exec`: the application runs as memsync's child, with memsync's environment
//! and standard streams, started once replication runs. memsync forwards the stop signals to
//! it and stops when it exits, with its exit code. The supervising itself is
//! `crate::supervise`; this module only knows the child.

mod words;

use std::process::{Command, ExitStatus};

pub use words::{WordsError, split};

/// Why the child could not run.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("exec {line:?}: {why}")]
    Words {
        line: String,
        #[source]
        why: WordsError,
    },
    #[error("exec: cannot start {program:?}: {source}")]
    Start {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("exec: waiting for {program:?}: {source}")]
    Wait {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

/// A command line to run, already split into words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecCommand {
    pub words: Vec<String>,
}

impl ExecCommand {
    /// Splits `line` (see [`split`]).
    pub fn parse(line: &str) -> Result<ExecCommand, ExecError> {
        split(line)
            .map(|words| ExecCommand { words })
            .map_err(|why| ExecError::Words {
                line: line.to_owned(),
                why,
            })
    }

    pub fn program(&self) -> &str {
        &self.words[0]
    }

    /// Starts the child: same environment, same standard streams, same process group (a
    /// Ctrl-C on the terminal reaches it directly, as under Litestream).
    pub fn spawn(&self) -> Result<std::process::Child, ExecError> {
        let mut cmd = Command::new(self.program());
        cmd.args(&self.words[1..]);
        crate::platform::die_with_parent(&mut cmd);
        cmd.spawn().map_err(|source| ExecError::Start {
            program: self.program().to_owned(),
            source,
        })
    }
}

/// The exit code a shell would give for `status`: the child's code, or 128 + the signal that
/// killed it.
pub fn exit_code(status: ExitStatus) -> i32 {
    crate::platform::exit_code(status)
}

/// Sends `stop` to the child `pid` (still running: its exit was not seen yet); one that exited
/// meanwhile is not an error (its exit is the next event).
pub fn forward(pid: u32, stop: crate::platform::Stop) -> std::io::Result<()> {
    crate::platform::forward(pid, stop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_as_a_shell_gives_them() {
        let run = |line: &str| {
            exit_code(
                ExecCommand::parse(line)
                    .unwrap()
                    .spawn()
                    .unwrap()
                    .wait()
                    .unwrap(),
            )
        };
        assert_eq!(run("sh -c 'exit 3'"), 3);
        assert_eq!(run("true"), 0);
        assert_eq!(run("sh -c 'kill -TERM $$'"), 128 + 15);
    }

    #[test]
    fn a_missing_program_is_one_line() {
        let e = ExecCommand::parse("/no/such/program --flag")
            .unwrap()
            .spawn()
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("exec: cannot start \"/no/such/program\": "),
            "{e}"
        );
    }
}
