//! Environment variable expansion, done on the raw text before YAML parsing (like Litestream).
//!
//! - `$VAR` and `${VAR}` are replaced by the variable's value; names are `[A-Za-z_][A-Za-z0-9_]*`.
//! - An unset variable is an error (Litestream silently substitutes an empty string, which
//!   turns a forgotten `export` into, e.g., an empty bucket path).
//! - `$$` is a literal `$`: write a secret containing `$` as `pa$$word`.
//! - Any other `$` (e.g. `$1`, a lone `$`, `${}`) is an error, so a typo never expands silently.
//! - YAML comments (a `#` at the start of a line or after a blank, outside quotes) are left
//!   untouched, so commented-out examples may mention unset variables.
//!
//! Quote values that come from the environment (`key: "${SECRET}"`) if they may contain YAML
//! syntax such as `: ` or a leading `*`. A value containing a newline shifts later line numbers.

use std::path::Path;

use super::ConfigError;

/// Expands `text` as described in the module docs. `file` is only used in errors.
pub(crate) fn expand_env(
    text: &str,
    file: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    // The indentation of the line that opened a block scalar (`exec: >-`) while its lines
    // follow: in them a ` #` is text, not a comment, and quotes are characters.
    let mut block: Option<usize> = None;
    for (idx, line) in text.split_inclusive('\n').enumerate() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let in_block = block.is_some_and(|k| line.trim().is_empty() || indent > k);
        if !in_block {
            block = None;
        }
        expand_line(line, idx as u64 + 1, file, env, in_block, &mut out)?;
        if !in_block && opens_block(line) {
            // The block's lines are those indented past its key, which a list item's `- `
            // puts further in than the line's own indentation.
            let mut rest = &line[indent..];
            let (mut key_col, mut dash_col) = (indent, indent);
            while let Some(r) = rest.strip_prefix("- ") {
                let skipped = r.len() - r.trim_start_matches(' ').len();
                dash_col = key_col;
                key_col += 2 + skipped;
                rest = &r[skipped..];
            }
            // `- |`: the item itself is the block, indented past its dash.
            block = Some(if rest.starts_with(['|', '>']) {
                dash_col
            } else {
                key_col
            });
        }
    }
    Ok(out)
}

/// Whether `line` ends with a block scalar's indicator (`key: |`, `- >-`, `key: |2+`), a
/// comment after it allowed.
fn opens_block(line: &str) -> bool {
    let text = match line.find(" #") {
        Some(i) => &line[..i],
        None => line,
    };
    let t = text
        .trim_end()
        .trim_end_matches(|c: char| c == '-' || c == '+' || c.is_ascii_digit());
    let Some(head) = t.strip_suffix(['|', '>']) else {
        return false;
    };
    let head = head.trim_end();
    head.ends_with(':') || head.trim_start() == "-" || head.ends_with(" -")
}

/// The variables `text` refers to, in order of first use (what a service must carry for its
/// config file to expand as it does here).
pub fn referenced(text: &str) -> Vec<String> {
    let seen = std::cell::RefCell::new(Vec::<String>::new());
    let _ = expand_env(text, Path::new(""), &|name| {
        let mut s = seen.borrow_mut();
        if !s.iter().any(|n| n == name) {
            s.push(name.to_owned());
        }
        Some(String::new())
    });
    seen.into_inner()
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn expand_line(
    line: &str,
    lineno: u64,
    file: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    in_block: bool,
    out: &mut String,
) -> Result<(), ConfigError> {
    let invalid = |what: String| ConfigError::Invalid {
        file: file.to_path_buf(),
        line: Some(lineno),
        what,
    };
    let mut quote: Option<char> = None;
    // Last non-blank character outside of a scalar, used to decide whether a quote opens one.
    let mut prev: Option<char> = None;
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '$' => {
                match chars.peek().map(|&(_, n)| n) {
                    Some('$') => {
                        chars.next();
                        out.push('$');
                    }
                    Some('{') => {
                        chars.next();
                        let start = i + 2;
                        let Some(len) = line[start..].find('}') else {
                            return Err(invalid(
                                "unterminated \"${\" (write $$ for a literal $)".into(),
                            ));
                        };
                        let name = &line[start..start + len];
                        if !name.starts_with(is_name_start) || !name.chars().all(is_name_char) {
                            return Err(invalid(format!(
                                "invalid variable reference \"${{{name}}}\" (names are letters, digits and _; write $$ for a literal $)"
                            )));
                        }
                        push_var(name, lineno, file, env, out)?;
                        while chars.peek().is_some_and(|&(j, _)| j <= start + len) {
                            chars.next();
                        }
                    }
                    Some(n) if is_name_start(n) => {
                        let start = i + 1;
                        let len = line[start..]
                            .find(|ch: char| !is_name_char(ch))
                            .unwrap_or(line.len() - start);
                        push_var(&line[start..start + len], lineno, file, env, out)?;
                        while chars.peek().is_some_and(|&(j, _)| j < start + len) {
                            chars.next();
                        }
                    }
                    _ => {
                        return Err(invalid(
                            "\"$\" must start a variable ($VAR or ${VAR}); write $$ for a literal $"
                                .into(),
                        ));
                    }
                }
                prev = Some('x');
                continue;
            }
            _ if in_block && c != '$' => {}
            '#' if quote.is_none() && (i == 0 || line[..i].ends_with([' ', '\t'])) => {
                out.push_str(&line[i..]);
                return Ok(());
            }
            '\'' | '"'
                if quote.is_none()
                    && matches!(prev, None | Some(':' | '-' | '[' | '{' | ',' | '?')) =>
            {
                quote = Some(c);
            }
            '\'' if quote == Some('\'') && chars.peek().is_some_and(|&(_, n)| n == '\'') => {
                chars.next();
                out.push_str("''");
                continue;
            }
            '\\' if quote == Some('"') => {
                out.push(c);
                if let Some((_, n)) = chars.next() {
                    out.push(n);
                }
                continue;
            }
            _ if Some(c) == quote => quote = None,
            _ => {}
        }
        if !c.is_whitespace() {
            prev = Some(c);
        }
        out.push(c);
    }
    Ok(())
}

fn push_var(
    name: &str,
    line: u64,
    file: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut String,
) -> Result<(), ConfigError> {
    let value = env(name).ok_or_else(|| ConfigError::UnsetVar {
        file: file.to_path_buf(),
        line,
        var: name.to_string(),
    })?;
    out.push_str(&value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "BUCKET" => Some("my-bkt".into()),
            "KEY_1" => Some("AKIA".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn exp(s: &str) -> Result<String, ConfigError> {
        expand_env(s, Path::new("litestream.yml"), &env)
    }

    #[test]
    fn referenced_names_each_variable_once() {
        let text = "a: ${ONE}\nb: $TWO/${ONE}\nc: $$NOT\n";
        assert_eq!(referenced(text), ["ONE", "TWO"]);
    }

    #[test]
    fn braces_and_bare() {
        assert_eq!(exp("b: ${BUCKET}/x\n").unwrap(), "b: my-bkt/x\n");
        assert_eq!(
            exp("b: $BUCKET/x $KEY_1.\n").unwrap(),
            "b: my-bkt/x AKIA.\n"
        );
        assert_eq!(exp("b: \"$KEY_1\"").unwrap(), "b: \"AKIA\"");
        assert_eq!(exp("b: x${EMPTY}y").unwrap(), "b: xy");
    }

    #[test]
    fn dollar_dollar_is_literal() {
        assert_eq!(exp("secret: pa$$word$$\n").unwrap(), "secret: pa$word$\n");
        assert_eq!(exp("s: $$BUCKET").unwrap(), "s: $BUCKET");
    }

    #[test]
    fn unset_variable_names_var_and_line() {
        let e = exp("a: 1\n\nb: ${NOPE}\n").unwrap_err();
        assert!(matches!(&e, ConfigError::UnsetVar { line: 3, var, .. } if var == "NOPE"));
        assert_eq!(
            e.to_string(),
            "litestream.yml:3: environment variable \"NOPE\" is not set (write $$ for a literal $, or disable expansion with -no-expand-env)"
        );
        assert!(
            matches!(exp("x: $NOPE_2").unwrap_err(), ConfigError::UnsetVar { var, .. } if var == "NOPE_2")
        );
    }

    #[test]
    fn stray_dollar_is_an_error() {
        for bad in ["a: $", "a: $1", "a: ${", "a: ${}", "a: ${A-B}", "a: x$ y"] {
            let e = exp(bad).unwrap_err();
            assert!(
                matches!(e, ConfigError::Invalid { line: Some(1), .. }),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn comments_are_not_expanded() {
        let s = "# secret: $UNSET\na: 1 # $UNSET too\nb: \"x # $BUCKET\"\nc: 'it''s # $BUCKET'\n";
        assert_eq!(
            exp(s).unwrap(),
            "# secret: $UNSET\na: 1 # $UNSET too\nb: \"x # my-bkt\"\nc: 'it''s # my-bkt'\n"
        );
        // `#` inside a word is not a comment.
        assert_eq!(exp("a: x#$BUCKET").unwrap(), "a: x#my-bkt");
    }

    /// In a block scalar's lines ` #` is text: the variables after it are expanded (they
    /// were left as `$TOKEN`, and the command got the literal text).
    #[test]
    fn block_scalars_have_no_comments() {
        let s = "exec: >-\n  /bin/echo\n  channel #$BUCKET 'x\n\n  more\nb: 1 # $UNSET\n";
        assert_eq!(
            exp(s).unwrap(),
            "exec: >-\n  /bin/echo\n  channel #my-bkt 'x\n\n  more\nb: 1 # $UNSET\n"
        );
        let s = "dbs:\n  - |\n    a #$BUCKET\n  - x # $UNSET\n";
        assert_eq!(
            exp(s).unwrap(),
            "dbs:\n  - |\n    a #my-bkt\n  - x # $UNSET\n"
        );
        assert!(!opens_block("a: b|c\n") && opens_block("a: |2+ # note\n"));
        // In a list item the block ends where the item's next key starts.
        let s = "dbs:\n  - path: >-\n      /a #$BUCKET\n    replica:\n      path: /b  # $UNSET\n";
        assert_eq!(
            exp(s).unwrap(),
            "dbs:\n  - path: >-\n      /a #my-bkt\n    replica:\n      path: /b  # $UNSET\n"
        );
    }
}
