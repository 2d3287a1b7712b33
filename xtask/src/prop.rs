//! `cargo xtask prop`: run only the property tests, in release mode, with many cases.
//!
//! Every crate directory among `protocol/`, `actors/*/` and `runtime/` that
//! has `tests/prop.rs` gets `cargo test -p <package> --release --test prop`
//! with `PROPTEST_CASES=N`. All crates run even if one fails; a summary line
//! per crate is printed at the end.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::manifest;
use crate::util::{self, cargo, project_root};

/// Cases per property when `--cases` is not given.
pub const DEFAULT_CASES: u32 = 10_000;

pub fn run(args: &[String]) -> Result<()> {
    let cases = parse(args)?;
    let root = project_root();
    let packages = prop_packages(&root)?;
    if packages.is_empty() {
        println!("prop: no crate has tests/prop.rs; nothing to run");
        return Ok(());
    }

    let mut summary = Vec::new();
    for package in &packages {
        println!("==> prop: {package} (PROPTEST_CASES={cases})");
        let started = Instant::now();
        let outcome = util::run(cargo().env("PROPTEST_CASES", cases.to_string()).args([
            "test",
            "-p",
            package,
            "--release",
            "--test",
            "prop",
        ]));
        if let Err(err) = &outcome {
            eprintln!("prop: {package} failed: {err:#}");
        }
        summary.push((package, outcome.is_ok(), started.elapsed()));
    }

    println!("\nprop summary (PROPTEST_CASES={cases}):");
    for (package, ok, elapsed) in &summary {
        let status = if *ok { "ok" } else { "FAILED" };
        println!(
            "  {status:<6} {package:<28} {:>7.1}s",
            elapsed.as_secs_f64()
        );
    }
    let failed: Vec<&str> = summary
        .iter()
        .filter(|(_, ok, _)| !ok)
        .map(|(package, _, _)| package.as_str())
        .collect();
    if !failed.is_empty() {
        bail!("property tests failed in: {}", failed.join(", "));
    }
    Ok(())
}

/// The package name of every crate directory with a `tests/prop.rs`.
fn prop_packages(root: &Path) -> Result<Vec<String>> {
    let mut packages = Vec::new();
    for dir in util::crate_dirs(root)? {
        if !root.join(&dir).join("tests").join("prop.rs").is_file() {
            continue;
        }
        let path = root.join(&dir).join("Cargo.toml");
        let name = manifest::package_name(&util::read(&path)?)
            .with_context(|| format!("{}: no `name` in [package]", path.display()))?;
        packages.push(name);
    }
    Ok(packages)
}

fn parse(args: &[String]) -> Result<u32> {
    let mut cases = DEFAULT_CASES;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "--cases" => args.next().map(String::as_str),
            other => match other.strip_prefix("--cases=") {
                Some(value) => Some(value),
                None => bail!(
                    "unknown `prop` argument `{other}`: usage is `cargo xtask prop [--cases N]`"
                ),
            },
        };
        let Some(value) = value else {
            bail!("`--cases` needs a number");
        };
        cases = value
            .parse()
            .ok()
            .filter(|cases| *cases > 0)
            .with_context(|| format!("`--cases {value}`: expected a positive whole number"))?;
    }
    Ok(cases)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<u32> {
        parse(&args.iter().map(|arg| arg.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn parses_the_case_count() {
        assert_eq!(parse_strs(&[]).unwrap(), DEFAULT_CASES);
        assert_eq!(parse_strs(&["--cases", "50"]).unwrap(), 50);
        assert_eq!(parse_strs(&["--cases=7"]).unwrap(), 7);
        assert!(parse_strs(&["--cases"]).is_err());
        assert!(parse_strs(&["--cases", "0"]).is_err());
        assert!(parse_strs(&["--cases", "many"]).is_err());
        assert!(parse_strs(&["--release"]).is_err());
    }
}
