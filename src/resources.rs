//! The process's own memory and CPU use, for run summaries and the benchmark.

/// Caps glibc's malloc at two arenas. Its default gives threads that allocate at
/// the same time arenas of their own, up to eight per core; librdkafka's threads
/// allocate the fetched messages that the processor's threads free, and memory
/// freed into one arena cannot serve another. Measured on `process` over 200,000
/// orders: a typical peak RSS of 48-49 MB with the default, 43-48 MB with two
/// arenas, at about the same speed (one arena: 43 MB, a little slower). Call it
/// before any thread starts. A no-op where the C library is not glibc.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Peak resident set size so far (the kernel's high-water mark), in bytes; `None`
/// where `/proc` is not available.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

/// CPU time used so far by all threads, user and system, in seconds; `None`
/// where `/proc` is not available.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces; the fields after it are plain numbers.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    // utime and stime, fields 14 and 15 of the line (11 and 12 after the name),
    // in USER_HZ ticks, which Linux fixes at 100 per second for user space.
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// CPU time of the whole machine so far, all CPUs together, in seconds: (busy,
/// idle), idle counting I/O wait; `None` where `/proc` is not available.
pub fn machine_cpu_seconds() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    // "cpu  user nice system idle iowait irq softirq steal guest guest_nice", in
    // USER_HZ ticks; guest time is already counted in user and nice.
    let ticks: Vec<f64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .take(8)
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some(((ticks.iter().sum::<f64>() - idle) / 100.0, idle / 100.0))
}

/// Keeps the calling thread busy on the CPU for `d`, for tests of CPU accounting.
#[cfg(test)]
pub(crate) fn spin(d: std::time::Duration) {
    let start = std::time::Instant::now();
    let mut x = 0u64;
    while start.elapsed() < d {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
    }
}

#[cfg(test)]
mod tests {
    use super::spin;

    #[test]
    #[cfg(target_os = "linux")]
    fn peak_rss_is_read_on_linux() {
        let rss = super::peak_rss_bytes().expect("Linux has /proc/self/status");
        assert!(
            rss > 1024 * 1024,
            "a test binary uses more than 1 MiB: {rss}"
        );
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn cpu_time_grows_with_work() {
        let before = super::cpu_seconds().expect("Linux has /proc/self/stat");
        spin(std::time::Duration::from_millis(300));
        let after = super::cpu_seconds().unwrap();
        assert!(after - before >= 0.1, "{before} -> {after}");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn the_machine_counts_this_process_as_busy() {
        let (busy, idle) = super::machine_cpu_seconds().expect("Linux has /proc/stat");
        spin(std::time::Duration::from_millis(300));
        let (busy_after, idle_after) = super::machine_cpu_seconds().unwrap();
        assert!(busy_after - busy >= 0.1, "busy {busy} -> {busy_after}");
        assert!(idle_after >= idle, "idle {idle} -> {idle_after}");
    }
}
