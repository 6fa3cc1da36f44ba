//! Splitting `exec`'s command line into words, as Litestream does (go-shellwords without its
//! optional `$VAR` and backtick expansion): blanks separate words; single quotes keep
//! everything literally; double quotes keep blanks, and a backslash in them or outside them
//! takes the next character literally. No shell runs the command, so what only a shell does
//! (`;`, `&`, `|`, `<`, `>`, backticks) is refused instead of being cut off silently as
//! go-shellwords does; write `sh -c '...'` for that.

/// Why a command line cannot be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WordsError {
    #[error("the command is empty")]
    Empty,
    #[error("a {0} quote is not closed")]
    Unclosed(&'static str),
    #[error("it ends with a lone backslash")]
    TrailingBackslash,
    #[error("{0:?} needs a shell, and the command runs without one: write sh -c '...'")]
    NeedsShell(char),
}

/// The words of `line`; the first is the program.
pub fn split(line: &str) -> Result<Vec<String>, WordsError> {
    #[derive(PartialEq)]
    enum Q {
        None,
        Single,
        Double,
    }
    let mut words = Vec::new();
    let mut word = String::new();
    // A word has started (also an empty one written as '' or "").
    let mut started = false;
    let mut q = Q::None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (&q, c) {
            (Q::Single, '\'') => q = Q::None,
            (Q::Single, c) => word.push(c),
            (_, '\\') => {
                word.push(chars.next().ok_or(WordsError::TrailingBackslash)?);
                started = true;
            }
            (Q::Double, '"') => q = Q::None,
            (Q::Double, c) => word.push(c),
            (Q::None, '\'') => {
                q = Q::Single;
                started = true;
            }
            (Q::None, '"') => {
                q = Q::Double;
                started = true;
            }
            (Q::None, ' ' | '\t' | '\r' | '\n') => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            (Q::None, c @ (';' | '&' | '|' | '<' | '>' | '`')) => {
                return Err(WordsError::NeedsShell(c));
            }
            (Q::None, c) => {
                word.push(c);
                started = true;
            }
        }
    }
    match q {
        Q::Single => return Err(WordsError::Unclosed("single")),
        Q::Double => return Err(WordsError::Unclosed("double")),
        Q::None => {}
    }
    if started {
        words.push(word);
    }
    if words.is_empty() {
        return Err(WordsError::Empty);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Vec<String> {
        split(line).unwrap()
    }

    #[test]
    fn words_as_go_shellwords_splits_them() {
        assert_eq!(ok("./app --bar=baz"), ["./app", "--bar=baz"]);
        assert_eq!(ok("  app \t a\nb  "), ["app", "a", "b"]);
        assert_eq!(
            ok(r#"sh -c "echo 'hi there'""#),
            ["sh", "-c", "echo 'hi there'"]
        );
        assert_eq!(ok(r#"a 'it''s' "x\"y" b\ c"#), ["a", "its", "x\"y", "b c"]);
        assert_eq!(ok(r"a 'no\escape'"), ["a", r"no\escape"]);
        assert_eq!(ok(r#"a "" ''"#), ["a", "", ""]);
        assert_eq!(ok("a $HOME"), ["a", "$HOME"]);
        assert_eq!(ok(r#"sh -c "a; b | c""#), ["sh", "-c", "a; b | c"]);
        assert_eq!(ok(r"a \;"), ["a", ";"]);
    }

    #[test]
    fn what_needs_a_shell_or_is_unfinished_is_refused() {
        assert_eq!(split(""), Err(WordsError::Empty));
        assert_eq!(split("   "), Err(WordsError::Empty));
        assert_eq!(split("a 'b"), Err(WordsError::Unclosed("single")));
        assert_eq!(split("a \"b"), Err(WordsError::Unclosed("double")));
        assert_eq!(split("a \\"), Err(WordsError::TrailingBackslash));
        assert_eq!(split("a; b"), Err(WordsError::NeedsShell(';')));
        assert_eq!(split("a > log"), Err(WordsError::NeedsShell('>')));
        assert_eq!(split("a `b`"), Err(WordsError::NeedsShell('`')));
    }
}
