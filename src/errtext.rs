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
