//! The command line: parses arguments, calls one use case, prints its result.
//! No logic of its own beyond choosing what to print.

mod activate_cmd;
mod sops_cmd;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Secrets generators for Nix fleets.
#[derive(Parser)]
#[command(name = "vars", version, about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read and write SOPS files (compatible with sops 3.11 and sops-nix).
    #[command(subcommand)]
    Sops(sops_cmd::SopsCommand),
    /// Record your age public key as an admin in sops/users/NAME/key.json.
    Keygen {
        /// The admin name (default: $USER).
        #[arg(long)]
        user: Option<String>,
        /// The repository (the store is DIR/sops).
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// An age key file or OpenSSH private key to take the public key from.
        #[arg(long = "identity", value_name = "FILE")]
        identities: Vec<PathBuf>,
    },
    /// Install a machine's secrets into /run/secrets, atomically (on the machine, as root).
    Activate(activate_cmd::ActivateArgs),
    /// Write a machine's age key and partitioning secrets into DIR, for nixos-anywhere.
    Upload(activate_cmd::UploadArgs),
}

/// A failure to report: the message and the exit code.
pub struct Failure {
    pub message: String,
    pub code: i32,
}

impl Failure {
    pub fn new(message: impl std::fmt::Display, code: i32) -> Failure {
        Failure {
            message: message.to_string(),
            code,
        }
    }
}

impl<E: std::error::Error> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure::new(e, 1)
    }
}

/// Runs the command line; returns the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sops(cmd) => sops_cmd::run(cmd),
        Command::Keygen {
            user,
            repo,
            identities,
        } => sops_cmd::keygen(user, &repo, &identities),
        Command::Activate(args) => activate_cmd::activate(args),
        Command::Upload(args) => activate_cmd::upload(args),
    };
    match result {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            failure.code
        }
    }
}
