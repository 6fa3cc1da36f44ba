//! An error with its causes on one line: library errors (reqwest's above all) put what matters
//! in their sources, and a message without them says only "error sending request".

/// `e: cause: cause ...`, each cause once.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// SQLite's integrity-check answer on one line: its first problem, and how many more there
/// are (the answer holds one problem per row, and a row can hold several lines; a damaged
/// file gives hundreds).
pub(crate) fn problems(p: &[String]) -> String {
    let lines: Vec<&str> = p
        .iter()
        .flat_map(|x| x.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("***"))
        .collect();
    match lines.as_slice() {
        [] => "ok".to_owned(),
        [one] => (*one).to_owned(),
        [first, rest @ ..] => format!("{first} (and {} more problems)", rest.len()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn problems_fit_on_one_line() {
        let p = vec![
            "*** in database main ***\nPage 10: btreeInitPage() returns error code 11\nPage 20: bad".to_owned(),
            "row 3 missing from index x".to_owned(),
        ];
        assert_eq!(
            super::problems(&p),
            "Page 10: btreeInitPage() returns error code 11 (and 2 more problems)"
        );
        assert_eq!(super::problems(&[]), "ok");
    }
}
