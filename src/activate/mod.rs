//! `vars activate`: installs a machine's secrets on the machine itself, into
//! RAM, atomically, with their owners and modes; and `vars upload`, which
//! prepares a machine's key and partitioning secrets for nixos-anywhere.
//!
//! An activation is all or nothing. Every secret is decrypted (in parallel)
//! and every owner and group resolved before anything is written; any
//! problem refuses the whole run and the current generation stays as it is.
//! Then a complete new generation `<secrets-dir>.d/<N>` is written (files
//! created with `O_EXCL | O_NOFOLLOW`, owner and mode set on the descriptor
//! before the content) and the `<secrets-dir>` symlink is swapped to it with
//! one `rename`. See [`generations`] for the layout.

pub mod fsx;
pub mod generations;
pub mod ram;
pub mod secrets;
pub mod upload;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use zeroize::Zeroizing;

use crate::keys::Identities;
use crate::manifest::{Manifest, ManifestError, NeededFor};
use generations::{Changes, Layout, Snapshot};
use secrets::StoreRoot;

pub use ram::Storage;
pub use upload::{upload, UploadOptions, UploadReport};

/// The identities tried when no `--identity` is given: the machine's age key
/// and its ssh host key (as an ssh-ed25519 identity and as its ssh-to-age key).
pub const DEFAULT_IDENTITIES: [&str; 2] =
    ["/var/lib/vars/key.txt", "/etc/ssh/ssh_host_ed25519_key"];

/// Which secrets a run installs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// neededFor `activation` and `services`, into `/run/secrets`.
    Services,
    /// neededFor `users`, into `/run/secrets-for-users`, before users exist.
    Users,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Services => "services",
            Phase::Users => "users",
        }
    }

    /// The default secrets directory of the phase.
    pub fn default_dir(self) -> &'static str {
        match self {
            Phase::Services => "/run/secrets",
            Phase::Users => "/run/secrets-for-users",
        }
    }

    /// Whether this phase installs files needed for `n` (never `partitioning`).
    pub fn installs(self, n: NeededFor) -> bool {
        match self {
            Phase::Services => matches!(n, NeededFor::Activation | NeededFor::Services),
            Phase::Users => n == NeededFor::Users,
        }
    }
}

/// One reason an activation is refused: `machine: generator/file: cause`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub machine: String,
    pub generator: String,
    pub file: String,
    pub cause: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}/{}: {}",
            self.machine, self.generator, self.file, self.cause
        )
    }
}

fn refused(what: &str, problems: &[Problem], unchanged: &str) -> String {
    let mut s = format!(
        "{what} refused ({} problem{}); {unchanged}:",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        s.push_str("\n  ");
        s.push_str(&p.to_string());
    }
    s
}

/// Why `activate`, `rollback` or `upload` did nothing.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// Secrets that cannot be decrypted, owners that do not exist, …: every one of them.
    #[error("{}", refused(.what, .problems, .unchanged))]
    Refused {
        what: String,
        problems: Vec<Problem>,
        unchanged: String,
    },
    #[error("no identity to decrypt {machine}'s secrets: none of these could be read: {}; pass --identity FILE (an age key file or an OpenSSH ed25519 private key)", .tried.join(", "))]
    NoIdentity { machine: String, tried: Vec<String> },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("unknown machine {0:?}: the configuration declares {1}")]
    UnknownMachine(String, String),
    #[error("no vars store in {0}: expected {0}/sops (or a sops/ directory itself, with machines/ or shared/ in it)")]
    NoStore(String),
    #[error("{0}")]
    Setup(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl ActivateError {
    pub fn io(path: &Path, source: std::io::Error) -> ActivateError {
        ActivateError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// What `vars activate` was asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    pub machine: String,
    /// The manifest (`.json`, `.nix` or `REF#ATTR`).
    pub config: String,
    /// The repository holding `sops/` (or that `sops/` directory itself).
    pub store: PathBuf,
    /// Identity files; empty: [`DEFAULT_IDENTITIES`].
    pub identities: Vec<PathBuf>,
    pub secrets_dir: PathBuf,
    pub phase: Phase,
    /// Generations kept, the current one included (at least 1).
    pub keep_generations: usize,
    pub dry_run: bool,
    pub allow_disk: bool,
}

/// The result of a run: what changed against the previous generation.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub machine: String,
    pub phase: String,
    pub secrets_dir: String,
    /// The generation the secrets directory points at now (none for a dry run).
    pub generation: Option<u64>,
    /// The one it pointed at before.
    pub previous: Option<u64>,
    pub dry_run: bool,
    pub rollback: bool,
    /// ramfs, or what the secrets are on instead.
    pub storage: Option<String>,
    /// Installed file names, `<generator>.<file>`.
    pub files: Vec<String>,
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// The union of the restartUnits of every added, changed or removed file.
    pub restart_units: Vec<String>,
    /// Generations removed by pruning.
    pub pruned: Vec<u64>,
}

impl Report {
    fn new(machine: &str, phase: &str, layout: &Layout, snap: &Snapshot, ch: Changes) -> Report {
        Report {
            machine: machine.to_string(),
            phase: phase.to_string(),
            secrets_dir: layout.link.display().to_string(),
            generation: None,
            previous: None,
            dry_run: false,
            rollback: false,
            storage: None,
            files: snap.files.keys().cloned().collect(),
            added: ch.added,
            changed: ch.changed,
            removed: ch.removed,
            restart_units: ch.restart_units,
            pruned: Vec::new(),
        }
    }

    /// True when the run changed nothing a service could see.
    pub fn unchanged(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// Reads the identity files (`--identity`, else the defaults). A file that
/// cannot be read is skipped; none readable is an error naming every path.
pub fn load_identities(machine: &str, explicit: &[PathBuf]) -> Result<Identities, ActivateError> {
    let paths: Vec<PathBuf> = if explicit.is_empty() {
        DEFAULT_IDENTITIES.iter().map(PathBuf::from).collect()
    } else {
        explicit.to_vec()
    };
    let mut ids = Identities::default();
    let mut tried = Vec::new();
    for path in &paths {
        let shown = path.display().to_string();
        match std::fs::read(path) {
            Err(e) => {
                let why = match e.kind() {
                    std::io::ErrorKind::NotFound => "not found".to_string(),
                    std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                    _ => e.to_string(),
                };
                tried.push(format!("{shown} ({why})"));
            }
            Ok(bytes) => {
                let bytes = Zeroizing::new(bytes);
                match ids.add_text(&shown, &bytes) {
                    Ok(0) => tried.push(format!("{shown} (no key in it)")),
                    Ok(_) => tried.push(shown),
                    Err(e) => {
                        eprintln!("vars: warning: skipping identity {e}");
                        tried.push(format!("{shown} (unusable)"));
                    }
                }
            }
        }
    }
    ids.tried = tried.clone();
    if ids.is_empty() {
        return Err(ActivateError::NoIdentity {
            machine: machine.to_string(),
            tried,
        });
    }
    Ok(ids)
}

/// The manifest's machine, or an error listing the machines it declares.
fn machine<'a>(
    manifest: &'a Manifest,
    name: &str,
) -> Result<&'a crate::manifest::Machine, ActivateError> {
    manifest.machines.get(name).ok_or_else(|| {
        let known: Vec<&str> = manifest.machines.keys().map(String::as_str).collect();
        ActivateError::UnknownMachine(
            name.to_string(),
            if known.is_empty() {
                "no machines".into()
            } else {
                known.join(", ")
            },
        )
    })
}

fn locate_store(dir: &Path) -> Result<StoreRoot, ActivateError> {
    StoreRoot::locate(dir).ok_or_else(|| ActivateError::NoStore(dir.display().to_string()))
}

/// A non-root run must be able to write where the secrets directory lives.
fn check_writable(layout: &Layout) -> Result<(), ActivateError> {
    if nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let mut probe = layout.parent.as_path();
    while !probe.exists() {
        match probe.parent() {
            Some(p) => probe = p,
            None => break,
        }
    }
    if nix::unistd::access(probe, nix::unistd::AccessFlags::W_OK).is_err() {
        return Err(ActivateError::Setup(format!(
            "vars activate is not running as root and cannot write {} (for {}): run it as root, or pass --secrets-dir DIR in a directory you can write (and --allow-disk, since only root can mount a ramfs)",
            probe.display(),
            layout.link.display()
        )));
    }
    Ok(())
}

fn unchanged_note(layout: &Layout, current: Option<u64>) -> String {
    match current {
        Some(n) => format!(
            "nothing was written and {} still points at generation {n}",
            layout.link.display()
        ),
        None => "nothing was written".to_string(),
    }
}

/// The generation currently linked, read without writing anything.
fn peek_current(layout: &Layout) -> Result<(Option<u64>, Option<Snapshot>), ActivateError> {
    let parent = match layout.open_parent() {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, None)),
        Err(e) => return Err(ActivateError::io(&layout.parent, e)),
    };
    let current = layout
        .current(&parent)
        .map_err(|e| ActivateError::io(&layout.link, e))?;
    let Some(n) = current else {
        return Ok((None, None));
    };
    let dotd = match parent.open_dir(&layout.dotd_name) {
        Ok(d) => d,
        Err(_) => return Ok((current, None)),
    };
    let snap =
        generations::read_generation(&dotd, n).map_err(|e| ActivateError::io(&layout.dotd(), e))?;
    Ok((current, snap))
}

/// `vars activate`.
pub fn activate(opts: &Options) -> Result<Report, ActivateError> {
    let layout =
        Layout::new(&opts.secrets_dir).map_err(|e| ActivateError::io(&opts.secrets_dir, e))?;
    if !opts.dry_run {
        check_writable(&layout)?;
    }
    let ids = load_identities(&opts.machine, &opts.identities)?;
    let manifest = Manifest::load(&opts.config)?;
    let mach = machine(&manifest, &opts.machine)?;
    let store = locate_store(&opts.store)?;
    let wanted = secrets::select(mach, |n| opts.phase.installs(n));
    let prepared = secrets::prepare(&opts.machine, mach, wanted, &store, &ids, opts.phase);
    drop(ids);
    let prepared = match prepared {
        Ok(p) => p,
        Err(problems) => {
            let (current, _) = peek_current(&layout).unwrap_or((None, None));
            return Err(ActivateError::Refused {
                what: format!("activation of {}", opts.machine),
                problems,
                unchanged: unchanged_note(&layout, current),
            });
        }
    };
    let new = Snapshot::from_prepared(&opts.machine, prepared);
    let phase = opts.phase.as_str();

    if opts.dry_run {
        let (current, old) = peek_current(&layout)?;
        let mut report = Report::new(
            &opts.machine,
            phase,
            &layout,
            &new,
            generations::compare(old.as_ref(), &new),
        );
        report.dry_run = true;
        report.previous = current;
        return Ok(report);
    }

    // Where the generations go: created, and RAM-only.
    let io_parent = |e| ActivateError::io(&layout.parent, e);
    std::fs::create_dir_all(&layout.parent).map_err(io_parent)?;
    let parent = layout.open_parent().map_err(io_parent)?;
    // One run at a time per directory, from before the mount to the end.
    let lock = layout.open_parent().map_err(io_parent)?;
    lock.lock().map_err(io_parent)?;
    let dotd_path = layout.dotd();
    let io_dotd = |e| ActivateError::io(&dotd_path, e);
    match parent.stat(&layout.dotd_name).map_err(io_dotd)? {
        None => {
            parent.mkdir(&layout.dotd_name, 0o751).map_err(io_dotd)?;
            parent
                .open_dir(&layout.dotd_name)
                .and_then(|d| d.chmod(0o751))
                .map_err(io_dotd)?;
        }
        Some((fsx::EntryKind::Dir, _)) => {}
        Some(_) => {
            return Err(ActivateError::Setup(format!(
                "{} exists and is not a directory (a symlink is not followed); move it away first",
                dotd_path.display()
            )))
        }
    }
    let storage = ram::ensure(&layout, &parent, opts.allow_disk)?;
    let dotd = parent.open_dir(&layout.dotd_name).map_err(io_dotd)?;

    let current = layout
        .current(&parent)
        .map_err(|e| ActivateError::Setup(e.to_string()))?;
    let old = match current {
        Some(n) => generations::read_generation(&dotd, n).map_err(io_dotd)?,
        None => None,
    };
    generations::clean_leftovers(&dotd).map_err(io_dotd)?;
    let nums = generations::numbers(&dotd).map_err(io_dotd)?;
    let n = nums
        .iter()
        .copied()
        .chain(current)
        .max()
        .unwrap_or(0)
        .checked_add(1)
        .ok_or_else(|| {
            ActivateError::Setup(format!(
                "{}: no generation number is left after {}; remove the entries there",
                dotd_path.display(),
                u64::MAX
            ))
        })?;

    let changes = generations::compare(old.as_ref(), &new);
    let written = generations::write_generation(&dotd, n, &new, phase)
        .map_err(io_dotd)
        .and_then(|()| install_path_links(&layout, &new, &opts.machine));
    if let Err(e) = written {
        let _ = generations::remove_generation(&dotd, n);
        let _ = generations::clean_leftovers(&dotd);
        return Err(match e {
            ActivateError::Refused { what, problems, .. } => ActivateError::Refused {
                what,
                problems,
                unchanged: unchanged_note(&layout, current),
            },
            other => ActivateError::Setup(match current {
                Some(c) => format!(
                    "{other}; the new generation was discarded and {} still points at generation {c}",
                    layout.link.display()
                ),
                None => format!("{other}; the new generation was discarded"),
            }),
        });
    }
    layout
        .swap_link(&parent, n)
        .map_err(|e| ActivateError::io(&layout.link, e))?;
    if let Some(old) = &old {
        remove_stale_path_links(&layout, old, &new);
    }
    let pruned = generations::prune(&dotd, n, opts.keep_generations.max(1)).map_err(io_dotd)?;

    let mut report = Report::new(&opts.machine, phase, &layout, &new, changes);
    report.generation = Some(n);
    report.previous = current;
    report.storage = Some(storage.name().to_string());
    report.pruned = pruned;
    Ok(report)
}

/// Creates every `path` symlink of a generation; each failure is a problem.
fn install_path_links(
    layout: &Layout,
    snap: &Snapshot,
    machine: &str,
) -> Result<(), ActivateError> {
    let mut problems = Vec::new();
    for (name, f) in &snap.files {
        if let Some(path) = &f.info.path {
            if let Err(e) =
                generations::install_path_link(Path::new(path), &layout.installed_path(name))
            {
                problems.push(Problem {
                    machine: machine.to_string(),
                    generator: f.info.generator.clone(),
                    file: f.info.file.clone(),
                    cause: format!("path {path}: {e}"),
                });
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ActivateError::Refused {
            what: format!("activation of {machine}"),
            problems,
            unchanged: String::new(),
        })
    }
}

/// Removes the `path` symlinks of files the new generation no longer has
/// there (only symlinks still pointing at vars' file).
fn remove_stale_path_links(layout: &Layout, old: &Snapshot, new: &Snapshot) {
    for (name, f) in &old.files {
        let Some(path) = &f.info.path else { continue };
        let still = new
            .files
            .get(name)
            .is_some_and(|n| n.info.path.as_deref() == Some(path.as_str()));
        if !still {
            if let Err(e) =
                generations::remove_path_link(Path::new(path), &layout.installed_path(name))
            {
                eprintln!("vars: warning: removing the stale symlink {path}: {e}");
            }
        }
    }
}

/// `vars activate --rollback`: points the secrets directory back at the
/// newest kept generation before the current one, then removes the
/// generations after it (a rollback undoes; the next activation numbers on
/// from the one now linked).
pub fn rollback(secrets_dir: &Path, phase: Phase) -> Result<Report, ActivateError> {
    let layout = Layout::new(secrets_dir).map_err(|e| ActivateError::io(secrets_dir, e))?;
    check_writable(&layout)?;
    let parent = layout
        .open_parent()
        .map_err(|e| ActivateError::io(&layout.parent, e))?;
    let dotd_path = layout.dotd();
    let io_dotd = |e| ActivateError::io(&dotd_path, e);
    let lock = layout
        .open_parent()
        .map_err(|e| ActivateError::io(&layout.parent, e))?;
    lock.lock()
        .map_err(|e| ActivateError::io(&layout.parent, e))?;
    let dotd = parent.open_dir(&layout.dotd_name).map_err(io_dotd)?;
    let current = layout
        .current(&parent)
        .map_err(|e| ActivateError::Setup(e.to_string()))?
        .ok_or_else(|| {
            ActivateError::Setup(format!(
                "{} does not point at a generation: nothing to roll back",
                layout.link.display()
            ))
        })?;
    let nums = generations::numbers(&dotd).map_err(io_dotd)?;
    let mut target = None;
    for &n in nums.iter().rev().filter(|&&n| n < current) {
        if let Some(snap) = generations::read_generation(&dotd, n).map_err(io_dotd)? {
            target = Some((n, snap));
            break;
        }
    }
    let Some((n, new)) = target else {
        return Err(ActivateError::Setup(format!(
            "no generation before {current} is kept in {}: nothing to roll back to (activate with --keep-generations 2 or more to keep one)",
            dotd_path.display()
        )));
    };
    let old = generations::read_generation(&dotd, current).map_err(io_dotd)?;
    let changes = generations::compare(old.as_ref(), &new);
    install_path_links(&layout, &new, &new.machine)?;
    layout
        .swap_link(&parent, n)
        .map_err(|e| ActivateError::io(&layout.link, e))?;
    if let Some(old) = &old {
        remove_stale_path_links(&layout, old, &new);
    }
    // A rollback undoes: the generations after the one now linked go.
    let mut pruned = Vec::new();
    for later in nums.into_iter().filter(|&m| m > n) {
        generations::remove_generation(&dotd, later).map_err(io_dotd)?;
        pruned.push(later);
    }
    let mut report = Report::new(&new.machine.clone(), phase.as_str(), &layout, &new, changes);
    report.generation = Some(n);
    report.previous = Some(current);
    report.rollback = true;
    report.pruned = pruned;
    Ok(report)
}
