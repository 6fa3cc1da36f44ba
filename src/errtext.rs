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

/// An error text with any HTML page it quotes reduced to its words, at most `max` bytes
/// of them (a plain web server's error page is kilobytes of markup).
pub(crate) fn without_html(text: &str, max: usize) -> String {
    let lower = text.to_ascii_lowercase();
    let Some(at) = ["<!doctype", "<html"]
        .iter()
        .filter_map(|t| lower.find(t))
        .min()
    else {
        return text.to_owned();
    };
    let mut words = String::new();
    let mut in_tag = false;
    for c in text[at..].chars() {
        match c {
            '<' => {
                in_tag = true;
                words.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => words.push(c),
            _ => {}
        }
    }
    let words = words.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = format!("{}{words}", &text[..at]);
    if out.len() > max {
        let cut = (0..=max)
            .rev()
            .find(|&i| out.is_char_boundary(i))
            .unwrap_or(0);
        out.truncate(cut);
        out.push('…');
    }
    out
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
