//! File-name patterns of directory entries (`pattern: "*.db"`), with the syntax and meaning of
//! Go's `filepath.Match`, which Litestream uses: `*` any run of characters, `?` one character,
//! `[a-z]` / `[^a-z]` a class, `\` escapes. A leading dot is matched like any character, so
//! `*.db` also matches `.hidden.db` (as in Litestream). The pattern applies to the file name
//! only, never to the directories above it.

/// A parsed pattern; [`Glob::parse`] refuses what Go's `filepath.Match` calls a bad pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    text: String,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    Any,
    Star,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Glob {
    /// Parses `text`; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Glob, String> {
        if text.is_empty() {
            return Err("is empty".into());
        }
        if text.contains('/') {
            return Err(
                "contains '/': it matches file names, use `recursive: true` for subdirectories"
                    .into(),
            );
        }
        let mut tokens = Vec::new();
        let mut it = text.chars().peekable();
        while let Some(c) = it.next() {
            tokens.push(match c {
                '*' => {
                    if tokens.last() == Some(&Token::Star) {
                        continue;
                    }
                    Token::Star
                }
                '?' => Token::Any,
                '\\' => Token::Char(it.next().ok_or("ends with an unfinished escape '\\'")?),
                '[' => {
                    let negated = it.next_if(|c| *c == '^' || *c == '!').is_some();
                    let mut ranges = Vec::new();
                    let class_char = |it: &mut std::iter::Peekable<std::str::Chars>| match it.next()
                    {
                        Some('\\') => it.next().ok_or("has an unfinished escape in a [class]"),
                        Some(']') | None => Err("has an empty or unclosed [class]"),
                        Some(c) => Ok(c),
                    };
                    loop {
                        match it.peek() {
                            None => return Err("has an unclosed [class]".into()),
                            Some(']') if !ranges.is_empty() => {
                                it.next();
                                break;
                            }
                            _ => {}
                        }
                        let lo = class_char(&mut it)?;
                        let hi = if it.next_if(|c| *c == '-').is_some() {
                            class_char(&mut it)?
                        } else {
                            lo
                        };
                        if hi < lo {
                            return Err(format!("has a reversed range {lo}-{hi}"));
                        }
                        ranges.push((lo, hi));
                    }
                    Token::Class { negated, ranges }
                }
                c => Token::Char(c),
            });
        }
        Ok(Glob {
            text: text.to_string(),
            tokens,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the file name `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        // Classic backtracking over the last star: linear in practice, no recursion.
        let (mut t, mut n) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while n < name.len() {
            match self.tokens.get(t) {
                Some(Token::Star) => {
                    star = Some((t, n));
                    t += 1;
                    continue;
                }
                Some(tok) if one(tok, name[n]) => {
                    t += 1;
                    n += 1;
                    continue;
                }
                _ => {}
            }
            match star {
                Some((st, sn)) => {
                    star = Some((st, sn + 1));
                    t = st + 1;
                    n = sn + 1;
                }
                None => return false,
            }
        }
        self.tokens[t..].iter().all(|k| *k == Token::Star)
    }
}

/// Whether a single-character token matches `c`.
fn one(tok: &Token, c: char) -> bool {
    match tok {
        Token::Char(x) => *x == c,
        Token::Any => true,
        Token::Star => false,
        Token::Class { negated, ranges } => {
            ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
        }
    }
}

impl std::fmt::Display for Glob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

    #[test]
    fn matches_like_go_filepath_match() {
        let cases: &[(&str, &str, bool)] = &[
            ("*.db", "a.db", true),
            ("*.db", ".hidden.db", true),
            ("*.db", "a.db-wal", false),
            ("*.db", "a.sqlite", false),
            ("*.db", ".db", true),
            ("tenant-*.db", "tenant-001.db", true),
            ("tenant-*.db", "other-001.db", false),
            ("*", "anything", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("[a-c]*.db", "b1.db", true),
            ("[a-c]*.db", "d1.db", false),
            ("[^a-c]*.db", "d1.db", true),
            ("[!a-c]*.db", "a1.db", false),
            ("\\*.db", "*.db", true),
            ("\\*.db", "x.db", false),
            ("*a*b", "xaxxb", true),
            ("*a*b", "xaxxbc", false),
            ("**.db", "x.db", true),
            ("données-*.db", "données-1.db", true),
        ];
        for (p, name, want) in cases {
            let g = Glob::parse(p).unwrap();
            assert_eq!(g.matches(name), *want, "{p:?} against {name:?}");
        }
    }

    #[test]
    fn bad_patterns_say_why() {
        for (p, why) in [
            ("", "empty"),
            ("[a-", "class"),
            ("[]", "class"),
            ("a[", "class"),
            ("x\\", "escape"),
            ("[z-a]", "reversed"),
            ("sub/*.db", "recursive"),
        ] {
            let e = Glob::parse(p).unwrap_err();
            assert!(e.contains(why), "{p:?}: {e}");
        }
    }
}
