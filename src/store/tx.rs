//! Atomic commits: a generator's outputs (its `secrets/<gen>/` and
//! `public/<gen>/` directories and `meta/<gen>.json`) change together.
//!
//! A commit stages the new content under `sops/.tx/<id>/new/`, writes
//! `plan.json`, and then the marker `COMMITTED`, the point of no return. Only
//! then are the old entries moved to `old/` and the new ones moved in. After a
//! crash, `recover` discards uncommitted transactions and finishes committed
//! ones, so readers only ever see the complete old set or the complete new set.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{io, sync_dir, write_atomic, Kind, Owner, Store, StoreError};

/// One path (relative to `sops/`) that the commit replaces or removes.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Target {
    rel: PathBuf,
    /// False when the commit removes the path.
    present: bool,
}

/// An open commit.
pub struct Tx {
    root: PathBuf,
    dir: PathBuf,
    targets: Vec<Target>,
}

const TX_DIR: &str = ".tx";
const COMMITTED: &str = "COMMITTED";

impl Tx {
    pub(super) fn begin(store: &Store) -> Result<Tx, StoreError> {
        let base = store.root.join(TX_DIR);
        std::fs::create_dir_all(&base).map_err(io(&base))?;
        let dir = tempfile::Builder::new()
            .prefix("tx-")
            .tempdir_in(&base)
            .map_err(io(&base))?
            .keep();
        Ok(Tx {
            root: store.root.clone(),
            dir,
            targets: Vec::new(),
        })
    }

    fn stage(&mut self, rel: PathBuf, content: Option<&[u8]>) -> Result<(), StoreError> {
        if let Some(bytes) = content {
            write_atomic(&self.dir.join("new").join(&rel), bytes)?;
        }
        self.targets.push(Target {
            rel,
            present: content.is_some(),
        });
        Ok(())
    }

    fn rel(store: &Store, path: &Path) -> PathBuf {
        path.strip_prefix(&store.root).unwrap_or(path).to_path_buf()
    }

    /// Replaces all of one generator's outputs and its metadata. `secrets`
    /// hold sealed bytes; a kind with no files has its directory removed.
    pub fn put_generator(
        &mut self,
        store: &Store,
        owner: &Owner,
        gen: &str,
        secrets: &[(String, Vec<u8>)],
        publics: &[(String, Vec<u8>)],
        meta: &super::GenMeta,
    ) -> Result<(), StoreError> {
        for (kind, files) in [(Kind::Secret, secrets), (Kind::Public, publics)] {
            let dir = Tx::rel(store, &store.gen_dir(owner, kind, gen));
            if files.is_empty() {
                self.stage(dir, None)?;
                continue;
            }
            for (name, bytes) in files {
                write_atomic(&self.dir.join("new").join(&dir).join(name), bytes)?;
            }
            self.targets.push(Target {
                rel: dir,
                present: true,
            });
        }
        let meta_rel = Tx::rel(store, &store.meta_path(owner, gen));
        self.stage(meta_rel, Some(&meta.to_bytes()))
    }

    /// Replaces one file (rekey, set).
    pub fn put_file(&mut self, store: &Store, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let rel = Tx::rel(store, path);
        self.stage(rel, Some(bytes))
    }

    /// Removes one file (prune).
    pub fn remove_path(&mut self, store: &Store, path: &Path) -> Result<(), StoreError> {
        let rel = Tx::rel(store, path);
        self.stage(rel, None)
    }

    /// Removes every output and the metadata of a generator (orphan cleanup).
    pub fn remove_generator(
        &mut self,
        store: &Store,
        owner: &Owner,
        gen: &str,
    ) -> Result<(), StoreError> {
        for kind in [Kind::Secret, Kind::Public] {
            let rel = Tx::rel(store, &store.gen_dir(owner, kind, gen));
            self.stage(rel, None)?;
        }
        let rel = Tx::rel(store, &store.meta_path(owner, gen));
        self.stage(rel, None)
    }

    /// Makes the commit durable, then applies it.
    pub fn commit(self) -> Result<(), StoreError> {
        let plan = serde_json::to_vec(&self.targets).unwrap_or_default();
        write_atomic(&self.dir.join("plan.json"), &plan)?;
        sync_tree(&self.dir.join("new"));
        write_atomic(&self.dir.join(COMMITTED), b"")?;
        apply(&self.root, &self.dir)
    }
}

/// fsync every directory of a staged tree so its renames survive a crash.
fn sync_tree(dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        sync_dir(&d);
        if let Ok(entries) = std::fs::read_dir(&d) {
            stack.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
}

fn exists(p: &Path) -> bool {
    p.symlink_metadata().is_ok()
}

fn rename(from: &Path, to: &Path) -> Result<(), StoreError> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    std::fs::rename(from, to).map_err(io(from))?;
    if let Some(parent) = to.parent() {
        sync_dir(parent);
    }
    Ok(())
}

/// Applies a committed transaction; safe to run again after a crash midway.
fn apply(root: &Path, dir: &Path) -> Result<(), StoreError> {
    let plan_path = dir.join("plan.json");
    let plan = std::fs::read(&plan_path).map_err(io(&plan_path))?;
    let targets: Vec<Target> = serde_json::from_slice(&plan).map_err(|e| StoreError::Corrupt {
        path: plan_path.display().to_string(),
        reason: e.to_string(),
    })?;
    for t in &targets {
        let live = root.join(&t.rel);
        let new = dir.join("new").join(&t.rel);
        let old = dir.join("old").join(&t.rel);
        let pending = if t.present {
            exists(&new)
        } else {
            exists(&live)
        };
        if !pending {
            continue; // already applied
        }
        if exists(&live) && !exists(&old) {
            rename(&live, &old)?;
        }
        if t.present {
            rename(&new, &live)?;
        }
    }
    // Remove the generator directories left empty (their owner dirs stay).
    std::fs::remove_dir_all(dir).map_err(io(dir))?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent);
    }
    Ok(())
}

/// Finishes committed transactions and discards the rest.
pub(super) fn recover(root: &Path) -> Result<(), StoreError> {
    let base = root.join(TX_DIR);
    let entries = match std::fs::read_dir(&base) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(&base)(e)),
    };
    let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    dirs.sort();
    for dir in dirs {
        if dir.join(COMMITTED).exists() {
            apply(root, &dir)?;
        } else {
            std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
    }
    Ok(())
}

/// True when a crash left a transaction to recover.
pub fn pending(root: &Path) -> bool {
    std::fs::read_dir(root.join(TX_DIR)).is_ok_and(|mut e| e.next().is_some())
}
