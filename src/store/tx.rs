//! Atomic commits: a generator's outputs (its `secrets/<gen>/` and
//! `public/<gen>/` directories and `meta/<gen>.json`) change together.
//!
//! A commit stages the new content in `sops/.tx/<id>/` (target `i` of the plan as
//! the entry `n<i>`), writes `plan.json`, and then the marker `COMMITTED`, the point
//! of no return. Only then are the old entries moved out (to `o<i>`) and the new ones
//! moved in. After a crash, `recover` discards uncommitted transactions and finishes
//! committed ones, so readers only ever see the complete old set or the complete new set.
//! (Staging flat rather than under a copy of the store's tree spares a dozen directories
//! per generator, created and removed again: issue 6, B3. Plans written by earlier builds,
//! which staged under `new/<path>` and moved out to `old/<path>`, are still recovered.)
//!
//! Durability costs a handful of flushes per commit, whatever its size: the
//! staged tree (every file, directory and the plan) is flushed at once
//! (`syncfs` on Linux) before the marker is written; the marker's directory is
//! fsynced before anything moves; the moves out are made durable before the moves
//! in, those before the marker is removed, and the marker's removal before the
//! transaction's directory goes (a transaction left committed on disk would be
//! applied again by recovery, after any later commit of the same paths). Removing
//! the directory itself needs no flush. (An fsync per
//! staged file and per rename cost about 19 flushes for a one-file generator, about
//! 4 ms each on a virtual disk: issue 6, B1 and B3.)

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{io, sync_dir, Kind, Owner, Store, StoreError};

/// One path (relative to `sops/`) that the commit replaces or removes.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Target {
    rel: PathBuf,
    /// False when the commit removes the path.
    present: bool,
    /// Staged as `n<i>` and moved out to `o<i>`; absent from earlier builds' plans,
    /// which used `new/<rel>` and `old/<rel>`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    flat: bool,
}

impl Target {
    /// Where the new content waits for the move in.
    fn staged(&self, dir: &Path, i: usize) -> PathBuf {
        if self.flat {
            dir.join(format!("n{i}"))
        } else {
            dir.join("new").join(&self.rel)
        }
    }

    /// Where the live entry goes when it moves out.
    fn moved_out(&self, dir: &Path, i: usize) -> PathBuf {
        if self.flat {
            dir.join(format!("o{i}"))
        } else {
            dir.join("old").join(&self.rel)
        }
    }
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

    /// The next target, not pushed yet, and where its content is staged.
    fn next(&self, rel: PathBuf, present: bool) -> (Target, PathBuf) {
        let target = Target {
            rel,
            present,
            flat: true,
        };
        let staged = target.staged(&self.dir, self.targets.len());
        (target, staged)
    }

    fn stage(&mut self, rel: PathBuf, content: Option<&[u8]>) -> Result<(), StoreError> {
        let (target, staged) = self.next(rel, content.is_some());
        if let Some(bytes) = content {
            write_staged(&staged, bytes)?;
        }
        self.targets.push(target);
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
            let (target, staged) = self.next(dir, true);
            std::fs::create_dir(&staged).map_err(io(&staged))?;
            for (name, bytes) in files {
                write_staged(&staged.join(name), bytes)?;
            }
            self.targets.push(target);
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
        write_staged(&self.dir.join("plan.json"), &plan)?;
        sync_tree(&self.dir)?;
        write_staged(&self.dir.join(COMMITTED), b"")?;
        sync_dirs([self.dir.clone()])?;
        apply(&self.root, &self.dir)
    }
}

/// Writes one staged file (0600, like the store's other files) in an existing
/// directory. It is not flushed here: `commit` flushes the whole staged tree at once.
fn write_staged(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))
}

/// Makes everything under `dir` (file contents, directory entries) durable.
/// On Linux one `syncfs` does it for the whole tree: it flushes the file
/// system once rather than once per file.
#[cfg(target_os = "linux")]
fn sync_tree(dir: &Path) -> Result<(), StoreError> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(dir).map_err(io(dir))?;
    nix::unistd::syncfs(f.as_raw_fd()).map_err(|e| io(dir)(e.into()))
}

/// Makes everything under `dir` durable: an fsync per file and directory.
#[cfg(not(target_os = "linux"))]
fn sync_tree(dir: &Path) -> Result<(), StoreError> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(io(&d))? {
            let entry = entry.map_err(io(&d))?;
            let path = entry.path();
            if entry.file_type().map_err(io(&path))?.is_dir() {
                stack.push(path);
            } else {
                let f = std::fs::File::open(&path).map_err(io(&path))?;
                f.sync_all().map_err(io(&path))?;
            }
        }
        sync_dirs([d])?;
    }
    Ok(())
}

/// fsyncs each directory once, so the entries created, renamed or removed in
/// them are durable. On a journaling file system the first one commits the
/// journal and the rest find nothing left to do.
fn sync_dirs(dirs: impl IntoIterator<Item = PathBuf>) -> Result<(), StoreError> {
    for d in dirs {
        let f = std::fs::File::open(&d).map_err(io(&d))?;
        f.sync_all().map_err(io(&d))?;
    }
    Ok(())
}

fn exists(p: &Path) -> bool {
    p.symlink_metadata().is_ok()
}

/// Renames `from` to `to`, creating `to`'s parent; returns that parent, whose
/// fsync makes the rename durable.
fn rename(from: &Path, to: &Path) -> Result<PathBuf, StoreError> {
    let parent = to.parent().unwrap_or(Path::new("/")).to_path_buf();
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    std::fs::rename(from, to).map_err(io(from))?;
    Ok(parent)
}

/// Applies a committed transaction; safe to run again after a crash midway.
fn apply(root: &Path, dir: &Path) -> Result<(), StoreError> {
    let plan_path = dir.join("plan.json");
    let plan = match std::fs::read(&plan_path) {
        Ok(plan) => plan,
        // The plan was durable before the marker: without it, a crash interrupted
        // the removal of an applied transaction.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::remove_dir_all(dir).map_err(io(dir))?;
            return Ok(());
        }
        Err(e) => return Err(io(&plan_path)(e)),
    };
    let targets: Vec<Target> = serde_json::from_slice(&plan).map_err(|e| StoreError::Corrupt {
        path: plan_path.display().to_string(),
        reason: e.to_string(),
    })?;
    // Pending targets: the old entries move out first (durably), then the new ones in.
    // A file replacing a file needs no move out: the rename over it is atomic. Only the
    // store's directories are fsynced: what happens to the moved-out entries no longer
    // matters once the marker is durable (recovery looks at the staged entries and the
    // live ones only).
    let is_dir = |p: &Path| p.symlink_metadata().is_ok_and(|m| m.is_dir());
    let pending: Vec<(usize, &Target)> = targets
        .iter()
        .enumerate()
        .filter(|(i, t)| {
            if t.present {
                exists(&t.staged(dir, *i))
            } else {
                exists(&root.join(&t.rel))
            }
        })
        .collect();
    let mut touched = BTreeSet::new();
    for &(i, t) in &pending {
        let live = root.join(&t.rel);
        let old = t.moved_out(dir, i);
        let replace_in_place = t.present && !is_dir(&live) && !is_dir(&t.staged(dir, i));
        if !replace_in_place && exists(&live) && !exists(&old) {
            rename(&live, &old)?;
            touched.insert(live.parent().unwrap_or(root).to_path_buf());
        }
    }
    sync_dirs(std::mem::take(&mut touched))?;
    for &(i, t) in pending.iter().filter(|(_, t)| t.present) {
        let live = root.join(&t.rel);
        touched.insert(rename(&t.staged(dir, i), &live)?);
    }
    sync_dirs(touched)?;
    // Every move is durable: the transaction's record can go. Drop the marker
    // first, durably: a crash while the directory is being removed must leave an
    // uncommitted (discarded) transaction, never a committed one that recovery
    // would apply again over a later commit (which only flushes its own entries
    // where there is no syncfs).
    let marker = dir.join(COMMITTED);
    match std::fs::remove_file(&marker) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&marker)(e)),
    }
    std::fs::remove_dir_all(dir).map_err(io(dir))?;
    Ok(())
}

/// Finishes committed transactions and discards the rest; removes the
/// temporary files of writes a crash interrupted outside transactions (a
/// machine's `age-key` and `key.json`, written under the lock).
pub(super) fn recover(root: &Path) -> Result<(), StoreError> {
    remove_stale_temporaries(&root.join("machines"));
    let base = root.join(TX_DIR);
    let entries = match std::fs::read_dir(&base) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(&base)(e)),
    };
    let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    dirs.sort();
    for dir in dirs {
        let committed = dir.join(COMMITTED).exists();
        if committed && !dir.join("plan.json").exists() {
            // plan.json is written before the marker, so this one was applied and a crash
            // interrupted its removal (earlier builds removed the marker last).
            std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        } else if committed {
            apply(root, &dir)?;
        } else {
            std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
    }
    Ok(())
}

/// Removes `<dir>/*/.vars-tmp-*` (best effort). Only writers holding the lock
/// create them there, so under the lock every one found is a crash's leftover.
fn remove_stale_temporaries(dir: &Path) {
    let Ok(owners) = std::fs::read_dir(dir) else {
        return;
    };
    for owner in owners.flatten() {
        let Ok(entries) = std::fs::read_dir(owner.path()) else {
            continue;
        };
        for entry in entries.flatten() {
            let stale = entry
                .file_name()
                .to_string_lossy()
                .starts_with(".vars-tmp-")
                && entry.file_type().is_ok_and(|t| t.is_file());
            if stale {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// True when a crash left a transaction to recover.
pub fn pending(root: &Path) -> bool {
    std::fs::read_dir(root.join(TX_DIR)).is_ok_and(|mut e| e.next().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::GenMeta;

    fn meta(generation: &str) -> GenMeta {
        GenMeta {
            generation: generation.into(),
            definition: "d".into(),
            files: [("s".to_string(), true), ("p".to_string(), false)].into(),
            inputs: Default::default(),
        }
    }

    fn put(store: &Store, tx: &mut Tx, value: &str) {
        let owner = Owner::Machine("m".into());
        tx.put_generator(
            store,
            &owner,
            "g",
            &[("s".into(), format!("sealed {value}").into_bytes())],
            &[("p".into(), format!("public {value}").into_bytes())],
            &meta(value),
        )
        .unwrap();
    }

    fn read(store: &Store, rel: &str) -> Option<String> {
        std::fs::read_to_string(store.root().join(rel)).ok()
    }

    fn tx_dirs(store: &Store) -> usize {
        std::fs::read_dir(store.root().join(TX_DIR)).map_or(0, |d| d.count())
    }

    /// A store whose generator `g` of machine `m` holds "old".
    fn store_with_old() -> (tempfile::TempDir, Store) {
        let repo = tempfile::tempdir().unwrap();
        let store = Store::new(repo.path());
        let mut tx = Tx::begin(&store).unwrap();
        put(&store, &mut tx, "old");
        tx.commit().unwrap();
        (repo, store)
    }

    /// Every output of `g` holds `value`, and no transaction is left.
    fn assert_holds(store: &Store, value: &str) {
        assert_eq!(
            read(store, "machines/m/secrets/g/s").as_deref(),
            Some(format!("sealed {value}").as_str())
        );
        assert_eq!(
            read(store, "machines/m/public/g/p").as_deref(),
            Some(format!("public {value}").as_str())
        );
        assert!(read(store, "machines/m/meta/g.json")
            .unwrap()
            .contains(value));
        assert_eq!(tx_dirs(store), 0);
    }

    /// Stages `value` and makes it durable up to the marker, without applying it.
    fn committed_not_applied(store: &Store, value: &str) -> PathBuf {
        let mut tx = Tx::begin(store).unwrap();
        put(store, &mut tx, value);
        let plan = serde_json::to_vec(&tx.targets).unwrap();
        write_staged(&tx.dir.join("plan.json"), &plan).unwrap();
        write_staged(&tx.dir.join(COMMITTED), b"").unwrap();
        tx.dir.clone()
    }

    #[test]
    fn a_commit_replaces_every_output_and_leaves_no_transaction() {
        let repo = tempfile::tempdir().unwrap();
        let store = Store::new(repo.path());
        for value in ["one", "two"] {
            let mut tx = Tx::begin(&store).unwrap();
            put(&store, &mut tx, value);
            tx.commit().unwrap();
            assert_eq!(
                read(&store, "machines/m/secrets/g/s").as_deref(),
                Some(format!("sealed {value}").as_str())
            );
            assert_eq!(
                read(&store, "machines/m/public/g/p").as_deref(),
                Some(format!("public {value}").as_str())
            );
            assert!(read(&store, "machines/m/meta/g.json")
                .unwrap()
                .contains(value));
            assert_eq!(tx_dirs(&store), 0);
        }
    }

    #[test]
    fn one_transaction_commits_several_generators() {
        let repo = tempfile::tempdir().unwrap();
        let store = Store::new(repo.path());
        let mut tx = Tx::begin(&store).unwrap();
        for m in ["a", "b"] {
            tx.put_generator(
                &store,
                &Owner::Machine(m.into()),
                "g",
                &[("s".into(), m.as_bytes().to_vec())],
                &[],
                &meta(m),
            )
            .unwrap();
        }
        tx.commit().unwrap();
        assert_eq!(read(&store, "machines/a/secrets/g/s").as_deref(), Some("a"));
        assert_eq!(read(&store, "machines/b/secrets/g/s").as_deref(), Some("b"));
        assert_eq!(tx_dirs(&store), 0);
    }

    #[test]
    fn recovery_discards_an_uncommitted_transaction() {
        let (_repo, store) = store_with_old();
        let mut tx = Tx::begin(&store).unwrap();
        put(&store, &mut tx, "new");
        drop(tx); // a crash before the marker
        recover(store.root()).unwrap();
        assert_holds(&store, "old");
    }

    #[test]
    fn recovery_finishes_a_commit_interrupted_after_the_old_entries_moved_out() {
        let (_repo, store) = store_with_old();
        let dir = committed_not_applied(&store, "new");
        // The first phase ran for the secrets only (the plan's first target), then the
        // process died.
        let rel = Path::new("machines/m/secrets/g");
        std::fs::rename(store.root().join(rel), dir.join("o0")).unwrap();
        recover(store.root()).unwrap();
        assert_holds(&store, "new");
    }

    #[test]
    fn recovery_removes_an_applied_transaction_whose_removal_was_interrupted() {
        let repo = tempfile::tempdir().unwrap();
        let store = Store::new(repo.path());
        let dir = committed_not_applied(&store, "new");
        apply_without_cleanup(store.root(), &dir);
        // The crash hit while the transaction's directory was being removed: the
        // plan is gone, the marker is not.
        std::fs::remove_file(dir.join("plan.json")).unwrap();
        recover(store.root()).unwrap();
        assert_eq!(
            read(&store, "machines/m/secrets/g/s").as_deref(),
            Some("sealed new")
        );
        assert_eq!(tx_dirs(&store), 0);
    }

    /// `apply`'s moves, keeping the transaction's directory.
    fn apply_without_cleanup(root: &Path, dir: &Path) {
        let plan: Vec<Target> =
            serde_json::from_slice(&std::fs::read(dir.join("plan.json")).unwrap()).unwrap();
        for (i, t) in plan.iter().enumerate().filter(|(_, t)| t.present) {
            let live = root.join(&t.rel);
            if live.is_dir() {
                std::fs::remove_dir_all(&live).unwrap();
            }
            rename(&t.staged(dir, i), &live).unwrap();
        }
    }

    #[test]
    fn a_commit_stages_one_entry_per_target_and_no_copy_of_the_tree() {
        let repo = tempfile::tempdir().unwrap();
        let store = Store::new(repo.path());
        let dir = committed_not_applied(&store, "new");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["COMMITTED", "n0", "n1", "n2", "plan.json"]);
        assert!(dir.join("n0").is_dir() && dir.join("n2").is_file());
        recover(store.root()).unwrap();
        assert_eq!(
            read(&store, "machines/m/public/g/p").as_deref(),
            Some("public new")
        );
        assert_eq!(tx_dirs(&store), 0);
    }

    /// A committed transaction as earlier builds left it: staged under `new/<path>`,
    /// a plan without `flat`, the secrets already moved out to `old/<path>`.
    #[test]
    fn recovery_finishes_a_commit_of_the_earlier_layout() {
        let (_repo, store) = store_with_old();
        let dir = store.root().join(TX_DIR).join("tx-legacy");
        for (rel, file, content) in [
            ("machines/m/secrets/g", "s", "sealed new"),
            ("machines/m/public/g", "p", "public new"),
        ] {
            std::fs::create_dir_all(dir.join("new").join(rel)).unwrap();
            std::fs::write(dir.join("new").join(rel).join(file), content).unwrap();
        }
        std::fs::create_dir_all(dir.join("new/machines/m/meta")).unwrap();
        std::fs::write(
            dir.join("new/machines/m/meta/g.json"),
            meta("new").to_bytes(),
        )
        .unwrap();
        std::fs::write(
            dir.join("plan.json"),
            r#"[{"rel":"machines/m/secrets/g","present":true},{"rel":"machines/m/public/g","present":true},{"rel":"machines/m/meta/g.json","present":true}]"#,
        )
        .unwrap();
        std::fs::write(dir.join(COMMITTED), "").unwrap();
        std::fs::create_dir_all(dir.join("old/machines/m/secrets")).unwrap();
        std::fs::rename(
            store.root().join("machines/m/secrets/g"),
            dir.join("old/machines/m/secrets/g"),
        )
        .unwrap();
        recover(store.root()).unwrap();
        assert_holds(&store, "new");
    }
}
