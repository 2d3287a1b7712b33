//! The `mcp-reference-server` binary: parses the configuration and runs the server on stdio.

use std::io::Write as _;

use clap::Parser as _;
use mcp_reference_server::Config;

fn main() {
    let config = Config::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "cannot start the tokio runtime: {error}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(mcp_reference_server::run(config));
    // Exiting while the runtime is still alive, rather than dropping it, avoids waiting on the
    // blocking thread that may still sit in a read of stdin.
    std::process::exit(code);
}
