//! Property tests of the namespacing rule: exposed names are bounded, deterministic, keep short
//! names readable, and do not collide for distinct long names; and of URI template matching.

use fleet_gateway::naming::{MAX_NAME_LEN, expose};
use fleet_gateway::template_match;
use proptest::prelude::*;

proptest! {
    #[test]
    fn exposed_names_fit_the_limit_and_are_deterministic(
        server in "[a-z0-9_-]{1,40}",
        sep in prop::sample::select(vec!["__", ".", "-", "::"]),
        item in "[A-Za-z0-9_.-]{1,80}",
    ) {
        let a = expose(&server, sep, &item);
        prop_assert!(a.chars().count() <= MAX_NAME_LEN);
        prop_assert_eq!(&a, &expose(&server, sep, &item));
        let full = format!("{server}{sep}{item}");
        if full.chars().count() <= MAX_NAME_LEN {
            prop_assert_eq!(a, full);
        } else {
            prop_assert!(a.starts_with(&full[..20]));
        }
    }

    #[test]
    fn distinct_long_names_stay_distinct(
        server in "[a-z]{1,10}",
        a in "[a-z]{60,90}",
        b in "[a-z]{60,90}",
    ) {
        prop_assume!(a != b);
        prop_assert_ne!(expose(&server, "__", &a), expose(&server, "__", &b));
    }

    #[test]
    fn names_with_any_unicode_never_panic(server in "\\PC{0,30}", item in "\\PC{0,100}") {
        let name = expose(&server, "__", &item);
        prop_assert!(name.chars().count() <= MAX_NAME_LEN);
    }

    /// Whatever a server is named, a client that takes only `[A-Za-z0-9_-]{1,64}` takes the
    /// name of each of its tools whose own name it takes.
    #[test]
    fn any_server_name_gives_names_clients_take(server in "\\PC{1,30}", item in "[A-Za-z0-9_-]{1,40}") {
        let name = expose(&server, "__", &item);
        prop_assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'), "{}", name);
    }
}

proptest! {
    /// A template matches every text it expands to, whatever the values, and no input panics.
    #[test]
    fn a_template_matches_its_expansions(
        literals in prop::collection::vec("[a-z:/.]{0,6}", 1..5),
        values in prop::collection::vec("\\PC{0,8}", 4),
        noise in "\\PC{0,30}",
    ) {
        let template = literals.join("{v}");
        let mut uri = literals[0].clone();
        for (i, l) in literals[1..].iter().enumerate() {
            uri.push_str(&values[i]);
            uri.push_str(l);
        }
        let literal: usize = literals.iter().map(String::len).sum();
        prop_assert_eq!(template_match(&template, &uri), Some(literal));
        let _ = template_match(&noise, &template);
        let _ = template_match(&template, &noise);
    }
}
