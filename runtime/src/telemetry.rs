//! Logging and the Prometheus recorder.

use fleet_metrics_collector::export::LATENCY_BUCKETS;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (the message and the
    /// event's own fields), `span` and `spans` (each enclosing span with its fields).
    Json,
}

/// Logs to stderr, filtered by `RUST_LOG` (or `default` when it is unset). Text has colours
/// only when stderr is a terminal, so files and journals get plain text.
pub fn init_logging(default: &str, format: LogFormat) {
    use std::io::IsTerminal;
    // A filter that does not parse is said, once logging works, rather than dropped silently.
    let (filter, refused) = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(text) => match EnvFilter::try_new(&text) {
            Ok(filter) => (filter, None),
            Err(e) => (EnvFilter::new(default), Some((text, e))),
        },
        Err(_) => (EnvFilter::new(default), None),
    };
    // A line that cannot be written (stderr a closed pipe: `| head`, a log shipper gone) is
    // dropped: tracing-subscriber would otherwise say so with `eprintln!`, which panics on
    // that same closed pipe and takes the fleet down without its orderly stop.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
    };
    if let Some((text, e)) = refused {
        tracing::warn!(
            "{}={text:?} is not a valid log filter ({e}); logging at `{default}` instead",
            EnvFilter::DEFAULT_ENV
        );
    }
}

/// Installs the process-wide Prometheus recorder behind the `metrics` facade, with histogram
/// buckets for MCP latencies. Call once per process; the handle renders the exposition.
pub fn install_prometheus() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)?
        .install_recorder()?;
    // Histograms are drained into their buckets by upkeep; without it memory grows.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// Lets jemalloc give freed memory back to the OS from a background thread (after its decay
/// time, 10 s), so memory falls back once many sessions have ended. Without it jemalloc purges
/// only while allocating. A failure is logged: memory is then kept for reuse instead.
pub fn return_freed_memory() {
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::warn!(error = %e, "jemalloc's background purging is unavailable; freed memory is kept for reuse");
    }
}
