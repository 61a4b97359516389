//! The command line: parses arguments, calls one use case, prints its result.
//! No logic of its own beyond choosing what to print.

mod activate_cmd;
mod engine_cmd;
mod sops_cmd;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Secrets generators for Nix fleets.
#[derive(Parser)]
#[command(name = "vars", version, about, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    repo: engine_cmd::Repo,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read and write SOPS files (compatible with sops 3.11 and sops-nix).
    #[command(subcommand)]
    Sops(sops_cmd::SopsCommand),
    /// Run every generator that is missing or outdated, and seal its outputs.
    Generate(engine_cmd::GenerateArgs),
    /// Report what is missing, outdated, sealed to the wrong keys or orphaned (no key needed).
    Check {
        #[arg(long = "machine", value_name = "M")]
        machines: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// List every declared file with its status; public values are shown.
    List {
        #[arg(long, value_name = "M")]
        machine: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Print a stored value (secrets decrypted) as raw bytes.
    Get {
        machine: String,
        #[arg(value_name = "GEN/FILE")]
        file: String,
        #[arg(long = "identity", value_name = "FILE")]
        identities: Vec<PathBuf>,
    },
    /// Store stdin as a value (sealed when secret).
    Set {
        machine: String,
        #[arg(value_name = "GEN/FILE")]
        file: String,
    },
    /// Re-seal the secrets whose recipients differ from the wanted set; others stay byte-identical.
    Rekey {
        #[arg(long = "machine", value_name = "M")]
        machines: Vec<String>,
        #[arg(long = "identity", value_name = "FILE")]
        identities: Vec<PathBuf>,
    },
    /// Remove stored generators and files the configuration no longer declares.
    Prune {
        #[arg(long = "machine", value_name = "M")]
        machines: Vec<String>,
    },
    /// Print the generator DAG as Graphviz DOT.
    Graph {
        #[arg(long, value_name = "M")]
        machine: Option<String>,
    },
    /// Record your age public key as an admin in sops/users/NAME/key.json.
    Keygen {
        /// The admin name (default: $USER).
        #[arg(long)]
        user: Option<String>,
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
        Command::Keygen { user, identities } => sops_cmd::keygen(user, &cli.repo.repo, &identities),
        Command::Generate(args) => engine_cmd::generate(&cli.repo, args),
        Command::Check { machines, json } => engine_cmd::check(&cli.repo, &machines, json),
        Command::List { machine, json } => engine_cmd::list(&cli.repo, machine.as_deref(), json),
        Command::Get {
            machine,
            file,
            identities,
        } => engine_cmd::get(&cli.repo, &machine, &file, &identities),
        Command::Set { machine, file } => engine_cmd::set(&cli.repo, &machine, &file),
        Command::Rekey {
            machines,
            identities,
        } => engine_cmd::rekey(&cli.repo, &machines, &identities),
        Command::Prune { machines } => engine_cmd::prune(&cli.repo, &machines),
        Command::Graph { machine } => engine_cmd::graph(&cli.repo, machine.as_deref()),
        Command::Activate(args) => activate_cmd::activate(&cli.repo, args),
        Command::Upload(args) => activate_cmd::upload(&cli.repo, args),
    };
    match result {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            failure.code
        }
    }
}
