//! What `/proc` says about another process: CPU time and resident memory.

use std::fs;

use anyhow::{Context, Result};

/// utime + stime of `pid`, in clock ticks (see [`clock_ticks_per_second`]).
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name is in parentheses and may hold spaces; the fields
    // after it start with the state (field 3): utime and stime are 14, 15.
    let rest = stat
        .rsplit_once(") ")
        .map(|(_, r)| r)
        .with_context(|| format!("{path}: no command name"))?;
    let field = |n: usize| -> Result<u64> {
        rest.split_whitespace()
            .nth(n - 3)
            .with_context(|| format!("{path}: no field {n}"))?
            .parse()
            .with_context(|| format!("{path}: field {n} is not a number"))
    };
    Ok(field(14)? + field(15)?)
}

/// Clock ticks per second for [`cpu_ticks`]: `BENCH_CLK_TCK` (the scripts
/// pass `getconf CLK_TCK`), else 100 (Linux's USER_HZ).
pub fn clock_ticks_per_second() -> f64 {
    std::env::var("BENCH_CLK_TCK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100.0)
}

/// The whole machine's CPU time from `/proc/stat`, in clock ticks summed
/// over CPUs: `(idle, total)`, idle counting I/O wait.
pub fn machine_ticks() -> Result<(u64, u64)> {
    let stat = fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("/proc/stat: no cpu line")?;
    let fields = line
        .split_whitespace()
        .skip(1)
        .map(|f| {
            f.parse::<u64>()
                .context("/proc/stat: a cpu field is not a number")
        })
        .collect::<Result<Vec<_>>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice],
    // guest time being counted in user time already.
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    let total = fields.iter().take(8).sum();
    Ok((idle, total))
}

/// VmRSS of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("{path}: no VmRSS"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(rss_kib(pid).unwrap() > 0);
        cpu_ticks(pid).unwrap();
        let (idle, total) = machine_ticks().unwrap();
        assert!(total > 0 && idle <= total, "{idle} of {total}");
    }
}
