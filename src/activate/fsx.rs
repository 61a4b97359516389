//! Directory-descriptor file operations that never follow a symlink in the
//! tree vars manages: every name is one path component resolved relative to
//! an open directory (`openat` and friends) with `O_NOFOLLOW`, and files are
//! created with `O_EXCL`, their owner and mode set on the descriptor before a
//! byte of content is written.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{self, OFlag};
use nix::sys::stat::{self, FileStat, Mode, SFlag};
use nix::unistd::{self, Gid, Uid, UnlinkatFlags};
use zeroize::Zeroizing;

fn errno(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// The kind of a directory entry, from `lstat` (links are not followed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Other,
}

impl EntryKind {
    fn of(st: &FileStat) -> EntryKind {
        match SFlag::from_bits_truncate(st.st_mode as _) & SFlag::S_IFMT {
            SFlag::S_IFREG => EntryKind::File,
            SFlag::S_IFDIR => EntryKind::Dir,
            SFlag::S_IFLNK => EntryKind::Symlink,
            _ => EntryKind::Other,
        }
    }
}

/// Owner, group and permission bits of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attrs {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// Every name in an open directory (without `.` and `..`), sorted.
fn read_names(fd: OwnedFd) -> io::Result<Vec<(OsString, Option<EntryKind>)>> {
    use std::os::fd::IntoRawFd;
    let raw = fd.into_raw_fd();
    // SAFETY: fdopendir takes ownership of `raw` on success; on failure we close it.
    let dir = unsafe { libc::fdopendir(raw) };
    if dir.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: `raw` is still ours when fdopendir failed.
        unsafe { libc::close(raw) };
        return Err(e);
    }
    let mut names = Vec::new();
    let result = loop {
        Errno::clear();
        // SAFETY: `dir` is a valid DIR* until closedir below.
        let ent = unsafe { libc::readdir(dir) };
        if ent.is_null() {
            match Errno::last_raw() {
                0 => break Ok(()),
                e => break Err(io::Error::from_raw_os_error(e)),
            }
        }
        // SAFETY: d_name is a NUL-terminated name inside the entry readdir returned.
        let name = unsafe { std::ffi::CStr::from_ptr((*ent).d_name.as_ptr()) };
        let name = OsStr::from_bytes(name.to_bytes());
        if name != "." && name != ".." {
            // SAFETY: as above.
            let kind = match unsafe { (*ent).d_type } {
                libc::DT_REG => Some(EntryKind::File),
                libc::DT_DIR => Some(EntryKind::Dir),
                libc::DT_LNK => Some(EntryKind::Symlink),
                libc::DT_UNKNOWN => None,
                _ => Some(EntryKind::Other),
            };
            names.push((name.to_os_string(), kind));
        }
    };
    // SAFETY: closes the DIR* (and its descriptor) exactly once.
    unsafe { libc::closedir(dir) };
    result?;
    names.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(names)
}

/// An open directory.
#[derive(Debug)]
pub struct DirFd {
    fd: OwnedFd,
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_CLOEXEC)
    .union(OFlag::O_NOFOLLOW);

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open and is owned by no one else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

impl DirFd {
    /// Opens a directory by path; the last component must not be a symlink
    /// (earlier components, chosen by the administrator, may be).
    pub fn open(path: &Path) -> io::Result<DirFd> {
        let fd = fcntl::open(path, DIR_FLAGS, Mode::empty()).map_err(errno)?;
        Ok(DirFd { fd: owned(fd) })
    }

    /// Opens a directory following symlinks (for an administrator-chosen parent).
    pub fn open_following(path: &Path) -> io::Result<DirFd> {
        let fd = fcntl::open(path, DIR_FLAGS - OFlag::O_NOFOLLOW, Mode::empty()).map_err(errno)?;
        Ok(DirFd { fd: owned(fd) })
    }

    fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Opens the subdirectory `name` (not following a symlink).
    pub fn open_dir(&self, name: &OsStr) -> io::Result<DirFd> {
        let fd = fcntl::openat(Some(self.raw()), name, DIR_FLAGS, Mode::empty()).map_err(errno)?;
        Ok(DirFd { fd: owned(fd) })
    }

    /// `lstat` of an entry; `None` when absent.
    pub fn stat(&self, name: &OsStr) -> io::Result<Option<(EntryKind, FileStat)>> {
        match stat::fstatat(Some(self.raw()), name, fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some((EntryKind::of(&st), st))),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(errno(e)),
        }
    }

    /// Creates the subdirectory `name`.
    pub fn mkdir(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        stat::mkdirat(Some(self.raw()), name, Mode::from_bits_truncate(mode as _)).map_err(errno)
    }

    /// Sets the permission bits of this directory (not subject to the umask).
    pub fn chmod(&self, mode: u32) -> io::Result<()> {
        stat::fchmod(self.raw(), Mode::from_bits_truncate(mode as _)).map_err(errno)
    }

    /// Creates the new file `name` (`O_EXCL | O_NOFOLLOW`), sets its owner and
    /// mode on the descriptor, and only then writes `content`. Not synced: the caller
    /// makes a batch durable with one [`DirFd::sync_fs`].
    pub fn create_file(
        &self,
        name: &OsStr,
        attrs: Option<Attrs>,
        mode: u32,
        content: &[u8],
    ) -> io::Result<()> {
        let fd = fcntl::openat(
            Some(self.raw()),
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        let file = File::from(owned(fd));
        if let Some(a) = attrs {
            unistd::fchown(
                file.as_raw_fd(),
                Some(Uid::from_raw(a.uid)),
                Some(Gid::from_raw(a.gid)),
            )
            .map_err(errno)?;
        }
        stat::fchmod(file.as_raw_fd(), Mode::from_bits_truncate(mode as _)).map_err(errno)?;
        (&file).write_all(content)
    }

    /// Reads the regular file `name` without following a symlink; `None` when
    /// it is absent or not a regular file.
    pub fn read_file(&self, name: &OsStr) -> io::Result<Option<(Zeroizing<Vec<u8>>, Attrs)>> {
        let fd = match fcntl::openat(
            Some(self.raw()),
            name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            // ELOOP: a symlink (EMLINK on FreeBSD); ENXIO: a socket or a FIFO without writer.
            Err(Errno::ENOENT | Errno::ELOOP | Errno::EMLINK | Errno::ENXIO) => return Ok(None),
            Err(e) => return Err(errno(e)),
        };
        let file = File::from(owned(fd));
        let st = stat::fstat(file.as_raw_fd()).map_err(errno)?;
        if EntryKind::of(&st) != EntryKind::File {
            return Ok(None);
        }
        // One byte more than the size, so a file that grew meanwhile is still read whole
        // without a reallocation that would leave a copy behind (and `Take` spares the
        // size probe `File::read_to_end` makes on its own).
        let size = st.st_size.max(0) as usize;
        let mut buf = Zeroizing::new(Vec::with_capacity(size + 1));
        (&file).take(u64::MAX).read_to_end(&mut buf)?;
        Ok(Some((
            buf,
            Attrs {
                uid: st.st_uid,
                gid: st.st_gid,
                mode: (st.st_mode as u32) & 0o7777,
            },
        )))
    }

    /// Every entry except `.` and `..`, sorted, with its kind: the directory's own
    /// record of it, or `lstat` when the file system keeps none.
    pub fn entries(&self) -> io::Result<Vec<(OsString, EntryKind)>> {
        let fd = fcntl::openat(
            Some(self.raw()),
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        let names = read_names(owned(fd))?;
        let mut out = Vec::with_capacity(names.len());
        for (name, kind) in names {
            match kind {
                Some(kind) => out.push((name, kind)),
                None => {
                    if let Some((kind, _)) = self.stat(&name)? {
                        out.push((name, kind));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Renames an entry within this directory (atomically replacing `to`).
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        fcntl::renameat(Some(self.raw()), from, Some(self.raw()), to).map_err(errno)
    }

    /// Creates the symlink `name` → `target`.
    pub fn symlink(&self, target: &Path, name: &OsStr) -> io::Result<()> {
        unistd::symlinkat(target, Some(self.raw()), name).map_err(errno)
    }

    /// The target of the symlink `name`: `Ok(None)` when absent, an
    /// `InvalidInput` error when it is not a symlink.
    pub fn readlink(&self, name: &OsStr) -> io::Result<Option<PathBuf>> {
        match fcntl::readlinkat(Some(self.raw()), name) {
            Ok(t) => Ok(Some(PathBuf::from(t))),
            Err(Errno::ENOENT) => Ok(None),
            Err(Errno::EINVAL) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a symbolic link",
            )),
            Err(e) => Err(errno(e)),
        }
    }

    /// Removes a non-directory entry (a symlink itself, never its target).
    pub fn unlink(&self, name: &OsStr) -> io::Result<()> {
        match unistd::unlinkat(Some(self.raw()), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(errno(e)),
        }
    }

    /// Removes `name` and, for a directory, everything below it, never
    /// following a symlink.
    pub fn remove_tree(&self, name: &OsStr) -> io::Result<()> {
        match self.stat(name)? {
            None => Ok(()),
            Some((EntryKind::Dir, _)) => {
                match self.open_dir(name) {
                    Ok(sub) => {
                        for (child, kind) in sub.entries()? {
                            match kind {
                                EntryKind::Dir => sub.remove_tree(&child)?,
                                _ => sub.unlink(&child)?,
                            }
                        }
                    }
                    // Replaced by something else meanwhile: remove that instead.
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                        return self.unlink(name)
                    }
                    Err(e) => return Err(e),
                }
                match unistd::unlinkat(Some(self.raw()), name, UnlinkatFlags::RemoveDir) {
                    Ok(()) | Err(Errno::ENOENT) => Ok(()),
                    Err(e) => Err(errno(e)),
                }
            }
            Some(_) => self.unlink(name),
        }
    }

    /// Flushes the whole file system this directory is on (`syncfs`): one call makes
    /// every file written before it durable, where an `fsync` per file would cost one each.
    #[cfg(target_os = "linux")]
    pub fn sync_fs(&self) -> io::Result<()> {
        unistd::syncfs(self.raw()).map_err(errno)
    }

    /// Flushes every file system (there is no `syncfs` here).
    #[cfg(not(target_os = "linux"))]
    pub fn sync_fs(&self) -> io::Result<()> {
        unistd::sync();
        Ok(())
    }

    /// fsync the directory, so renames and creations in it are durable.
    pub fn sync(&self) -> io::Result<()> {
        unistd::fsync(self.raw()).map_err(errno)
    }

    /// Takes an exclusive `flock` on this directory, waiting for another
    /// holder; released when this descriptor is closed.
    pub fn lock(&self) -> io::Result<()> {
        loop {
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(self.raw(), libc::LOCK_EX) } == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// The filesystem type of this directory (Linux `statfs` magic).
    #[cfg(target_os = "linux")]
    pub fn fs_type(&self) -> io::Result<i64> {
        let st = nix::sys::statfs::fstatfs(&self.fd).map_err(errno)?;
        Ok(st.filesystem_type().0 as i64)
    }
}
