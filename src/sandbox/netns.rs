//! One empty network namespace shared by every sandbox of a run.
//!
//! Creating a network namespace costs about 1.5 ms, a large part of a trivial generator's
//! budget (issue 6, B3). Instead of letting every `bwrap --unshare-all` create its own, the
//! [`Sandbox`](super::Sandbox) creates one empty namespace up front and each bwrap process starts
//! in it (the spawning thread enters it around the spawn: a child starts in its parent
//! thread's network namespace) and is started with `--share-net`, so it keeps that namespace
//! while unsharing everything else.
//!
//! The namespace is created by a short-lived helper thread that calls `unshare(CLONE_NEWNET)`
//! (which only moves the calling thread) and opens `/proc/thread-self/ns/net`; that file
//! descriptor keeps the namespace alive after the thread ends, and no helper process is needed.
//!
//! Isolation: a fresh network namespace holds nothing but a loopback interface that is down,
//! so nothing can be reached, not even 127.0.0.1. The namespace is owned by the initial user
//! namespace, and scripts run with every capability dropped, so they cannot bring the loopback
//! up or add interfaces (with a per-script `--unshare-net` inside bwrap's own user namespace
//! they could bring up their private loopback; that is harmless, but this is stricter). The
//! one thing the sharing adds: scripts running *at the same time* under the same `Sandbox` see
//! the same abstract Unix socket namespace, so two concurrently running generators of one run
//! could talk to each other if both tried to. They still cannot reach the host or anything
//! outside the run.
//!
//! Creating a network namespace needs `CAP_SYS_ADMIN`; without it (bwrap used unprivileged) the
//! sandbox falls back to `--unshare-all` per script.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use nix::sched::{unshare, CloneFlags};

/// An empty network namespace, kept alive by an open `nsfs` file descriptor.
#[derive(Debug)]
pub(crate) struct SharedNetns {
    fd: OwnedFd,
    /// The namespace this process started in, to return a thread to after a spawn.
    home: OwnedFd,
}

/// A thread inside the shared namespace; [`Entered::leave`] takes it back home (so does
/// dropping it, when an error already stops the caller).
#[must_use]
pub(crate) struct Entered<'a> {
    ns: &'a SharedNetns,
    left: bool,
}

impl Entered<'_> {
    pub(crate) fn leave(mut self) -> io::Result<()> {
        self.left = true;
        setns(&self.ns.home)
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        if !self.left {
            let _ = setns(&self.ns.home);
        }
    }
}

/// Moves the calling thread (only it) into the network namespace `fd`.
fn setns(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: setns on a namespace descriptor we own; it changes only this thread.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl SharedNetns {
    /// Creates the namespace and checks that it is a new one holding only `lo`.
    pub(crate) fn create() -> io::Result<SharedNetns> {
        let home = File::open("/proc/self/ns/net")?;
        let ours = home.metadata()?.ino();
        let home = OwnedFd::from(home);
        let worker = std::thread::Builder::new()
            .name(String::from("vars-netns"))
            .spawn(move || -> io::Result<OwnedFd> {
                unshare(CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                let ns = File::open("/proc/thread-self/ns/net")?;
                if ns.metadata()?.ino() == ours {
                    return Err(io::Error::other(
                        "unshare did not create a network namespace",
                    ));
                }
                let devices = fs::read_to_string("/proc/thread-self/net/dev")?;
                let interfaces: Vec<&str> = devices
                    .lines()
                    .skip(2)
                    .filter_map(|line| line.split(':').next())
                    .map(str::trim)
                    .collect();
                if interfaces != ["lo"] {
                    return Err(io::Error::other(format!(
                        "the new network namespace is not empty: {interfaces:?}"
                    )));
                }
                Ok(OwnedFd::from(ns))
            })?;
        let fd = worker
            .join()
            .map_err(|_| io::Error::other("the network namespace helper thread panicked"))??;
        Ok(SharedNetns { fd, home })
    }

    /// Moves the calling thread into the namespace, until [`Entered::leave`]: a child it
    /// spawns meanwhile starts there. Both descriptors are close-on-exec: neither reaches
    /// the sandbox.
    pub(crate) fn enter(&self) -> io::Result<Entered<'_>> {
        setns(&self.fd)?;
        Ok(Entered {
            ns: self,
            left: false,
        })
    }
}
