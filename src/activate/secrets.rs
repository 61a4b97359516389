//! Which of a machine's secrets a phase installs, and getting every one of
//! them ready — decrypted (in parallel) and its owner and group resolved —
//! before anything is written. Any failure is a [`Problem`]; all of them are
//! collected.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use zeroize::Zeroizing;

use super::{Phase, Problem};
use crate::keys::Identities;
use crate::manifest::{Class, FileDecl, Machine, NeededFor};
use crate::sops::{Format, SopsError, SopsFile};

/// Where the sealed files are: the `sops/` directory of a repository.
#[derive(Clone, Debug)]
pub struct StoreRoot {
    root: PathBuf,
}

impl StoreRoot {
    /// `dir` is a repository (holding `sops/`) or the `sops/` directory
    /// itself (as the NixOS module passes it, possibly a Nix store path).
    pub fn locate(dir: &Path) -> Option<StoreRoot> {
        let repo_form = dir.join("sops");
        if repo_form.is_dir() {
            return Some(StoreRoot { root: repo_form });
        }
        if dir.join("machines").is_dir() || dir.join("shared").is_dir() {
            return Some(StoreRoot {
                root: dir.to_path_buf(),
            });
        }
        None
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `machines/<m>/secrets/<gen>/<file>`, or `shared/secrets/<gen>/<file>`.
    pub fn secret(&self, machine: &str, shared: bool, gen: &str, file: &str) -> PathBuf {
        let owner = if shared {
            self.root.join("shared")
        } else {
            self.root.join("machines").join(machine)
        };
        owner.join("secrets").join(gen).join(file)
    }

    /// `machines/<m>/age-key`: the machine's age key, sealed to the admins.
    pub fn age_key(&self, machine: &str) -> PathBuf {
        self.root.join("machines").join(machine).join("age-key")
    }
}

/// One declared secret file to install.
#[derive(Clone, Debug)]
pub struct Wanted {
    pub generator: String,
    pub file: String,
    pub shared: bool,
    pub decl: FileDecl,
}

impl Wanted {
    /// The installed name, `<generator>.<file>`.
    pub fn name(&self) -> String {
        format!("{}.{}", self.generator, self.file)
    }
}

/// A secret ready to be written.
pub struct Prepared {
    pub wanted: Wanted,
    pub content: Zeroizing<Vec<u8>>,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// The machine's secret, deployed files whose `neededFor` matches.
pub fn select(machine: &Machine, wants: impl Fn(NeededFor) -> bool) -> Vec<Wanted> {
    let mut out = Vec::new();
    for (gen_name, gen) in &machine.generators {
        for (file_name, decl) in &gen.files {
            if decl.secret && decl.deploy && wants(decl.needed_for) {
                out.push(Wanted {
                    generator: gen_name.clone(),
                    file: file_name.clone(),
                    shared: gen.share,
                    decl: decl.clone(),
                });
            }
        }
    }
    out
}

/// Decrypts one sealed file; the error is the cause, for a [`Problem`].
pub fn decrypt_file(
    path: &Path,
    ids: &Identities,
    machine: &str,
) -> Result<Zeroizing<Vec<u8>>, String> {
    let shown = path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "missing from the store ({shown}): run `vars generate --machine {machine}`"
            ))
        }
        Err(e) => return Err(format!("{shown}: {e}")),
    };
    let sealed = SopsFile::parse(&bytes, Format::Binary, &shown).map_err(|e| e.to_string())?;
    sealed.decrypt_binary(ids).map_err(|e| match e {
        SopsError::NoMatchingIdentity {
            recipients, tried, ..
        } => format!(
            "no identity can decrypt {shown}: it is sealed to {}; identities tried: {}",
            recipients.join(", "),
            if tried.is_empty() {
                "none".to_string()
            } else {
                tried.join(", ")
            }
        ),
        other => other.to_string(),
    })
}

/// Decrypts every wanted file in parallel and resolves every owner and group.
/// Returns all of them, or every problem found.
pub fn prepare(
    machine_name: &str,
    machine: &Machine,
    wanted: Vec<Wanted>,
    store: &StoreRoot,
    ids: &Identities,
    phase: Phase,
) -> Result<Vec<Prepared>, Vec<Problem>> {
    let decrypted: Vec<Result<Zeroizing<Vec<u8>>, String>> = wanted
        .par_iter()
        .map(|w| {
            decrypt_file(
                &store.secret(machine_name, w.shared, &w.generator, &w.file),
                ids,
                machine_name,
            )
        })
        .collect();

    let mut problems = Vec::new();
    let problem = |w: &Wanted, cause: String| Problem {
        machine: machine_name.to_string(),
        generator: w.generator.clone(),
        file: w.file.clone(),
        cause,
    };

    // Two files must not land on the same name (`a.b`/`c` and `a`/`b.c`).
    let mut by_name: BTreeMap<String, Vec<&Wanted>> = BTreeMap::new();
    for w in &wanted {
        by_name.entry(w.name()).or_default().push(w);
    }
    for (name, ws) in &by_name {
        if ws.len() > 1 {
            for w in ws {
                problems.push(problem(
                    w,
                    format!("installed name {name} is shared by {} files", ws.len()),
                ));
            }
        }
    }

    let mut resolver = Resolver::new(phase, machine.class);
    let mut out = Vec::new();
    for (w, content) in wanted.iter().zip(decrypted) {
        let mut ok = true;
        let content = content.map_err(|c| {
            problems.push(problem(w, c));
            ok = false;
        });
        let uid = resolver.user(&w.decl.owner).map_err(|c| {
            problems.push(problem(w, c));
            ok = false;
        });
        let gid = resolver.group(&w.decl.group).map_err(|c| {
            problems.push(problem(w, c));
            ok = false;
        });
        if let Some(path) = &w.decl.path {
            if let Err(c) = check_path_option(path) {
                problems.push(problem(w, c));
                ok = false;
            }
        }
        if let (true, Ok(content), Ok(uid), Ok(gid)) = (ok, content, uid, gid) {
            out.push(Prepared {
                wanted: w.clone(),
                content,
                uid,
                gid,
                mode: w.decl.mode & 0o7777,
            });
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// The `path` option may replace a symlink, never anything else.
fn check_path_option(path: &str) -> Result<(), String> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(format!("path {path:?} is not absolute"));
    }
    match p.symlink_metadata() {
        Ok(m) if !m.file_type().is_symlink() => Err(format!(
            "path {path} exists and is not a symlink; vars only replaces its own symlinks there"
        )),
        _ => Ok(()),
    }
}

/// Owner and group names to numeric ids, each looked up once.
struct Resolver {
    phase: Phase,
    class: Class,
    root: bool,
    euid: u32,
    groups: Vec<u32>,
    users: HashMap<String, Result<u32, String>>,
    groups_by_name: HashMap<String, Result<u32, String>>,
}

impl Resolver {
    fn new(phase: Phase, class: Class) -> Resolver {
        let euid = nix::unistd::geteuid();
        let mut groups = supplementary_groups();
        groups.push(nix::unistd::getegid().as_raw());
        Resolver {
            phase,
            class,
            root: euid.is_root(),
            euid: euid.as_raw(),
            groups,
            users: HashMap::new(),
            groups_by_name: HashMap::new(),
        }
    }

    fn user(&mut self, name: &str) -> Result<u32, String> {
        let (phase, root, euid) = (self.phase, self.root, self.euid);
        let r = self
            .users
            .entry(name.to_string())
            .or_insert_with(|| lookup_user(name, phase))
            .clone()?;
        if !root && r != euid {
            return Err(format!(
                "owner {name} (uid {r}): only root can give files to another user, and vars activate runs as uid {euid}"
            ));
        }
        Ok(r)
    }

    fn group(&mut self, name: &str) -> Result<u32, String> {
        let (phase, class) = (self.phase, self.class);
        let r = self
            .groups_by_name
            .entry(name.to_string())
            .or_insert_with(|| lookup_group(name, phase, class))
            .clone()?;
        if !self.root && !self.groups.contains(&r) {
            return Err(format!(
                "group {name} (gid {r}): vars activate is not root and not a member of it"
            ));
        }
        Ok(r)
    }
}

#[cfg(not(target_vendor = "apple"))]
fn supplementary_groups() -> Vec<u32> {
    nix::unistd::getgroups()
        .unwrap_or_default()
        .into_iter()
        .map(|g| g.as_raw())
        .collect()
}

/// macOS has no usable getgroups(2) for this: a non-root run may only use its
/// own primary group (root runs are not checked).
#[cfg(target_vendor = "apple")]
fn supplementary_groups() -> Vec<u32> {
    Vec::new()
}

fn lookup_user(name: &str, phase: Phase) -> Result<u32, String> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(n);
    }
    if phase == Phase::Users {
        return if name == "root" {
            Ok(0)
        } else {
            Err(format!(
                "owner {name:?}: the users phase runs before users exist, so only root or a numeric uid can own its files"
            ))
        };
    }
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => Ok(u.uid.as_raw()),
        Ok(None) => Err(format!(
            "unknown owner {name:?}: no such user in the passwd database"
        )),
        Err(e) => Err(format!("owner {name:?}: looking it up failed: {e}")),
    }
}

fn lookup_group(name: &str, phase: Phase, class: Class) -> Result<u32, String> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(n);
    }
    if phase == Phase::Users {
        return if name == "root" || (class == Class::Darwin && name == "wheel") {
            Ok(0)
        } else {
            Err(format!(
                "group {name:?}: the users phase runs before groups exist, so only root or a numeric gid can own its files"
            ))
        };
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(format!(
            "unknown group {name:?}: no such group in the group database"
        )),
        Err(e) => Err(format!("group {name:?}: looking it up failed: {e}")),
    }
}
