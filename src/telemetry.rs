//! Logging set-up: human one-liners on a terminal, JSON lines with `ANTENNE_LOG_FORMAT=json`.
//! Level from `RUST_LOG` (default: warnings of antenne; libav's own chatter only when asked for).
//! Imports nothing of the crate.

use tracing_subscriber::EnvFilter;

pub fn init(verbose: bool) {
    let default = if verbose {
        "info,libav=warn"
    } else {
        "warn,libav=off"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let json = std::env::var("ANTENNE_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.with_target(false).without_time().try_init()
    };
}
