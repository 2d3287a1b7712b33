//! The Grafana dashboard `dashboards/mcp-fleet.json`: it parses, it has a panel for the key
//! metrics, and every metric its queries use is documented in README.md's metrics table.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

fn repo_file(name: &str) -> (PathBuf, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    (path, text)
}

/// Every panel's title with its targets' `expr`s, panels nested in rows included.
fn panel_exprs(panels: &[Value], out: &mut Vec<(String, Vec<String>)>) {
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_default().to_owned();
        let exprs: Vec<String> = panel["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|target| target["expr"].as_str().map(str::to_owned))
            .collect();
        if !exprs.is_empty() {
            out.push((title, exprs));
        }
        if let Some(nested) = panel["panels"].as_array() {
            panel_exprs(nested, out);
        }
    }
}

/// Every `mcp_fleet_[a-z0-9_]+` name in `expr`, as written (histogram suffixes kept).
fn metric_names(expr: &str) -> Vec<String> {
    const PREFIX: &str = "mcp_fleet_";
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut names = Vec::new();
    for (start, _) in expr.match_indices(PREFIX) {
        if expr[..start].chars().next_back().is_some_and(ident) {
            continue;
        }
        let rest = &expr[start + PREFIX.len()..];
        let len = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        if len > 0 {
            names.push(format!("{PREFIX}{}", &rest[..len]));
        }
    }
    names
}

/// The family name of a series name: `_bucket`, `_sum` and `_count` of histograms stripped.
fn family(name: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
}

#[test]
fn dashboard_queries_documented_metrics() {
    let (path, text) = repo_file("dashboards/mcp-fleet.json");
    let dashboard: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    let mut panels = Vec::new();
    panel_exprs(
        dashboard["panels"].as_array().expect("no panels array"),
        &mut panels,
    );
    assert!(!panels.is_empty(), "no panel has a query");

    for required in [
        "mcp_fleet_up",
        "mcp_fleet_server_restarts_total",
        "mcp_fleet_request_duration_seconds_bucket",
        "mcp_fleet_gateway_sessions_active",
    ] {
        assert!(
            panels.iter().any(|(_, exprs)| exprs
                .iter()
                .any(|expr| metric_names(expr).iter().any(|name| name == required))),
            "no panel queries {required}"
        );
    }

    let (readme_path, readme) = repo_file("README.md");
    let used: BTreeSet<String> = panels
        .iter()
        .flat_map(|(_, exprs)| exprs)
        .flat_map(|expr| metric_names(expr))
        .map(|name| family(&name).to_owned())
        .collect();
    let undocumented: Vec<&String> = used
        .iter()
        .filter(|name| {
            let row = format!("| `{name}`");
            !readme.lines().any(|line| line.starts_with(&row))
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "metrics the dashboard queries but {} does not document: {undocumented:?}",
        readme_path.display()
    );
}
