//! The `mcp-fleet` binary: `mcp-fleet run --config FILE [--listen ADDR]`: the fleet, its MCP
//! gateway at `/mcp` and its metrics at `/metrics`; `mcp-fleet check --config FILE` validates a
//! config without starting anything.
//!
//! Exit codes: 0 after a clean shutdown, 2 for a usage or configuration error, 1 for a runtime
//! failure (the listen address cannot be bound, the recorder cannot be installed).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fleet_protocol::messages::server::ServerLogs;
use fleet_protocol::messages::supervisor::{LaunchFleet, Shutdown};
use fleet_runtime::{Fleet, FleetOptions, admin, cli, config, http, mcp_http, reload, telemetry};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(
    name = "mcp-fleet",
    version,
    about = "Supervisor and gateway for MCP servers"
)]
struct Cli {
    /// How log lines are written to stderr; `RUST_LOG` filters them (default `info`).
    #[arg(long, global = true, value_enum, default_value_t = telemetry::LogFormat::Text)]
    log_format: telemetry::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every server of a config file and serve /mcp and /metrics until SIGINT or SIGTERM;
    /// SIGHUP reloads the config, restarting only the servers whose entry changed.
    Run {
        /// An `mcpServers` JSON file, as Claude Desktop and Cursor write it (or VS Code's
        /// `servers`), or an `mcp-fleet.toml` of fleet options and servers.
        #[arg(long, short)]
        config: PathBuf,
        /// Where to serve HTTP (/mcp, /metrics, the admin API) [default: the TOML's `listen`,
        /// else 127.0.0.1:7700].
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// A host name clients may use in `Host` and `Origin`, besides localhost, 127.0.0.1 and
        /// [::1] (repeat for more). Needed when listening on another address.
        #[arg(long = "allow-host", value_name = "NAME")]
        allow_hosts: Vec<String>,
        /// End a client session after this many seconds without a request [default: the
        /// TOML's `session_ttl_secs`, else 1800].
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
        session_ttl: Option<u64>,
        /// Where servers added or removed through the admin API are kept across restarts
        /// (default: the TOML's `state`, else beside the config, `NAME.state.json`).
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
    },
    /// Check a config file without starting anything: exit 0 if it is valid, 2 with every
    /// problem (file, line, column, key) if not.
    Check {
        /// An `mcpServers` JSON file (Claude Desktop, Cursor), a VS Code `servers` file, or an
        /// `mcp-fleet.toml`.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// A table of a running fleet's servers: state, pid, uptime, restarts, last exit, next
    /// retry, probe latency, tools.
    Status(Remote),
    /// Add, remove, start, stop or restart a server of a running fleet.
    Servers {
        #[command(subcommand)]
        action: ServersAction,
        #[command(flatten)]
        remote: Remote,
    },
    /// A server's stderr (the newest lines of its ring buffer).
    Logs {
        name: String,
        /// Keep printing new lines as they come.
        #[arg(long, short)]
        follow: bool,
        /// How many of the newest lines to print first.
        #[arg(long, short = 'n', default_value_t = 100)]
        lines: usize,
        #[command(flatten)]
        remote: Remote,
    },
    /// The tools the fleet's gateway offers (every server's, as `server__tool`).
    Tools(Remote),
}

/// Where the running fleet is; the token comes from `MCP_FLEET_TOKEN`.
#[derive(clap::Args)]
struct Remote {
    /// The fleet's HTTP address (its `run --listen`).
    #[arg(long, global = true, default_value = "http://127.0.0.1:7700", value_parser = cli::parse_fleet_url)]
    url: String,
}

#[derive(Subcommand)]
enum ServersAction {
    /// Add a server (kept across restarts): `servers add [--env K=V]... [--cwd DIR] NAME
    /// COMMAND [ARGS]...`. Options go before NAME: every word after COMMAND is the server's own
    /// argument, `--env` or `--url` included (as `npx -y` needs its own flags).
    Add {
        name: String,
        /// The server's command and its arguments: every word from COMMAND on is the server's.
        #[arg(
            value_name = "COMMAND [ARGS]...",
            required = true,
            num_args = 1..,
            trailing_var_arg = true,
            allow_hyphen_values = true
        )]
        command: Vec<String>,
        /// An environment variable for the server, `KEY=VALUE` (repeat for more).
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// The server's working directory; a relative one is taken from where this command runs.
        #[arg(long)]
        cwd: Option<PathBuf>,
    },
    /// Stop a server and remove it (kept across restarts).
    Remove { name: String },
    /// Start a stopped server.
    Start { name: String },
    /// Stop a server; it stays listed.
    Stop { name: String },
    /// Stop a server and start it again.
    Restart { name: String },
}

/// jemalloc gives memory freed by ended sessions back to the OS; glibc's malloc keeps it.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_logging("info", cli.log_format);
    telemetry::return_freed_memory();
    let workers = match fleet_runtime::config::worker_threads() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("mcp-fleet: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match fleet_runtime::system::async_runtime(workers) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mcp-fleet: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match cli.command {
        Command::Run {
            config,
            listen,
            allow_hosts,
            session_ttl,
            state,
        } => runtime.block_on(run(RunArgs {
            config,
            state,
            listen,
            allow_hosts,
            session_ttl,
        })),
        Command::Check { config } => check(&config),
        Command::Status(remote) => runtime.block_on(remote_command(&remote, status)),
        Command::Servers { action, remote } => {
            runtime.block_on(remote_command(&remote, |c| servers(c, action)))
        }
        Command::Logs {
            name,
            follow,
            lines,
            remote,
        } => runtime.block_on(remote_command(&remote, |c| logs(c, name, follow, lines))),
        Command::Tools(remote) => runtime.block_on(remote_command(&remote, tools)),
    }
}

/// Runs a command against a running fleet; its error is printed and sets the exit code.
async fn remote_command<F, Fut>(remote: &Remote, command: F) -> ExitCode
where
    F: FnOnce(cli::Client) -> Fut,
    Fut: Future<Output = Result<(), cli::CliError>>,
{
    let token = std::env::var(TOKEN_VAR).ok().filter(|t| !t.is_empty());
    match command(cli::Client::new(&remote.url, token)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcp-fleet: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn status(c: cli::Client) -> Result<(), cli::CliError> {
    let servers = c.get("/api/servers").await?;
    let health = c.get("/api/health").await?;
    print!(
        "{}",
        cli::status_table(&servers, &health, std::time::SystemTime::now())
    );
    Ok(())
}

async fn servers(c: cli::Client, action: ServersAction) -> Result<(), cli::CliError> {
    use reqwest::Method;
    let (method, path, body, done) = match action {
        ServersAction::Add {
            name,
            command,
            env,
            cwd,
        } => {
            let Some((command, args)) = command.split_first() else {
                return Err(cli::CliError::Refused {
                    status: 400,
                    message: "servers add takes NAME COMMAND [ARGS]...".into(),
                });
            };
            // A relative path is this command's, as `--cwd` is; a bare name is looked up on
            // the fleet's PATH.
            let command = if command.contains('/') {
                std::path::absolute(command)
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| command.clone())
            } else {
                command.clone()
            };
            let mut vars = serde_json::Map::new();
            for kv in env {
                let Some((k, v)) = kv.split_once('=') else {
                    return Err(cli::CliError::Refused {
                        status: 400,
                        message: format!("--env takes KEY=VALUE, not `{kv}`"),
                    });
                };
                vars.insert(k.to_owned(), serde_json::Value::String(v.to_owned()));
            }
            let mut body =
                serde_json::json!({"name": name, "command": command, "args": args, "env": vars});
            if let Some(cwd) = cwd {
                // The fleet resolves a path from its own directory, not from this one.
                let cwd = std::path::absolute(&cwd).unwrap_or(cwd);
                body["cwd"] = serde_json::Value::String(cwd.display().to_string());
            }
            (
                Method::POST,
                "/api/servers".to_owned(),
                Some(body),
                format!("added {name}"),
            )
        }
        ServersAction::Remove { name } => (
            Method::DELETE,
            cli::server_path(&name, &[]),
            None,
            format!("removed {name}"),
        ),
        ServersAction::Start { name } => (
            Method::POST,
            cli::server_path(&name, &["start"]),
            None,
            format!("started {name}"),
        ),
        ServersAction::Stop { name } => (
            Method::POST,
            cli::server_path(&name, &["stop"]),
            None,
            format!("stopped {name}"),
        ),
        ServersAction::Restart { name } => (
            Method::POST,
            cli::server_path(&name, &["restart"]),
            None,
            format!("restarted {name}"),
        ),
    };
    let answer = c.call(method, &path, body.as_ref()).await?;
    match (
        answer["state"].as_str(),
        answer["pid"].as_u64(),
        answer["error"].as_str(),
    ) {
        (_, _, Some(error)) => {
            return Err(cli::CliError::NotStarted {
                message: format!("{done}, but it did not start: {error}"),
            });
        }
        (Some(state), Some(pid), _) => println!("{done}: {state}, pid {pid}"),
        (Some(state), None, _) => println!("{done}: {state}"),
        _ => println!("{done}"),
    }
    Ok(())
}

async fn logs(
    c: cli::Client,
    name: String,
    follow: bool,
    lines: usize,
) -> Result<(), cli::CliError> {
    let logs = cli::server_path(&name, &["logs"]);
    let mut seen = read_logs(&c, &format!("{logs}?lines={lines}")).await?;
    print_log_lines(&seen);
    if !follow {
        return Ok(());
    }
    // Until interrupted (Ctrl-C), as `tail -f`. Each answer's `total` is the cursor of the
    // next ask, so every line is printed once. A fleet that cannot be reached for a while (a
    // restart) is waited for.
    let mut away = false;
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let ask = format!("{logs}?lines={FOLLOW_MAX_LINES}&after={}", seen.total);
        let mut answer = match read_logs(&c, &ask).await {
            Ok(answer) => answer,
            Err(e) if passing(&e) => {
                if !std::mem::replace(&mut away, true) {
                    eprintln!("({e}; still following)");
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        if std::mem::take(&mut away) {
            eprintln!("(following again)");
        }
        if answer.log_id != seen.log_id {
            // The log began anew (the server launched again, the fleet restarted): the old
            // cursor means nothing in it, and all of it is new.
            eprintln!("(the server's log began anew)");
            let ask = format!("{logs}?lines={FOLLOW_MAX_LINES}&after=0");
            answer = match read_logs(&c, &ask).await {
                Ok(answer) => answer,
                Err(e) if passing(&e) => continue,
                Err(e) => return Err(e),
            };
        }
        print_log_lines(&answer);
        if answer.missed > 0 {
            eprintln!(
                "({} lines not shown: the server's stderr buffer dropped them before they were read, or a poll shows at most {FOLLOW_MAX_LINES})",
                answer.missed
            );
        }
        seen = answer;
    }
}

/// The most lines `logs -f` prints per poll.
const FOLLOW_MAX_LINES: usize = 100_000;

/// One answer of the logs API, as the fleet writes it.
async fn read_logs(c: &cli::Client, ask: &str) -> Result<ServerLogs, cli::CliError> {
    serde_json::from_value(c.get(ask).await?).map_err(|e| cli::CliError::Refused {
        status: 502,
        message: format!("the logs API answered what this CLI cannot read (an mcp-fleet of another version?): {e}"),
    })
}

/// An error a follower waits out: the fleet down or restarting, the server not back yet.
fn passing(e: &cli::CliError) -> bool {
    matches!(
        e,
        cli::CliError::Unreachable { .. }
            | cli::CliError::Refused {
                status: 404 | 503,
                ..
            }
    )
}

fn print_log_lines(logs: &ServerLogs) {
    for line in &logs.lines {
        println!("{line}");
    }
}

async fn tools(c: cli::Client) -> Result<(), cli::CliError> {
    for tool in c.tools().await? {
        let name = tool["name"].as_str().unwrap_or("?");
        let description = tool["description"].as_str().unwrap_or("");
        let first = description.lines().next().unwrap_or("");
        println!("{name:<40} {first}");
    }
    Ok(())
}

/// Where `run` listens when neither `--listen` nor the file says.
const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7700);

/// The bearer token `run` requires: the environment's wins over the file's `token`. The admin
/// API can start and stop processes, so listening beyond loopback without a token is an error.
fn token_for(listen: SocketAddr, file_token: Option<String>) -> Result<Option<String>, String> {
    let token = std::env::var(TOKEN_VAR)
        .ok()
        .filter(|t| !t.is_empty())
        .or(file_token);
    if !listen.ip().is_loopback() && token.is_none() {
        return Err(format!(
            "listening on {listen}, beyond loopback, needs a bearer token: set {TOKEN_VAR} or `token` in mcp-fleet.toml"
        ));
    }
    Ok(token)
}

/// `mcp-fleet check`: the servers the file would run, or every problem in it, `run`'s checks
/// of the fleet options included.
fn check(path: &std::path::Path) -> ExitCode {
    let loaded = config::load_all(path).and_then(|loaded| {
        let options = loaded.options.clone().unwrap_or_default();
        let listen = options.listen.unwrap_or(DEFAULT_LISTEN);
        match token_for(listen, options.token) {
            Ok(_) => Ok(loaded.servers),
            Err(message) => Err(fleet_protocol::config::ConfigErrors(vec![
                fleet_protocol::config::ConfigError {
                    source: path.display().to_string(),
                    line: 0,
                    column: 0,
                    key: "listen".into(),
                    message,
                },
            ])),
        }
    });
    match loaded {
        Ok(c) => {
            println!(
                "{}: valid; {} server(s) to run, {} disabled",
                path.display(),
                c.servers.len(),
                c.disabled.len()
            );
            for s in &c.servers {
                println!("  {:<20} {}", s.name, s.command_line());
            }
            for name in &c.disabled {
                println!("  {name:<20} (disabled)");
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::from(2)
        }
    }
}

/// While a launch is under way: every 2 s, how many servers are ready, failed, or on their way.
async fn launch_progress(
    manager: kameo::actor::ActorRef<fleet_server_manager::ServerManager>,
    total: usize,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    tick.tick().await;
    loop {
        tick.tick().await;
        let Ok(servers) = manager
            .ask(fleet_protocol::messages::server::ListServers)
            .await
        else {
            return;
        };
        let ready = servers.iter().filter(|s| s.state.is_serving()).count();
        let failed = servers.iter().filter(|s| s.state.is_terminal()).count();
        let waiting: Vec<&str> = servers
            .iter()
            .filter(|s| !s.state.is_serving() && !s.state.is_terminal())
            .map(|s| s.name.as_str())
            .collect();
        tracing::info!(
            ready,
            failed,
            total,
            ?waiting,
            "launching: {ready}/{total} ready"
        );
    }
}

/// SIGHUP: reads the config again and applies what changed. A config with errors changes
/// nothing: the errors are logged and the running servers keep running.
async fn reload(reloader: std::sync::Arc<reload::Reloader>, path: PathBuf) {
    tracing::info!(config = %path.display(), "SIGHUP: reloading the config");
    // The reloader logs what it did; a refused file is logged here.
    match reloader.reload().await {
        Ok(_) => {}
        Err(reload::ReloadError::Config(errors)) => {
            for e in &errors.0 {
                tracing::error!(error = %e, "reload refused; the running servers are kept");
            }
        }
        Err(reload::ReloadError::Stopping) => tracing::info!("not reloaded: mcp-fleet stops"),
    }
}

/// The environment variable holding the bearer token clients of `/mcp` must send, if set.
const TOKEN_VAR: &str = "MCP_FLEET_TOKEN";

/// How long `run` waits for the servers to stop once the supervisor gave up (each server's
/// stop ends with SIGKILL well before).
const GAVE_UP_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// `run`'s command-line options; where one is absent, the TOML's option or the default holds.
struct RunArgs {
    config: PathBuf,
    state: Option<PathBuf>,
    listen: Option<SocketAddr>,
    allow_hosts: Vec<String>,
    session_ttl: Option<u64>,
}

async fn run(args: RunArgs) -> ExitCode {
    let config_path = args.config;
    let loaded = match config::load_all(&config_path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    let config = loaded.servers;
    let file = loaded.options.unwrap_or_default();
    let listen = args.listen.or(file.listen).unwrap_or(DEFAULT_LISTEN);
    let state_path = match (args.state, &file.state) {
        (Some(s), _) => s,
        (None, Some(s)) => config_path
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join(s),
        (None, None) => fleet_runtime::state::default_path(&config_path),
    };
    let session_ttl = args
        .session_ttl
        .map(std::time::Duration::from_secs)
        .or(file.session_ttl)
        .unwrap_or(std::time::Duration::from_secs(1800));
    let allow_hosts = args.allow_hosts;
    let changes = match fleet_runtime::state::RuntimeChanges::load(&state_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let token = match token_for(listen, file.token.clone()) {
        Ok(token) => token,
        Err(e) => {
            eprintln!("mcp-fleet: {e}");
            return ExitCode::from(2);
        }
    };
    fleet_runtime::system::raise_fd_limit();
    let prometheus = match telemetry::install_prometheus() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("mcp-fleet: cannot install the metrics recorder: {e}");
            return ExitCode::from(1);
        }
    };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mcp-fleet: cannot listen on {listen}: {e}");
            return ExitCode::from(1);
        }
    };
    let (Ok(mut sigint), Ok(mut sigterm), Ok(mut sighup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        eprintln!("mcp-fleet: cannot install signal handlers");
        return ExitCode::from(1);
    };

    let mut options = FleetOptions::default();
    options.gateway.session_idle_ttl = session_ttl;
    // The gateway leaves the timeout to the manager, which applies a server's own first.
    if let Some(t) = file.request_timeout {
        options.server_manager.request_timeout = t;
    }
    if let Some(g) = file.stop_grace {
        options.server_manager.stop_grace = g;
    }
    if let Some(i) = file.health_interval {
        options.health.interval = i;
    }
    if let Some(t) = file.health_timeout {
        options.health.timeout = t;
    }
    if let Some(n) = file.health_failure_threshold {
        options.health.failure_threshold = n;
    }
    let mut mcp_config = mcp_http::McpHttpConfig::default();
    mcp_config.allowed_hosts.extend(allow_hosts);
    mcp_config.bearer_token = token;
    // Children of an earlier instance that was killed before it could stop them.
    for orphan in fleet_server_manager::sweep_orphans(&options.server_manager.instance_id) {
        tracing::warn!(
            pid = orphan.pid,
            instance = %orphan.instance,
            command = %orphan.command,
            "ended an orphan left by an earlier mcp-fleet instance"
        );
    }
    let fleet = Fleet::start(options).await;
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    if !changes.added.is_empty() || !changes.removed.is_empty() {
        tracing::info!(
            state = %state_path.display(),
            added = ?changes.added.iter().map(|s| &s.name).collect::<Vec<_>>(),
            removed = ?changes.removed,
            "changes made at runtime before the last stop apply over the config"
        );
    }
    let reloader = std::sync::Arc::new(reload::Reloader::new(
        config_path.clone(),
        state_path,
        fleet.server_manager.clone(),
        config.servers.clone(),
        file.clone(),
        changes,
    ));
    let specs = reloader.running().await;
    let admin = admin::router(
        fleet.server_manager.clone(),
        fleet.health.clone(),
        reloader.clone(),
        std::sync::Arc::new(mcp_config.clone()),
    );
    let router = http::count_responses(
        http::router(prometheus)
            .merge(mcp_http::router(fleet.gateway_port.clone(), mcp_config))
            .merge(admin),
        fleet.metrics.clone().recipient(),
    );
    let server = tokio::spawn(http::serve(listener, router, async {
        let _ = http_stopped.await;
    }));
    tracing::info!(%listen, config = %config_path.display(), servers = specs.len(), "mcp-fleet running; MCP at http://{listen}/mcp, metrics at /metrics");
    for name in &config.disabled {
        tracing::info!(server = %name, "disabled in the config; not started");
    }

    let progress = tokio::spawn(launch_progress(fleet.server_manager.clone(), specs.len()));
    // Reloads run in tasks of their own (one after the other, by the reloader's lock), so that
    // a signal to stop is heard while one launches a slow server; the shutdown ends them.
    let mut reloads = tokio::task::JoinSet::new();
    // The supervisor stops by itself only when a service failed more often than its restart
    // limit allows: every server stops with it, and mcp-fleet exits 1, for whatever started it
    // (systemd, a container runtime) to start it again.
    let supervisor = fleet.supervisor.clone();
    let gave_up = async move { supervisor.wait_for_shutdown_result().await };
    tokio::pin!(gave_up);
    let launch = fleet.supervisor.ask(LaunchFleet { specs });
    let end = tokio::select! {
        report = launch => {
            match report {
                Ok(report) => {
                    let ready = report.results.iter().filter(|r| r.is_ok()).count();
                    tracing::info!(ready, failed = report.results.len() - ready, took_ms = report.took.as_millis() as u64, "fleet launched");
                    for e in report.results.iter().filter_map(|r| r.as_ref().err()) {
                        tracing::error!(error = %e, "server did not start");
                    }
                }
                Err(e) => tracing::error!(error = ?e, "fleet launch failed"),
            }
            reloader.launched();
            progress.abort();
            // A SIGHUP that came during the launch is kept by the stream and handled now.
            loop {
                tokio::select! {
                    _ = sigint.recv() => break Ok("SIGINT"),
                    _ = sigterm.recv() => break Ok("SIGTERM"),
                    _ = sighup.recv() => {
                        reloads.spawn(reload(reloader.clone(), config_path.clone()));
                    }
                    Some(_) = reloads.join_next() => {}
                    reason = &mut gave_up => break Err(reason),
                }
            }
        }
        _ = sigint.recv() => Ok("SIGINT"),
        _ = sigterm.recv() => Ok("SIGTERM"),
        reason = &mut gave_up => Err(reason),
    };
    // A reload waiting for the launch, or asked for from now on, is refused: it must not start
    // servers or hold up the HTTP server's drain.
    reloader.stopping();
    progress.abort();
    reloads.abort_all();
    // A signal to stop, or the supervisor's stop: a service that failed past its restart limit,
    // or the supervisor itself.
    let signalled = match end {
        Ok(signal) => signal,
        Err(reason) => {
            tracing::error!(
                ?reason,
                "the supervisor stopped, and every service with it: stopping every server and exiting with code 1"
            );
            // The manager's stop stops its servers' actors, whose stops kill their process
            // groups: wait for those, so that none is left behind.
            let stopped = fleet.manager_memory.servers_stopped();
            if tokio::time::timeout(GAVE_UP_WAIT, stopped).await.is_err() {
                tracing::error!("the servers did not stop in time");
            }
            let _ = stop_http.send(());
            let _ = server.await;
            return ExitCode::from(1);
        }
    };
    tracing::info!(signal = signalled, "shutting down");
    // The supervisor ends the gateway's sessions first: their streams close, so the HTTP server
    // can drain.
    let code = match fleet.supervisor.ask(Shutdown).await {
        Ok(report) => {
            for s in &report.servers {
                tracing::info!(server = %s.name, method = ?s.method, exit = ?s.exit.as_ref().map(ToString::to_string), "stopped");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = ?e, "shutdown failed");
            ExitCode::from(1)
        }
    };
    let _ = stop_http.send(());
    let _ = server.await;
    code
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Command, ServersAction};

    fn add(words: &[&str]) -> (String, Vec<String>, Vec<String>) {
        let cli = Cli::try_parse_from(["mcp-fleet", "servers", "add"].iter().chain(words))
            .unwrap_or_else(|e| panic!("{words:?}: {e}"));
        match cli.command {
            Command::Servers {
                action:
                    ServersAction::Add {
                        name, command, env, ..
                    },
                ..
            } => (name, command, env),
            _ => panic!("not `servers add`"),
        }
    }

    /// Every word from COMMAND on is the server's, options of `servers add` included.
    #[test]
    fn servers_add_gives_every_word_after_the_command_to_the_server() {
        let (name, command, env) = add(&[
            "--env", "K=V", "z", "npx", "-y", "pkg", "--env", "A=B", "--url", "http://x",
        ]);
        assert_eq!(name, "z");
        assert_eq!(
            command,
            ["npx", "-y", "pkg", "--env", "A=B", "--url", "http://x"]
        );
        assert_eq!(env, ["K=V"]);
        assert!(
            Cli::try_parse_from(["mcp-fleet", "servers", "add", "z"]).is_err(),
            "COMMAND is required"
        );
    }
}
