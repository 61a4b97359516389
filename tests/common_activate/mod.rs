//! Helpers for the activation tests: a private mount namespace with a tmpfs
//! (so the host's /run is never touched), and a small sealed store built with
//! the library.
//!
//! The namespace tests need root and unshare(2): without them they are
//! skipped (with a note on stderr) outside CI and fail under `CI=true`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{json, Value};
use vars::keys::{Identities, Recipient};
use vars::sops::{Format, SopsFile};
use vars::store::{GenMeta, Owner, Store};

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn skip(why: &str) {
    assert!(!in_ci(), "CI=true but {why}");
    eprintln!("skipped: {why}");
}

/// Runs `body` on a fresh thread in a private mount namespace, with a tmpfs
/// mounted on a new temporary directory (passed to `body`). Processes the
/// body starts share the namespace; the host sees none of its mounts.
pub fn in_namespace(body: impl FnOnce(&Path) + Send) {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    use nix::sched::{unshare, CloneFlags};

    if !nix::unistd::geteuid().is_root() {
        return skip("the activation tests need root (for unshare -m and ramfs)");
    }
    let tmp = tempfile::Builder::new()
        .prefix("vars-activate-")
        .tempdir()
        .unwrap();
    let root = tmp.path().to_path_buf();
    let outcome = std::thread::scope(|s| {
        s.spawn(|| -> Result<(), String> {
            unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .map_err(|e| format!("making / private: {e}"))?;
            mount(
                Some("tmpfs"),
                &root,
                Some("tmpfs"),
                MsFlags::empty(),
                Some("mode=0755"),
            )
            .map_err(|e| format!("mounting a tmpfs: {e}"))?;
            body(&root);
            let _ = umount2(&root, MntFlags::MNT_DETACH);
            Ok(())
        })
        .join()
    });
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(why)) => skip(&why),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Mounts an empty tmpfs on `dir` (inside the test's namespace only).
pub fn mount_tmpfs(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("mode=0755"),
    )
    .unwrap();
}

pub fn vars() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("vars").unwrap();
    for var in [
        "SOPS_AGE_KEY",
        "SOPS_AGE_KEY_FILE",
        "SOPS_AGE_KEY_CMD",
        "SOPS_AGE_SSH_PRIVATE_KEY_FILE",
        "XDG_CONFIG_HOME",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HOME", "/nonexistent");
    cmd
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A new age identity written to `path`; its recipient.
pub fn age_key_file(path: &Path) -> Recipient {
    let (id, text) = vars::keys::generate_identity();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("{}\n", text.as_str())).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    id.to_public().to_string().parse().unwrap()
}

/// An OpenSSH ed25519 host key made by ssh-keygen at `path`: its ssh-to-age
/// and ssh-ed25519 recipients.
pub fn ssh_host_key(path: &Path) -> Option<(Recipient, Recipient)> {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "host", "-f"])
        .arg(path)
        .status();
    match status {
        Ok(s) if s.success() => {}
        _ => {
            assert!(!in_ci(), "CI=true but ssh-keygen is not usable");
            return None;
        }
    }
    let mut ids = Identities::default();
    ids.add_file("host", path).unwrap();
    let x25519 = ids
        .keys
        .iter()
        .find(|(_, id)| matches!(id, vars::keys::Identity::X25519(_)))
        .and_then(|(_, id)| id.to_recipient())
        .unwrap();
    let pub_text = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    Some((x25519, pub_text.trim().parse().unwrap()))
}

/// One declared generator of the test fleet.
#[derive(Clone)]
struct Gen {
    share: bool,
    /// file → (declaration, content)
    files: BTreeMap<String, (Value, Vec<u8>)>,
    /// Recipients to seal to instead of machine + admin.
    recipients: Option<Vec<Recipient>>,
}

/// A repository with one admin and one machine, built with the library.
pub struct Fleet {
    pub repo: PathBuf,
    pub machine: String,
    pub admin_key: PathBuf,
    pub admin: Recipient,
    /// The machine's age key file (what /var/lib/vars/key.txt holds).
    pub machine_key: PathBuf,
    pub machine_recipient: Recipient,
    gens: BTreeMap<String, Gen>,
}

impl Fleet {
    /// A fleet under `root/repo`, keys under `root/keys`.
    pub fn new(root: &Path, machine: &str) -> Fleet {
        let repo = root.join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        let admin_key = root.join("keys/admin.txt");
        let admin = age_key_file(&admin_key);
        let store = Store::new(&repo);
        store.write_user_key("admin", &admin).unwrap();
        let machine_recipient = store
            .create_machine_key(machine, std::slice::from_ref(&admin))
            .unwrap();
        // The machine's private key, as `vars upload` would hand it over.
        let sealed = std::fs::read(
            store
                .owner_dir(&Owner::Machine(machine.into()))
                .join("age-key"),
        )
        .unwrap();
        let mut ids = Identities::default();
        ids.add_file("admin", &admin_key).unwrap();
        let plain = SopsFile::parse(&sealed, Format::Binary, "age-key")
            .unwrap()
            .decrypt_binary(&ids)
            .unwrap();
        let machine_key = root.join("keys/machine.txt");
        std::fs::write(&machine_key, plain.as_slice()).unwrap();
        Fleet {
            repo,
            machine: machine.into(),
            admin_key,
            admin,
            machine_key,
            machine_recipient,
            gens: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> PathBuf {
        self.repo.join("vars.json")
    }

    /// Declares (or replaces) a file of a generator, with its content.
    pub fn file(&mut self, gen: &str, file: &str, decl: Value, content: &[u8]) -> &mut Fleet {
        let g = self.gens.entry(gen.into()).or_insert(Gen {
            share: false,
            files: BTreeMap::new(),
            recipients: None,
        });
        g.files.insert(file.into(), (decl, content.to_vec()));
        self
    }

    pub fn remove_file(&mut self, gen: &str, file: &str) -> &mut Fleet {
        let g = self.gens.get_mut(gen).unwrap();
        g.files.remove(file);
        if g.files.is_empty() {
            self.gens.remove(gen);
        }
        self
    }

    pub fn share(&mut self, gen: &str) -> &mut Fleet {
        self.gens.get_mut(gen).unwrap().share = true;
        self
    }

    /// Seals this generator's secrets to `recipients` (plus the admin) only.
    pub fn seal_to(&mut self, gen: &str, recipients: Vec<Recipient>) -> &mut Fleet {
        self.gens.get_mut(gen).unwrap().recipients = Some(recipients);
        self
    }

    /// Writes vars.json and seals every generator into the store.
    pub fn commit(&self) {
        let store = Store::new(&self.repo);
        let lock = store.lock().unwrap();
        let mut tx = store.begin(&lock).unwrap();
        let mut generators = serde_json::Map::new();
        for (name, g) in &self.gens {
            let owner = if g.share {
                Owner::Shared
            } else {
                Owner::Machine(self.machine.clone())
            };
            let mut files = serde_json::Map::new();
            let mut secrets = Vec::new();
            let mut publics = Vec::new();
            let mut kinds = BTreeMap::new();
            for (file, (decl, content)) in &g.files {
                files.insert(file.clone(), decl.clone());
                let secret = decl.get("secret").and_then(Value::as_bool).unwrap_or(true);
                kinds.insert(file.clone(), secret);
                if secret {
                    let mut to = g
                        .recipients
                        .clone()
                        .unwrap_or_else(|| vec![self.machine_recipient.clone()]);
                    to.push(self.admin.clone());
                    secrets.push((
                        file.clone(),
                        vars::sops::encrypt_binary(content, &to).unwrap(),
                    ));
                } else {
                    publics.push((file.clone(), content.clone()));
                }
            }
            let meta = GenMeta {
                generation: GenMeta::new_generation(),
                definition: "test".into(),
                files: kinds,
                inputs: BTreeMap::new(),
            };
            tx.put_generator(&store, &owner, name, &secrets, &publics, &meta)
                .unwrap();
            generators.insert(
                name.clone(),
                json!({"share": g.share, "files": files, "script": "true"}),
            );
        }
        tx.commit().unwrap();
        drop(lock);
        let manifest = json!({"machines": {self.machine.clone(): {
            "class": "nixos", "tags": [], "generators": generators}}});
        std::fs::write(self.config(), serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    }

    /// `vars activate --machine M --config … --store … --identity <machine key>`.
    pub fn activate(&self, secrets_dir: &Path) -> assert_cmd::Command {
        let mut cmd = self.activate_without_identity(secrets_dir);
        cmd.arg("--identity").arg(&self.machine_key);
        cmd
    }

    pub fn activate_without_identity(&self, secrets_dir: &Path) -> assert_cmd::Command {
        let mut cmd = vars();
        cmd.args(["activate", "--machine", &self.machine])
            .arg("--config")
            .arg(self.config())
            .arg("--store")
            .arg(&self.repo)
            .arg("--secrets-dir")
            .arg(secrets_dir);
        cmd
    }

    pub fn secret_path(&self, gen: &str, file: &str) -> PathBuf {
        let owner = if self.gens.get(gen).is_some_and(|g| g.share) {
            Owner::Shared
        } else {
            Owner::Machine(self.machine.clone())
        };
        Store::new(&self.repo).file_path(&owner, vars::store::Kind::Secret, gen, file)
    }
}

/// Everything observable about a tree, without following symlinks: each
/// entry's relative path, kind, owner, group, mode, and content or target.
pub fn snapshot(root: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = match std::fs::read_dir(dir) {
            Ok(e) => e.map(|e| e.unwrap().path()).collect(),
            Err(_) => return,
        };
        entries.sort();
        for p in entries {
            let m = p.symlink_metadata().unwrap();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            let head = format!("{rel} {}:{} {:o}", m.uid(), m.gid(), m.mode());
            if m.file_type().is_symlink() {
                out.push(format!(
                    "{head} -> {}",
                    std::fs::read_link(&p).unwrap().display()
                ));
            } else if m.is_dir() {
                out.push(format!("{head} dir"));
                walk(base, &p, out);
            } else {
                out.push(format!("{head} {:?}", std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

/// The generation number the secrets link points at.
pub fn linked_generation(secrets_dir: &Path) -> Option<u64> {
    let target = std::fs::read_link(secrets_dir).ok()?;
    target.file_name()?.to_str()?.parse().ok()
}

/// Numbered entries of `<secrets-dir>.d`.
pub fn generations(secrets_dir: &Path) -> Vec<u64> {
    let mut d = secrets_dir.as_os_str().to_os_string();
    d.push(".d");
    let mut out: Vec<u64> = std::fs::read_dir(PathBuf::from(d))
        .map(|e| {
            e.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

pub fn dotd(secrets_dir: &Path) -> PathBuf {
    let mut d = secrets_dir.as_os_str().to_os_string();
    d.push(".d");
    PathBuf::from(d)
}
