//! Reload: apply a [`ConfigDiff`] to the running fleet. Only servers whose spec changed are
//! restarted (stopped, then launched with the new spec); removed ones are stopped, added ones
//! launched; unchanged servers, and the client sessions using them, are not touched.
//! [`Reloader`] is what SIGHUP and the admin API share: the servers in force (the config file's,
//! with the additions and removals made at runtime, which the state file keeps), changed one
//! reload, addition or removal at a time.

use std::future::IntoFuture;
use std::path::PathBuf;
use std::time::Instant;

use fleet_protocol::config::{ConfigDiff, ConfigErrors, FleetFile};
use fleet_protocol::{FleetError, RestartPolicy, ServerSpec, ServerStatus};
use kameo::error::SendError;

use crate::state::RuntimeChanges;
use fleet_protocol::messages::server::{LaunchServer, RemoveServer, StopServer};
use fleet_server_manager::ServerManager;
use futures::future::{BoxFuture, join_all};
use kameo::actor::ActorRef;

/// What a reload did, server by server; a failure names the server and says why.
#[derive(Debug, Default, serde::Serialize)]
pub struct ReloadReport {
    pub started: Vec<String>,
    pub restarted: Vec<String>,
    pub stopped: Vec<String>,
    pub unchanged: Vec<String>,
    pub failed: Vec<(String, String)>,
    /// What the reload read but did not apply: fleet options that take effect at the next
    /// start, and servers of the file that one added at runtime stands in for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub took: std::time::Duration,
}

/// The fleet options of `new` that differ from `old`, the ones mcp-fleet read at start: a
/// reload applies the servers and `[restart]` only (and `servers_file`, read anew each time).
fn options_read_at_start_only(old: &FleetFile, new: &FleetFile) -> Vec<&'static str> {
    let changed = [
        ("listen", old.listen != new.listen),
        ("token", old.token != new.token),
        ("stop_grace_secs", old.stop_grace != new.stop_grace),
        ("state", old.state != new.state),
        ("session_ttl_secs", old.session_ttl != new.session_ttl),
        (
            "request_timeout_secs",
            old.request_timeout != new.request_timeout,
        ),
        (
            "health.interval_secs",
            old.health_interval != new.health_interval,
        ),
        (
            "health.timeout_secs",
            old.health_timeout != new.health_timeout,
        ),
        (
            "health.failure_threshold",
            old.health_failure_threshold != new.health_failure_threshold,
        ),
    ];
    changed
        .into_iter()
        .filter_map(|(name, differs)| differs.then_some(name))
        .collect()
}

/// The servers in force: the config file's, with the changes made at runtime (kept in the state
/// file) over them. Reloads, additions and removals go through it one at a time.
pub struct Reloader {
    path: PathBuf,
    state_path: PathBuf,
    manager: ActorRef<ServerManager>,
    inner: tokio::sync::Mutex<InForce>,
    enabled: tokio::sync::watch::Sender<Vec<String>>,
    /// Where the fleet is: a reload waits for the first launch to end (`launched`), so that it
    /// does not stop what the launch is starting, and is refused once mcp-fleet stops
    /// (`stopping`), so that it neither starts servers nor holds up the shutdown.
    phase: tokio::sync::watch::Sender<Phase>,
    /// The fleet options read at start (servers left out), which a reload does not apply.
    options: FleetFile,
}

/// See `Reloader::phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Launching,
    Running,
    Stopping,
}

/// Why a reload changed nothing.
#[derive(Debug)]
pub enum ReloadError {
    /// The file has errors.
    Config(ConfigErrors),
    /// mcp-fleet is stopping.
    Stopping,
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
    /// `file`: the config file's servers read at start; `options`: its fleet options as read
    /// at start, `[restart]` included; `changes`: the state file's.
    pub fn new(
        path: PathBuf,
        state_path: PathBuf,
        manager: ActorRef<ServerManager>,
        file: Vec<ServerSpec>,
        options: FleetFile,
        changes: RuntimeChanges,
    ) -> Self {
        let restart = options.restart.clone();
        let changes = changes.with_restart(&restart);
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
            phase: tokio::sync::watch::Sender::new(Phase::Launching),
            options: FleetFile {
                servers: Default::default(),
                ..options
            },
        }
    }

    /// The fleet's first launch has ended: reloads may run.
    pub fn launched(&self) {
        self.phase.send_if_modified(|p| {
            let was = *p == Phase::Launching;
            if was {
                *p = Phase::Running;
            }
            was
        });
    }

    /// mcp-fleet stops: a reload waiting or asked for from now on is refused.
    pub fn stopping(&self) {
        self.phase.send_replace(Phase::Stopping);
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
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let mut phase = self.phase.subscribe();
        if *phase.borrow() == Phase::Launching {
            tracing::info!("reload asked for during the launch; it runs once the launch has ended");
        }
        let phase = phase.wait_for(|p| *p != Phase::Launching).await.map(|p| *p);
        if !matches!(phase, Ok(Phase::Running)) {
            return Err(ReloadError::Stopping);
        }
        let mut inner = self.inner.lock().await;
        let loaded = crate::config::load_all(&self.path).map_err(ReloadError::Config)?;
        let config = loaded.servers;
        let options = loaded.options.unwrap_or_default();
        let mut notes: Vec<String> = options_read_at_start_only(&self.options, &options)
            .into_iter()
            .map(|o| format!("`{o}` changed: it takes effect when mcp-fleet starts again"))
            .collect();
        let restart = options.restart;
        // Servers added at runtime take the file's `[restart]` as it is now, as its own do.
        let changes = inner.changes.clone().with_restart(&restart);
        let next = changes.apply(&config.servers);
        notes.extend(
            config
                .servers
                .iter()
                .filter(|s| changes.added.iter().any(|a| a.name == s.name))
                .map(|s| {
                    format!(
                        "`{}` of the file is not used: the server of that name added at runtime \
                         stands in for it (kept in the state file)",
                        s.name
                    )
                }),
        );
        let diff = ConfigDiff::between(&inner.running, &next);
        // The stops and removals are done, and the launches sent, under the lock; the launches
        // are waited for without it, so that an addition or a removal (of a server whose
        // launch hangs, say) need not wait for them.
        let launches = apply(&self.manager, &diff).await;
        inner.file = config.servers;
        inner.running = next;
        inner.changes = changes;
        inner.restart = restart;
        self.enabled.send_replace(names(&inner.running));
        drop(inner);
        let mut report = launches.finish().await;
        for note in &notes {
            tracing::warn!(note = %note, "reload: read but not applied");
        }
        report.notes = notes;
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
        let unavailable = |reason: String| FleetError::ActorUnavailable {
            actor: "server-manager".into(),
            reason,
        };
        // Sent under the lock (a removal after it finds the server), waited for without it (a
        // removal of a server whose launch hangs need not wait for it).
        let pending = self.manager.ask(LaunchServer { spec }).enqueue().await;
        drop(inner);
        Ok(match pending {
            Err(e) => Err(unavailable(e.to_string())),
            Ok(pending) => pending.await.map_err(|e| match e {
                SendError::HandlerError(e) => e,
                other => unavailable(other.to_string()),
            }),
        })
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

/// A launch's answer, to come: `Err` with why it did not start.
type LaunchAnswer = BoxFuture<'static, Result<(), String>>;

/// The launches of a reload, sent and not yet answered, and its report so far.
pub struct Launches {
    report: ReloadReport,
    begin: Instant,
    /// Each launched server, whether it was changed (else added), and its launch's answer.
    pending: Vec<(String, bool, LaunchAnswer)>,
}

impl Launches {
    /// Waits for every launch (all at once) and completes the report.
    pub async fn finish(mut self) -> ReloadReport {
        let (names, launches): (Vec<_>, Vec<_>) = self
            .pending
            .into_iter()
            .map(|(name, changed, launch)| ((name, changed), launch))
            .unzip();
        for ((name, changed), result) in names.into_iter().zip(join_all(launches).await) {
            match result {
                Err(e) => self.report.failed.push((name, e)),
                Ok(()) if changed => self.report.restarted.push(name),
                Ok(()) => self.report.started.push(name),
            }
        }
        self.report.took = self.begin.elapsed();
        self.report
    }
}

/// Applies `diff`: removes the removed servers and stops the changed ones (all at once), then
/// sends the launches of the changed and added ones, to be waited for with
/// [`Launches::finish`].
pub async fn apply(manager: &ActorRef<ServerManager>, diff: &ConfigDiff) -> Launches {
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
    let mut pending = Vec::new();
    let launches = diff
        .changed
        .iter()
        .map(|spec| (spec, true))
        .chain(diff.added.iter().map(|spec| (spec, false)));
    for (spec, changed) in launches {
        let sent = manager
            .ask(LaunchServer { spec: spec.clone() })
            .enqueue()
            .await;
        let launch: LaunchAnswer = match sent {
            Ok(answer) => {
                Box::pin(async move { answer.await.map(drop).map_err(|e| e.to_string()) })
            }
            Err(e) => {
                let e = e.to_string();
                Box::pin(async move { Err(e) })
            }
        };
        pending.push((spec.name.clone(), changed, launch));
    }
    report.unchanged = diff.unchanged.clone();
    Launches {
        report,
        begin,
        pending,
    }
}
