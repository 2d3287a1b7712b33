//! Shared helpers: the workspace root, the crate directories, and running commands.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The workspace root: the parent of this crate's directory.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one directory below the workspace root")
        .to_path_buf()
}

/// A `cargo` command run from the workspace root.
///
/// Uses `$CARGO` (set when we were started by `cargo xtask`) so the same
/// toolchain builds everything.
pub fn cargo() -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(program);
    cmd.current_dir(project_root());
    cmd
}

/// Prints `cmd`, runs it with inherited stdio, and fails on a non-zero exit.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = display(cmd);
    println!("$ {shown}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// A shell-like rendering of `cmd`: explicit env vars, program name, arguments.
pub fn display(cmd: &Command) -> String {
    let mut parts = Vec::new();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            parts.push(format!(
                "{}={}",
                key.to_string_lossy(),
                quote(&value.to_string_lossy())
            ));
        }
    }
    let program = Path::new(cmd.get_program());
    let program = program.file_name().unwrap_or(program.as_os_str());
    parts.push(program.to_string_lossy().into_owned());
    parts.extend(cmd.get_args().map(|arg| quote(&arg.to_string_lossy())));
    parts.join(" ")
}

fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Directories (relative to `root`) of the library and runtime crates:
/// `protocol/`, every `actors/*/` and `runtime/`, those that have a `Cargo.toml`.
pub fn crate_dirs(root: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs = vec![PathBuf::from("protocol")];
    dirs.extend(actor_dirs(root)?);
    dirs.push(PathBuf::from("runtime"));
    dirs.retain(|dir| root.join(dir).join("Cargo.toml").is_file());
    Ok(dirs)
}

/// Every `actors/*/` directory (relative to `root`) that has a `Cargo.toml`, sorted.
pub fn actor_dirs(root: &Path) -> Result<Vec<PathBuf>> {
    let actors = root.join("actors");
    if !actors.is_dir() {
        return Ok(Vec::new());
    }
    let mut dirs = Vec::new();
    for entry in
        std::fs::read_dir(&actors).with_context(|| format!("reading {}", actors.display()))?
    {
        let entry = entry?;
        if entry.path().join("Cargo.toml").is_file() {
            dirs.push(Path::new("actors").join(entry.file_name()));
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// Reads a file to a string, naming the file on failure.
pub fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_shows_env_program_and_quoted_args() {
        let mut cmd = Command::new("/usr/bin/cargo");
        cmd.env("PROPTEST_CASES", "10")
            .args(["test", "-p", "fleet-protocol", "a b"]);
        assert_eq!(
            display(&cmd),
            "PROPTEST_CASES=10 cargo test -p fleet-protocol 'a b'"
        );
    }

    #[test]
    fn project_root_holds_the_workspace_manifest() {
        assert!(project_root().join("xtask").join("Cargo.toml").is_file());
    }
}
