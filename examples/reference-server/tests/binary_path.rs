//! Integration test of `binary_path`, alone in its own test binary because the build it runs
//! replaces the binary file that the other test binaries spawn.

use std::time::Duration;

use mcp_reference_server::{BINARY_NAME, binary_path};

/// A cold build of the server in another profile can take a while on a small machine.
const BUILD_DEADLINE: Duration = Duration::from_secs(300);

#[tokio::test]
async fn binary_path_builds_the_binary_once_and_returns_it() {
    let first = tokio::time::timeout(BUILD_DEADLINE, tokio::task::spawn_blocking(binary_path))
        .await
        .expect("binary_path finished within the deadline")
        .expect("binary_path did not panic");
    assert!(first.is_file(), "{}", first.display());
    assert_eq!(
        first.file_name().and_then(|name| name.to_str()),
        Some(BINARY_NAME)
    );

    // The second call must not build again, so it is answered at once.
    let second = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::task::spawn_blocking(binary_path),
    )
    .await
    .expect("the second call returned at once")
    .expect("binary_path did not panic");
    assert_eq!(first, second);

    // The built binary is a working server.
    let output = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::process::Command::new(&first)
            .arg("--version")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("--version answered within the deadline")
    .expect("run the built binary");
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains(BINARY_NAME));
}
