//! Reload: apply a [`ConfigDiff`] to the running fleet. Only servers whose spec changed are
//! restarted (stopped, then launched with the new spec); removed ones are stopped, added ones
//! launched; unchanged servers, and the client sessions using them, are not touched.
//! [`Reloader`] is what SIGHUP and the admin API share: the servers in force (the config file's,
//! with the additions and removals made at runtime, which the state file keeps), changed one
//! reload, addition or removal at a time.

use std::future::IntoFuture;
use std::path::PathBuf;
use std::time::Instant;

use fleet_protocol::config::{ConfigDiff, ConfigErrors};
use fleet_protocol::{FleetError, RestartPolicy, ServerSpec, ServerStatus};
use kameo::error::SendError;

use crate::state::RuntimeChanges;
use fleet_protocol::messages::server::{LaunchServer, RemoveServer, StopServer};
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

/// The servers in force: the config file's, with the changes made at runtime (kept in the state
/// file) over them. Reloads, additions and removals go through it one at a time.
pub struct Reloader {
    path: PathBuf,
    state_path: PathBuf,
    manager: ActorRef<ServerManager>,
    inner: tokio::sync::Mutex<InForce>,
    enabled: tokio::sync::watch::Sender<Vec<String>>,
}

struct InForce {
    /// The config file's enabled servers, as last read.
    file: Vec<ServerSpec>,
    changes: RuntimeChanges,
    /// `changes` applied over `file`: what runs.
    running: Vec<ServerSpec>,
    /// The file's `[restart]` (the default policy for JSON): what a server added at runtime
    /// gets, as the file's own servers do.
    restart: RestartPolicy,
}

/// Why an addition or removal was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("a server named `{0}` already exists")]
    Exists(String),
    #[error("no server named `{0}`")]
    Unknown(String),
    #[error("cannot write the state file: {0}")]
    State(#[from] std::io::Error),
}

fn names(specs: &[ServerSpec]) -> Vec<String> {
    specs.iter().map(|s| s.name.clone()).collect()
}

impl Reloader {
    /// `file`: the config file's servers read at start, and its `[restart]`; `changes`: the
    /// state file's.
    pub fn new(
        path: PathBuf,
        state_path: PathBuf,
        manager: ActorRef<ServerManager>,
        file: Vec<ServerSpec>,
        restart: RestartPolicy,
        changes: RuntimeChanges,
    ) -> Self {
        let running = changes.apply(&file);
        let (enabled, _) = tokio::sync::watch::channel(names(&running));
        Reloader {
            path,
            state_path,
            manager,
            inner: tokio::sync::Mutex::new(InForce {
                file,
                changes,
                running,
                restart,
            }),
            enabled,
        }
    }

    /// The servers to run now.
    pub async fn running(&self) -> Vec<ServerSpec> {
        self.inner.lock().await.running.clone()
    }

    /// The names of the enabled servers in force, kept current.
    pub fn enabled(&self) -> tokio::sync::watch::Receiver<Vec<String>> {
        self.enabled.subscribe()
    }

    /// Reads the file again and applies what changed. A file with errors changes nothing.
    pub async fn reload(&self) -> Result<ReloadReport, ConfigErrors> {
        let mut inner = self.inner.lock().await;
        let loaded = crate::config::load_all(&self.path)?;
        let config = loaded.servers;
        let next = inner.changes.apply(&config.servers);
        let diff = ConfigDiff::between(&inner.running, &next);
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
        inner.file = config.servers;
        inner.running = next;
        inner.restart = loaded.options.unwrap_or_default().restart;
        self.enabled.send_replace(names(&inner.running));
        Ok(report)
    }

    /// Adds a server at runtime: recorded in the state file first (so it is back after a
    /// crash), then launched. Its launch result is the reply.
    pub async fn add(
        &self,
        mut spec: ServerSpec,
    ) -> Result<Result<ServerStatus, FleetError>, ChangeError> {
        let mut inner = self.inner.lock().await;
        spec.restart = inner.restart.clone();
        if inner.running.iter().any(|s| s.name == spec.name) {
            return Err(ChangeError::Exists(spec.name));
        }
        let mut changes = inner.changes.clone();
        changes.add(spec.clone());
        self.commit(&mut inner, changes)?;
        tracing::info!(server = %spec.name, command = %spec.command_line(), "server added");
        Ok(self
            .manager
            .ask(LaunchServer { spec })
            .await
            .map_err(|e| match e {
                SendError::HandlerError(e) => e,
                other => FleetError::ActorUnavailable {
                    actor: "server-manager".into(),
                    reason: other.to_string(),
                },
            }))
    }

    /// Saves `changes` to the state file, then makes them the ones in force; a failed save
    /// changes nothing.
    fn commit(&self, inner: &mut InForce, changes: RuntimeChanges) -> std::io::Result<()> {
        changes.save(&self.state_path)?;
        inner.changes = changes;
        inner.running = inner.changes.apply(&inner.file);
        self.enabled.send_replace(names(&inner.running));
        Ok(())
    }

    /// Removes a server at runtime: recorded in the state file, then stopped.
    pub async fn remove(&self, name: &str) -> Result<(), ChangeError> {
        let mut inner = self.inner.lock().await;
        if !inner.running.iter().any(|s| s.name == name) {
            return Err(ChangeError::Unknown(name.to_owned()));
        }
        let in_config = inner.file.iter().any(|s| s.name == name);
        let mut changes = inner.changes.clone();
        changes.remove(name, in_config);
        self.commit(&mut inner, changes)?;
        tracing::info!(server = %name, "server removed");
        if let Err(e) = self
            .manager
            .ask(RemoveServer {
                name: name.to_owned(),
            })
            .await
        {
            tracing::warn!(server = %name, error = %e, "the removed server could not be stopped");
        }
        Ok(())
    }
}

/// Applies `diff`: removes the removed servers and stops the changed ones (all at once), then
/// launches the changed and added ones (all at once).
pub async fn apply(manager: &ActorRef<ServerManager>, diff: &ConfigDiff) -> ReloadReport {
    let begin = Instant::now();
    let mut report = ReloadReport::default();
    let removals = join_all(diff.removed.iter().map(|name| {
        manager
            .ask(RemoveServer { name: name.clone() })
            .into_future()
    }));
    let stops = join_all(diff.changed.iter().map(|spec| {
        manager
            .ask(StopServer {
                name: spec.name.clone(),
            })
            .into_future()
    }));
    let (removals, stops) = futures::join!(removals, stops);
    let to_stop = diff
        .removed
        .iter()
        .chain(diff.changed.iter().map(|s| &s.name));
    let results = removals
        .into_iter()
        .map(|r| r.map(drop).map_err(|e| e.to_string()))
        .chain(
            stops
                .into_iter()
                .map(|r| r.map(drop).map_err(|e| e.to_string())),
        );
    for (name, result) in to_stop.zip(results) {
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
