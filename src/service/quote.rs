//! Quoting for the places a path or value is written: systemd command lines and settings,
//! XML, POSIX shell (for showing commands) and Windows command lines.

fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:=,@".contains(c))
}

/// One word of a systemd `ExecStart=`: specifiers (`%`) and variable references (`$`) doubled,
/// double-quoted with C escapes unless it is plain.
pub fn systemd_word(s: &str) -> String {
    let s = s.replace('%', "%%").replace('$', "$$");
    if plain(&s) {
        return s;
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A path in a systemd setting that takes one path (`EnvironmentFile=`, `WorkingDirectory=`):
/// specifiers doubled, nothing else (no unquoting happens there).
pub fn systemd_path(s: &str) -> String {
    s.replace('%', "%%")
}

/// A word as a POSIX shell reads it back (for printing commands).
pub fn shell(s: &str) -> String {
    if plain(s) {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// An argument of a Windows command line as `CommandLineToArgvW` (and sc.exe) reads it back:
/// quoted when it holds a space, a tab or a quote (or is empty); quotes escaped with `\`, and
/// the backslashes before a quote (or the closing quote) doubled.
pub fn windows_arg(s: &str) -> String {
    if !s.is_empty() && !s.contains([' ', '\t', '"']) {
        return s.to_owned();
    }
    let mut out = String::from("\"");
    let mut backslashes = 0usize;
    for c in s.chars() {
        match c {
            '\\' => backslashes += 1,
            '"' => {
                out.push_str(&"\\".repeat(backslashes * 2 + 1));
                out.push('"');
                backslashes = 0;
            }
            c => {
                out.push_str(&"\\".repeat(backslashes));
                out.push(c);
                backslashes = 0;
            }
        }
    }
    out.push_str(&"\\".repeat(backslashes * 2));
    out.push('"');
    out
}

/// A whole Windows command line.
pub fn windows_line(args: &[String]) -> String {
    args.iter()
        .map(|a| windows_arg(a))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_words() {
        assert_eq!(systemd_word("/usr/bin/memsync"), "/usr/bin/memsync");
        assert_eq!(
            systemd_word("/opt/my apps/memsync"),
            "\"/opt/my apps/memsync\""
        );
        assert_eq!(systemd_word("50%$x"), "\"50%%$$x\"");
        assert_eq!(systemd_word(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(systemd_path("/home/u/100%/x"), "/home/u/100%%/x");
    }

    #[test]
    fn shell_words() {
        assert_eq!(shell("--user"), "--user");
        assert_eq!(shell("a b"), "'a b'");
        assert_eq!(shell("it's"), r"'it'\''s'");
    }

    #[test]
    fn windows_words() {
        assert_eq!(windows_arg("start="), "start=");
        assert_eq!(windows_arg("MCP Memory Sync"), "\"MCP Memory Sync\"");
        assert_eq!(
            windows_arg(r#""C:\Program Files\memsync\memsync.exe" run"#),
            r#""\"C:\Program Files\memsync\memsync.exe\" run""#
        );
        // Backslashes before a quote, and at the end of a quoted argument, are doubled.
        assert_eq!(
            windows_arg(r"C:\dir with space\"),
            r#""C:\dir with space\\""#
        );
        assert_eq!(windows_arg(r#"a\"b"#), r#""a\\\"b""#);
        assert_eq!(windows_arg(""), "\"\"");
    }
}
