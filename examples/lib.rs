//! Runnable examples of mcp-fleet; the examples live beside this file.
