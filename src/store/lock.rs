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
                let mut holder = String::new();
                let _ = (&file).read_to_string(&mut holder);
                let repo = root.parent().unwrap_or(root);
                let repo = std::fs::canonicalize(repo).unwrap_or_else(|_| repo.to_path_buf());
                let pid = match holder.trim().parse::<u32>() {
                    Ok(pid) => format!("pid {pid}"),
                    Err(_) => "pid unknown".to_string(),
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
