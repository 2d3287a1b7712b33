//! `cargo xtask`: developer and CI automation for the mcp-fleet workspace.
//!
//! Each command lives in its own module; this file only dispatches on the
//! first argument. Run `cargo xtask help` for usage.

mod bench;
mod ci;
mod lint;
mod manifest;
mod prop;
mod test;
mod util;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  test [-p CRATE]... [-- ARGS...]
        build mcp-reference-server, then `cargo test --workspace`
        (or `cargo test -p CRATE...`); ARGS are passed on to `cargo test`,
        e.g. `cargo xtask test -p fleet-protocol -- --lib -- --nocapture`
  prop [--cases N]
        run only the property tests (`tests/prop.rs`) of every crate, in
        release mode with PROPTEST_CASES=N (default 10000)
  bench [--quick|--full] [--only NAME]...
        build the benchmarks (release), run each with a time limit (quick:
        all within 5 minutes, the default; full: longer) and rewrite the
        generated part of BENCHMARKS.md; NAME is actors, fleet-scale or
        gateway (--only keeps the other reports of an earlier run)
  lint
        `cargo fmt --check`, `cargo clippy -D warnings`, then the tidy checks
        (dependency direction, `//!` headers, no ignored/should_panic tests)
  ci
        lint, then test, then prop with the default case count
  help
        print this message
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match command.as_str() {
        "test" => test::run(rest),
        "prop" => prop::run(rest),
        "bench" => bench::run(rest),
        "lint" => lint::run(rest),
        "ci" => ci::run(rest),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            return ExitCode::from(2);
        }
        other => {
            eprintln!("error: unknown command `{other}`\n");
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
