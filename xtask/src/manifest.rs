//! A std-only, line-based reader for the few `Cargo.toml` facts xtask needs:
//! the package name and the dependency tables.
//!
//! It understands table headers (`[dependencies]`, `[dependencies.NAME]`,
//! `[target.'cfg(..)'.dev-dependencies]`), dotted and quoted keys
//! (`foo.workspace = true`, `"foo" = ..`) and renames
//! (`foo = { package = "bar" }`). It is not a TOML parser: values that span
//! lines (multi-line arrays) are skipped because their lines have no key.

/// The dependency tables whose entries are dependencies.
const DEPENDENCY_TABLES: [&str; 3] = ["dependencies", "dev-dependencies", "build-dependencies"];

/// One dependency entry found in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The real package name (the `package = ".."` of a rename, else the key).
    pub package: String,
    /// The table it was declared in, e.g. `dev-dependencies`.
    pub table: String,
    /// 1-based line of the key or the `[..dependencies.NAME]` header.
    pub line: usize,
}

/// The `name` in the `[package]` table, if any.
pub fn package_name(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if let Some(path) = header(line) {
            in_package = path == ["package"];
        } else if in_package
            && let Some((key, value)) = key_value(line)
            && key == ["name"]
        {
            return string_value(value);
        }
    }
    None
}

/// Every dependency declared in `[dependencies]`, `[dev-dependencies]` and
/// `[build-dependencies]`, including their `[target.*.]` forms and
/// `[dependencies.NAME]` tables, in manifest order.
pub fn dependencies(manifest: &str) -> Vec<Dependency> {
    enum State {
        Other,
        /// Inside a dependency table: each key is a dependency.
        Table(String),
        /// Inside `[dependencies.NAME]`: keys describe `deps[index]`.
        Entry(usize),
    }

    let mut deps: Vec<Dependency> = Vec::new();
    // (table, key) of each entry of `deps`, to merge `name.field = ..` lines.
    let mut keys: Vec<(String, String)> = Vec::new();
    let mut entry = |deps: &mut Vec<Dependency>, table: &str, key: &str, line: usize| {
        if let Some(at) = keys.iter().position(|(t, k)| t == table && k == key) {
            return at;
        }
        keys.push((table.to_owned(), key.to_owned()));
        deps.push(Dependency {
            package: key.to_owned(),
            table: table.to_owned(),
            line,
        });
        deps.len() - 1
    };

    let mut state = State::Other;
    for (index, line) in manifest.lines().enumerate() {
        let number = index + 1;
        let line = line.trim();
        if let Some(path) = header(line) {
            state = match dependency_table(&path) {
                Some((table, None)) => State::Table(table.to_owned()),
                Some((table, Some(name))) => State::Entry(entry(&mut deps, table, name, number)),
                None => State::Other,
            };
            continue;
        }
        let Some((key, value)) = key_value(line) else {
            continue;
        };
        let (at, field) = match (&state, key.as_slice()) {
            (State::Table(table), [name]) => {
                let at = entry(&mut deps, table, name, number);
                if let Some(package) = inline_package(value) {
                    deps[at].package = package;
                }
                continue;
            }
            (State::Table(table), [name, field, ..]) => {
                (entry(&mut deps, table, name, number), field)
            }
            (State::Entry(at), [field]) => (*at, field),
            _ => continue,
        };
        if field == "package"
            && key.len() <= 2
            && let Some(package) = string_value(value)
        {
            deps[at].package = package;
        }
    }
    deps
}

/// For a header path, `Some((table, entry))` when it names a dependency table
/// (`entry` is the NAME of a `[dependencies.NAME]` header).
fn dependency_table(path: &[String]) -> Option<(&str, Option<&str>)> {
    let start = match path {
        [first, ..] if DEPENDENCY_TABLES.contains(&first.as_str()) => 0,
        [target, _, kind, ..]
            if target == "target" && DEPENDENCY_TABLES.contains(&kind.as_str()) =>
        {
            2
        }
        _ => return None,
    };
    match &path[start..] {
        [table] => Some((table, None)),
        [table, name] => Some((table, Some(name))),
        _ => None,
    }
}

/// The key path of a `[table]` or `[[array.of.tables]]` header line.
fn header(line: &str) -> Option<Vec<String>> {
    let rest = line.strip_prefix('[')?;
    let rest = rest.strip_prefix('[').unwrap_or(rest);
    let (path, _) = key_path(rest, ']')?;
    Some(path)
}

/// The dotted key path and the (trimmed) value of a `key = value` line.
fn key_value(line: &str) -> Option<(Vec<String>, &str)> {
    if line.starts_with('#') || line.starts_with('[') {
        return None;
    }
    key_path(line, '=').map(|(path, value)| (path, value.trim()))
}

/// Parses a dotted key (`a."b.c".'d'`) up to `end`; returns it and the text after `end`.
fn key_path(text: &str, end: char) -> Option<(Vec<String>, &str)> {
    let mut path = Vec::new();
    let mut rest = text.trim_start();
    loop {
        let segment;
        if let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') {
            let body = &rest[1..];
            let close = body.find(quote)?;
            segment = &body[..close];
            rest = &body[close + 1..];
        } else {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .unwrap_or(rest.len());
            if len == 0 {
                return None;
            }
            segment = &rest[..len];
            rest = &rest[len..];
        }
        path.push(segment.to_owned());
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('.') {
            rest = after.trim_start();
        } else if let Some(after) = rest.strip_prefix(end) {
            return Some((path, after));
        } else {
            return None;
        }
    }
}

/// The contents of a basic (`"..."`) or literal (`'...'`) string value.
fn string_value(value: &str) -> Option<String> {
    let value = value.trim();
    let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let body = &value[1..];
    body.find(quote).map(|close| body[..close].to_owned())
}

/// The `package = ".."` of an inline table value such as
/// `{ path = "../x", package = "fleet-x" }`.
fn inline_package(value: &str) -> Option<String> {
    let inner = value.strip_prefix('{')?;
    inner
        .split(',')
        .filter_map(|field| key_path(field, '='))
        .find(|(key, _)| key == &["package"])
        .and_then(|(_, value)| string_value(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(manifest: &str) -> Vec<(String, String)> {
        dependencies(manifest)
            .into_iter()
            .map(|dep| (dep.table, dep.package))
            .collect()
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(table, package)| (table.to_string(), package.to_string()))
            .collect()
    }

    #[test]
    fn reads_the_package_name_only_from_the_package_table() {
        let manifest = r#"
[workspace]
name = "not-this"

[package]
version.workspace = true
name = "fleet-supervisor" # trailing comment

[dependencies]
name = "neither"
"#;
        assert_eq!(package_name(manifest).as_deref(), Some("fleet-supervisor"));
        assert_eq!(package_name("[lib]\nname = \"x\"\n"), None);
    }

    #[test]
    fn finds_dependencies_in_every_dependency_table() {
        let manifest = r#"
[package]
name = "fleet-supervisor"
description = "dependencies = not a table"

[dependencies]
fleet-protocol.workspace = true
kameo = { workspace = true }
"serde" = "1"
tokio = { version = "1", features = [
    "macros",
    "rt",
] }

[dev-dependencies]
fleet-server-manager = { path = "../server-manager" }

[build-dependencies]
cc = "1"

[features]
default = []
"#;
        assert_eq!(
            names(manifest),
            pairs(&[
                ("dependencies", "fleet-protocol"),
                ("dependencies", "kameo"),
                ("dependencies", "serde"),
                ("dependencies", "tokio"),
                ("dev-dependencies", "fleet-server-manager"),
                ("build-dependencies", "cc"),
            ])
        );
    }

    #[test]
    fn resolves_renames_table_headers_and_target_tables() {
        let manifest = r#"
[dependencies]
proto = { path = "../../protocol", package = "fleet-protocol" }
rt.package = "fleet-runtime"
rt.path = "../../runtime"

[dependencies.mgr]
path = "../server-manager"
package = "fleet-server-manager"

[target.'cfg(target_os = "linux")'.dev-dependencies]
fleet-health-monitor = { workspace = true }

[target."cfg(unix)".dependencies.nix]
version = "0.30"

[[bin]]
name = "x"
fleet-runtime = "this is not a dependency"
"#;
        assert_eq!(
            names(manifest),
            pairs(&[
                ("dependencies", "fleet-protocol"),
                ("dependencies", "fleet-runtime"),
                ("dependencies", "fleet-server-manager"),
                ("dev-dependencies", "fleet-health-monitor"),
                ("dependencies", "nix"),
            ])
        );
    }

    #[test]
    fn reports_the_line_of_each_dependency() {
        let manifest = "[package]\nname = \"a\"\n\n[dependencies]\nb = \"1\"\n\n[dependencies.c]\npath = \"c\"\n";
        let lines: Vec<usize> = dependencies(manifest).iter().map(|dep| dep.line).collect();
        assert_eq!(lines, [5, 7]);
    }

    #[test]
    fn ignores_comments_and_workspace_dependency_tables() {
        let manifest = r#"
[workspace.dependencies]
fleet-runtime = { path = "runtime" }

[dependencies]
# fleet-runtime = { workspace = true }
anyhow.workspace = true
"#;
        assert_eq!(names(manifest), pairs(&[("dependencies", "anyhow")]));
    }
}
