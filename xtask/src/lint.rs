//! `cargo xtask lint`: rustfmt, clippy, and the workspace's own tidy checks.
//!
//! The tidy checks are:
//! - dependency direction: an actor crate depends on no other actor crate and
//!   not on `fleet-runtime`; `fleet-protocol` depends on no other `fleet-*` crate;
//! - every `.rs` file starts with a `//!` line saying what it is for;
//! - no test is switched off with an ignore or should-panic attribute.
//!
//! All three steps run even when an earlier one fails, so one run reports
//! everything; the command fails if any step failed.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::manifest;
use crate::util::{self, cargo, project_root};

/// Directories (relative to the root) whose `.rs` files the tidy checks read.
const SOURCE_DIRS: [&str; 5] = ["protocol", "actors", "runtime", "examples", "xtask"];

/// Directory names never descended into.
const SKIP_DIRS: [&str; 2] = ["target", "node_modules"];

/// Attributes that switch tests off. Built with `concat!` so this file does
/// not trip its own check.
const FORBIDDEN_ATTRIBUTES: [&str; 2] = [concat!("#[", "ignore"), concat!("#[", "should_panic")];

pub fn run(args: &[String]) -> Result<()> {
    if let Some(arg) = args.first() {
        bail!("`lint` takes no arguments (got `{arg}`)");
    }
    let steps: [(&str, &dyn Fn() -> Result<()>); 3] = [
        ("rustfmt", &|| {
            let mut fmt = cargo();
            fmt.args(["fmt", "--all", "--", "--check"]);
            // rustfmt colours its diff even into a pipe; keep CI logs readable.
            if !std::io::stdout().is_terminal() {
                fmt.args(["--color", "never"]);
            }
            util::run(&mut fmt)
        }),
        ("clippy", &|| {
            util::run(cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]))
        }),
        ("tidy", &|| tidy(&project_root())),
    ];
    let mut failed = Vec::new();
    for (name, step) in steps {
        println!("==> lint: {name}");
        if let Err(err) = step() {
            eprintln!("lint: {name} failed: {err:#}");
            failed.push(name);
        }
    }
    if !failed.is_empty() {
        bail!("lint failed: {}", failed.join(", "));
    }
    println!("lint: all checks passed");
    Ok(())
}

/// Runs every tidy check under `root`, prints each violation, and fails if any.
fn tidy(root: &Path) -> Result<()> {
    let mut violations = dependency_direction(root)?;
    for path in rust_files(root)? {
        let shown = relative(root, &path);
        let source = util::read(&path)?;
        if !has_module_doc(&source) {
            violations.push(format!(
                "{shown}:1: file must start with a `//!` line saying what it is for"
            ));
        }
        for (line, attribute) in forbidden_attributes(&source) {
            violations.push(format!(
                "{shown}:{line}: `{attribute}` is not allowed: tests must run and not rely on panics"
            ));
        }
    }
    for violation in &violations {
        eprintln!("{violation}");
    }
    if !violations.is_empty() {
        bail!("tidy: {} violation(s)", violations.len());
    }
    println!("tidy: ok");
    Ok(())
}

/// Checks the manifests of `actors/*/` and `protocol/` for dependencies that
/// point the wrong way.
fn dependency_direction(root: &Path) -> Result<Vec<String>> {
    let mut actors = Vec::new();
    for dir in util::actor_dirs(root)? {
        let path = dir.join("Cargo.toml");
        let text = util::read(&root.join(&path))?;
        let name = manifest::package_name(&text).unwrap_or_default();
        actors.push((path, name, text));
    }
    let actor_names: BTreeSet<&str> = actors.iter().map(|(_, name, _)| name.as_str()).collect();

    let mut violations = Vec::new();
    for (path, name, text) in &actors {
        violations.extend(wrong_way_dependencies(
            &path.to_string_lossy(),
            text,
            |dep| dep != name && (dep == "fleet-runtime" || actor_names.contains(dep)),
            "an actor crate must not depend on another actor crate or on fleet-runtime",
        ));
    }

    let protocol = Path::new("protocol").join("Cargo.toml");
    if root.join(&protocol).is_file() {
        let text = util::read(&root.join(&protocol))?;
        let name = manifest::package_name(&text).unwrap_or_default();
        violations.extend(wrong_way_dependencies(
            &protocol.to_string_lossy(),
            &text,
            |dep| dep != name && dep.starts_with("fleet-"),
            "fleet-protocol must not depend on any other fleet-* crate",
        ));
    }
    Ok(violations)
}

/// One violation (`path:line: ..`) per dependency of `manifest` that `forbidden` rejects.
fn wrong_way_dependencies(
    path: &str,
    manifest: &str,
    forbidden: impl Fn(&str) -> bool,
    rule: &str,
) -> Vec<String> {
    manifest::dependencies(manifest)
        .into_iter()
        .filter(|dep| forbidden(&dep.package))
        .map(|dep| {
            format!(
                "{path}:{}: [{}] depends on `{}`: {rule}",
                dep.line, dep.table, dep.package
            )
        })
        .collect()
}

/// Whether the first non-blank line of `source` is a `//!` comment.
fn has_module_doc(source: &str) -> bool {
    source
        .trim_start_matches('\u{feff}')
        .lines()
        .find(|line| !line.trim().is_empty())
        .is_some_and(|line| line.trim_start().starts_with("//!"))
}

/// `(line, attribute)` for every forbidden attribute in `source`, anywhere.
fn forbidden_attributes(source: &str) -> Vec<(usize, &'static str)> {
    let mut found = Vec::new();
    for (index, line) in source.lines().enumerate() {
        for attribute in FORBIDDEN_ATTRIBUTES {
            if line.contains(attribute) {
                found.push((index + 1, attribute));
            }
        }
    }
    found
}

/// Every `.rs` file under [`SOURCE_DIRS`], skipping [`SKIP_DIRS`], sorted.
fn rust_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending: Vec<PathBuf> = SOURCE_DIRS
        .iter()
        .map(|dir| root.join(dir))
        .filter(|dir| dir.is_dir())
        .collect();
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|err| anyhow::anyhow!("reading {}: {err}", dir.display()))?;
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                if !SKIP_DIRS.contains(&entry.file_name().to_string_lossy().as_ref()) {
                    pending.push(path);
                }
            } else if kind.is_file() && path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_doc_must_be_the_first_non_blank_line() {
        assert!(has_module_doc("//! Does a thing.\nfn main() {}\n"));
        assert!(has_module_doc("\n\n  //! Indented is fine.\n"));
        assert!(has_module_doc("\u{feff}//! After a byte-order mark.\n"));
        assert!(!has_module_doc(""));
        assert!(!has_module_doc("\n\n"));
        assert!(!has_module_doc("// Plain comment.\n//! Too late.\n"));
        assert!(!has_module_doc("/// Item doc.\nfn f() {}\n"));
        assert!(!has_module_doc("#![forbid(unsafe_code)]\n//! Too late.\n"));
        assert!(!has_module_doc("use std::io;\n"));
    }

    #[test]
    fn finds_forbidden_attributes_with_their_lines() {
        let ignore = format!("#[{}]", "ignore");
        let ignore_reason = format!("    #[{} = \"slow\"]", "ignore");
        let should_panic = format!("#[{}(expected = \"boom\")]", "should_panic");
        let source = format!(
            "//! Tests.\n{ignore}\n#[test]\nfn a() {{}}\n{ignore_reason}\n{should_panic}\n"
        );
        assert_eq!(
            forbidden_attributes(&source),
            [
                (2, FORBIDDEN_ATTRIBUTES[0]),
                (5, FORBIDDEN_ATTRIBUTES[0]),
                (6, FORBIDDEN_ATTRIBUTES[1]),
            ]
        );
        assert!(forbidden_attributes("#[test]\nfn ignore_me() { should_panic(); }\n").is_empty());
    }

    #[test]
    fn flags_actor_crates_that_depend_on_actors_or_the_runtime() {
        let manifest = r#"
[package]
name = "fleet-supervisor"

[dependencies]
fleet-protocol.workspace = true
fleet-server-manager.workspace = true

[dev-dependencies]
rt = { path = "../../runtime", package = "fleet-runtime" }
"#;
        let actors = ["fleet-supervisor", "fleet-server-manager"];
        let violations = wrong_way_dependencies(
            "actors/supervisor/Cargo.toml",
            manifest,
            |dep| dep != "fleet-supervisor" && (dep == "fleet-runtime" || actors.contains(&dep)),
            "rule",
        );
        assert_eq!(
            violations,
            [
                "actors/supervisor/Cargo.toml:7: [dependencies] depends on `fleet-server-manager`: rule",
                "actors/supervisor/Cargo.toml:10: [dev-dependencies] depends on `fleet-runtime`: rule",
            ]
        );
    }

    #[test]
    fn checks_a_whole_tree() {
        let root = std::env::temp_dir().join(format!("xtask-tidy-{}", std::process::id()));
        let write = |path: &str, text: &str| {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write(
            "protocol/Cargo.toml",
            "[package]\nname = \"fleet-protocol\"\n[dependencies]\nserde = \"1\"\n",
        );
        write("protocol/src/lib.rs", "//! Protocol.\n");
        write(
            "actors/a/Cargo.toml",
            "[package]\nname = \"fleet-a\"\n[dependencies]\nfleet-protocol = { path = \"../../protocol\" }\nfleet-b = { path = \"../b\" }\n",
        );
        write("actors/a/src/lib.rs", "fn undocumented() {}\n");
        write("actors/b/Cargo.toml", "[package]\nname = \"fleet-b\"\n");
        write(
            "actors/b/tests/t.rs",
            &format!("//! Tests.\n#[{}]\n", "should_panic"),
        );
        write("actors/b/target/debug/build/out.rs", "no doc, skipped\n");
        write("examples/node_modules/x/y.rs", "no doc, skipped\n");

        let direction = dependency_direction(&root).unwrap();
        let files: Vec<String> = rust_files(&root)
            .unwrap()
            .iter()
            .map(|path| relative(&root, path))
            .collect();
        let result = tidy(&root);
        std::fs::remove_dir_all(&root).unwrap();

        assert_eq!(direction.len(), 1, "{direction:?}");
        assert!(
            direction[0].starts_with("actors/a/Cargo.toml:5: [dependencies] depends on `fleet-b`")
        );
        assert_eq!(
            files,
            [
                "actors/a/src/lib.rs",
                "actors/b/tests/t.rs",
                "protocol/src/lib.rs"
            ]
        );
        let err = result.unwrap_err().to_string();
        assert_eq!(err, "tidy: 3 violation(s)");
    }
}
