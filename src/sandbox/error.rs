//! The sandbox's error type.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

/// Everything that can go wrong while preparing, running or collecting a generator script.
///
/// Messages name the generator (`Job::name`) where one is involved, and never contain input,
/// prompt or output bytes. The one exception is [`SandboxError::ScriptFailed`], which carries
/// the tail of what the failing script itself printed, as the contract asks.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// `Isolation::Bubblewrap` was asked for but no `bwrap` executable was found.
    #[error(
        "bubblewrap (`bwrap`) is not installed, and generator scripts run inside it; install it \
         (`apt-get install bubblewrap`, or `nix profile install nixpkgs#bubblewrap`), or pass \
         `--no-sandbox` to run generators without isolation (private tmpfs directory and clean \
         environment only)"
    )]
    BwrapMissing,

    /// `bwrap` exists but a trivial sandbox could not be started with it (for example
    /// unprivileged user namespaces are disabled, or the version is too old).
    #[error(
        "bubblewrap ({program}) is installed but cannot start a sandbox here: {detail}; fix \
         that, or pass `--no-sandbox` to run generators without isolation"
    )]
    BwrapUnusable {
        /// The `bwrap` executable that was tried.
        program: PathBuf,
        /// What went wrong (exit status and the tail of bwrap's own messages).
        detail: String,
    },

    /// No tmpfs could be found or mounted for the working directories.
    #[error(
        "no tmpfs available for generator working directories (tried {tried}); secrets are never \
         written to persistent disk: set XDG_RUNTIME_DIR to a tmpfs directory, mount /dev/shm, \
         or run as root so a private tmpfs can be mounted"
    )]
    NoTmpfs {
        /// Every candidate that was considered, with the reason it was rejected.
        tried: String,
    },

    /// A working directory turned out not to be on a tmpfs.
    #[error(
        "working directory {} is not on a tmpfs (filesystem magic {magic:#x}); refusing to write \
         secrets to persistent disk", path.display()
    )]
    NotTmpfs {
        /// The offending directory.
        path: PathBuf,
        /// The `f_type` statfs reported.
        magic: i64,
    },

    /// A dependency, input file or prompt name cannot be used as a file name.
    #[error(
        "generator {name}: {what} name {value:?} cannot be used as a file name (it must be \
         non-empty, not `.` or `..`, and contain no `/` or NUL)"
    )]
    InvalidName {
        /// The generator.
        name: String,
        /// Which kind of name: "dependency", "input file" or "prompt".
        what: &'static str,
        /// The rejected name.
        value: String,
    },

    /// The same `$in/<dep>/<file>` or `$prompts/<name>` was given twice.
    #[error("generator {name}: {path} is given twice")]
    DuplicateInput {
        /// The generator.
        name: String,
        /// The duplicated path, relative (`$in/dep/file` or `$prompts/name`).
        path: String,
    },

    /// A runtime input is not an absolute path usable in `PATH`.
    #[error(
        "generator {name}: runtime input {value:?} must be an absolute path without `:` or NUL"
    )]
    InvalidRuntimeInput {
        /// The generator.
        name: String,
        /// The rejected path.
        value: String,
    },

    /// A filesystem operation on the working directory failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The script (or bwrap) could not be started.
    #[error("generator {name}: cannot start {}: {source}", program.display())]
    Spawn {
        /// The generator.
        name: String,
        /// The program that failed to start.
        program: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The script ran longer than `Job::timeout`; it and everything it started were killed.
    #[error("generator {name} timed out after {secs} s")]
    Timeout {
        /// The generator.
        name: String,
        /// The timeout, in seconds (rounded up).
        secs: u64,
    },

    /// The script exited unsuccessfully.
    #[error("generator {name} failed ({status}){}", format_tail(stderr_tail))]
    ScriptFailed {
        /// The generator.
        name: String,
        /// How the script (or the sandbox around it) ended.
        status: ExitStatus,
        /// The last lines (at most [`STDERR_TAIL_LINES`](super::STDERR_TAIL_LINES)) the script
        /// wrote to stderr or stdout, lossily decoded as UTF-8.
        stderr_tail: String,
    },

    /// `$out` contains something other than a regular file.
    #[error("generator {name} produced {file:?} in $out, which is not a regular file")]
    NotRegularFile {
        /// The generator.
        name: String,
        /// The entry's name (lossily decoded).
        file: String,
    },

    /// `$out` contains a file whose name is not valid UTF-8.
    #[error("generator {name} produced {file:?} in $out, whose name is not valid UTF-8")]
    NonUtf8Output {
        /// The generator.
        name: String,
        /// The entry's name, lossily decoded.
        file: String,
    },
}

impl SandboxError {
    /// Wraps an I/O error with a description of what was being done.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        SandboxError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Renders the stderr tail of a failed script for the error message: nothing when it is empty,
/// otherwise a colon and the lines, each indented.
fn format_tail(tail: &str) -> String {
    if tail.trim().is_empty() {
        return String::from("; it printed nothing");
    }
    let mut rendered = String::from("; last lines of its output:");
    for line in tail.lines() {
        rendered.push_str("\n  ");
        rendered.push_str(line);
    }
    rendered
}
