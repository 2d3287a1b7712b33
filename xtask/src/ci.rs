//! `cargo xtask ci`: lint, then test, then the property tests at the default case count.

use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{lint, prop, test};

/// A command's entry point, as `main` calls it.
type Command = fn(&[String]) -> Result<()>;

pub fn run(args: &[String]) -> Result<()> {
    if let Some(arg) = args.first() {
        bail!("`ci` takes no arguments (got `{arg}`)");
    }
    let steps: [(&str, Command); 3] = [
        ("lint", lint::run),
        ("test", test::run),
        ("prop", prop::run),
    ];
    let started = Instant::now();
    for (name, step) in steps {
        println!("==> ci: {name}");
        step(&[]).with_context(|| format!("ci step `{name}` failed"))?;
    }
    println!(
        "ci: lint, test and prop passed in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
