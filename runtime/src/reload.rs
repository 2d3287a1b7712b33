//! Reload: apply a [`ConfigDiff`] to the running fleet. Only servers whose spec changed are
//! restarted (stopped, then launched with the new spec); removed ones are stopped, added ones
//! launched; unchanged servers, and the client sessions using them, are not touched.

use std::future::IntoFuture;
use std::time::Instant;

use fleet_protocol::config::ConfigDiff;
use fleet_protocol::messages::server::{LaunchServer, StopServer};
use fleet_server_manager::ServerManager;
use futures::future::join_all;
use kameo::actor::ActorRef;

/// What a reload did, server by server; a failure names the server and says why.
#[derive(Debug, Default)]
pub struct ReloadReport {
    pub started: Vec<String>,
    pub restarted: Vec<String>,
    pub stopped: Vec<String>,
    pub failed: Vec<(String, String)>,
    pub took: std::time::Duration,
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
    report.took = begin.elapsed();
    report
}
