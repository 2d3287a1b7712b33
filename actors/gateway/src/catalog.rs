//! The catalog: what every ready server offers, merged under the namespacing rule, and where
//! each offered item lives (pure; rebuilt whenever a server's lists change).
//!
//! - Tools and prompts are addressed by name: each is offered as `server<sep>name` (see
//!   [`crate::naming`]); the object is otherwise exactly the server's.
//! - Resources and resource templates are addressed by URI, which is left as it is: a URI (or
//!   a URI template) listed by two servers goes to the first by server name, and the clash is
//!   logged. A URI no list names goes to the one server whose listed URIs share its scheme and
//!   authority (a tool's resource link need not be listed).
//! - Servers are merged in name order, so the catalog does not depend on which server answered
//!   first. Servers not serving now (restarting, stopped) take part with the lists they had:
//!   their items are not listed, but their names and URIs still route to them (to wait there,
//!   or be told the server's state), so a server's exposed names do not change when another
//!   goes down. (A server that has never been ready has no lists yet and takes no names: the
//!   first time it is ready, it may take a name a server of the same exposed prefix had.)

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use fleet_protocol::mcp::methods;
use serde_json::{Map, Value};

use crate::naming;

/// The four lists a server can offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ListKind {
    Tools,
    Resources,
    ResourceTemplates,
    Prompts,
}

impl ListKind {
    pub const ALL: [ListKind; 4] = [
        ListKind::Tools,
        ListKind::Resources,
        ListKind::ResourceTemplates,
        ListKind::Prompts,
    ];

    /// The method that lists it.
    pub fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Resources => "resources/list",
            ListKind::ResourceTemplates => "resources/templates/list",
            ListKind::Prompts => "prompts/list",
        }
    }

    /// The member of the list result that holds the items.
    pub fn key(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Resources => "resources",
            ListKind::ResourceTemplates => "resourceTemplates",
            ListKind::Prompts => "prompts",
        }
    }

    /// The server capability that says the list exists.
    pub fn capability(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Resources | ListKind::ResourceTemplates => "resources",
            ListKind::Prompts => "prompts",
        }
    }

    /// The 2025-era notification that tells clients the list changed.
    pub fn changed_notification(self) -> &'static str {
        match self {
            ListKind::Tools => methods::TOOLS_LIST_CHANGED,
            ListKind::Resources | ListKind::ResourceTemplates => methods::RESOURCES_LIST_CHANGED,
            ListKind::Prompts => methods::PROMPTS_LIST_CHANGED,
        }
    }

    /// The 2025-era notifications that announce changes of `kinds`, each once (resources and
    /// their templates share one).
    pub fn changed_notifications(kinds: impl IntoIterator<Item = ListKind>) -> Vec<&'static str> {
        let mut methods = Vec::new();
        for method in kinds.into_iter().map(ListKind::changed_notification) {
            if !methods.contains(&method) {
                methods.push(method);
            }
        }
        methods
    }

    /// The kind a server's `notifications/*/list_changed` is about.
    pub fn from_notification(method: &str) -> Option<&'static [ListKind]> {
        match method {
            methods::TOOLS_LIST_CHANGED => Some(&[ListKind::Tools]),
            methods::RESOURCES_LIST_CHANGED => {
                Some(&[ListKind::Resources, ListKind::ResourceTemplates])
            }
            methods::PROMPTS_LIST_CHANGED => Some(&[ListKind::Prompts]),
            _ => None,
        }
    }
}

/// One server's lists, each item exactly as the server sent it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerLists {
    pub lists: BTreeMap<ListKind, Vec<Value>>,
}

/// Where a named item lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub server: Arc<str>,
    /// The item's name on its server.
    pub name: String,
}

/// The merged lists of every ready server, and the routes back.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    items: BTreeMap<ListKind, Vec<Value>>,
    tools: HashMap<String, Route>,
    prompts: HashMap<String, Route>,
    resources: HashMap<String, Arc<str>>,
    /// URI templates and their servers, in server-name order.
    templates: Vec<(String, Arc<str>)>,
    servers: Vec<String>,
    /// The items of servers that are not serving now (restarting, stopped): not listed, but a
    /// request for one still goes to its server, which waits a while for it if it is on its
    /// way back, or says its state, instead of the name or URI being unknown.
    withdrawn_tools: HashMap<String, Route>,
    withdrawn_prompts: HashMap<String, Route>,
    withdrawn_resources: HashMap<String, Arc<str>>,
    withdrawn_templates: Vec<(String, Arc<str>)>,
    /// The scheme and authority (`scheme://host`) of each server's listed resources (serving
    /// or not), once per server: where a URI no list names may go.
    origins: Vec<(String, Arc<str>)>,
}

impl Catalog {
    /// Merges the lists of `servers` (name, lists, and whether it serves now; in name order)
    /// under `separator`. Only serving servers' items are listed; the others' route (see
    /// `withdrawn_tools`).
    pub fn build<'a>(
        servers: impl IntoIterator<Item = (&'a str, &'a ServerLists, bool)>,
        separator: &str,
    ) -> Catalog {
        let mut cat = Catalog::default();
        for (server, lists, serving) in servers {
            let owner: Arc<str> = Arc::from(server);
            if serving {
                cat.servers.push(server.to_owned());
            }
            for (kind, items) in &lists.lists {
                for item in items {
                    cat.add(*kind, &owner, separator, item, serving);
                }
            }
        }
        cat
    }

    fn add(
        &mut self,
        kind: ListKind,
        owner: &Arc<str>,
        separator: &str,
        item: &Value,
        serving: bool,
    ) {
        let Some(obj) = item.as_object() else {
            tracing::warn!(server = %owner, list = kind.key(), "an item that is not an object; skipped");
            return;
        };
        match kind {
            ListKind::Tools | ListKind::Prompts => {
                let Some(name) = obj.get("name").and_then(Value::as_str) else {
                    tracing::warn!(server = %owner, list = kind.key(), "an item without a name; skipped");
                    return;
                };
                let mut exposed = naming::expose(owner, separator, name);
                let (served, withdrawn) = if kind == ListKind::Tools {
                    (&mut self.tools, &mut self.withdrawn_tools)
                } else {
                    (&mut self.prompts, &mut self.withdrawn_prompts)
                };
                // Names are given over every server, serving or not, so that a server going
                // down never hands its names to another.
                let taken = |n: &String| served.contains_key(n) || withdrawn.contains_key(n);
                if taken(&exposed) {
                    // Servers are merged in name order, so which one keeps the name, and the
                    // other's name, are the same on every build.
                    let other = naming::distinct(&exposed, &format!("{owner}\0{name}"));
                    if serving {
                        tracing::warn!(server = %owner, name = %exposed, offered_as = %other, "two items would get the same name; the second is offered under a name of its own");
                    }
                    if taken(&other) {
                        return;
                    }
                    exposed = other;
                }
                let route = Route {
                    server: owner.clone(),
                    name: name.to_owned(),
                };
                if !serving {
                    withdrawn.insert(exposed, route);
                    return;
                }
                served.insert(exposed.clone(), route);
                self.items
                    .entry(kind)
                    .or_default()
                    .push(renamed(obj, exposed));
            }
            ListKind::Resources if !serving => {
                if let Some(uri) = obj.get("uri").and_then(Value::as_str) {
                    self.add_origin(uri, owner);
                    self.withdrawn_resources
                        .entry(uri.to_owned())
                        .or_insert_with(|| owner.clone());
                }
            }
            ListKind::ResourceTemplates if !serving => {
                if let Some(t) = obj.get("uriTemplate").and_then(Value::as_str) {
                    self.withdrawn_templates.push((t.to_owned(), owner.clone()));
                }
            }
            ListKind::Resources => {
                if let Some(uri) = obj.get("uri").and_then(Value::as_str) {
                    self.add_origin(uri, owner);
                    if let Some(first) = self.resources.get(uri) {
                        tracing::warn!(server = %owner, %uri, first = %first, "a resource URI offered by two servers; the first keeps it");
                        return;
                    }
                    self.resources.insert(uri.to_owned(), owner.clone());
                }
                self.items.entry(kind).or_default().push(item.clone());
            }
            ListKind::ResourceTemplates => {
                if let Some(t) = obj.get("uriTemplate").and_then(Value::as_str) {
                    if let Some((_, first)) = self.templates.iter().find(|(u, _)| u == t) {
                        tracing::warn!(server = %owner, template = %t, first = %first, "a URI template offered by two servers; the first keeps it");
                        return;
                    }
                    self.templates.push((t.to_owned(), owner.clone()));
                }
                self.items.entry(kind).or_default().push(item.clone());
            }
        }
    }

    /// Notes that `owner` lists a URI of `uri`'s origin.
    fn add_origin(&mut self, uri: &str, owner: &Arc<str>) {
        let origin = origin(uri);
        if !self.origins.iter().any(|(o, s)| o == origin && s == owner) {
            self.origins.push((origin.to_owned(), owner.clone()));
        }
    }

    /// The merged list, in server-name order and each server's own order within.
    pub fn list(&self, kind: ListKind) -> &[Value] {
        self.items.get(&kind).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn tool(&self, exposed: &str) -> Option<&Route> {
        self.tools.get(exposed)
    }

    pub fn prompt(&self, exposed: &str) -> Option<&Route> {
        self.prompts.get(exposed)
    }

    /// A tool of a server that is not serving now (see `withdrawn_tools`).
    pub fn withdrawn_tool(&self, exposed: &str) -> Option<&Route> {
        self.withdrawn_tools.get(exposed)
    }

    /// A prompt of a server that is not serving now.
    pub fn withdrawn_prompt(&self, exposed: &str) -> Option<&Route> {
        self.withdrawn_prompts.get(exposed)
    }

    /// The server of a resource URI: a listed resource (of a serving server, else of one not
    /// serving now), else the server of the template that matches it with the most literal
    /// text (the most specific; the first server by name on a tie; serving servers' templates
    /// first), else the one server whose listed URIs have the URI's scheme and authority.
    /// Whether a server is up does not move a URI another server lists exactly. A URI of no known origin is not
    /// found: the gateway says so in the era's words (SEP-2164), not a guessed server.
    pub fn resource_server(&self, uri: &str) -> Option<&Arc<str>> {
        self.resources
            .get(uri)
            .or_else(|| self.withdrawn_resources.get(uri))
            .or_else(|| best_template(&self.templates, uri))
            .or_else(|| best_template(&self.withdrawn_templates, uri))
            .or_else(|| {
                let origin = origin(uri);
                sole(
                    self.origins
                        .iter()
                        .filter(|(o, _)| o == origin)
                        .map(|(_, s)| s),
                )
            })
    }

    /// The servers whose items are offered.
    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    /// The lists that differ between two catalogs.
    pub fn changed_kinds(&self, other: &Catalog) -> Vec<ListKind> {
        ListKind::ALL
            .into_iter()
            .filter(|k| self.list(*k) != other.list(*k))
            .collect()
    }
}

/// The server of the template that matches `uri` with the most literal text (the first on a
/// tie).
fn best_template<'a>(templates: &'a [(String, Arc<str>)], uri: &str) -> Option<&'a Arc<str>> {
    templates
        .iter()
        .filter_map(|(t, s)| template_match(t, uri).map(|literal| (literal, s)))
        .fold(
            None,
            |best: Option<(usize, &Arc<str>)>, (literal, s)| match best {
                Some((b, _)) if b >= literal => best,
                _ => Some((literal, s)),
            },
        )
        .map(|(_, s)| s)
}

/// The server, if `servers` names exactly one (any number of times).
fn sole<'a>(mut servers: impl Iterator<Item = &'a Arc<str>>) -> Option<&'a Arc<str>> {
    let first = servers.next()?;
    servers.all(|s| s == first).then_some(first)
}

/// A URI's scheme and authority: `demo://resource` of `demo://resource/static/1`, `file://` of
/// `file:///a`; the scheme (`urn:`) of one without `//`.
fn origin(uri: &str) -> &str {
    match uri.find("://") {
        Some(at) => {
            let rest = &uri[at + 3..];
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            &uri[..at + 3 + end]
        }
        None => uri.find(':').map_or(uri, |at| &uri[..=at]),
    }
}

/// Whether `uri` could be an expansion of the RFC 6570 `template`, and if so how many literal
/// characters the template has. Each `{...}` expression stands for any text (a `{+path}` may
/// hold `/`, and servers read loosely); the literal text between them must appear in order, the
/// first at the start and the last at the end. A `{` without its `}` is literal.
pub fn template_match(template: &str, uri: &str) -> Option<usize> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        pieces.push(&rest[..open]);
        rest = &rest[open + close + 1..];
    }
    pieces.push(rest);
    let literal = pieces.iter().map(|p| p.len()).sum();
    let (first, last) = (pieces[0], pieces[pieces.len() - 1]);
    if pieces.len() == 1 {
        return (uri == template).then_some(literal);
    }
    if uri.len() < first.len() + last.len() || !uri.starts_with(first) || !uri.ends_with(last) {
        return None;
    }
    // The middle pieces, leftmost first, between the first and the last.
    let mut within = &uri[first.len()..uri.len() - last.len()];
    for piece in &pieces[1..pieces.len() - 1] {
        let at = within.find(piece)?;
        within = &within[at + piece.len()..];
    }
    Some(literal)
}

/// The item with its `name` replaced, every other member untouched and in place.
fn renamed(obj: &Map<String, Value>, name: String) -> Value {
    let mut obj = obj.clone();
    obj.insert("name".into(), Value::String(name));
    Value::Object(obj)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn build(servers: &BTreeMap<String, ServerLists>) -> Catalog {
        Catalog::build(servers.iter().map(|(k, v)| (k.as_str(), v, true)), "__")
    }

    fn lists(tools: &[&str], resources: &[&str]) -> ServerLists {
        let mut l = ServerLists::default();
        l.lists.insert(
            ListKind::Tools,
            tools
                .iter()
                .map(|t| json!({"name": t, "inputSchema": {"type": "object"}, "x-extra": 1}))
                .collect(),
        );
        l.lists.insert(
            ListKind::Resources,
            resources
                .iter()
                .map(|u| json!({"uri": u, "name": u}))
                .collect(),
        );
        l
    }

    #[test]
    fn merges_in_server_order_and_routes_back() {
        let mut servers = BTreeMap::new();
        servers.insert("b".to_string(), lists(&["echo"], &["file:///x"]));
        servers.insert("a".to_string(), lists(&["echo", "add"], &["file:///x"]));
        let cat = build(&servers);
        let names: Vec<_> = cat
            .list(ListKind::Tools)
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a__echo", "a__add", "b__echo"]);
        assert_eq!(cat.list(ListKind::Tools)[0]["x-extra"], 1);
        let r = cat.tool("b__echo").unwrap();
        assert_eq!((&*r.server, r.name.as_str()), ("b", "echo"));
        assert!(cat.tool("echo").is_none());
        // The clashing URI stays with the first server.
        assert_eq!(cat.list(ListKind::Resources).len(), 1);
        assert_eq!(&**cat.resource_server("file:///x").unwrap(), "a");
    }

    #[test]
    fn two_items_that_would_share_a_name_both_stay_callable() {
        // Server `a`'s tool `b__c` and server `a__b`'s tool `c` are both `a__b__c`.
        let mut servers = BTreeMap::new();
        servers.insert("a".to_string(), lists(&["b__c"], &[]));
        servers.insert("a__b".to_string(), lists(&["c"], &[]));
        let cat = build(&servers);
        let names: Vec<_> = cat
            .list(ListKind::Tools)
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names[0], "a__b__c");
        assert!(names[1].starts_with("a__b__c_"), "{names:?}");
        let r = cat.tool(&names[1]).unwrap();
        assert_eq!((&*r.server, r.name.as_str()), ("a__b", "c"));
        assert_eq!(
            names,
            build(&servers)
                .list(ListKind::Tools)
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_template_matches_what_it_could_expand_to() {
        assert_eq!(
            template_match("test://static/{id}", "test://static/1"),
            Some(14)
        );
        assert_eq!(
            template_match("file:///{+path}", "file:///a/b.txt"),
            Some(8)
        );
        assert_eq!(template_match("{+uri}", "anything://at/all"), Some(0));
        let notes = "file:///home/{user}/notes/{id}";
        assert_eq!(template_match(notes, "file:///home/bob/notes/7"), Some(20));
        assert_eq!(template_match(notes, "file:///home/bob/todo.txt"), None);
        assert_eq!(template_match("a://{x}/b/{y}/b", "a://1/b/b"), None);
        assert_eq!(template_match("plain://x", "plain://x"), Some(9));
        assert_eq!(template_match("plain://x", "plain://xy"), None);
        assert_eq!(template_match("bad://{x", "bad://{x"), Some(8));
    }

    #[test]
    fn templates_route_to_the_most_specific_match() {
        let mut a = ServerLists::default();
        a.lists.insert(
            ListKind::ResourceTemplates,
            vec![json!({"uriTemplate": "file:///{+path}"})],
        );
        let mut b = ServerLists::default();
        b.lists.insert(
            ListKind::ResourceTemplates,
            vec![json!({"uriTemplate": "file:///home/{user}/notes/{id}"})],
        );
        let servers = BTreeMap::from([("a".to_string(), a), ("b".to_string(), b)]);
        let cat = build(&servers);
        assert_eq!(
            &**cat.resource_server("file:///home/bob/notes/7").unwrap(),
            "b"
        );
        // b's template shares the start but cannot expand to this: a's can.
        assert_eq!(
            &**cat.resource_server("file:///home/bob/todo.txt").unwrap(),
            "a"
        );
    }

    #[test]
    fn templates_route_by_the_most_literal_text() {
        let mut a = ServerLists::default();
        a.lists.insert(
            ListKind::ResourceTemplates,
            vec![json!({"uriTemplate": "test://{id}"})],
        );
        let mut b = ServerLists::default();
        b.lists.insert(
            ListKind::ResourceTemplates,
            vec![json!({"uriTemplate": "test://static/{id}"})],
        );
        let servers = BTreeMap::from([("a".to_string(), a), ("b".to_string(), b)]);
        let cat = build(&servers);
        assert_eq!(&**cat.resource_server("test://static/1").unwrap(), "b");
        assert_eq!(&**cat.resource_server("test://dynamic/1").unwrap(), "a");
        assert!(cat.resource_server("other://1").is_none());
    }

    fn names(cat: &Catalog) -> Vec<String> {
        cat.list(ListKind::Tools)
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    }

    /// `x.y` and `x_y` expose the same name: which one keeps it must not depend on which is up,
    /// or a call meant for one would reach the other.
    #[test]
    fn a_server_going_down_hands_its_names_to_no_other() {
        let (dotted, plain) = (lists(&["echo"], &[]), lists(&["echo"], &[]));
        let both_up = Catalog::build([("x.y", &dotted, true), ("x_y", &plain, true)], "__");
        let up = names(&both_up);
        assert_eq!(up[0], "x_y__echo");
        assert_eq!(&*both_up.tool("x_y__echo").unwrap().server, "x.y");
        let one_down = Catalog::build([("x.y", &dotted, false), ("x_y", &plain, true)], "__");
        assert_eq!(names(&one_down), [up[1].clone()], "x_y keeps its own name");
        assert_eq!(&*one_down.tool(&up[1]).unwrap().server, "x_y");
        assert!(one_down.tool("x_y__echo").is_none());
        let r = one_down.withdrawn_tool("x_y__echo").unwrap();
        assert_eq!(&*r.server, "x.y", "still routed to the server that is down");
    }

    #[test]
    fn a_uri_template_offered_twice_is_listed_once_and_routes_to_the_first() {
        let template = |server: &str| {
            let mut l = ServerLists::default();
            l.lists.insert(
                ListKind::ResourceTemplates,
                vec![json!({"uriTemplate": "shared://tmpl/{id}", "name": server})],
            );
            l
        };
        let (a, b) = (template("a"), template("b"));
        let cat = Catalog::build([("a", &a, true), ("b", &b, true)], "__");
        assert_eq!(cat.list(ListKind::ResourceTemplates).len(), 1);
        assert_eq!(cat.list(ListKind::ResourceTemplates)[0]["name"], "a");
        assert_eq!(&**cat.resource_server("shared://tmpl/5").unwrap(), "a");
    }

    #[test]
    fn the_resources_of_a_server_not_serving_still_route_to_it() {
        let mut down = lists(&[], &["fake://down/r0"]);
        down.lists.insert(
            ListKind::ResourceTemplates,
            vec![json!({"uriTemplate": "fake://down/t/{id}"})],
        );
        let up = lists(&[], &["other://up/r0"]);
        let cat = Catalog::build([("down", &down, false), ("up", &up, true)], "__");
        assert_eq!(cat.list(ListKind::Resources).len(), 1, "not listed");
        assert!(cat.list(ListKind::ResourceTemplates).is_empty());
        assert_eq!(&**cat.resource_server("fake://down/r0").unwrap(), "down");
        assert_eq!(&**cat.resource_server("fake://down/t/1").unwrap(), "down");
        // A serving server's template that could expand to a URI the server that is down lists
        // exactly does not take it: that URI is the other server's, up or not.
        let mut wide = lists(&[], &["fake://wide/r0"]);
        wide.lists.insert(
            ListKind::ResourceTemplates,
            vec![json!({"uriTemplate": "fake://{+path}"})],
        );
        let cat = Catalog::build([("down", &down, false), ("wide", &wide, true)], "__");
        assert_eq!(&**cat.resource_server("fake://down/r0").unwrap(), "down");
        assert_eq!(&**cat.resource_server("fake://down/other").unwrap(), "wide");
    }

    /// A resource a server can read need not be listed (a tool's resource link, say): it goes
    /// to the one server whose listed URIs share its scheme and authority; with no such one
    /// server it is unknown.
    #[test]
    fn a_uri_no_list_names_goes_to_the_one_server_it_can_be_of() {
        let (a, b) = (
            lists(&[], &["demo://resource/static/1"]),
            lists(&[], &["fake://b/r0"]),
        );
        let cat = Catalog::build([("a", &a, true), ("b", &b, true)], "__");
        assert_eq!(
            &**cat
                .resource_server("demo://resource/session/y.txt")
                .unwrap(),
            "a"
        );
        assert_eq!(&**cat.resource_server("fake://b/hidden/1").unwrap(), "b");
        assert!(
            cat.resource_server("fake://c/1").is_none(),
            "no listed URI is of it"
        );
        let also_b = lists(&[], &["fake://b/r1", "demo://resource/static/2"]);
        let two = Catalog::build([("a", &a, true), ("b", &also_b, true)], "__");
        assert!(
            two.resource_server("demo://resource/x").is_none(),
            "two could"
        );
        assert_eq!(origin("file:///a/b"), "file://");
        assert_eq!(origin("urn:isbn:1"), "urn:");
        assert_eq!(origin("demo://host?q=1"), "demo://host");
    }

    #[test]
    fn changed_kinds_lists_only_what_differs() {
        let one = BTreeMap::from([("a".to_string(), lists(&["echo"], &[]))]);
        let two = BTreeMap::from([("a".to_string(), lists(&["echo", "add"], &[]))]);
        let (c1, c2) = (build(&one), build(&two));
        assert_eq!(c1.changed_kinds(&c2), [ListKind::Tools]);
        assert!(c1.changed_kinds(&c1.clone()).is_empty());
    }
}
