//! Reload: apply a [`ConfigDiff`] to the running fleet. Only servers whose spec changed are
//! restarted (stopped, then launched with the new spec); removed ones are stopped, added ones
//! launched; unchanged servers, and the client sessions using them, are not touched.
//! [`Reloader`] is what SIGHUP and `POST /api/reload` share: one reload at a time.

use std::future::IntoFuture;
use std::path::PathBuf;
use std::time::Instant;

use fleet_protocol::ServerSpec;
use fleet_protocol::config::{ConfigDiff, ConfigErrors};
use fleet_protocol::messages::server::{LaunchServer, StopServer};
use fleet_server_manager::ServerManager;
use futures::future::join_all;
use kameo::actor::ActorRef;

/// What a reload did, server by server; a failure names the server and says why.
#[derive(Debug, Default, serde::Serialize)]
pub struct ReloadReport {
    pub started: Vec<String>,
    pub restarted: Vec<String>,
    pub stopped: Vec<String>,
    pub unchanged: Vec<String>,
    pub failed: Vec<(String, String)>,
    pub took: std::time::Duration,
}

/// The config file and the servers of the config in force; reloads go through it one at a time.
pub struct Reloader {
    path: PathBuf,
    manager: ActorRef<ServerManager>,
    running: tokio::sync::Mutex<Vec<ServerSpec>>,
    enabled: tokio::sync::watch::Sender<Vec<String>>,
}

fn names(specs: &[ServerSpec]) -> Vec<String> {
    specs.iter().map(|s| s.name.clone()).collect()
}

impl Reloader {
    /// `running`: the servers launched from `path` at start.
    pub fn new(path: PathBuf, manager: ActorRef<ServerManager>, running: Vec<ServerSpec>) -> Self {
        let (enabled, _) = tokio::sync::watch::channel(names(&running));
        Reloader {
            path,
            manager,
            running: tokio::sync::Mutex::new(running),
            enabled,
        }
    }

    /// The names of the enabled servers of the config in force, kept current.
    pub fn enabled(&self) -> tokio::sync::watch::Receiver<Vec<String>> {
        self.enabled.subscribe()
    }

    /// Reads the file again and applies what changed. A file with errors changes nothing.
    pub async fn reload(&self) -> Result<ReloadReport, ConfigErrors> {
        let mut running = self.running.lock().await;
        let config = crate::config::load(&self.path)?;
        let diff = ConfigDiff::between(&running, &config.servers);
        let report = apply(&self.manager, &diff).await;
        tracing::info!(
            started = ?report.started,
            restarted = ?report.restarted,
            stopped = ?report.stopped,
            unchanged = report.unchanged.len(),
            took_ms = report.took.as_millis() as u64,
            "reload applied"
        );
        for (server, error) in &report.failed {
            tracing::error!(%server, %error, "reload: server did not start or stop");
        }
        *running = config.servers;
        self.enabled.send_replace(names(&running));
        Ok(report)
    }
}

/// Applies `diff`: stops the removed and changed servers (all at once), then launches the
/// changed and added ones (all at once).
pub async fn apply(manager: &ActorRef<ServerManager>, diff: &ConfigDiff) -> ReloadReport {
    let begin = Instant::now();
    let mut report = ReloadReport::default();
    let to_stop: Vec<&str> = diff
        .removed
        .iter()
        .map(String::as_str)
        .chain(diff.changed.iter().map(|s| s.name.as_str()))
        .collect();
    let stops = join_all(to_stop.iter().map(|name| {
        manager
            .ask(StopServer {
                name: (*name).to_owned(),
            })
            .into_future()
    }))
    .await;
    for (name, result) in to_stop.iter().zip(stops) {
        if let Err(e) = result {
            report
                .failed
                .push(((*name).to_owned(), format!("stop: {e}")));
        }
    }
    for name in &diff.removed {
        if !report.failed.iter().any(|(n, _)| n == name) {
            report.stopped.push(name.clone());
        }
    }
    let to_launch: Vec<_> = diff.changed.iter().chain(&diff.added).collect();
    let launches = join_all(to_launch.iter().map(|spec| {
        manager
            .ask(LaunchServer {
                spec: (*spec).clone(),
            })
            .into_future()
    }))
    .await;
    for (spec, result) in to_launch.iter().zip(launches) {
        match result {
            Err(e) => report.failed.push((spec.name.clone(), e.to_string())),
            Ok(_) if diff.changed.iter().any(|c| c.name == spec.name) => {
                report.restarted.push(spec.name.clone())
            }
            Ok(_) => report.started.push(spec.name.clone()),
        }
    }
    report.unchanged = diff.unchanged.clone();
    report.took = begin.elapsed();
    report
}
