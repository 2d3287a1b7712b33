//! The state that outlives a restart of mcp-fleet: servers added and removed at runtime through
//! the admin API, on top of the config file. Written atomically (a temporary file in the same
//! directory, fsync, rename, fsync of the directory), so a crash or a SIGKILL at any moment
//! leaves either the old file or the new one, never a mix.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use fleet_protocol::ServerSpec;
use serde::{Deserialize, Serialize};

/// Changes made at runtime, applied over the config file's servers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuntimeChanges {
    /// Servers added through the API, in the order they were added.
    pub added: Vec<ServerSpec>,
    /// Names of config-file servers removed through the API.
    pub removed: Vec<String>,
}

impl RuntimeChanges {
    /// The servers to run: the config's, less the removed ones and those an added server of
    /// the same name replaces, then the added ones.
    pub fn apply(&self, config: &[ServerSpec]) -> Vec<ServerSpec> {
        config
            .iter()
            .filter(|s| !self.removed.contains(&s.name))
            .filter(|s| !self.added.iter().any(|a| a.name == s.name))
            .cloned()
            .chain(self.added.iter().cloned())
            .collect()
    }

    /// Gives every server added at runtime `policy`: they have the config's `[restart]`, as
    /// it is now (the state file keeps the one they were added with).
    pub fn with_restart(mut self, policy: &fleet_protocol::RestartPolicy) -> RuntimeChanges {
        for spec in &mut self.added {
            spec.restart = policy.clone();
        }
        self
    }

    /// Records a server added at runtime (replacing an earlier removal of that name).
    pub fn add(&mut self, spec: ServerSpec) {
        self.removed.retain(|n| *n != spec.name);
        self.added.retain(|a| a.name != spec.name);
        self.added.push(spec);
    }

    /// Records a server removed at runtime: forgotten if it was added at runtime, otherwise
    /// remembered as removed from the config.
    pub fn remove(&mut self, name: &str, in_config: bool) {
        self.added.retain(|a| a.name != name);
        if in_config && !self.removed.iter().any(|n| n == name) {
            self.removed.push(name.to_owned());
        }
    }

    /// Reads the state file; a missing file is no change at all.
    pub fn load(path: &Path) -> Result<RuntimeChanges, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| format!("{}: not a valid state file: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RuntimeChanges::default()),
            Err(e) => Err(format!(
                "{}: cannot read the state file: {e}",
                path.display()
            )),
        }
    }

    /// Writes the state file atomically.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        write_atomically(path, &text)
    }
}

/// Writes `bytes` to `path` so that readers (and a later start after a crash) see the old
/// content or the new, whole: temporary file, fsync, rename over `path`, fsync the directory.
/// The file is readable by its owner only (0600): a server's `env` in it may hold secrets.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The default state file of a config: `fleet.json` → `fleet.state.json`, beside it.
pub fn default_path(config: &Path) -> PathBuf {
    let stem = config
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "mcp-fleet".into());
    config.with_file_name(format!("{stem}.state.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_file_is_its_owners_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("fleet-state-mode-{}", std::process::id()));
        let path = dir.join("f.state.json");
        write_atomically(&path, b"{}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_atomically(&path, b"{\"a\": 1}").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn changes_apply_over_the_config_and_survive_a_round_trip() {
        let a = ServerSpec::stdio("a", "x", ["1"]);
        let b = ServerSpec::stdio("b", "x", ["1"]);
        let c = ServerSpec::stdio("c", "y", ["2"]);
        let changes = RuntimeChanges {
            added: vec![c.clone()],
            removed: vec!["a".into()],
        };
        assert_eq!(changes.apply(&[a, b.clone()]), [b, c]);

        let dir = std::env::temp_dir().join(format!("mcp-fleet-state-{}", std::process::id()));
        let path = dir.join("fleet.state.json");
        assert_eq!(RuntimeChanges::load(&path), Ok(RuntimeChanges::default()));
        changes.save(&path).unwrap();
        assert_eq!(RuntimeChanges::load(&path), Ok(changes));
        std::fs::write(&path, "{ not json").unwrap();
        assert!(
            RuntimeChanges::load(&path)
                .unwrap_err()
                .contains("not a valid state file")
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            default_path(Path::new("/etc/fleet.json")),
            Path::new("/etc/fleet.state.json")
        );
    }

    /// A reader never sees a half-written file while a writer replaces it again and again:
    /// what a start after a SIGKILL in the middle of a write would read.
    #[test]
    fn readers_see_the_old_file_or_the_new_never_a_mix() {
        let dir = std::env::temp_dir().join(format!("mcp-fleet-atomic-{}", std::process::id()));
        let path = dir.join("s.state.json");
        let version = |n: usize| RuntimeChanges {
            added: (0..n % 7 + 1)
                .map(|i| ServerSpec::stdio(format!("s{n}-{i}"), "x".repeat(2000), ["a"]))
                .collect(),
            removed: vec![format!("r{n}")],
        };
        version(0).save(&path).unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (path, done) = (path.clone(), done.clone());
            std::thread::spawn(move || {
                let mut reads = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let loaded = RuntimeChanges::load(&path).expect("a whole file, always");
                    assert_eq!(
                        loaded.added.len(),
                        loaded.removed[0][1..].parse::<usize>().unwrap() % 7 + 1
                    );
                    reads += 1;
                }
                reads
            })
        };
        for n in 1..300 {
            version(n).save(&path).unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
