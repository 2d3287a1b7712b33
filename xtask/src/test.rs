//! `cargo xtask test`: build the reference MCP server, then run `cargo test`.
//!
//! Tests in several crates spawn the `mcp-reference-server` binary, so it is
//! built first. Property tests (`tests/prop.rs`) are ordinary tests and run
//! here with proptest's default case count.

use anyhow::{Result, bail};

use crate::util::{cargo, run as run_command};

/// What `cargo xtask test` was asked to do.
#[derive(Debug, Default, PartialEq, Eq)]
struct Options {
    /// Packages from `-p`; empty means the whole workspace.
    packages: Vec<String>,
    /// Everything after `--`, passed on to `cargo test` as is.
    extra: Vec<String>,
}

pub fn run(args: &[String]) -> Result<()> {
    let options = parse(args)?;
    run_command(cargo().args([
        "build",
        "-p",
        "mcp-reference-server",
        "--bin",
        "mcp-reference-server",
    ]))?;
    let mut test = cargo();
    test.arg("test");
    if options.packages.is_empty() {
        test.arg("--workspace");
    }
    for package in &options.packages {
        test.args(["-p", package]);
    }
    test.args(&options.extra);
    run_command(&mut test)
}

fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let package = match arg.as_str() {
            "--" => {
                options.extra.extend(args.by_ref().cloned());
                break;
            }
            "-p" | "--package" => match args.next() {
                Some(package) => package.clone(),
                None => bail!("`{arg}` needs a package name"),
            },
            other => match other
                .strip_prefix("--package=")
                .or_else(|| other.strip_prefix("-p").filter(|rest| !rest.is_empty()))
            {
                Some(package) => package.to_owned(),
                None => bail!(
                    "unknown `test` argument `{other}`: usage is `cargo xtask test [-p CRATE]... [-- CARGO_TEST_ARGS...]`"
                ),
            },
        };
        options.packages.push(package);
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|arg| arg.to_string()).collect()
    }

    #[test]
    fn no_arguments_means_the_whole_workspace() {
        assert_eq!(parse(&[]).unwrap(), Options::default());
    }

    #[test]
    fn collects_packages_in_every_spelling_and_passes_the_rest_on() {
        let args = strings(&[
            "-p",
            "fleet-protocol",
            "--package",
            "fleet-runtime",
            "-pxtask",
            "--package=fleet-supervisor",
            "--",
            "--no-fail-fast",
            "-p",
            "--",
            "--nocapture",
        ]);
        assert_eq!(
            parse(&args).unwrap(),
            Options {
                packages: strings(&[
                    "fleet-protocol",
                    "fleet-runtime",
                    "xtask",
                    "fleet-supervisor"
                ]),
                extra: strings(&["--no-fail-fast", "-p", "--", "--nocapture"]),
            }
        );
    }

    #[test]
    fn rejects_unknown_arguments_and_a_missing_package() {
        assert!(parse(&strings(&["--release"])).is_err());
        assert!(parse(&strings(&["-p"])).is_err());
    }
}
