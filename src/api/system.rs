//! The machine at a glance, read from `/proc`: CPU use since the last look, load, memory and
//! uptime. Read-only; any logged-in user (the dashboard shows it to everyone).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use serde::Serialize;

use super::error::ErrorBody;
use super::{ApiError, Caller, S};

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SystemView {
    /// Logical CPUs.
    pub cpus: usize,
    /// Share of all CPUs busy since the previous look (at least the last 200 ms), 0-100.
    pub cpu_percent: f64,
    /// Run-queue load averages over 1, 5 and 15 minutes.
    pub load: [f64; 3],
    pub memory_total_bytes: u64,
    /// Total less what is available without swapping (`MemAvailable`).
    pub memory_used_bytes: u64,
    pub memory_available_bytes: u64,
    pub swap_total_bytes: u64,
    pub swap_used_bytes: u64,
    /// Since the machine started.
    pub uptime_s: f64,
    /// Since this service started.
    pub service_uptime_s: f64,
    /// Resident memory of this service.
    pub service_rss_bytes: u64,
}

/// Busy and total jiffies of the `cpu` line of `/proc/stat`, and the number of `cpuN` lines.
pub fn cpu_times(stat: &str) -> Option<(u64, u64, usize)> {
    let first = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = first
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if v.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    let cpus = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    Some((total - idle, total, cpus.max(1)))
}

/// `key:   123 kB` lines of `/proc/meminfo` (or `/proc/self/status`), in bytes.
pub fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let n: u64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(n * 1024)
    })
}

/// The three load averages of `/proc/loadavg`.
pub fn load(loadavg: &str) -> Option<[f64; 3]> {
    let mut it = loadavg.split_whitespace().map(|x| x.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// The previous `/proc/stat` look: (busy, total, when).
static LAST: Mutex<Option<(u64, u64, Instant)>> = Mutex::new(None);

fn started() -> Instant {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *START.get_or_init(Instant::now)
}

fn unreadable(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        format!("{what} cannot be read on this machine: {e}"),
    )
}

async fn read(path: &str) -> Result<String, ApiError> {
    tokio::fs::read_to_string(path)
        .await
        .map_err(|e| unreadable(path, e))
}

async fn cpu() -> Result<(f64, usize), ApiError> {
    let sample = || async {
        let s = read("/proc/stat").await?;
        cpu_times(&s).ok_or_else(|| unreadable("/proc/stat", "no cpu line"))
    };
    let prev = *LAST.lock().unwrap_or_else(|e| e.into_inner());
    let (busy0, total0) = match prev {
        Some((b, t, at)) if at.elapsed() >= Duration::from_millis(200) => (b, t),
        _ => {
            let (b, t, _) = sample().await?;
            tokio::time::sleep(Duration::from_millis(250)).await;
            (b, t)
        }
    };
    let (busy, total, cpus) = sample().await?;
    *LAST.lock().unwrap_or_else(|e| e.into_inner()) = Some((busy, total, Instant::now()));
    let dt = total.saturating_sub(total0);
    let pct = if dt == 0 {
        0.0
    } else {
        busy.saturating_sub(busy0) as f64 * 100.0 / dt as f64
    };
    Ok((pct.clamp(0.0, 100.0), cpus))
}

/// The machine: CPU use, load, memory, uptime.
#[utoipa::path(get, path = "/v1/system", tag = "system",
    responses((status = 200, body = SystemView), (status = 503, body = ErrorBody, description = "no /proc on this machine")))]
pub async fn system(State(_st): State<S>, _c: Caller) -> Result<axum::Json<SystemView>, ApiError> {
    let (cpu_percent, cpus) = cpu().await?;
    let mem = read("/proc/meminfo").await?;
    let field =
        |k: &str| kib_field(&mem, k).ok_or_else(|| unreadable("/proc/meminfo", format!("no {k}")));
    let total = field("MemTotal")?;
    let available = field("MemAvailable")?;
    let swap_total = kib_field(&mem, "SwapTotal").unwrap_or(0);
    let swap_free = kib_field(&mem, "SwapFree").unwrap_or(0);
    let loadavg = read("/proc/loadavg").await?;
    let uptime = read("/proc/uptime").await?;
    let status = read("/proc/self/status").await?;
    Ok(axum::Json(SystemView {
        cpus,
        cpu_percent: (cpu_percent * 10.0).round() / 10.0,
        load: load(&loadavg).ok_or_else(|| unreadable("/proc/loadavg", "unexpected content"))?,
        memory_total_bytes: total,
        memory_used_bytes: total.saturating_sub(available),
        memory_available_bytes: available,
        swap_total_bytes: swap_total,
        swap_used_bytes: swap_total.saturating_sub(swap_free),
        uptime_s: uptime
            .split_whitespace()
            .next()
            .and_then(|x| x.parse().ok())
            .ok_or_else(|| unreadable("/proc/uptime", "unexpected content"))?,
        service_uptime_s: started().elapsed().as_secs_f64(),
        service_rss_bytes: kib_field(&status, "VmRSS").unwrap_or(0),
    }))
}

pub fn routes() -> Router<S> {
    // The service's start, as near to it as the router is built.
    let _ = started();
    Router::new().route("/v1/system", get(system))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_read() {
        let stat = "cpu  100 5 50 800 20 1 2 3 0 0\ncpu0 50 2 25 400 10 0 1 1 0 0\ncpu1 50 3 25 400 10 1 1 2 0 0\nintr 1\n";
        // busy: user+nice+system+irq+softirq+steal = 100+5+50+1+2+3; idle: idle+iowait.
        assert_eq!(cpu_times(stat), Some((161, 981, 2)));
        assert_eq!(cpu_times("intr 1\n"), None);
        assert_eq!(cpu_times("cpu  a b c d\n"), None);
        let mem = "MemTotal:       16314512 kB\nMemFree:  1 kB\nMemAvailable:   8000000 kB\n";
        assert_eq!(kib_field(mem, "MemTotal"), Some(16_314_512 * 1024));
        assert_eq!(kib_field(mem, "MemAvailable"), Some(8_000_000 * 1024));
        assert_eq!(kib_field(mem, "Mem"), None);
        assert_eq!(kib_field(mem, "SwapTotal"), None);
        assert_eq!(
            load("0.52 0.41 0.30 2/345 6789\n"),
            Some([0.52, 0.41, 0.30])
        );
        assert_eq!(load("x"), None);
    }
}
