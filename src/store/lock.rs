//! `sops/.lock`: one writer at a time. A second vars process waits for the
//! first (and says so), so concurrent runs are serialised, never interleaved.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use super::{io, StoreError};

/// The held lock; released when dropped (or when the process dies).
pub struct Lock {
    _file: Flock<File>,
}

impl Lock {
    pub fn acquire(root: &Path) -> Result<Lock, StoreError> {
        let path = root.join(".lock");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io(&path))?;
        let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(f) => f,
            Err((file, _)) => {
                let repo = root.parent().unwrap_or(root);
                let repo = std::fs::canonicalize(repo).unwrap_or_else(|_| repo.to_path_buf());
                let pid = match holder_pid(&file) {
                    Some(pid) => format!("pid {pid}"),
                    None => "pid unknown".to_string(),
                };
                eprintln!(
                    "waiting: another vars process ({pid}) holds the lock on {}",
                    repo.display()
                );
                Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| io(&path)(e.into()))?
            }
        };
        let _ = file.as_fd();
        // The holder's pid, for the message of the next one to wait. Written over the old
        // one in place, padded to a fixed width, so a waiter never reads an emptied file.
        let mut f: &File = &file;
        let _ = f.rewind();
        let _ = writeln!(f, "{:<10}", std::process::id());
        let _ = f.set_len(11);
        Ok(Lock { _file: file })
    }
}

/// The pid the lock file names, once it names a living process: the holder
/// writes its pid just after taking the lock, so right then the file may still
/// name the previous holder (gone) for a moment.
fn holder_pid(file: &File) -> Option<u32> {
    let mut last = None;
    for _ in 0..20 {
        let mut text = String::new();
        let mut f = file;
        let _ = f.rewind();
        let _ = f.read_to_string(&mut text);
        last = text.trim().parse::<u32>().ok();
        if let Some(pid) = last {
            let alive = !matches!(
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None),
                Err(nix::errno::Errno::ESRCH)
            );
            if alive && pid != std::process::id() {
                return Some(pid);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    last
}
