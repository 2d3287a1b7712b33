//! What every benchmark of `cargo xtask bench` shares: the report it writes (JSON, read by xtask,
//! which renders BENCHMARKS.md), latency histograms, and readings of a process from /proc.
//!
//! A benchmark program takes `--mode quick|full` and `--out FILE`, runs, prints its tables, and
//! writes one [`Report`] to FILE. xtask owns the machine description, the date and the command.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// How long a benchmark may take: `quick` keeps the whole `cargo xtask bench` within 5 minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Quick,
    Full,
}

/// The arguments every benchmark program takes.
#[derive(Debug, Clone)]
pub struct BenchArgs {
    pub mode: Mode,
    pub out: Option<PathBuf>,
    /// Anything else, for the benchmark's own options.
    pub rest: Vec<String>,
}

impl BenchArgs {
    /// Reads `--mode quick|full` (default quick) and `--out FILE` from the command line.
    pub fn from_env() -> anyhow::Result<BenchArgs> {
        let mut mode = Mode::Quick;
        let mut out = None;
        let mut rest = Vec::new();
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            match a.as_str() {
                "--mode" => {
                    mode = match args.next().as_deref() {
                        Some("quick") => Mode::Quick,
                        Some("full") => Mode::Full,
                        other => anyhow::bail!("--mode takes quick or full, not {other:?}"),
                    }
                }
                "--help" | "-h" => {
                    let name = std::env::args().next().unwrap_or_default();
                    let name = name.rsplit('/').next().unwrap_or("this benchmark");
                    println!(
                        "{name} [--mode quick|full | --quick | --full] [--out FILE] [its own options]\n\n\
                         Run by `cargo xtask bench`; its own options are listed in the doc comment\n\
                         at the top of examples/{name}.rs."
                    );
                    std::process::exit(0);
                }
                "--quick" => mode = Mode::Quick,
                "--full" => mode = Mode::Full,
                "--out" => {
                    out = Some(PathBuf::from(
                        args.next()
                            .ok_or_else(|| anyhow::anyhow!("--out takes a file"))?,
                    ))
                }
                _ => rest.push(a),
            }
        }
        Ok(BenchArgs { mode, out, rest })
    }

    /// `quick` in quick mode, else `full`.
    pub fn pick<T>(&self, quick: T, full: T) -> T {
        match self.mode {
            Mode::Quick => quick,
            Mode::Full => full,
        }
    }
}

/// One benchmark's results: a section of BENCHMARKS.md.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The section's heading.
    pub title: String,
    /// What was measured and how, one paragraph per entry.
    pub notes: Vec<String>,
    pub tables: Vec<Table>,
    pub acceptance: Vec<Acceptance>,
}

/// A table: a title, column headings, rows of cells already formatted.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Table {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// One acceptance line of the issue, with the figures that decide it.
#[derive(Debug, Clone, Serialize)]
pub struct Acceptance {
    pub line: String,
    pub met: bool,
    pub figures: String,
}

impl Table {
    pub fn new(title: impl Into<String>, columns: &[&str]) -> Table {
        Table {
            title: title.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as Markdown (for the program's own output).
    pub fn markdown(&self) -> String {
        let mut s = format!("{}\n\n| {} |\n|", self.title, self.columns.join(" | "));
        for _ in &self.columns {
            s.push_str("---|");
        }
        s.push('\n');
        for r in &self.rows {
            s.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        s
    }
}

impl Report {
    pub fn new(title: impl Into<String>) -> Report {
        Report {
            title: title.into(),
            ..Report::default()
        }
    }

    pub fn accept(&mut self, line: impl Into<String>, met: bool, figures: impl Into<String>) {
        self.acceptance.push(Acceptance {
            line: line.into(),
            met,
            figures: figures.into(),
        });
    }

    /// Prints the tables and acceptance lines, and writes the JSON to `--out` if given.
    pub fn finish(&self, args: &BenchArgs) -> anyhow::Result<()> {
        println!("## {}\n", self.title);
        for t in &self.tables {
            println!("{}", t.markdown());
        }
        for a in &self.acceptance {
            let verdict = if a.met { "met" } else { "NOT met" };
            println!("- {}: **{verdict}** ({})", a.line, a.figures);
        }
        if let Some(out) = &args.out {
            if let Some(dir) = out.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(out, serde_json::to_vec_pretty(self)?)?;
        }
        Ok(())
    }
}

/// Latencies, recorded in nanoseconds (1 ns to 60 s, 3 significant digits).
pub struct Latencies(hdrhistogram::Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Latencies::new()
    }
}

impl Latencies {
    pub fn new() -> Latencies {
        Latencies(
            hdrhistogram::Histogram::new_with_bounds(1, 60_000_000_000, 3)
                .expect("static histogram bounds are valid"),
        )
    }

    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.0.saturating_record(ns);
    }

    pub fn merge(&mut self, other: &Latencies) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The latency at quantile `q` (0.5 for p50).
    pub fn quantile(&self, q: f64) -> Duration {
        Duration::from_nanos(self.0.value_at_quantile(q))
    }
}

/// A duration for a table: ns, µs or ms with three significant figures.
pub fn fmt_duration(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.3} µs", ns / 1_000.0)
    } else if ns < 1_000_000_000.0 {
        format!("{:.3} ms", ns / 1_000_000.0)
    } else {
        format!("{:.3} s", ns / 1_000_000_000.0)
    }
}

/// Bytes for a table: B, KiB or MiB.
pub fn fmt_bytes(b: f64) -> String {
    if b < 1024.0 {
        format!("{b:.0} B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.2} KiB", b / 1024.0)
    } else {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    }
}

/// What /proc says of one process (not its children): resident bytes and CPU seconds used.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcReading {
    pub resident_bytes: u64,
    pub cpu_seconds: f64,
}

/// Reads `pid` (`std::process::id()` for this process); `None` if it is gone.
pub fn read_process(pid: u32) -> Option<ProcReading> {
    let p = procfs::process::Process::new(i32::try_from(pid).ok()?).ok()?;
    let stat = p.stat().ok()?;
    let ticks = procfs::ticks_per_second() as f64;
    let page = procfs::page_size();
    Some(ProcReading {
        resident_bytes: stat.rss * page,
        cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
    })
}
