//! Running one generator script in isolation.
//!
//! The engine hands a [`Job`] (script, dependency inputs, prompt answers, runtime inputs,
//! timeout) to [`Sandbox::run`] and gets back every regular file the script left in `$out`.
//!
//! # How a script runs
//!
//! * **Working directory.** A fresh private directory (0700) on a tmpfs, never on persistent
//!   disk: under `$XDG_RUNTIME_DIR` when that is a tmpfs, else `/dev/shm`, else (as root) a
//!   private tmpfs mounted for the [`Sandbox`]'s lifetime. Every working directory is checked
//!   with `statfs` (`TMPFS_MAGIC`). It holds `in/<dep>/<file>`, `prompts/<name>` (files 0600,
//!   directories 0700), an empty `out/`, `tmp/` and `home/`, and is removed when the run
//!   ends: success, failure or panic.
//! * **Interpreter.** The script text is written to a file in the working directory and run
//!   with `bash --noprofile --norc -eu -o pipefail FILE` when bash exists at `/bin/bash`,
//!   `/usr/bin/bash` or `/run/current-system/sw/bin/bash` (NixOS has no `/bin/bash`), else with
//!   `/bin/sh -eu FILE`. This matches clan, whose generator scripts run under
//!   `set -eu -o pipefail`. Nothing of the script goes on a command line. The script's working
//!   directory is `$TMPDIR` and its stdin is `/dev/null`.
//! * **Environment.** Cleared, then exactly: `PATH` (each runtime input's `bin/`, then
//!   `/usr/bin:/bin`, then `/run/current-system/sw/bin` when it exists), `out`, `in`,
//!   `prompts`, `TMPDIR` and `HOME` (the empty `home/`). Shells add their own `PWD`, `SHLVL`
//!   and `_`.
//! * **Isolation.** With [`Isolation::Bubblewrap`], under `bwrap` with every namespace
//!   unshared, all capabilities dropped, and a root holding only the system directories, the
//!   store, a filtered copy of `/etc`, a minimal `/dev`, a fresh `/proc` and the run's own
//!   directory; `/tmp` there is a symlink to `$TMPDIR` (the `bwrap` submodule documents the
//!   exact view). No network: by default every script of one `Sandbox` runs in one empty
//!   network namespace created up front (the `netns` submodule), which is cheaper than a new
//!   namespace per script and just as closed. File descriptors the engine process has open are
//!   never inherited. With [`Isolation::None`] (`--no-sandbox`), only the private tmpfs
//!   directory, the clean environment and the descriptor hygiene apply.
//! * **Timeout.** Past [`Job::timeout`] the script's whole process group is killed (under
//!   bwrap, killing bwrap tears down its PID namespace and so every process the script
//!   started), and [`SandboxError::Timeout`] is returned. Processes the script leaves running
//!   in the background are killed the same way when it exits. Output pipes never hold a run
//!   up: they are drained while the script runs and abandoned shortly after it is gone.
//! * **Output.** Stdout and stderr are collected together; on failure their last
//!   [`STDERR_TAIL_LINES`] lines go into [`SandboxError::ScriptFailed`]; on success they are
//!   discarded unread, since they may contain secrets. `$out` may only contain regular files.
//!
//! # Limits of `--no-sandbox`
//!
//! Without namespaces a background process that starts its own session (`setsid`) escapes
//! the process-group kill, and a script can read whatever the invoking user can. That mode
//! exists for machines without bubblewrap and prints a warning (in the engine).
//!
//! If the engine process dies, every sandbox dies with it (`PR_SET_PDEATHSIG`, bwrap's
//! `--die-with-parent`).

mod bwrap;
mod error;
mod netns;
mod process;
mod workdir;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use zeroize::Zeroizing;

pub use error::SandboxError;

use netns::SharedNetns;
use workdir::{WorkBase, WorkDir};

/// How many lines of a failed script's output [`SandboxError::ScriptFailed`] keeps.
pub const STDERR_TAIL_LINES: usize = 20;

/// One generator script to run, with everything it may see.
pub struct Job<'a> {
    /// The generator, e.g. `cinnabar/openssh`; used in messages only.
    pub name: &'a str,
    /// The script text (see the module documentation for the interpreter).
    pub script: &'a str,
    /// `(dependency generator, file name, bytes)`, placed at `$in/<dep>/<file>`.
    pub inputs: &'a [(String, String, Zeroizing<Vec<u8>>)],
    /// `(prompt name, answer)`, placed at `$prompts/<name>`.
    pub prompts: &'a [(String, Zeroizing<Vec<u8>>)],
    /// Store paths whose `bin/` directories are put on `PATH`, in this order.
    pub runtime_inputs: &'a [String],
    /// How long the script may run before it is killed.
    pub timeout: Duration,
}

impl fmt::Debug for Job<'_> {
    /// Shows names and counts only, never input or prompt bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("name", &self.name)
            .field("inputs", &self.inputs.len())
            .field("prompts", &self.prompts.len())
            .field("runtime_inputs", &self.runtime_inputs)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// How scripts are isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Under bubblewrap: own namespaces, no network, a minimal read-only view of the host.
    Bubblewrap,
    /// `--no-sandbox`: a private tmpfs directory and a clean environment, no namespaces.
    None,
}

/// Runs generator scripts; create one per `vars` invocation and share it between threads.
#[derive(Debug)]
pub struct Sandbox {
    isolation: Isolation,
    /// The bwrap executable, with [`Isolation::Bubblewrap`].
    bwrap: Option<PathBuf>,
    /// The system part of bwrap's argument list, computed once.
    bwrap_system_args: bwrap::Args,
    /// The shared empty network namespace, when in use.
    netns: Option<SharedNetns>,
    /// The sandbox's `/etc`, with [`Isolation::Bubblewrap`]. Declared before `base` so it is
    /// removed before a private tmpfs holding it is unmounted.
    _etc: Option<bwrap::PrivateEtc>,
    base: WorkBase,
    shell: Shell,
    /// What follows the runtime inputs' `bin/` directories in `PATH`.
    path_suffix: String,
}

/// Options for [`Sandbox`] beyond the isolation mode; [`Sandbox::new`] uses the defaults.
#[derive(Debug, Clone)]
pub struct SandboxBuilder {
    isolation: Isolation,
    share_network_namespace: bool,
    work_dir_candidates: Option<Vec<PathBuf>>,
    bwrap_search_path: Option<OsString>,
}

impl SandboxBuilder {
    /// Whether to create one empty network namespace for all scripts (default `true`; only
    /// possible with `CAP_SYS_ADMIN`, and silently replaced by one namespace per script
    /// otherwise). See [`Sandbox::shares_network_namespace`].
    pub fn share_network_namespace(mut self, share: bool) -> Self {
        self.share_network_namespace = share;
        self
    }

    /// The directories to try, in order, for the tmpfs holding working directories (default
    /// `$XDG_RUNTIME_DIR`, `/dev/shm`). When none is a writable tmpfs, a private tmpfs is
    /// mounted if running as root.
    pub fn work_dir_candidates(mut self, candidates: Vec<PathBuf>) -> Self {
        self.work_dir_candidates = Some(candidates);
        self
    }

    /// The `PATH`-style list searched for `bwrap` before a few fixed places (default: this
    /// process's `PATH`).
    pub fn bwrap_search_path(mut self, path: impl Into<OsString>) -> Self {
        self.bwrap_search_path = Some(path.into());
        self
    }

    /// Finds bubblewrap (with [`Isolation::Bubblewrap`]), picks the tmpfs, creates the shared
    /// network namespace, and runs a trivial script as a self-test so a sandbox that cannot
    /// work fails here, once, rather than in every generator.
    pub fn build(self) -> Result<Sandbox, SandboxError> {
        let bwrap = match self.isolation {
            Isolation::None => None,
            Isolation::Bubblewrap => {
                let search = self
                    .bwrap_search_path
                    .clone()
                    .or_else(|| std::env::var_os("PATH"));
                Some(bwrap::find_bwrap(search.as_deref()).ok_or(SandboxError::BwrapMissing)?)
            }
        };
        let candidates = self
            .work_dir_candidates
            .unwrap_or_else(WorkBase::default_candidates);
        let base = WorkBase::select(&candidates)?;
        let netns = match (self.isolation, self.share_network_namespace) {
            (Isolation::Bubblewrap, true) => SharedNetns::create().ok(),
            _ => None,
        };
        let mut path_suffix = String::from("/usr/bin:/bin");
        if Path::new("/run/current-system/sw/bin").is_dir() {
            path_suffix.push_str(":/run/current-system/sw/bin");
        }
        let etc = match bwrap {
            Some(_) => Some(bwrap::PrivateEtc::create(base.path())?),
            None => None,
        };
        let bwrap_system_args = match &etc {
            Some(etc) => {
                let dev_shm = !base.path().starts_with("/dev");
                bwrap::system_args(netns.is_some(), etc, dev_shm)
            }
            None => bwrap::Args::default(),
        };
        let sandbox = Sandbox {
            isolation: self.isolation,
            bwrap_system_args,
            bwrap,
            netns,
            _etc: etc,
            base,
            shell: Shell::detect(),
            path_suffix,
        };
        if let Some(program) = &sandbox.bwrap {
            sandbox.self_test(program)?;
        }
        Ok(sandbox)
    }
}

impl Sandbox {
    /// Creates a sandbox with default options.
    ///
    /// With [`Isolation::Bubblewrap`], fails with [`SandboxError::BwrapMissing`] (whose message
    /// says how to install bubblewrap or to pass `--no-sandbox`) when `bwrap` is not found, and
    /// with [`SandboxError::BwrapUnusable`] when it cannot start a sandbox here. Fails with
    /// [`SandboxError::NoTmpfs`] when no tmpfs is available for working directories.
    pub fn new(isolation: Isolation) -> Result<Sandbox, SandboxError> {
        Sandbox::builder(isolation).build()
    }

    /// Starts configuring a sandbox.
    pub fn builder(isolation: Isolation) -> SandboxBuilder {
        SandboxBuilder {
            isolation,
            share_network_namespace: true,
            work_dir_candidates: None,
            bwrap_search_path: None,
        }
    }

    /// The isolation mode.
    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// Whether scripts run in one shared empty network namespace rather than one each.
    pub fn shares_network_namespace(&self) -> bool {
        self.netns.is_some()
    }

    /// The tmpfs directory under which each run's working directory is created.
    pub fn work_base(&self) -> &Path {
        self.base.path()
    }

    /// Whether [`Sandbox::work_base`] is a tmpfs this sandbox mounted (and unmounts on drop).
    pub fn mounted_private_tmpfs(&self) -> bool {
        self.base.is_private_mount()
    }

    /// Runs one job; returns every regular file the script left in `$out`, by name.
    ///
    /// Errors: invalid names or runtime inputs, [`SandboxError::Timeout`],
    /// [`SandboxError::ScriptFailed`], [`SandboxError::NotRegularFile`] for anything in `$out`
    /// that is not a regular file, and I/O or start-up failures. Whether the produced files
    /// match the declared ones is for the caller to check.
    pub fn run(&self, job: &Job) -> Result<BTreeMap<String, Zeroizing<Vec<u8>>>, SandboxError> {
        let path = self.path_for(job)?;
        let work = WorkDir::create(self.base.path())?;
        write_inputs(&work, job)?;
        workdir::write_private_file(&work.script(), job.script.as_bytes()).map_err(|e| {
            SandboxError::io(format!("generator {}: writing the script", job.name), e)
        })?;

        let env: [(&str, OsString); 6] = [
            ("PATH", OsString::from(path)),
            ("out", work.out().into_os_string()),
            ("in", work.inputs().into_os_string()),
            ("prompts", work.prompts().into_os_string()),
            ("TMPDIR", work.tmp().into_os_string()),
            ("HOME", work.home().into_os_string()),
        ];
        let mut command = self.shell.command_line();
        command.push(work.script().into_os_string());

        let (program, cmd) = match &self.bwrap {
            Some(bwrap_program) => {
                let mounts = bwrap::RunMounts {
                    root: work.root(),
                    read_only: &work.read_only(),
                    tmp: &work.tmp(),
                };
                let args = bwrap::run_args(self.bwrap_system_args.clone(), &mounts, &env, &command);
                let mut cmd = Command::new(bwrap_program);
                cmd.env_clear().args(args).current_dir("/");
                (bwrap_program.clone(), cmd)
            }
            None => {
                let (program, args) = command.split_first().ok_or_else(|| {
                    SandboxError::io(
                        "building the command line",
                        io::ErrorKind::InvalidInput.into(),
                    )
                })?;
                let mut cmd = Command::new(program);
                cmd.env_clear()
                    .envs(env.iter().map(|(k, v)| (k, v)))
                    .args(args)
                    .current_dir(work.tmp());
                (PathBuf::from(program), cmd)
            }
        };

        let start = match &self.bwrap {
            Some(_) => process::Start::Bwrap {
                netns: self.netns.as_ref(),
            },
            None => process::Start::Direct,
        };
        let outcome =
            process::run(cmd, start, job.timeout).map_err(|source| SandboxError::Spawn {
                name: job.name.to_owned(),
                program,
                source,
            })?;
        match outcome {
            process::Outcome::TimedOut => Err(SandboxError::Timeout {
                name: job.name.to_owned(),
                secs: ceil_secs(job.timeout),
            }),
            process::Outcome::Exited { status, output } => {
                if status.success() {
                    // The output is dropped (and zeroized) unread.
                    drop(output);
                    workdir::collect_outputs(&work.out(), job.name)
                } else {
                    // What the script already wrote to $out may be secret too.
                    let outputs =
                        workdir::collect_outputs(&work.out(), job.name).unwrap_or_default();
                    let known = job
                        .inputs
                        .iter()
                        .map(|(_, _, bytes)| bytes)
                        .chain(job.prompts.iter().map(|(_, bytes)| bytes))
                        .chain(outputs.values());
                    Err(SandboxError::ScriptFailed {
                        name: job.name.to_owned(),
                        status,
                        stderr_tail: redact(last_lines(&output, STDERR_TAIL_LINES), known),
                    })
                }
            }
        }
        // `work` is dropped here, removing the working directory.
    }

    /// `PATH` for `job`: each runtime input's `bin/`, then the system directories.
    fn path_for(&self, job: &Job) -> Result<String, SandboxError> {
        let mut path = String::new();
        for input in job.runtime_inputs {
            let ok = input.starts_with('/') && !input.contains(':') && !input.contains('\0');
            if !ok {
                return Err(SandboxError::InvalidRuntimeInput {
                    name: job.name.to_owned(),
                    value: input.clone(),
                });
            }
            path.push_str(input.trim_end_matches('/'));
            path.push_str("/bin:");
        }
        path.push_str(&self.path_suffix);
        Ok(path)
    }

    /// Runs `exit 0` in a sandbox, turning any failure into [`SandboxError::BwrapUnusable`].
    fn self_test(&self, program: &Path) -> Result<(), SandboxError> {
        let job = Job {
            name: "(sandbox self-test)",
            script: "exit 0",
            inputs: &[],
            prompts: &[],
            runtime_inputs: &[],
            timeout: Duration::from_secs(30),
        };
        let detail = match self.run(&job) {
            Ok(_) => return Ok(()),
            Err(SandboxError::ScriptFailed {
                status,
                stderr_tail,
                ..
            }) => format!("{status}: {}", stderr_tail.trim()),
            Err(other) => other.to_string(),
        };
        Err(SandboxError::BwrapUnusable {
            program: program.to_owned(),
            detail,
        })
    }
}

/// Writes `$in/<dep>/<file>` and `$prompts/<name>`, validating every name.
fn write_inputs(work: &WorkDir, job: &Job) -> Result<(), SandboxError> {
    let invalid = |what: &'static str, value: &str| SandboxError::InvalidName {
        name: job.name.to_owned(),
        what,
        value: value.to_owned(),
    };
    let write = |path: &Path, rel: String, bytes: &[u8]| {
        workdir::write_private_file(path, bytes).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                SandboxError::DuplicateInput {
                    name: job.name.to_owned(),
                    path: rel,
                }
            } else {
                SandboxError::io(format!("generator {}: writing {rel}", job.name), e)
            }
        })
    };
    let mut dep_dirs = BTreeSet::new();
    for (dep, file, bytes) in job.inputs {
        if !workdir::is_valid_component(dep) {
            return Err(invalid("dependency", dep));
        }
        if !workdir::is_valid_component(file) {
            return Err(invalid("input file", file));
        }
        let dir = work.inputs().join(dep);
        if dep_dirs.insert(dep.as_str()) {
            workdir::make_private_dir(&dir)?;
        }
        write(&dir.join(file), format!("$in/{dep}/{file}"), bytes)?;
    }
    for (prompt, bytes) in job.prompts {
        if !workdir::is_valid_component(prompt) {
            return Err(invalid("prompt", prompt));
        }
        write(
            &work.prompts().join(prompt),
            format!("$prompts/{prompt}"),
            bytes,
        )?;
    }
    Ok(())
}

/// A duration in whole seconds, rounded up (so a sub-second timeout never reads "0 s").
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// What replaces a known value in a failed script's output.
pub const REDACTED: &str = "[redacted]";

/// `tail` with every input, prompt answer and output of the run replaced by [`REDACTED`] (each
/// whole value, and each line of a multi-line one), so that a script that prints what it read
/// or made does not put it in an error message, a terminal or a CI log. Values (or lines)
/// shorter than 8 bytes are left alone: they would shred the message and hide little.
fn redact<'a>(mut tail: String, known: impl Iterator<Item = &'a Zeroizing<Vec<u8>>>) -> String {
    const MIN: usize = 8;
    let mut needles: Vec<&str> = Vec::new();
    for value in known {
        let Ok(text) = std::str::from_utf8(value) else {
            continue;
        };
        needles.push(text.trim());
        needles.extend(text.lines().map(str::trim));
    }
    needles.retain(|n| n.len() >= MIN);
    // Longest first, so a whole value goes before the lines it contains.
    needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    needles.dedup();
    for needle in needles {
        if tail.contains(needle) {
            tail = tail.replace(needle, REDACTED);
        }
    }
    tail
}

/// The last `n` lines of `bytes`, lossily decoded, without a trailing newline.
fn last_lines(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.trim_end_matches('\n').split('\n').collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

/// The interpreter scripts run with.
#[derive(Debug, Clone)]
struct Shell {
    program: PathBuf,
    args: &'static [&'static str],
}

impl Shell {
    /// bash from the first of `/bin/bash`, `/usr/bin/bash`, `/run/current-system/sw/bin/bash`
    /// that exists, else `/bin/sh`.
    fn detect() -> Shell {
        const BASH: &[&str] = &[
            "/bin/bash",
            "/usr/bin/bash",
            "/run/current-system/sw/bin/bash",
        ];
        match BASH.iter().map(Path::new).find(|p| p.is_file()) {
            Some(bash) => Shell {
                program: bash.to_path_buf(),
                args: &["--noprofile", "--norc", "-eu", "-o", "pipefail"],
            },
            None => Shell {
                program: PathBuf::from("/bin/sh"),
                args: &["-eu"],
            },
        }
    }

    /// The interpreter and its options, to be followed by the script file.
    fn command_line(&self) -> Vec<OsString> {
        let mut line = vec![self.program.clone().into_os_string()];
        line.extend(self.args.iter().map(OsString::from));
        line
    }
}
