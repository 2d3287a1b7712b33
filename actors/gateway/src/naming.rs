//! The namespacing rule: how a server's item is named to clients (pure).
//!
//! A tool `echo` of server `everything` is offered as `everything__echo` (the separator is
//! configurable). MCP limits tool names to 64 characters: a longer name keeps a prefix and ends
//! with `_` and 8 hex digits of the SHA-256 of the full name, so the same input always gives the
//! same name and two long names that share a prefix still differ.

use sha2::{Digest, Sha256};

/// The longest name MCP clients accept for a tool or prompt.
pub const MAX_NAME_LEN: usize = 64;

/// The default separator between a server's name and its item's name.
pub const DEFAULT_SEPARATOR: &str = "__";

/// Hex digits of the hash that ends a shortened name.
const HASH_DIGITS: usize = 8;

/// The name a client sees for item `item` of server `server`. The server's part keeps only
/// the characters every client takes in a tool name (`A-Z a-z 0-9 _ -`; others become `_`):
/// a config's `My Server.v2` must not get every one of its tools refused. The item's part is the
/// server's own, passed as it is.
pub fn expose(server: &str, separator: &str, item: &str) -> String {
    let server: String = server
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let full = format!("{server}{separator}{item}");
    if full.chars().count() <= MAX_NAME_LEN {
        full
    } else {
        shorten(&full)
    }
}

/// A name of at most [`MAX_NAME_LEN`] characters for `full`: its start, `_`, and a hash of all
/// of it.
pub fn shorten(full: &str) -> String {
    hashed(full, full)
}

/// A name for an item whose exposed name `taken` another item already has (server `a`'s tool
/// `b__c` and server `a__b`'s tool `c`, say): `taken`, `_` and a hash of `key`, which tells the
/// two apart, within [`MAX_NAME_LEN`] characters.
pub fn distinct(taken: &str, key: &str) -> String {
    hashed(taken, key)
}

/// The start of `name` (as much as fits), `_`, and 8 hex digits of the SHA-256 of `key`.
fn hashed(name: &str, key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let hash: String = digest
        .iter()
        .take(HASH_DIGITS / 2)
        .map(|b| format!("{b:02x}"))
        .collect();
    let keep = MAX_NAME_LEN - HASH_DIGITS - 1;
    let prefix: String = name.chars().take(keep).collect();
    format!("{prefix}_{hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_prefixed() {
        assert_eq!(expose("everything", "__", "echo"), "everything__echo");
        assert_eq!(expose("a", ".", "b"), "a.b");
    }

    #[test]
    fn a_taken_name_gets_a_distinct_one() {
        let one = distinct("a__b__c", "a__b\0c");
        assert!(one.starts_with("a__b__c_") && one.len() == "a__b__c_".len() + 8);
        assert_ne!(one, distinct("a__b__c", "a\0b__c"));
        assert!(distinct(&"x".repeat(64), "k").chars().count() <= MAX_NAME_LEN);
    }

    #[test]
    fn a_server_name_clients_would_refuse_is_made_safe() {
        assert_eq!(expose("My Server.v2", "__", "echo"), "My_Server_v2__echo");
        assert_eq!(expose("café", "__", "x.y"), "caf___x.y");
    }

    #[test]
    fn long_names_are_shortened_to_the_limit() {
        let long = "x".repeat(70);
        let name = expose("srv", "__", &long);
        assert_eq!(name.chars().count(), MAX_NAME_LEN);
        assert!(name.starts_with("srv__xxx"));
        assert_eq!(name, expose("srv", "__", &long));
        assert_ne!(name, expose("srv", "__", &"x".repeat(71)));
    }
}
