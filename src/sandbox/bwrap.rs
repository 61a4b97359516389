//! Finding bubblewrap and building its argument list.
//!
//! The sandbox's root is an empty tmpfs (bwrap's default), made read-only once everything is
//! mounted, holding:
//!
//! * the host's `/usr`, `/bin`, `/sbin`, `/lib`, `/lib64`, `/lib32`, `/libx32` read-only (a
//!   top-level symlink such as `/bin -> usr/bin` is recreated as the same symlink);
//! * `/nix/store` read-only when it exists, and `/run/current-system` (a symlink into the store
//!   on NixOS) so `/run/current-system/sw/bin` works;
//! * an `/etc` holding only what programs such as `ssh-keygen` and `openssl` need (see
//!   [`ETC_ENTRIES`]), and of that only what every host user may read: never `/etc/ssh` (host
//!   keys), `/etc/shadow`, `/etc/nix` (may hold access tokens), private-key directories or
//!   anything else. It is one read-only bind of a [`PrivateEtc`] copy made once per
//!   [`Sandbox`](super::Sandbox), rather than a bind per entry on every run;
//! * a fresh `/proc` (for the new PID namespace);
//! * a minimal `/dev`: the host's `null`, `zero`, `random` and `urandom` nodes, and the
//!   `fd`, `stdin`, `stdout`, `stderr` symlinks into `/proc/self/fd` (bash's process
//!   substitution needs `/dev/fd`). No `pts`, no `tty`. (`--dev /dev` would add a tmpfs, a
//!   devpts instance and more binds to every run.);
//! * the run's working directory, read-write, at its real absolute path (so `$in`, `$out`...
//!   mean the same inside and outside), with `in/` and `prompts/` bound read-only on top;
//! * `/tmp` as a symlink to the run's `tmp/` (`$TMPDIR`), so scripts that hard-code `/tmp`
//!   write into the private, removed-afterwards tmpfs directory too (an empty tmpfs instead
//!   when the working directory itself lives under `/tmp`); `/dev/shm` points at `/tmp`
//!   unless the working directory lives under `/dev`.
//!
//! Nothing else of the host is visible: not the repository, `$HOME`, `/root`, `/run/user`,
//! `/var` or any key file.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::workdir;
use super::SandboxError;

/// Top-level host directories mounted read-only (or recreated as symlinks).
const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32",
];

/// The entries of the host's `/etc` reproduced in the sandbox's, when they exist: user and
/// group databases, name service and resolver configuration (for `getpwuid`, `localhost`),
/// the dynamic loader's cache, the time zone, the OS identification, Debian's alternatives
/// (`/usr/bin/x -> /etc/alternatives/x`), certificates and OpenSSL configuration, and NixOS's
/// `/etc/static` (into which most NixOS `/etc` entries are symlinks).
pub(crate) const ETC_ENTRIES: &[&str] = &[
    "passwd",
    "group",
    "nsswitch.conf",
    "host.conf",
    "hosts",
    "services",
    "protocols",
    "gai.conf",
    "ld.so.cache",
    "localtime",
    "os-release",
    "alternatives",
    "ssl",
    "pki",
    "crypto-policies",
    "static",
];

/// Directories hidden under an empty tmpfs because they may hold private keys.
const MASKED: &[&str] = &[
    "/etc/ssl/private",
    "/etc/pki/tls/private",
    "/etc/pki/CA/private",
];

/// Device nodes bound from the host's `/dev` when they are character devices there.
const DEV_NODES: &[&str] = &["null", "zero", "random", "urandom"];

/// Fixed places looked at for `bwrap` after `PATH`.
const BWRAP_FALLBACKS: &[&str] = &[
    "/usr/bin/bwrap",
    "/usr/local/bin/bwrap",
    "/run/current-system/sw/bin/bwrap",
    "/nix/var/nix/profiles/default/bin/bwrap",
];

/// Finds an executable `bwrap` on `path_var` (a `PATH`-style list), then in a few fixed places.
pub(crate) fn find_bwrap(path_var: Option<&OsStr>) -> Option<PathBuf> {
    find_bwrap_in(path_var, BWRAP_FALLBACKS)
}

/// [`find_bwrap`] with explicit fallback locations.
pub(crate) fn find_bwrap_in(path_var: Option<&OsStr>, fallbacks: &[&str]) -> Option<PathBuf> {
    let from_path = path_var
        .into_iter()
        .flat_map(std::env::split_paths)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join("bwrap"));
    let fallbacks = fallbacks.iter().map(PathBuf::from);
    from_path.chain(fallbacks).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A bwrap argument list under construction.
#[derive(Debug, Default, Clone)]
pub(crate) struct Args(Vec<OsString>);

impl Args {
    fn flag(&mut self, flag: &str) {
        self.0.push(OsString::from(flag));
    }

    fn pair(&mut self, flag: &str, a: impl AsRef<OsStr>, b: impl AsRef<OsStr>) {
        self.0.push(OsString::from(flag));
        self.0.push(a.as_ref().to_owned());
        self.0.push(b.as_ref().to_owned());
    }

    fn one(&mut self, flag: &str, a: impl AsRef<OsStr>) {
        self.0.push(OsString::from(flag));
        self.0.push(a.as_ref().to_owned());
    }

    /// Makes host `path` visible at the same place: a symlink is recreated with the same
    /// target, anything else is bind-mounted read-only. Missing paths are skipped.
    fn host(&mut self, path: &Path) {
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                if let Ok(target) = fs::read_link(path) {
                    self.pair("--symlink", target, path);
                }
            }
            Ok(_) => self.pair("--ro-bind", path, path),
            Err(_) => {}
        }
    }

    /// The arguments.
    pub(crate) fn into_vec(self) -> Vec<OsString> {
        self.0
    }
}

/// Limits on what [`PrivateEtc`] copies from one directory tree of the host's `/etc`; a tree
/// beyond them is bound read-only instead.
const COPY_MAX_BYTES: u64 = 32 << 20;
const COPY_MAX_ENTRIES: usize = 20_000;

/// The sandbox's `/etc`: a directory (on the work tmpfs) reproducing the host's
/// [`ETC_ENTRIES`], prepared once per [`Sandbox`](super::Sandbox) and removed on drop.
///
/// Regular files are copied and symlinks recreated with the same target (which resolves
/// inside the sandbox, into `/usr`, `/etc/static` or the store). Directories are copied
/// recursively the same way, which costs a few milliseconds once instead of a bind mount per
/// directory on every run. Only what every user of the host may read is copied: files must be
/// world-readable, directories world-readable and searchable, and the private-key directories
/// in [`MASKED`] are left out. A tree too large to copy is bound read-only instead, with the
/// directories of [`MASKED`] inside it hidden under an empty tmpfs.
#[derive(Debug)]
pub(crate) struct PrivateEtc {
    root: PathBuf,
    /// Host `/etc` directories to bind read-only at the same place.
    dirs: Vec<PathBuf>,
    /// Held while the copy is in use (see [`workdir::remove_stale`]).
    _hold: workdir::Hold,
}

impl PrivateEtc {
    /// Builds the directory under `base` from the host's `/etc`.
    pub(crate) fn create(base: &Path) -> Result<PrivateEtc, SandboxError> {
        Self::create_from(base, Path::new("/etc"))
    }

    /// Builds the directory under `base` from `host_etc`'s [`ETC_ENTRIES`] (`host_etc` stands
    /// for `/etc`: tests pass a fake one).
    pub(crate) fn create_from(base: &Path, host_etc: &Path) -> Result<PrivateEtc, SandboxError> {
        let (root, hold) = workdir::create_held_dir(base, "vars-etc-").map_err(|e| {
            SandboxError::io(format!("creating a directory in {}", base.display()), e)
        })?;
        let mut etc = PrivateEtc {
            root,
            dirs: Vec::new(),
            _hold: hold,
        };
        let masked: Vec<PathBuf> = MASKED
            .iter()
            .filter_map(|m| Path::new(m).strip_prefix("/etc").ok())
            .map(|rel| host_etc.join(rel))
            .collect();
        for entry in ETC_ENTRIES {
            let host = host_etc.join(entry);
            let copy = etc.root.join(entry);
            let context = |e: io::Error| {
                SandboxError::io(format!("copying {} for the sandbox", host.display()), e)
            };
            let Ok(meta) = fs::symlink_metadata(&host) else {
                continue;
            };
            if meta.file_type().is_dir() {
                if !world_readable_dir(&meta) {
                    continue;
                }
                let mut budget = Budget::default();
                let complete = copy_tree(&host, &copy, &masked, &mut budget).map_err(context)?;
                if !complete {
                    workdir::remove_tree(&copy);
                    workdir::make_private_dir(&copy)?;
                    etc.dirs.push(Path::new("/etc").join(entry));
                }
            } else {
                copy_entry(&host, &meta, &copy).map_err(context)?;
            }
        }
        Ok(etc)
    }

    /// The directory bound at `/etc`.
    pub(crate) fn path(&self) -> &Path {
        &self.root
    }
}

impl Drop for PrivateEtc {
    fn drop(&mut self) {
        workdir::remove_tree(&self.root);
    }
}

/// What a [`copy_tree`] has used so far.
#[derive(Default)]
struct Budget {
    bytes: u64,
    entries: usize,
}

fn world_readable_dir(meta: &fs::Metadata) -> bool {
    meta.permissions().mode() & 0o005 == 0o005
}

/// Copies a symlink (recreated with the same target) or a world-readable regular file;
/// skips anything else.
fn copy_entry(host: &Path, meta: &fs::Metadata, copy: &Path) -> io::Result<()> {
    let kind = meta.file_type();
    if kind.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(host)?, copy)
    } else if kind.is_file() && meta.permissions().mode() & 0o004 != 0 {
        fs::copy(host, copy).map(drop)
    } else {
        Ok(())
    }
}

/// Copies the tree under `src` to `dst` (see [`PrivateEtc`] for what is copied). Returns
/// `false`, leaving a partial copy, when the tree exceeds [`COPY_MAX_BYTES`] or
/// [`COPY_MAX_ENTRIES`].
fn copy_tree(src: &Path, dst: &Path, masked: &[PathBuf], budget: &mut Budget) -> io::Result<bool> {
    use std::os::unix::fs::DirBuilderExt;
    let mut stack = vec![(src.to_path_buf(), dst.to_path_buf())];
    while let Some((from, to)) = stack.pop() {
        fs::DirBuilder::new().mode(0o755).create(&to)?;
        for entry in fs::read_dir(&from)? {
            let entry = entry?;
            let host = entry.path();
            let copy = to.join(entry.file_name());
            let meta = fs::symlink_metadata(&host)?;
            budget.entries += 1;
            if budget.entries > COPY_MAX_ENTRIES {
                return Ok(false);
            }
            if meta.file_type().is_dir() {
                if world_readable_dir(&meta) && !masked.contains(&host) {
                    stack.push((host, copy));
                }
                continue;
            }
            if meta.file_type().is_file() {
                budget.bytes = budget.bytes.saturating_add(meta.len());
                if budget.bytes > COPY_MAX_BYTES {
                    return Ok(false);
                }
            }
            copy_entry(&host, &meta, &copy)?;
        }
    }
    Ok(true)
}

/// The part of the argument list that is the same for every run: namespaces, process
/// options and the host filesystem view. With `share_net`, the network namespace is not
/// unshared (the caller has moved bwrap into the shared empty one). `dev_shm` says whether to
/// make `/dev/shm` a symlink to `/tmp` (not possible when the work directories live under
/// `/dev`).
pub(crate) fn system_args(share_net: bool, etc: &PrivateEtc, dev_shm: bool) -> Args {
    let mut args = Args::default();
    args.flag("--unshare-all");
    if share_net {
        args.flag("--share-net");
    }
    args.flag("--die-with-parent");
    args.flag("--new-session");
    args.flag("--clearenv");
    args.one("--cap-drop", "ALL");
    for dir in SYSTEM_DIRS {
        args.host(Path::new(dir));
    }
    if Path::new("/nix/store").is_dir() {
        args.pair("--ro-bind", "/nix/store", "/nix/store");
    }
    args.host(Path::new("/run/current-system"));
    args.pair("--ro-bind", etc.path(), "/etc");
    for dir in &etc.dirs {
        args.pair("--ro-bind", dir, dir);
    }
    for masked in MASKED {
        let inside_bound = etc.dirs.iter().any(|d| Path::new(masked).starts_with(d));
        if inside_bound && Path::new(masked).is_dir() {
            args.one("--tmpfs", masked);
        }
    }
    args.one("--proc", "/proc");
    let dev = Path::new("/dev");
    for node in DEV_NODES {
        let host = dev.join(node);
        let is_char = fs::metadata(&host).is_ok_and(|m| m.file_type().is_char_device());
        if is_char {
            args.pair("--dev-bind", &host, &host);
        }
    }
    args.pair("--symlink", "/proc/self/fd", "/dev/fd");
    args.pair("--symlink", "/proc/self/fd/0", "/dev/stdin");
    args.pair("--symlink", "/proc/self/fd/1", "/dev/stdout");
    args.pair("--symlink", "/proc/self/fd/2", "/dev/stderr");
    if dev_shm {
        args.pair("--symlink", "/tmp", "/dev/shm");
    }
    args
}

/// The run's working directory as the per-run part of the argument list sees it.
pub(crate) struct RunMounts<'a> {
    /// The working directory, bound read-write.
    pub(crate) root: &'a Path,
    /// The directory holding `$in` and `$prompts`, bound read-only on top.
    pub(crate) read_only: &'a Path,
    /// `$TMPDIR`: the script's working directory, and the target of `/tmp`.
    pub(crate) tmp: &'a Path,
}

/// Appends the per-run part of the argument list to `args`, ending with `--` and `command`.
pub(crate) fn run_args(
    mut args: Args,
    mounts: &RunMounts<'_>,
    env: &[(&str, OsString)],
    command: &[OsString],
) -> Vec<OsString> {
    // When the working directory itself lives under /tmp (a private tmpfs mounted there),
    // /tmp cannot be a symlink: it becomes an empty tmpfs holding the working directory.
    let under_tmp = mounts.root.starts_with("/tmp");
    if under_tmp {
        args.one("--tmpfs", "/tmp");
    }
    args.pair("--bind", mounts.root, mounts.root);
    args.pair("--ro-bind", mounts.read_only, mounts.read_only);
    if !under_tmp {
        args.pair("--symlink", mounts.tmp, "/tmp");
    }
    args.one("--chdir", mounts.tmp);
    args.one("--remount-ro", "/");
    for (key, value) in env {
        args.pair("--setenv", key, value);
    }
    args.flag("--");
    let mut args = args.into_vec();
    args.extend(command.iter().cloned());
    args
}
