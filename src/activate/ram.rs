//! Keeping secrets in RAM: on Linux, `<secrets-dir>.d` is a ramfs (never
//! swapped, unlike tmpfs), mounted by vars when it is not one already.
//! Elsewhere (macOS: no ramfs) the generations live on the filesystem that
//! holds the secrets directory.

use super::fsx::DirFd;
use super::generations::Layout;
use super::ActivateError;

/// What the generations are stored on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Storage {
    Ramfs,
    /// Not RAM-only: the filesystem's name (tmpfs, …).
    Disk(String),
}

impl Storage {
    pub fn name(&self) -> &str {
        match self {
            Storage::Ramfs => "ramfs",
            Storage::Disk(n) => n,
        }
    }
}

#[cfg(target_os = "linux")]
const RAMFS_MAGIC: i64 = 0x8584_58f6;
#[cfg(target_os = "linux")]
const TMPFS_MAGIC: i64 = 0x0102_1994;

#[cfg(target_os = "linux")]
fn fs_name(magic: i64) -> String {
    match magic {
        RAMFS_MAGIC => "ramfs".into(),
        TMPFS_MAGIC => "tmpfs (which can be swapped to disk)".into(),
        0xef53 => "ext4".into(),
        0x9123_683e => "btrfs".into(),
        0x5846_5342 => "xfs".into(),
        0x2fc1_2fc1 => "zfs".into(),
        0x794c_7630 => "overlayfs".into(),
        other => format!("a filesystem of type {other:#x}"),
    }
}

/// Makes sure `<secrets-dir>.d` (already created) is RAM-only, mounting a
/// ramfs (mode 0751, nodev, nosuid, noexec) on it when it is not one yet.
#[cfg(target_os = "linux")]
pub fn ensure(layout: &Layout, parent: &DirFd, allow_disk: bool) -> Result<Storage, ActivateError> {
    use nix::mount::{mount, MsFlags};

    let dotd_path = layout.dotd();
    let io = |e: std::io::Error| ActivateError::io(&dotd_path, e);
    let magic = parent
        .open_dir(&layout.dotd_name)
        .map_err(io)?
        .fs_type()
        .map_err(io)?;
    if magic == RAMFS_MAGIC {
        return Ok(Storage::Ramfs);
    }
    let name = fs_name(magic);
    if nix::unistd::geteuid().is_root() {
        let mounted = mount(
            Some("none"),
            &dotd_path,
            Some("ramfs"),
            MsFlags::MS_NODEV | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("mode=0751"),
        );
        match mounted {
            Ok(()) => {
                let now = parent.open_dir(&layout.dotd_name).map_err(io)?.fs_type().map_err(io)?;
                if now == RAMFS_MAGIC {
                    return Ok(Storage::Ramfs);
                }
                return Err(ActivateError::Setup(format!(
                    "mounted a ramfs on {} but it still reads as {}",
                    dotd_path.display(),
                    fs_name(now)
                )));
            }
            Err(e) if allow_disk => {
                eprintln!(
                    "vars: warning: cannot mount a ramfs on {} ({e}); --allow-disk: the secrets go to {name}",
                    dotd_path.display()
                );
                return Ok(Storage::Disk(name));
            }
            Err(e) => {
                return Err(ActivateError::Setup(format!(
                    "cannot mount a ramfs on {}: {e}; secrets are only written to RAM (pass --allow-disk to accept {name})",
                    dotd_path.display()
                )))
            }
        }
    }
    if allow_disk {
        return Ok(Storage::Disk(name));
    }
    Err(ActivateError::Setup(format!(
        "{} is on {name}, not a ramfs, and only root can mount one: run vars activate as root, or pass --allow-disk to accept secrets that are not RAM-only",
        dotd_path.display()
    )))
}

/// No ramfs here (macOS): the generations stay on the filesystem of the
/// secrets directory (nix-darwin uses /var/run, emptied at every boot).
#[cfg(not(target_os = "linux"))]
pub fn ensure(
    layout: &Layout,
    _parent: &DirFd,
    allow_disk: bool,
) -> Result<Storage, ActivateError> {
    if !allow_disk {
        eprintln!(
            "vars: note: this system has no ramfs; the secrets in {} are stored on disk",
            layout.dotd().display()
        );
    }
    Ok(Storage::Disk("disk (no ramfs on this system)".into()))
}
