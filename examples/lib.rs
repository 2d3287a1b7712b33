//! Runnable examples of mcp-fleet; the examples live beside this file.

pub mod bench;
