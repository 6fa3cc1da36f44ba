//! Reading a process's figures from `/proc`: pure parsers of `/proc/<pid>/stat` and
//! `/proc/<pid>/status` (tested on captured text), and thin readers over them.

/// The fields of `/proc/<pid>/stat` the benchmark uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Session id (field 6).
    pub session: i64,
    /// User plus system CPU time, in clock ticks (fields 14 and 15).
    pub cpu_ticks: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may itself hold
/// spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = text.get(text.rfind(')')? + 1..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ppid(4) pgrp(5) session(6) ... utime(14) stime(15).
    let session = f.get(3)?.parse().ok()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(Stat {
        session,
        cpu_ticks: utime + stime,
    })
}

/// The fields of `/proc/<pid>/status` the benchmark uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    /// Resident set size now (`VmRSS`), kB.
    pub rss_kb: u64,
    /// Peak resident set size (`VmHWM`), kB.
    pub hwm_kb: u64,
    /// Threads of the process (`Threads`).
    pub threads: u64,
}

/// Parses `/proc/<pid>/status`; a field that is missing (a zombie has no `Vm*` lines) is 0.
pub fn parse_status(text: &str) -> Status {
    let mut s = Status::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let n = || {
            value
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        match key {
            "VmRSS" => s.rss_kb = n(),
            "VmHWM" => s.hwm_kb = n(),
            "Threads" => s.threads = n(),
            _ => {}
        }
    }
    s
}

/// `/proc/<pid>/status` of a live process, parsed.
pub fn status(pid: u32) -> Option<Status> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .map(|t| parse_status(&t))
}

/// Open file descriptors of a live process.
pub fn fds(pid: u32) -> Option<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count() as u64)
}

/// CPU seconds (user + system) of every live process in session `sid`.
pub fn session_cpu_seconds(sid: i64) -> f64 {
    let tick = rustix::param::clock_ticks_per_second() as f64;
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let mut total = 0u64;
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        match parse_stat(&text) {
            Some(st) if st.session == sid => total += st.cpu_ticks,
            _ => {}
        }
    }
    total as f64 / tick
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // A command name with a space and a parenthesis of its own.
        let t = "4242 (mem sync) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                 150 37 0 0 20 0 505 0 123456 1000000 5000 18446744073709551615";
        assert_eq!(
            parse_stat(t),
            Some(Stat {
                session: 4242,
                cpu_ticks: 187
            })
        );
    }

    #[test]
    fn a_truncated_or_garbled_stat_is_none() {
        assert_eq!(parse_stat("4242 (memsync) S 1 4242"), None);
        assert_eq!(parse_stat("no parenthesis at all"), None);
        assert_eq!(
            parse_stat("1 (a) S 1 1 x 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 1 1 1"),
            None
        );
    }

    #[test]
    fn status_gives_rss_peak_and_threads() {
        let t = "Name:\tmemsync\nUmask:\t0022\nState:\tS (sleeping)\nVmPeak:\t  900000 kB\n\
                 VmHWM:\t  556000 kB\nVmRSS:\t  212345 kB\nThreads:\t505\nSigQ:\t0/95000\n";
        assert_eq!(
            parse_status(t),
            Status {
                rss_kb: 212345,
                hwm_kb: 556000,
                threads: 505
            }
        );
    }

    #[test]
    fn a_zombie_status_has_zero_memory() {
        let t = "Name:\tmemsync\nState:\tZ (zombie)\nThreads:\t1\n";
        assert_eq!(
            parse_status(t),
            Status {
                rss_kb: 0,
                hwm_kb: 0,
                threads: 1
            }
        );
    }
}
