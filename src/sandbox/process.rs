//! Starting a script's process and supervising it: timeout, killing the whole group, and
//! collecting the tail of its output without ever waiting on processes it left behind.
//!
//! Two ways to start the child ([`Start`]):
//!
//! * a script run directly (no sandbox) is started in a new session (so a new process group
//!   whose id is its pid), with `PR_SET_PDEATHSIG = SIGKILL` so it dies if this thread dies,
//!   in a `pre_exec` hook, which makes the standard library fork this process;
//! * bubblewrap does both itself (`--new-session`, `--die-with-parent`), so it is started
//!   without a hook, in a new process group: the standard library then uses `posix_spawn`,
//!   which does not copy this process's page tables the way `fork` does (half a millisecond
//!   per generator in the engine, measured in issue 6's B3). The shared network namespace is
//!   entered by the spawning thread around the spawn (a network namespace is per thread, and
//!   a child starts in its parent thread's), so bwrap starts in it without a hook either.
//!   The price: if vars dies in the instant between the spawn and bwrap's own `prctl`,
//!   nothing kills that bwrap; its script runs to its end inside the sandbox, and the next
//!   run removes its working directory.
//!
//! Descriptors this process opened without close-on-exec must never reach a script: the hook
//! marks them in the child, and before a hook-less spawn they are marked here.
//! Its stdout and stderr share one pipe.
//!
//! One thread supervises with `poll(2)` on the pipe and on a pidfd of the child (falling back to
//! polling `waitid(WNOWAIT)` every few milliseconds on kernels without pidfds), so it wakes as
//! soon as there is output or the child exits, and no later than the deadline. When the child
//! has exited or the deadline passed, the whole process group is killed *before* the child is
//! reaped (so its pid, and therefore the group id, cannot have been reused), then the child is
//! reaped. Output still in the pipe is read for a short grace period only: a grandchild that
//! escaped the group and kept the pipe open cannot make the run hang.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{pipe2, Pid};
use zeroize::Zeroizing;

use super::netns::SharedNetns;

/// How much of the script's output is kept for the failure message.
const TAIL_BYTES: usize = 64 * 1024;

/// How long output is still read after the child exited and its group was killed.
const DRAIN_GRACE: Duration = Duration::from_millis(250);

/// Poll interval when no pidfd is available.
const FALLBACK_TICK: Duration = Duration::from_millis(5);

/// How a supervised process ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// It exited (or was killed by a signal other than ours) before the deadline.
    Exited {
        /// Its wait status.
        status: ExitStatus,
        /// The last [`TAIL_BYTES`] of its combined stdout and stderr.
        output: Zeroizing<Vec<u8>>,
    },
    /// The deadline passed; it and its process group were killed.
    TimedOut,
}

/// How the child is started (see the module's documentation).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Start<'a> {
    /// A script run directly: new session and parent-death signal set in the child.
    Direct,
    /// `bwrap --new-session --die-with-parent …`, in the given network namespace.
    Bwrap { netns: Option<&'a SharedNetns> },
}

/// Starts `cmd` (its program, arguments, environment and directory already set) and supervises
/// it until it exits or `timeout` passes.
pub(crate) fn run(cmd: Command, start: Start<'_>, timeout: Duration) -> io::Result<Outcome> {
    supervise(cmd, start, timeout, true)
}

/// Spawns `cmd` as `start` says.
fn spawn(mut cmd: Command, start: Start<'_>) -> io::Result<Child> {
    match start {
        Start::Direct => {
            let parent = nix::unistd::getpid().as_raw();
            // SAFETY: the hook runs in the forked child before exec and only makes
            // async-signal-safe system calls (setsid, prctl, getppid, close_range or fcntl);
            // it allocates nothing (errors are built from raw OS error codes).
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setsid() == -1 {
                        return Err(io::Error::last_os_error());
                    }
                    let sigkill = libc::SIGKILL as libc::c_ulong;
                    if libc::prctl(libc::PR_SET_PDEATHSIG, sigkill, 0, 0, 0) == -1 {
                        return Err(io::Error::last_os_error());
                    }
                    // The parent may have died between fork and prctl.
                    if libc::getppid() != parent {
                        return Err(io::Error::from_raw_os_error(libc::ESRCH));
                    }
                    mark_inherited_fds_cloexec();
                    Ok(())
                });
            }
            cmd.spawn()
        }
        Start::Bwrap { netns } => {
            // Its own group, killed as a whole on timeout; bwrap gives the script a new session.
            cmd.process_group(0);
            // Every descriptor of this process is meant to be close-on-exec already; this
            // makes sure, with one system call, without a hook.
            mark_inherited_fds_cloexec();
            let entered = netns.map(SharedNetns::enter).transpose()?;
            let child = cmd.spawn();
            if let Some(entered) = entered {
                entered.leave()?;
            }
            child
        }
    }
}

/// [`run`], with `use_pidfd = false` forcing the fallback used on kernels without pidfds.
fn supervise(
    mut cmd: Command,
    start: Start<'_>,
    timeout: Duration,
    use_pidfd: bool,
) -> io::Result<Outcome> {
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(write_end.try_clone()?))
        .stderr(Stdio::from(write_end));
    let mut child = spawn(cmd, start)?;
    // The Command (dropped by `spawn`) held our copies of the pipe's write end: closed, so
    // EOF comes when the child and its descendants are done.
    let pid = Pid::from_raw(i32::try_from(child.id()).map_err(io::Error::other)?);
    let pidfd = if use_pidfd { pidfd_open(pid) } else { None };

    let mut reader = File::from(read_end);
    fcntl(reader.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(io::Error::from)?;
    let mut tail = Tail::new();
    let mut pipe_open = true;
    // A timeout too large to represent is no timeout.
    let deadline = Instant::now().checked_add(timeout);

    let timed_out = loop {
        let now = Instant::now();
        let remaining = match deadline {
            Some(deadline) if now >= deadline => break true,
            Some(deadline) => deadline - now,
            None => Duration::MAX,
        };
        let wait = match pidfd {
            Some(_) => remaining,
            None => remaining.min(FALLBACK_TICK),
        };
        let mut fds = Vec::with_capacity(2);
        if pipe_open {
            fds.push(pollfd(reader.as_raw_fd()));
        }
        if let Some(fd) = &pidfd {
            fds.push(pollfd(fd.as_raw_fd()));
        }
        poll(&mut fds, wait)?;
        if pipe_open && fds.first().is_some_and(|p| p.revents != 0) {
            pipe_open = tail.read_available(&mut reader)?;
        }
        let exited = match &pidfd {
            Some(_) => fds.last().is_some_and(|p| p.revents != 0),
            None => has_exited(pid)?,
        };
        if exited {
            break false;
        }
    };

    // The child is exited-but-unreaped or still running: its pid, and so the group id, are
    // still ours. Kill everything left in the group, then reap.
    let _ = killpg(pid, Signal::SIGKILL);
    if timed_out {
        let _ = kill(pid, Signal::SIGKILL);
    }
    let status = child.wait()?;
    if timed_out {
        return Ok(Outcome::TimedOut);
    }
    let grace_end = Instant::now() + DRAIN_GRACE;
    while pipe_open {
        let now = Instant::now();
        if now >= grace_end {
            break;
        }
        let mut fds = [pollfd(reader.as_raw_fd())];
        poll(&mut fds, grace_end - now)?;
        if fds[0].revents != 0 {
            pipe_open = tail.read_available(&mut reader)?;
        }
    }
    Ok(Outcome::Exited {
        status,
        output: tail.into_bytes(),
    })
}

/// The last [`TAIL_BYTES`] (or a little more) of a stream, zeroized on drop.
struct Tail {
    bytes: Zeroizing<Vec<u8>>,
    chunk: Zeroizing<Vec<u8>>,
}

impl Tail {
    fn new() -> Tail {
        Tail {
            bytes: Zeroizing::new(Vec::new()),
            chunk: Zeroizing::new(vec![0; 16 * 1024]),
        }
    }

    /// Reads what the non-blocking `reader` has; returns whether it is still open.
    fn read_available(&mut self, reader: &mut File) -> io::Result<bool> {
        loop {
            match reader.read(&mut self.chunk) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.bytes.extend_from_slice(&self.chunk[..n]);
                    if self.bytes.len() > 2 * TAIL_BYTES {
                        let excess = self.bytes.len() - TAIL_BYTES;
                        self.bytes.drain(..excess);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn into_bytes(mut self) -> Zeroizing<Vec<u8>> {
        let start = self.bytes.len().saturating_sub(TAIL_BYTES);
        Zeroizing::new(self.bytes.split_off(start))
    }
}

/// Sets close-on-exec on every descriptor above stderr. Called between fork and exec (and in
/// this process before a spawn without a hook), so only async-signal-safe system calls:
/// `close_range(CLOSE_RANGE_CLOEXEC)` (Linux 5.11), else
/// `fcntl` on each possible descriptor below the soft `RLIMIT_NOFILE` (at most 65 536).
/// Marking instead of closing keeps the standard library's own exec-error pipe working.
fn mark_inherited_fds_cloexec() {
    // SAFETY: close_range only sets the close-on-exec flag of this process's descriptors.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        return;
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, exclusively borrowed rlimit structure.
    let max_fd = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur.min(65_536) as libc::c_int
    } else {
        65_536
    };
    for fd in 3..max_fd {
        // SAFETY: F_SETFD on a descriptor that may not exist fails harmlessly with EBADF.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// `poll(2)` for at most `wait` (rounded up to a millisecond), retrying on `EINTR` (as a
/// zero-event return, so the caller re-checks its deadline).
fn poll(fds: &mut [libc::pollfd], wait: Duration) -> io::Result<()> {
    let ms = i32::try_from(wait.as_millis().saturating_add(1)).unwrap_or(i32::MAX);
    let count = libc::nfds_t::try_from(fds.len()).map_err(io::Error::other)?;
    // SAFETY: `fds` is a valid, exclusively borrowed array of `count` pollfd structures.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), count, ms) };
    if rc == -1 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            fds.iter_mut().for_each(|p| p.revents = 0);
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
}

/// A pidfd for `pid` (readable once the process exits), or `None` where the kernel has no
/// `pidfd_open` (before Linux 5.3).
fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new file descriptor or -1.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    let fd = RawFd::try_from(rc).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether `pid` (our child) has exited, without reaping it.
fn has_exited(pid: Pid) -> io::Result<bool> {
    // SAFETY: an all-zero siginfo_t is a valid value for waitid to fill in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
    // SAFETY: `info` is a valid, exclusively borrowed siginfo_t.
    let rc = unsafe { libc::waitid(libc::P_PID, pid.as_raw() as libc::id_t, &mut info, flags) };
    if rc == -1 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(e)
        };
    }
    // SAFETY: waitid succeeded, so `info` is initialised; si_pid is 0 when nothing exited.
    Ok(unsafe { info.si_pid() } != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", script]).env_clear();
        cmd
    }

    #[test]
    fn both_ways_of_waiting_report_exit_status_and_output() {
        for use_pidfd in [true, false] {
            let outcome = supervise(
                sh("echo out; echo err >&2; exit 7"),
                Start::Direct,
                Duration::from_secs(30),
                use_pidfd,
            );
            match outcome {
                Ok(Outcome::Exited { status, output }) => {
                    assert_eq!(status.code(), Some(7));
                    assert_eq!(output.as_slice(), b"out\nerr\n");
                }
                other => panic!("pidfd={use_pidfd}: {other:?}"),
            }
        }
    }

    #[test]
    fn both_ways_of_waiting_time_out_without_waiting_for_grandchildren() {
        for use_pidfd in [true, false] {
            let start = Instant::now();
            let outcome = supervise(
                sh("sleep 30 & sleep 30"),
                Start::Direct,
                Duration::from_millis(300),
                use_pidfd,
            );
            assert!(
                matches!(outcome, Ok(Outcome::TimedOut)),
                "pidfd={use_pidfd}"
            );
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "{:?}",
                start.elapsed()
            );
            let start = Instant::now();
            let outcome = supervise(
                sh("sleep 30 & exit 0"),
                Start::Direct,
                Duration::from_secs(30),
                use_pidfd,
            );
            assert!(
                matches!(outcome, Ok(Outcome::Exited { status, .. }) if status.success()),
                "pidfd={use_pidfd}"
            );
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "{:?}",
                start.elapsed()
            );
        }
    }

    #[test]
    fn output_tail_is_bounded() {
        let outcome = supervise(
            sh("head -c 1000000 /dev/zero; echo; echo last"),
            Start::Direct,
            Duration::from_secs(30),
            true,
        );
        match outcome {
            Ok(Outcome::Exited { output, .. }) => {
                assert_eq!(output.len(), TAIL_BYTES);
                assert!(output.ends_with(b"\nlast\n"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let cmd = Command::new("/nonexistent/vars-test-program");
        assert!(run(cmd, Start::Direct, Duration::from_secs(1)).is_err());
        let cmd = Command::new("/nonexistent/vars-test-program");
        assert!(run(cmd, Start::Bwrap { netns: None }, Duration::from_secs(1)).is_err());
    }
}
