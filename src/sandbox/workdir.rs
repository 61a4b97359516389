//! Private working directories on tmpfs.
//!
//! A [`WorkBase`] is chosen once per [`Sandbox`](super::Sandbox): the first tmpfs among
//! `$XDG_RUNTIME_DIR` and `/dev/shm`, or, failing both and when running as root, a private tmpfs
//! mounted for the purpose (unmounted again when the base is dropped). Each run then gets a
//! fresh [`WorkDir`] below it, with the layout
//!
//! ```text
//! <base>/vars-<pid>-XXXXXX/  0700, held (flock) by the vars process <pid>
//!     in/<dep>/<file>        inputs, 0600 files in 0700 directories
//!     prompts/<name>         prompt answers, 0600
//!     out/                   empty; the script's outputs
//!     tmp/                   $TMPDIR, empty
//!     home/                  $HOME, empty
//!     script                 the script text, 0600
//! ```
//!
//! which is removed when the `WorkDir` is dropped: after success, failure, or during a panic's
//! unwinding. A process killed with `SIGKILL` runs no destructor: the next [`WorkBase`] chosen
//! on the same tmpfs removes the directories that no process holds and whose creator is gone
//! ([`remove_stale`]), so decrypted inputs do not outlive a crash for longer than that.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::statfs::{statfs, TMPFS_MAGIC};
use zeroize::Zeroizing;

use super::SandboxError;

/// Where per-run working directories are created: a directory on a tmpfs.
#[derive(Debug)]
pub(crate) struct WorkBase {
    path: PathBuf,
    /// Set when the base is a tmpfs this process mounted itself.
    mount: Option<PrivateMount>,
}

impl WorkBase {
    /// The directories tried in order: `$XDG_RUNTIME_DIR` (when set to an absolute path), then
    /// `/dev/shm`.
    pub(crate) fn default_candidates() -> Vec<PathBuf> {
        let mut candidates = Vec::new();
        if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                candidates.push(dir);
            }
        }
        candidates.push(PathBuf::from("/dev/shm"));
        candidates
    }

    /// Picks the first candidate that is a writable directory on a tmpfs; if none is, and the
    /// process runs as root, mounts a private tmpfs (mode 0700) on a fresh directory under the
    /// system temporary directory.
    pub(crate) fn select(candidates: &[PathBuf]) -> Result<WorkBase, SandboxError> {
        let mut tried = Vec::new();
        for candidate in candidates {
            match usable_tmpfs_dir(candidate) {
                Ok(()) => {
                    remove_stale(candidate);
                    return Ok(WorkBase {
                        path: candidate.clone(),
                        mount: None,
                    });
                }
                Err(reason) => tried.push(format!("{}: {reason}", candidate.display())),
            }
        }
        if nix::unistd::geteuid().is_root() {
            match PrivateMount::create() {
                Ok(mount) => {
                    return Ok(WorkBase {
                        path: mount.mountpoint.clone(),
                        mount: Some(mount),
                    })
                }
                Err(reason) => tried.push(format!("mounting a private tmpfs: {reason}")),
            }
        } else {
            tried.push(String::from(
                "mounting a private tmpfs: not attempted, needs root",
            ));
        }
        Err(SandboxError::NoTmpfs {
            tried: tried.join("; "),
        })
    }

    /// The base directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the base is a tmpfs mounted by this process.
    pub(crate) fn is_private_mount(&self) -> bool {
        self.mount.is_some()
    }
}

/// Checks that `dir` is a directory on a tmpfs in which a private directory can be created.
fn usable_tmpfs_dir(dir: &Path) -> Result<(), String> {
    let meta = fs::metadata(dir).map_err(|e| e.to_string())?;
    if !meta.is_dir() {
        return Err(String::from("not a directory"));
    }
    let magic = fs_magic(dir).map_err(|e| e.to_string())?;
    if magic != tmpfs_magic() {
        return Err(format!("not a tmpfs (filesystem magic {magic:#x})"));
    }
    let probe = tempfile::Builder::new()
        .prefix("vars-probe-")
        .tempdir_in(dir)
        .map_err(|e| format!("not writable: {e}"))?;
    probe.close().map_err(|e| format!("not writable: {e}"))?;
    Ok(())
}

/// The filesystem type (`statfs.f_type`) of the filesystem holding `path`.
// `f_type`'s width differs between targets; the conversion is a no-op only on some.
#[allow(clippy::useless_conversion)]
pub(crate) fn fs_magic(path: &Path) -> io::Result<i64> {
    let stat = statfs(path).map_err(io::Error::from)?;
    Ok(i64::from(stat.filesystem_type().0))
}

/// `TMPFS_MAGIC`, as an `i64` comparable with [`fs_magic`].
#[allow(clippy::useless_conversion)]
pub(crate) fn tmpfs_magic() -> i64 {
    i64::from(TMPFS_MAGIC.0)
}

/// A tmpfs this process mounted; unmounted (lazily) and its mount point removed on drop.
#[derive(Debug)]
struct PrivateMount {
    mountpoint: PathBuf,
}

impl PrivateMount {
    fn create() -> Result<PrivateMount, String> {
        use nix::mount::{mount, MsFlags};
        let mountpoint = tempfile::Builder::new()
            .prefix("vars-tmpfs-")
            .tempdir()
            .map_err(|e| format!("creating a mount point: {e}"))?
            .keep();
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        if let Err(errno) = mount(
            Some("tmpfs"),
            &mountpoint,
            Some("tmpfs"),
            flags,
            Some("mode=0700"),
        ) {
            let _ = fs::remove_dir(&mountpoint);
            return Err(format!("mount: {errno}"));
        }
        let mounted = PrivateMount { mountpoint };
        match fs_magic(&mounted.mountpoint) {
            Ok(magic) if magic == tmpfs_magic() => Ok(mounted),
            Ok(magic) => Err(format!("mounted, but statfs reports magic {magic:#x}")),
            Err(e) => Err(format!("statfs after mounting: {e}")),
        }
    }
}

impl Drop for PrivateMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH);
        let _ = fs::remove_dir(&self.mountpoint);
    }
}

/// A directory this process holds: an exclusive `flock` on the directory itself, released
/// when the process ends, however it ends. A `vars-*` directory under a work base that no
/// process holds was left by a process that was killed (it may hold decrypted inputs), and
/// [`remove_stale`] removes it.
#[derive(Debug)]
pub(crate) struct Hold {
    _lock: Flock<File>,
}

/// Creates `<base>/<prefix><pid>-XXXXXX` (0700) and holds it. Between its creation and the
/// lock the directory is not held yet, but its creator, named by the pid, is alive: so
/// [`remove_stale`] leaves it alone.
pub(crate) fn create_held_dir(base: &Path, prefix: &str) -> io::Result<(PathBuf, Hold)> {
    let path = tempfile::Builder::new()
        .prefix(&format!("{prefix}{}-", std::process::id()))
        .permissions(fs::Permissions::from_mode(0o700))
        .tempdir_in(base)?
        .keep();
    let undo = |e: io::Error| {
        let _ = fs::remove_dir(&path);
        e
    };
    let dir = File::open(&path).map_err(undo)?;
    let lock = Flock::lock(dir, FlockArg::LockExclusiveNonblock)
        .map_err(|(_, errno)| undo(io::Error::from(errno)))?;
    Ok((path, Hold { _lock: lock }))
}

/// The creator's pid in a name made by [`create_held_dir`]: exactly `vars-<pid>-XXXXXX` or
/// `vars-etc-<pid>-XXXXXX` (six random alphanumerics). Anything else is not ours.
fn creator_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix("vars-")?;
    let rest = rest.strip_prefix("etc-").unwrap_or(rest);
    let (pid, random) = rest.split_once('-')?;
    let digits = !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit());
    let random_ok = random.len() == 6 && random.bytes().all(|b| b.is_ascii_alphanumeric());
    if !digits || !random_ok {
        return None;
    }
    pid.parse().ok()
}

/// Removes the directories [`create_held_dir`] made under `base` (named exactly
/// `vars-<pid>-XXXXXX` or `vars-etc-<pid>-XXXXXX`) that belong to this user, that no process
/// holds and whose creator is gone: working directories and `/etc` copies of vars processes
/// that were killed (a `SIGKILL` runs no destructor). Nothing else in `base` is touched.
/// Best effort.
pub(crate) fn remove_stale(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    let me = nix::unistd::geteuid().as_raw();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(creator_pid) else {
            continue;
        };
        let path = entry.path();
        let Ok(dir) = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
        else {
            continue;
        };
        if dir.metadata().map_or(true, |m| m.uid() != me) {
            continue;
        }
        let Ok(_held) = Flock::lock(dir, FlockArg::LockExclusiveNonblock) else {
            continue; // in use
        };
        let creator_gone = matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        );
        if creator_gone {
            remove_tree(&path);
        }
    }
}

/// One run's private working directory; removed with everything in it on drop.
#[derive(Debug)]
pub(crate) struct WorkDir {
    root: PathBuf,
    _hold: Hold,
}

impl WorkDir {
    /// Creates `vars-<pid>-XXXXXX` (0700, held) under `base` with empty `in/`, `out/`, `prompts/`, `tmp/`
    /// and `home/`, after checking with statfs that it is on a tmpfs.
    pub(crate) fn create(base: &Path) -> Result<WorkDir, SandboxError> {
        let (root, hold) = create_held_dir(base, "vars-").map_err(|e| {
            SandboxError::io(
                format!("creating a working directory in {}", base.display()),
                e,
            )
        })?;
        // From here on, dropping `work` removes the directory.
        let work = WorkDir { root, _hold: hold };
        // The mode given at creation is filtered by the umask: set it explicitly.
        fs::set_permissions(&work.root, fs::Permissions::from_mode(0o700))
            .map_err(|e| SandboxError::io(format!("chmod {}", work.root.display()), e))?;
        let magic = fs_magic(&work.root)
            .map_err(|e| SandboxError::io(format!("statfs {}", work.root.display()), e))?;
        if magic != tmpfs_magic() {
            return Err(SandboxError::NotTmpfs {
                path: work.root.clone(),
                magic,
            });
        }
        for dir in [
            work.read_only(),
            work.inputs(),
            work.out(),
            work.prompts(),
            work.tmp(),
            work.home(),
        ] {
            make_private_dir(&dir)?;
        }
        Ok(work)
    }

    /// The run's directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// What the script may read but not change: `$in` and `$prompts`, under one directory
    /// so the sandbox makes both read-only with one bind mount (each costs bubblewrap a
    /// mount, a remount and a pass over the mount table: issue 6, B3).
    pub(crate) fn read_only(&self) -> PathBuf {
        self.root.join("ro")
    }

    /// `$in`.
    pub(crate) fn inputs(&self) -> PathBuf {
        self.read_only().join("in")
    }

    /// `$out`.
    pub(crate) fn out(&self) -> PathBuf {
        self.root.join("out")
    }

    /// `$prompts`.
    pub(crate) fn prompts(&self) -> PathBuf {
        self.read_only().join("prompts")
    }

    /// `$TMPDIR`.
    pub(crate) fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// `$HOME`.
    pub(crate) fn home(&self) -> PathBuf {
        self.root.join("home")
    }

    /// The file holding the script text.
    pub(crate) fn script(&self) -> PathBuf {
        self.root.join("script")
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        remove_tree(&self.root);
    }
}

/// Creates a directory with mode 0700 (it must not exist yet).
pub(crate) fn make_private_dir(path: &Path) -> Result<(), SandboxError> {
    DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(|e| SandboxError::io(format!("creating {}", path.display()), e))
}

/// Creates a new file with mode 0600 holding `bytes` (it must not exist yet; a symlink in its
/// place is not followed).
pub(crate) fn write_private_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    file.write_all(bytes)
}

/// Reads every entry of `out`: each must be a regular file with a UTF-8 name.
pub(crate) fn collect_outputs(
    out: &Path,
    name: &str,
) -> Result<BTreeMap<String, Zeroizing<Vec<u8>>>, SandboxError> {
    let read_err = |e| SandboxError::io(format!("generator {name}: reading $out"), e);
    let mut outputs = BTreeMap::new();
    for entry in fs::read_dir(out).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let file_name = entry.file_name();
        let lossy = file_name.to_string_lossy().into_owned();
        let Some(utf8) = file_name.to_str() else {
            return Err(SandboxError::NonUtf8Output {
                name: name.to_owned(),
                file: lossy,
            });
        };
        // `DirEntry::file_type` does not follow symlinks.
        let kind = entry.file_type().map_err(read_err)?;
        if !kind.is_file() {
            return Err(SandboxError::NotRegularFile {
                name: name.to_owned(),
                file: lossy,
            });
        }
        let bytes = read_regular_file(&entry.path()).map_err(|e| match e {
            ReadError::NotRegular => SandboxError::NotRegularFile {
                name: name.to_owned(),
                file: lossy.clone(),
            },
            ReadError::Io(e) => {
                SandboxError::io(format!("generator {name}: reading $out/{lossy}"), e)
            }
        })?;
        outputs.insert(utf8.to_owned(), bytes);
    }
    Ok(outputs)
}

enum ReadError {
    NotRegular,
    Io(io::Error),
}

/// Reads a file without following a symlink and without blocking on a FIFO, checking that what
/// was opened is a regular file; the buffer is sized up front so no copy of the contents is left
/// behind by reallocation.
fn read_regular_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, ReadError> {
    let mut file: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                ReadError::NotRegular
            } else {
                ReadError::Io(e)
            }
        })?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular);
    }
    let capacity = usize::try_from(meta.len()).unwrap_or(0).saturating_add(1);
    let mut bytes = Zeroizing::new(Vec::with_capacity(capacity));
    file.read_to_end(&mut bytes).map_err(ReadError::Io)?;
    Ok(bytes)
}

/// Validates a name that becomes one path component: non-empty, not `.` or `..`, no `/`, no
/// NUL.
pub(crate) fn is_valid_component(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

/// Removes a directory tree, best effort. If a plain removal fails (for example because the
/// script left a directory without write permission and we are not root), every directory in
/// the tree is made 0700 first and the removal retried.
pub(crate) fn remove_tree(root: &Path) {
    match fs::remove_dir_all(root) {
        Ok(()) => return,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(_) => {}
    }
    // Iterative walk: a script can create arbitrarily deep trees.
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o700));
        if let Ok(entries) = fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push(entry.path());
                }
            }
        }
    }
    let _ = fs::remove_dir_all(root);
}

#[cfg(test)]
mod stale_tests {
    use super::*;

    #[test]
    fn creator_pids_are_read_from_names() {
        assert_eq!(creator_pid("vars-123-AbCdEf"), Some(123));
        assert_eq!(creator_pid("vars-etc-77-x1y2z3"), Some(77));
        // Not made by create_held_dir: never touched.
        for name in [
            "vars-AbCdEf",
            "vars-etc-77-x",
            "vars-hardening-AbCdEf",
            "vars-12-AbCdEf-more",
            "vars--AbCdEf",
            "vars-probe-AbCdEf",
            "other",
        ] {
            assert_eq!(creator_pid(name), None, "{name}");
        }
    }

    /// Only directories nobody holds and whose creator is gone are removed.
    #[test]
    fn remove_stale_spares_held_and_live_directories() {
        let base = tempfile::tempdir().unwrap();
        let (held, hold) = create_held_dir(base.path(), "vars-").unwrap();
        fs::write(held.join("secret"), b"x").unwrap();
        // Unheld, but its creator (this process) is alive: being created.
        let young = base
            .path()
            .join(format!("vars-{}-young", std::process::id()));
        fs::create_dir(&young).unwrap();
        // Unheld, creator gone (no pid is this large): a crash's leftover.
        let dead = base.path().join("vars-etc-2147483646-dead01");
        fs::create_dir_all(dead.join("in/dep")).unwrap();
        fs::write(dead.join("in/dep/key"), b"plaintext").unwrap();
        // Anything not named like ours, even unheld and empty.
        let others: Vec<PathBuf> = [
            "vars-probe-1",
            "vars-hardening-AbCdEf",
            "vars-2147483646-toolong",
        ]
        .iter()
        .map(|n| base.path().join(n))
        .collect();
        for o in &others {
            fs::create_dir(o).unwrap();
        }
        remove_stale(base.path());
        assert!(held.join("secret").exists());
        assert!(young.exists());
        for o in &others {
            assert!(o.exists(), "{}", o.display());
        }
        assert!(!dead.exists());
        drop(hold);
    }
}
