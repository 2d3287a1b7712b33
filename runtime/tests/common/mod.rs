//! Shared helpers of the runtime tests.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use fleet_protocol::ServerSpec;

/// A spec running the reference server with the given flags.
pub fn reference(name: &str, flags: &[&str]) -> ServerSpec {
    let bin = mcp_reference_server::binary_path();
    let mut args = vec!["--name".to_string(), name.to_string()];
    args.extend(flags.iter().map(|s| s.to_string()));
    ServerSpec::stdio(name, bin.to_string_lossy(), args)
}

/// Waits until `check` returns `Some`, polling every 20 ms, failing after `limit`.
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[allow(unused_imports)] // not every test file uses it
pub use fleet_server_manager::process_running;

/// Pids of running (not zombie) processes whose command line contains `marker`.
pub fn pids_with(marker: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
            !zombie && String::from_utf8_lossy(&cmd).contains(marker)
        })
        .collect()
}
