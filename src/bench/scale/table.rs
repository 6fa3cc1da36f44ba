//! Printing the scale phase: a side-by-side table per database count (each tool, the writer
//! alone, and the first tool's figure over the second's) and a growth table across the counts.
//! Pure: figures in, text out.

use std::fmt::Write as _;

use crate::bench::Figures;

/// One printed figure: its key in [`Figures`], what the table calls it, decimals shown.
struct Row {
    key: &'static str,
    label: &'static str,
    decimals: usize,
}

const fn row(key: &'static str, label: &'static str, decimals: usize) -> Row {
    Row {
        key,
        label,
        decimals,
    }
}

/// The per-count table, in print order.
const ROWS: &[Row] = &[
    row("startup_s", "startup: start -> all snapshots, s", 2),
    row("startup_cpu_s", "startup: CPU s", 2),
    row("idle_cpu_pct", "idle: CPU % of one core", 1),
    row("idle_rss_mb", "idle: RSS MB (VmRSS)", 1),
    row("idle_peak_rss_mb", "idle: peak RSS MB (VmHWM)", 1),
    row("idle_threads", "idle: threads (max)", 0),
    row("idle_fds", "idle: open fds", 0),
    row("load_cpu_pct", "load: CPU % of one core", 1),
    row("load_rss_mb", "load: RSS MB (VmRSS) at end", 1),
    row("load_peak_rss_mb", "load: peak RSS MB (VmHWM)", 1),
    row("load_threads", "load: threads (max)", 0),
    row("commits", "load: commits", 0),
    row("commit_errors", "load: failed commits", 0),
    row("commit_rate", "load: commits/s achieved", 1),
    row("commit_p50_ms", "load: commit p50 ms", 2),
    row("commit_p99_ms", "load: commit p99 ms", 2),
    row("commit_max_ms", "load: slowest commit ms", 1),
    row(
        "commit_p99_after_first_ms",
        "load: p99 but connections' first, ms",
        2,
    ),
    row(
        "commit_max_after_first_ms",
        "load: slowest but connections' first, ms",
        1,
    ),
    row("commits_over_1ms", "load: commits over 1 ms", 0),
    row(
        "commits_over_1ms_first",
        "load: of them, a connection's first",
        0,
    ),
    row(
        "commits_over_1ms_slept",
        "load: of them, the writer slept",
        0,
    ),
    row(
        "commits_over_1ms_preempted",
        "load: of them, the writer was preempted",
        0,
    ),
    row("commits_waited", "load: commits that waited on a lock", 0),
    row(
        "writer_late_max_ms",
        "load: writer behind schedule, max ms",
        1,
    ),
    row("shutdown_s", "shutdown: SIGTERM -> exit, s", 2),
    row(
        "shutdown_killed",
        "shutdown: killed after 30 s (1 = yes)",
        0,
    ),
    row("restore_checked", "restore: databases checked", 0),
    row("restore_ok", "restore: at the last commit", 0),
    row("restore_max_s", "restore: slowest, s", 2),
];

/// The growth table: the figures whose growth with the database count matters.
const GROWTH: &[&str] = &[
    "startup_s",
    "idle_cpu_pct",
    "idle_rss_mb",
    "idle_threads",
    "load_cpu_pct",
    "load_peak_rss_mb",
    "commit_p99_ms",
    "commit_max_ms",
    "commit_p99_after_first_ms",
    "commit_max_after_first_ms",
    "shutdown_s",
];

/// Column label of the writer run with no replicator.
pub const ALONE: &str = "no replicator";

/// One database count's results: per tool its figures (None if the run failed), and the
/// writer's figures with no replicator running.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Databases.
    pub n: usize,
    /// (tool, figures) in the order run.
    pub tools: Vec<(String, Option<Figures>)>,
    /// The writer alone.
    pub alone: Figures,
}

fn get(f: &Figures, key: &str) -> Option<f64> {
    f.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

fn cell(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "-".into(),
    }
}

fn row_spec(key: &str) -> Option<&'static Row> {
    ROWS.iter().find(|r| r.key == key)
}

/// The side-by-side table of one database count.
pub fn side_by_side(o: &Outcome) -> String {
    const W: usize = 14;
    let mut s = format!("\nscale: {} databases\n{:<38}", o.n, "figure");
    for (name, _) in &o.tools {
        let _ = write!(s, " {name:>W$}");
    }
    let _ = write!(s, " {ALONE:>W$}");
    let ratio = (o.tools.len() >= 2).then(|| format!("{}/{}", o.tools[0].0, o.tools[1].0));
    if let Some(r) = &ratio {
        let _ = write!(s, " {:>W$}", r.chars().take(W).collect::<String>());
    }
    s.push('\n');
    for r in ROWS {
        let vals: Vec<Option<f64>> = o
            .tools
            .iter()
            .map(|(_, f)| f.as_ref().and_then(|f| get(f, r.key)))
            .collect();
        let _ = write!(s, "{:<38}", r.label);
        for v in &vals {
            let _ = write!(s, " {:>W$}", cell(*v, r.decimals));
        }
        let _ = write!(s, " {:>W$}", cell(get(&o.alone, r.key), r.decimals));
        if ratio.is_some() {
            let q = match (vals[0], vals[1]) {
                (Some(a), Some(b)) if b != 0.0 => Some(a / b),
                _ => None,
            };
            let _ = write!(s, " {:>W$}", cell(q, 2));
        }
        s.push('\n');
    }
    for (name, f) in &o.tools {
        if f.is_none() {
            let _ = writeln!(s, "({name} failed at {} databases: see above)", o.n);
        }
    }
    s
}

/// How the main figures grow with the database count: one line per figure and tool, a column
/// per count, and the last count's figure over the first's.
pub fn growth(outcomes: &[Outcome]) -> String {
    const W: usize = 10;
    let mut s = String::new();
    if outcomes.len() < 2 {
        return s;
    }
    let _ = write!(
        s,
        "\nscale: growth with the database count\n{:<30} {:<14}",
        "figure", "tool"
    );
    for o in outcomes {
        let _ = write!(s, " {:>W$}", format!("N={}", o.n));
    }
    let _ = writeln!(s, " {:>W$}", "last/first");
    let mut tools: Vec<&str> = Vec::new();
    for o in outcomes {
        for (t, _) in &o.tools {
            if !tools.contains(&t.as_str()) {
                tools.push(t);
            }
        }
    }
    for key in GROWTH {
        let Some(r) = row_spec(key) else { continue };
        let mut lines: Vec<(&str, Vec<Option<f64>>)> = tools
            .iter()
            .map(|t| {
                let vals = outcomes
                    .iter()
                    .map(|o| {
                        o.tools
                            .iter()
                            .find(|(n, _)| n == t)
                            .and_then(|(_, f)| f.as_ref())
                            .and_then(|f| get(f, key))
                    })
                    .collect();
                (*t, vals)
            })
            .collect();
        // The writer alone, where it has the figure (its commit latencies).
        let alone: Vec<Option<f64>> = outcomes.iter().map(|o| get(&o.alone, key)).collect();
        if alone.iter().any(Option::is_some) {
            lines.push((ALONE, alone));
        }
        for (t, vals) in lines {
            let _ = write!(s, "{:<30} {t:<14}", key);
            for v in &vals {
                let _ = write!(s, " {:>W$}", cell(*v, r.decimals));
            }
            let q = match (
                vals.first().copied().flatten(),
                vals.last().copied().flatten(),
            ) {
                (Some(a), Some(b)) if a != 0.0 => Some(b / a),
                _ => None,
            };
            let _ = writeln!(s, " {:>W$}", cell(q, 1));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figs(pairs: &[(&str, f64)]) -> Figures {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    fn outcome(n: usize, m: f64, l: f64) -> Outcome {
        Outcome {
            n,
            tools: vec![
                (
                    "memsync".into(),
                    Some(figs(&[("idle_cpu_pct", m), ("commit_max_ms", 2.0 * m)])),
                ),
                (
                    "litestream".into(),
                    Some(figs(&[("idle_cpu_pct", l), ("commit_max_ms", 2.0 * l)])),
                ),
            ],
            alone: figs(&[("commit_max_ms", 1.5)]),
        }
    }

    #[test]
    fn a_table_puts_the_tools_the_writer_alone_and_the_ratio_side_by_side() {
        let t = side_by_side(&outcome(100, 4.0, 16.0));
        assert!(t.contains("scale: 100 databases"), "{t}");
        let head = t.lines().nth(2).expect("header");
        let cols: Vec<&str> = head.split_whitespace().collect();
        assert_eq!(cols[..2], ["figure", "memsync"], "{head}");
        assert!(
            head.contains("no replicator") && head.contains("memsync/litest"),
            "{head}"
        );
        let cpu = t
            .lines()
            .find(|l| l.starts_with("idle: CPU % of one core"))
            .expect("cpu row");
        let cells: Vec<&str> = cpu.split_whitespace().rev().take(4).collect();
        assert_eq!(cells, ["0.25", "-", "16.0", "4.0"], "{cpu}");
        let slow = t
            .lines()
            .find(|l| l.starts_with("load: slowest commit ms"))
            .expect("slowest row");
        let cells: Vec<&str> = slow.split_whitespace().rev().take(4).collect();
        assert_eq!(cells, ["0.25", "1.5", "32.0", "8.0"], "{slow}");
        // A figure nobody has is a dash in every column, not a zero.
        let fds = t
            .lines()
            .find(|l| l.starts_with("idle: open fds"))
            .expect("fds");
        assert_eq!(
            fds.split_whitespace().filter(|c| *c == "-").count(),
            4,
            "{fds}"
        );
    }

    #[test]
    fn a_failed_tool_shows_dashes_and_a_note() {
        let mut o = outcome(10, 1.0, 2.0);
        o.tools[0].1 = None;
        let t = side_by_side(&o);
        let cpu = t
            .lines()
            .find(|l| l.starts_with("idle: CPU % of one core"))
            .expect("cpu row");
        assert_eq!(
            cpu.split_whitespace().rev().take(4).collect::<Vec<_>>(),
            ["-", "-", "2.0", "-"]
        );
        assert!(t.contains("(memsync failed at 10 databases"), "{t}");
    }

    #[test]
    fn growth_has_a_column_per_count_and_the_last_over_the_first() {
        let g = growth(&[
            outcome(10, 1.0, 3.0),
            outcome(100, 2.0, 9.0),
            outcome(1000, 8.0, 30.0),
        ]);
        let head = g.lines().nth(2).expect("header");
        assert!(head.contains("N=10") && head.contains("N=1000") && head.contains("last/first"));
        let line = |key: &str, tool: &str| {
            g.lines()
                .find(|l| {
                    let mut w = l.split_whitespace();
                    w.next() == Some(key) && l.contains(tool)
                })
                .map(|l| l.split_whitespace().rev().collect::<Vec<_>>())
                .unwrap_or_default()
        };
        assert_eq!(
            line("idle_cpu_pct", "memsync")[..4],
            ["8.0", "8.0", "2.0", "1.0"]
        );
        assert_eq!(line("idle_cpu_pct", "litestream")[..2], ["10.0", "30.0"]);
        // The writer alone appears where it has the figure.
        assert_eq!(line("commit_max_ms", ALONE)[..2], ["1.0", "1.5"]);
        assert!(line("idle_cpu_pct", ALONE).is_empty(), "{g}");
    }

    #[test]
    fn one_count_has_no_growth_table() {
        assert_eq!(growth(&[outcome(10, 1.0, 2.0)]), "");
    }
}
