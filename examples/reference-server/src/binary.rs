//! Finding the server's binary from other crates' tests and examples, building it first.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::BINARY_NAME;

/// Returns the path of the built `mcp-reference-server` binary, building it first.
///
/// The build (`$CARGO build -p mcp-reference-server --bin mcp-reference-server`, with
/// `--release` when the calling code was compiled without debug assertions) runs once per
/// process, from the workspace root; later calls return the same path at once. The binary is
/// looked up in `$CARGO_TARGET_DIR` (relative to the workspace root) or else in
/// `<workspace root>/target`.
///
/// # Panics
///
/// Panics with cargo's stderr when the build fails, or when the binary is not where it should
/// be afterwards. This is meant only for tests and examples, where such a panic is the clearest
/// possible failure.
pub fn binary_path() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(build).clone()
}

fn workspace_root() -> PathBuf {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    // The canonical form reads better in messages; the raw one works just as well if it fails.
    root.canonicalize().unwrap_or_else(|_| root.to_path_buf())
}

fn build() -> PathBuf {
    let root = workspace_root();
    let release = cfg!(not(debug_assertions));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .current_dir(&root)
        .args(["build", "-p", BINARY_NAME, "--bin", BINARY_NAME]);
    if release {
        command.arg("--release");
    }
    let output = command.output().unwrap_or_else(|error| {
        panic!(
            "cannot run {} to build {BINARY_NAME}: {error}",
            cargo.to_string_lossy()
        )
    });
    if !output.status.success() {
        panic!(
            "building {BINARY_NAME} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        // Joining keeps an absolute directory as it is and anchors a relative one at the root,
        // where cargo just ran.
        Some(dir) => root.join(dir),
        None => root.join("target"),
    };
    let profile = if release { "release" } else { "debug" };
    let path = target_dir
        .join(profile)
        .join(format!("{BINARY_NAME}{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        panic!("{BINARY_NAME} was built but is not at {}", path.display());
    }
    path
}
