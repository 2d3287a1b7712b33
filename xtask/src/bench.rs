//! `cargo xtask bench`: build the benchmarks in release mode, run each with a time limit, and
//! write their reports into BENCHMARKS.md between `<!-- bench:begin -->` and
//! `<!-- bench:end -->`.
//!
//! Every benchmark is an example of `fleet-examples` that takes `--mode quick|full` and
//! `--out FILE` and writes one report as JSON (`examples/bench/mod.rs`). xtask adds what no
//! benchmark knows: the command, the date, the commit, the machine, its load, and how much CPU
//! time the hypervisor gave to other guests while each benchmark ran (steal: on a shared VM, the
//! figures of a run with much of it say more about the host than about the code). Each run's own
//! command, date, commit and steal are kept beside its report (`target/bench/NAME.run.json`), so
//! that a report kept from an earlier run (`--only`) is shown with the run it came from.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::util::{self, cargo, project_root};

const BEGIN: &str = "<!-- bench:begin -->";
const END: &str = "<!-- bench:end -->";

/// One benchmark program.
struct Bench {
    /// What `--only` takes.
    name: &'static str,
    /// The example's name: `target/release/examples/<binary>`.
    binary: &'static str,
    /// Whether `.ci/install-bench-peers` must run first.
    needs_peers: bool,
}

const BENCHES: [Bench; 3] = [
    Bench {
        name: "actors",
        binary: "bench_actors",
        needs_peers: false,
    },
    Bench {
        name: "fleet-scale",
        binary: "bench_fleet_scale",
        needs_peers: false,
    },
    Bench {
        name: "gateway",
        binary: "bench_gateway",
        needs_peers: true,
    },
];

/// The wall-clock limit of one benchmark; past it the benchmark is killed and reported failed.
/// Quick mode keeps all of them within 5 minutes in all; the limit is the guard, not the plan.
fn limit(full: bool) -> Duration {
    if full {
        Duration::from_secs(30 * 60)
    } else {
        Duration::from_secs(3 * 60)
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Options {
    full: bool,
    /// Benchmark names from `--only`; empty means all.
    only: Vec<String>,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.full = false,
            "--full" => options.full = true,
            "--only" => {
                let Some(name) = args.next() else {
                    bail!("`--only` needs a benchmark name ({})", names());
                };
                options.only.push(bench_by_name(name)?.name.to_owned());
            }
            other => bail!(
                "unknown `bench` argument `{other}`: usage is `cargo xtask bench [--quick|--full] [--only NAME]...`"
            ),
        }
    }
    Ok(options)
}

fn names() -> String {
    BENCHES
        .iter()
        .map(|b| b.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `actors`, `bench_actors`, `fleet_scale` and `fleet-scale` all name a benchmark.
fn bench_by_name(name: &str) -> Result<&'static Bench> {
    let wanted = name.trim_start_matches("bench_").replace('_', "-");
    BENCHES
        .iter()
        .find(|b| b.name == wanted)
        .with_context(|| format!("no benchmark `{name}`; there are: {}", names()))
}

/// The report a benchmark writes (`fleet_examples::bench::Report`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Report {
    title: String,
    notes: Vec<String>,
    tables: Vec<Table>,
    acceptance: Vec<Acceptance>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Table {
    title: String,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Acceptance {
    line: String,
    met: bool,
    figures: String,
}

/// How one benchmark run went, kept beside its report.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Run {
    command: String,
    date: String,
    commit: String,
    /// `git status --porcelain` listed changes: the tree differs from `commit`.
    dirty: bool,
    mode: String,
    elapsed_secs: f64,
    /// The share of the machine's CPU time that the hypervisor gave to other guests while the
    /// benchmark ran (steal), in per cent; `None` where /proc/stat does not tell.
    stolen_percent: Option<f64>,
    /// Why it failed, if it did.
    failure: Option<String>,
}

/// The machine's CPU time so far, all CPUs, from /proc/stat, in ticks.
#[derive(Clone, Copy, Debug, PartialEq)]
struct CpuTicks {
    total: u64,
    /// Of `total`, the time the hypervisor ran other guests on this machine's CPUs.
    stolen: u64,
}

impl CpuTicks {
    fn now() -> Option<CpuTicks> {
        use procfs::CurrentSI as _;
        let t = procfs::KernelStats::current().ok()?.total;
        let stolen = t.steal?;
        // `guest` and `guest_nice` are already counted in `user` and `nice`.
        let total = [t.iowait, t.irq, t.softirq].into_iter().flatten().fold(
            t.user + t.nice + t.system + t.idle + stolen,
            u64::saturating_add,
        );
        Some(CpuTicks { total, stolen })
    }

    /// The share of the CPU time from `self` to `later` that was stolen, in per cent.
    fn stolen_percent(self, later: CpuTicks) -> Option<f64> {
        let total = later.total.checked_sub(self.total)?;
        let stolen = later.stolen.checked_sub(self.stolen)?;
        (total > 0).then(|| stolen as f64 * 100.0 / total as f64)
    }
}

/// What this invocation did with one benchmark.
enum Outcome {
    NotSelected,
    Missing,
    Ran(Run),
}

pub fn run(args: &[String]) -> Result<()> {
    let options = parse(args)?;
    let root = project_root();
    let command = std::iter::once("cargo xtask bench".to_owned())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let mode = if options.full { "full" } else { "quick" };
    let selected = |b: &Bench| options.only.is_empty() || options.only.iter().any(|n| n == b.name);

    // `--bins` too: with `--examples` alone, cargo builds no binary of any package, and the
    // benchmarks would run whatever `target/release/mcp-fleet` an earlier build left.
    util::run(cargo().args([
        "build",
        "--release",
        "-p",
        "fleet-examples",
        "-p",
        "fleet-runtime",
        "-p",
        "mcp-reference-server",
        "--examples",
        "--bins",
    ]))?;

    let out_dir = root.join("target").join("bench");
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let header = Header::now(&root, &command);
    let mut outcomes = Vec::new();
    let mut peers_installed = None;
    for bench in &BENCHES {
        if !selected(bench) {
            outcomes.push(Outcome::NotSelected);
            continue;
        }
        // A stale report must not pass for this run's.
        for file in [report_path(&out_dir, bench), run_path(&out_dir, bench)] {
            let _ = fs::remove_file(file);
        }
        let binary = root
            .join("target")
            .join("release")
            .join("examples")
            .join(bench.binary);
        if !binary.is_file() {
            println!(
                "==> bench: {} skipped: {} does not exist (no such example yet)",
                bench.name,
                binary.display()
            );
            outcomes.push(Outcome::Missing);
            continue;
        }
        let started = Instant::now();
        let ticks = CpuTicks::now();
        let failure = if bench.needs_peers {
            let installed = peers_installed.get_or_insert_with(|| install_peers(&root));
            match installed {
                Ok(()) => run_bench(bench, &binary, &out_dir, options.full)
                    .err()
                    .map(|e| format!("{e:#}")),
                Err(e) => Some(format!("its peers could not be installed: {e:#}")),
            }
        } else {
            run_bench(bench, &binary, &out_dir, options.full)
                .err()
                .map(|e| format!("{e:#}"))
        };
        let elapsed = started.elapsed();
        let stolen_percent = ticks
            .zip(CpuTicks::now())
            .and_then(|(before, after)| before.stolen_percent(after));
        match &failure {
            None => println!(
                "==> bench: {} done in {:.1} s",
                bench.name,
                elapsed.as_secs_f64()
            ),
            Some(why) => eprintln!(
                "==> bench: {} FAILED after {:.1} s: {why}",
                bench.name,
                elapsed.as_secs_f64()
            ),
        }
        let run = Run {
            command: command.clone(),
            date: header.date.clone(),
            commit: header.commit.clone(),
            dirty: header.dirty,
            mode: mode.to_owned(),
            elapsed_secs: elapsed.as_secs_f64(),
            stolen_percent,
            failure,
        };
        fs::write(run_path(&out_dir, bench), serde_json::to_vec_pretty(&run)?)?;
        outcomes.push(Outcome::Ran(run));
    }

    let section = render(&header, &out_dir, &outcomes)?;
    let doc_path = root.join("BENCHMARKS.md");
    let doc = util::read(&doc_path)?;
    let doc = replace_section(&doc, &section)
        .with_context(|| format!("updating {}", doc_path.display()))?;
    write_atomically(&doc_path, &doc)?;
    println!("\nbench: wrote {}", doc_path.display());

    println!("\nbench summary ({mode}):");
    let mut failed = Vec::new();
    for (bench, outcome) in BENCHES.iter().zip(&outcomes) {
        match outcome {
            Outcome::NotSelected => {}
            Outcome::Missing => println!("  skipped {:<12} (no binary)", bench.name),
            Outcome::Ran(run) => {
                let status = if run.failure.is_some() {
                    failed.push(bench.name);
                    "FAILED"
                } else {
                    "ok"
                };
                println!(
                    "  {status:<7} {:<12} {:>7.1} s{}",
                    bench.name,
                    run.elapsed_secs,
                    stolen_markdown(run.stolen_percent)
                );
            }
        }
    }
    if !failed.is_empty() {
        bail!("benchmarks failed: {}", failed.join(", "));
    }
    Ok(())
}

fn report_path(dir: &Path, bench: &Bench) -> PathBuf {
    dir.join(format!("{}.json", bench.name))
}

fn run_path(dir: &Path, bench: &Bench) -> PathBuf {
    dir.join(format!("{}.run.json", bench.name))
}

/// Runs `.ci/install-bench-peers` if it exists, with its output passed through.
fn install_peers(root: &Path) -> Result<()> {
    let script = root.join(".ci").join("install-bench-peers");
    if !script.is_file() {
        println!("==> bench: no .ci/install-bench-peers; the gateway benchmark runs without it");
        return Ok(());
    }
    println!("==> bench: installing the gateway benchmark's peers");
    util::run(Command::new(&script).current_dir(root))
}

/// Runs one benchmark with its output streamed, kills it (and every process of its group) past
/// the time limit, and checks that it wrote a readable report.
fn run_bench(bench: &Bench, binary: &Path, out_dir: &Path, full: bool) -> Result<()> {
    use std::os::unix::process::CommandExt as _;

    let out = report_path(out_dir, bench);
    let mut cmd = Command::new(binary);
    cmd.current_dir(project_root())
        .args(["--mode", if full { "full" } else { "quick" }, "--out"])
        .arg(&out)
        // A group of its own, so a timeout ends whatever the benchmark started too.
        .process_group(0);
    let limit = limit(full);
    println!(
        "==> bench: {} (limit {} s)\n$ {}",
        bench.name,
        limit.as_secs(),
        util::display(&cmd)
    );
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start {}", binary.display()))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > limit {
            kill_group(child.id(), "TERM");
            let grace = Instant::now();
            while child.try_wait()?.is_none() && grace.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(100));
            }
            kill_group(child.id(), "KILL");
            let _ = child.wait();
            bail!(
                "it ran past its limit of {} s and was killed",
                limit.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Whatever the benchmark left in its group goes too.
    let left = group_members(child.id());
    if left > 0 {
        eprintln!(
            "bench: {} left {left} process(es) behind; killing them",
            bench.name
        );
        kill_group(child.id(), "KILL");
    }
    check_status(status)?;
    let text = util::read(&out).context("it wrote no report")?;
    serde_json::from_str::<Report>(&text)
        .with_context(|| format!("its report {} is not valid", out.display()))?;
    Ok(())
}

fn check_status(status: ExitStatus) -> Result<()> {
    if status.success() {
        Ok(())
    } else {
        bail!("it exited with {status}")
    }
}

/// How many processes are in the process group `pgid` (from /proc). While one is, the id
/// cannot be given to another process, so signalling the group reaches only ours.
fn group_members(pgid: u32) -> usize {
    let Ok(dir) = fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter(|e| {
            // `pid (comm) state ppid pgrp ...`; comm may contain spaces and parentheses.
            fs::read_to_string(e.path().join("stat"))
                .ok()
                .and_then(|s| {
                    let rest = &s[s.rfind(')')? + 1..];
                    rest.split_whitespace().nth(2)?.parse::<u32>().ok()
                })
                == Some(pgid)
        })
        .count()
}

/// Sends SIGTERM or SIGKILL to the process group `pgid` if any process is left in it.
fn kill_group(pgid: u32, signal: &str) {
    if group_members(pgid) == 0 {
        return;
    }
    let _ = Command::new("kill")
        .args([format!("-{signal}"), "--".into(), format!("-{pgid}")])
        .stderr(std::process::Stdio::null())
        .status();
}

/// What the generated section says of this invocation.
struct Header {
    command: String,
    date: String,
    commit: String,
    dirty: bool,
    machine: String,
    load: String,
}

impl Header {
    fn now(root: &Path, command: &str) -> Header {
        let commit = output(root, "git", &["rev-parse", "--short", "HEAD"])
            .unwrap_or_else(|| "unknown".into());
        let dirty = output(root, "git", &["status", "--porcelain"]).is_some_and(|s| !s.is_empty());
        Header {
            command: command.to_owned(),
            date: output(root, "date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"])
                .unwrap_or_else(|| "unknown".into()),
            commit,
            dirty,
            machine: machine(root),
            load: fs::read_to_string("/proc/loadavg")
                .ok()
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(", "))
                .unwrap_or_else(|| "unknown".into()),
        }
    }
}

/// The trimmed standard output of a command, if it ran and succeeded.
fn output(root: &Path, program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(root)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// CPU model, cores, memory, kernel and rustc, in one line.
fn machine(root: &Path) -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let kib: f64 = m
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            Some(format!("{:.1} GiB RAM", kib / (1024.0 * 1024.0)))
        })
        .unwrap_or_else(|| "unknown RAM".into());
    let kernel = output(root, "uname", &["-r"]).unwrap_or_else(|| "unknown".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc = output(root, &rustc, &["--version"]).unwrap_or_else(|| "rustc unknown".into());
    format!("{model}, {cores} cores (`nproc`), {memory}, Linux {kernel}, {rustc}")
}

/// The generated section, without the markers.
fn render(header: &Header, out_dir: &Path, outcomes: &[Outcome]) -> Result<String> {
    let mut s = String::new();
    s.push_str(
        "<!-- Written by `cargo xtask bench` from target/bench/*.json; edits between the markers \
         are overwritten. -->\n\n",
    );
    s.push_str("## Results of `cargo xtask bench`\n\n");
    s.push_str(&format!("- Command: `{}`\n", header.command));
    s.push_str(&format!("- Date: {}\n", header.date));
    s.push_str(&format!(
        "- Commit: {}\n",
        commit_markdown(&header.commit, header.dirty)
    ));
    s.push_str(&format!("- Machine: {}\n", header.machine));
    s.push_str(&format!(
        "- Load average (1, 5, 15 min) before the first benchmark: {}\n",
        header.load
    ));
    s.push_str(
        "- Release build; quick mode keeps all the benchmarks within 5 minutes, full mode \
         measures longer. Other work on the machine moves the figures: read them with the load \
         above and with the CPU time the hypervisor gave to other guests while each benchmark \
         ran (steal, from /proc/stat).\n",
    );
    for (bench, outcome) in BENCHES.iter().zip(outcomes) {
        let run_file = run_path(out_dir, bench);
        let run = match outcome {
            Outcome::Missing => {
                s.push_str(&format!(
                    "\n### {}\n\nNot run: the example `{}` does not exist yet.\n",
                    bench.binary, bench.binary
                ));
                continue;
            }
            Outcome::Ran(run) => run.clone(),
            // Kept from an earlier run, if there is one.
            Outcome::NotSelected => match fs::read_to_string(&run_file) {
                Ok(text) => serde_json::from_str::<Run>(&text)
                    .with_context(|| format!("{} is not valid", run_file.display()))?,
                Err(_) => continue,
            },
        };
        let report_file = report_path(out_dir, bench);
        let report = match &run.failure {
            Some(_) => None,
            None => {
                let text = util::read(&report_file)?;
                Some(
                    serde_json::from_str::<Report>(&text)
                        .with_context(|| format!("{} is not valid", report_file.display()))?,
                )
            }
        };
        let title = report
            .as_ref()
            .map_or(bench.binary.to_owned(), |r| r.title.clone());
        s.push_str(&format!("\n### {title}\n\n"));
        let earlier = matches!(outcome, Outcome::NotSelected);
        s.push_str(&format!(
            "`target/release/examples/{}`, {} mode, {:.0} s{}{}.\n",
            bench.binary,
            run.mode,
            run.elapsed_secs,
            stolen_markdown(run.stolen_percent),
            if earlier {
                format!(
                    "; kept from an earlier run: `{}` on {} at {}",
                    run.command,
                    run.date,
                    commit_markdown(&run.commit, run.dirty)
                )
            } else {
                String::new()
            }
        ));
        let Some(report) = report else {
            s.push_str(&format!(
                "\n**The benchmark failed**: {}.\n",
                run.failure.as_deref().unwrap_or("unknown reason")
            ));
            continue;
        };
        for note in &report.notes {
            s.push_str(&format!("\n{note}\n"));
        }
        for table in &report.tables {
            s.push_str(&format!("\n{}\n", table_markdown(table)));
        }
        if !report.acceptance.is_empty() {
            s.push_str("\n**Acceptance**\n\n");
            for a in &report.acceptance {
                let verdict = if a.met { "met" } else { "NOT met" };
                s.push_str(&format!("- {}: **{verdict}**. {}\n", a.line, a.figures));
            }
        }
    }
    Ok(s)
}

/// How much CPU time the hypervisor took while a benchmark ran, as a clause.
fn stolen_markdown(percent: Option<f64>) -> String {
    percent.map_or(String::new(), |p| {
        format!("; CPU time stolen by the hypervisor meanwhile: {p:.1} %")
    })
}

fn commit_markdown(commit: &str, dirty: bool) -> String {
    if dirty {
        format!("`{commit}` (dirty: the tree had uncommitted changes)")
    } else {
        format!("`{commit}`")
    }
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn table_markdown(t: &Table) -> String {
    let mut s = String::new();
    if !t.title.is_empty() {
        s.push_str(&format!("**{}**\n\n", t.title));
    }
    let row = |cells: &[String]| {
        format!(
            "| {} |",
            cells
                .iter()
                .map(|c| cell(c))
                .collect::<Vec<_>>()
                .join(" | ")
        )
    };
    s.push_str(&row(&t.columns));
    s.push('\n');
    s.push_str(&format!(
        "|{}\n",
        t.columns.iter().map(|_| "---|").collect::<String>()
    ));
    for r in &t.rows {
        s.push_str(&row(r));
        s.push('\n');
    }
    s.trim_end().to_owned()
}

/// `doc` with the text between the markers replaced by `section`.
fn replace_section(doc: &str, section: &str) -> Result<String> {
    let (Some(begin), Some(end)) = (doc.find(BEGIN), doc.find(END)) else {
        bail!("no `{BEGIN}` … `{END}` markers");
    };
    if end < begin {
        bail!("`{END}` comes before `{BEGIN}`");
    }
    let head = &doc[..begin + BEGIN.len()];
    let tail = &doc[end..];
    Ok(format!("{head}\n{}\n{tail}", section.trim_end()))
}

fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("md.tmp");
    fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_modes_and_names() {
        assert_eq!(parse(&[]).unwrap(), Options::default());
        let o = parse(&args(&[
            "--full",
            "--only",
            "bench_fleet_scale",
            "--only",
            "actors",
        ]))
        .unwrap();
        assert!(o.full);
        assert_eq!(o.only, ["fleet-scale", "actors"]);
        assert!(parse(&args(&["--only", "nope"])).is_err());
        assert!(parse(&args(&["--only"])).is_err());
        assert!(parse(&args(&["--fast"])).is_err());
    }

    #[test]
    fn replaces_only_between_the_markers() {
        let doc = format!("# T\n\nintro\n\n{BEGIN}\nold\n{END}\n\n## Kept\n");
        let new = replace_section(&doc, "new\n").unwrap();
        assert_eq!(
            new,
            format!("# T\n\nintro\n\n{BEGIN}\nnew\n{END}\n\n## Kept\n")
        );
        assert!(replace_section("no markers", "x").is_err());
    }

    #[test]
    fn stolen_time_is_a_share_of_the_time_between_two_readings() {
        let before = CpuTicks {
            total: 1_000,
            stolen: 10,
        };
        let after = CpuTicks {
            total: 1_400,
            stolen: 60,
        };
        assert_eq!(before.stolen_percent(after), Some(12.5));
        assert_eq!(before.stolen_percent(before), None);
        // A counter that went back (another boot's readings) tells nothing.
        assert_eq!(after.stolen_percent(before), None);
        assert_eq!(stolen_markdown(None), "");
        assert_eq!(
            stolen_markdown(Some(12.5)),
            "; CPU time stolen by the hypervisor meanwhile: 12.5 %"
        );
        // This machine's own reading, where it has one, only grows.
        if let Some(now) = CpuTicks::now() {
            assert!(now.stolen <= now.total);
        }
    }

    #[test]
    fn tables_escape_pipes() {
        let t = Table {
            title: "T".into(),
            columns: vec!["a".into(), "b".into()],
            rows: vec![vec!["x|y".into(), "z".into()]],
        };
        assert_eq!(
            table_markdown(&t),
            "**T**\n\n| a | b |\n|---|---|\n| x\\|y | z |"
        );
    }
}
