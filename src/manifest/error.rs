//! Everything that can be wrong with a configuration, each rendered as one line.

/// Why a manifest could not be loaded. `Display` is the single line shown to the user; every
/// validation error starts with the JSON path of the offending value.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The configuration file could not be read.
    #[error("{file}: cannot read: {error}")]
    Read {
        /// The configuration as given.
        file: String,
        /// What the operating system said.
        #[source]
        error: std::io::Error,
    },
    /// The text is not JSON (or repeats a key within one object).
    #[error("{file}: invalid JSON at line {line} column {column}: {message}")]
    Json {
        /// The configuration as given.
        file: String,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What the parser said, without its position suffix.
        message: String,
    },
    /// The configuration does not name a `.json` file, a `.nix` file or a flake output.
    #[error(
        "{config}: unsupported configuration: expected a .json file, a .nix file \
         or a flake reference like .#vars"
    )]
    Unsupported {
        /// The configuration as given.
        config: String,
    },
    /// Nix could not be started.
    #[error("{config}: cannot run {program}: {reason}")]
    NixUnavailable {
        /// The configuration as given.
        config: String,
        /// The Nix command that was tried.
        program: &'static str,
        /// Why it could not be started.
        reason: String,
    },
    /// Nix ran but failed to evaluate the configuration.
    #[error("{config}: {program} failed ({status}): {message}")]
    NixFailed {
        /// The configuration as given.
        config: String,
        /// The Nix command that failed.
        program: &'static str,
        /// How it exited, e.g. `exit status: 1`.
        status: String,
        /// The most specific line of its error output.
        message: String,
    },
    /// The JSON does not describe a valid fleet.
    #[error("{path}: {message}")]
    Invalid {
        /// Where in the document, like `machines.cinnabar.generators.openssh.files.key.mode`.
        path: String,
        /// What is wrong there.
        message: String,
    },
}

impl ManifestError {
    /// The process exit code for this error: 2, a configuration error.
    pub fn exit_code(&self) -> i32 {
        2
    }
}
