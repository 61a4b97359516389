//! `vars activate` and `vars upload`.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use super::engine_cmd::Repo;
use super::Failure;
use crate::activate::{self, ActivateError, Phase, Report};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PhaseArg {
    /// neededFor activation and services, into /run/secrets.
    Services,
    /// neededFor users, into /run/secrets-for-users (root or numeric owners only).
    Users,
}

impl From<PhaseArg> for Phase {
    fn from(p: PhaseArg) -> Phase {
        match p {
            PhaseArg::Services => Phase::Services,
            PhaseArg::Users => Phase::Users,
        }
    }
}

#[derive(Args)]
pub struct ActivateArgs {
    /// The machine whose secrets to install (not needed with --rollback).
    #[arg(long, required_unless_present = "rollback")]
    machine: Option<String>,
    /// The repository holding sops/, or that sops/ directory itself [default: --repo].
    /// The configuration is --config, else DIR/fleet.nix, else DIR/vars.json.
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// An age key file or OpenSSH ed25519 private key (repeatable)
    /// [default: /var/lib/vars/key.txt and /etc/ssh/ssh_host_ed25519_key].
    #[arg(long = "identity", value_name = "FILE")]
    identities: Vec<PathBuf>,
    /// Where to install (a symlink to the current generation)
    /// [default: /run/secrets; /run/secrets-for-users for --phase users].
    #[arg(long, value_name = "DIR")]
    secrets_dir: Option<PathBuf>,
    /// Which secrets: services (neededFor activation and services) or users.
    #[arg(long, value_enum, default_value = "services")]
    phase: PhaseArg,
    /// Generations kept, the current one included.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    keep_generations: u32,
    /// Decrypt and check everything and report what would change; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the change report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Point the secrets directory back at the previous kept generation.
    #[arg(long, conflicts_with_all = ["dry_run", "identities"])]
    rollback: bool,
    /// Accept a secrets directory that is not on a ramfs (tmpfs or disk).
    #[arg(long)]
    allow_disk: bool,
}

#[derive(Args)]
pub struct UploadArgs {
    /// The machine being installed.
    #[arg(long)]
    machine: String,
    /// The directory to fill (for nixos-anywhere --extra-files / --disk-encryption-keys).
    #[arg(long, value_name = "DIR")]
    to: PathBuf,
    /// The repository holding sops/ [default: --repo].
    /// The configuration is --config, else DIR/fleet.nix, else DIR/vars.json.
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// An admin age key file or OpenSSH private key (repeatable); then sops' own sources.
    #[arg(long = "identity", value_name = "FILE")]
    identities: Vec<PathBuf>,
}

/// `--store`, else `--repo`; and `--config`, else `DIR/fleet.nix`, else `DIR/vars.json`.
fn locate(repo: &Repo, store: Option<PathBuf>) -> Result<(PathBuf, String), Failure> {
    let store = store.unwrap_or_else(|| repo.repo.clone());
    let config = config_of(repo.config.clone(), &store)?;
    Ok((store, config))
}

fn config_of(config: Option<String>, store: &Path) -> Result<String, Failure> {
    if let Some(c) = config {
        return Ok(c);
    }
    for name in ["fleet.nix", "vars.json"] {
        let p = store.join(name);
        if p.is_file() {
            return Ok(p.display().to_string());
        }
    }
    Err(Failure::new(
        format!(
            "no configuration: pass --config MANIFEST (looked for {} and {})",
            store.join("fleet.nix").display(),
            store.join("vars.json").display()
        ),
        2,
    ))
}

fn print_report(report: &Report, json: bool) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    let text = if json {
        let mut s = serde_json::to_string_pretty(report).map_err(Failure::from)?;
        s.push('\n');
        s
    } else {
        human(report)
    };
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::new(format!("writing to stdout: {e}"), 1)),
    }
}

fn human(r: &Report) -> String {
    let n = r.files.len();
    let plural = if n == 1 { "" } else { "s" };
    let mut s = if r.dry_run {
        format!(
            "{}: dry run: would install {n} secret{plural} in {} (now at {})\n",
            r.machine,
            r.secrets_dir,
            r.previous
                .map_or("no generation".to_string(), |p| format!("generation {p}"))
        )
    } else if r.rollback {
        format!(
            "{}: rolled {} back from generation {} to {}\n",
            r.machine,
            r.secrets_dir,
            r.previous.unwrap_or_default(),
            r.generation.unwrap_or_default()
        )
    } else {
        format!(
            "{}: installed {n} secret{plural} in {} (generation {}, {})\n",
            r.machine,
            r.secrets_dir,
            r.generation.unwrap_or_default(),
            r.storage.as_deref().unwrap_or("?")
        )
    };
    if r.unchanged() {
        s.push_str("  no changes\n");
    }
    for (label, names) in [
        ("added", &r.added),
        ("changed", &r.changed),
        ("removed", &r.removed),
        ("restart", &r.restart_units),
    ] {
        for name in names {
            s.push_str(&format!("  {label:<8} {name}\n"));
        }
    }
    s
}

/// Configuration errors keep their own exit code (2); every refusal is 1.
fn failure(e: ActivateError) -> Failure {
    let code = match &e {
        ActivateError::Manifest(m) => m.exit_code(),
        _ => 1,
    };
    Failure::new(e, code)
}

/// `vars activate`.
pub fn activate(repo: &Repo, args: ActivateArgs) -> Result<i32, Failure> {
    let phase: Phase = args.phase.into();
    let secrets_dir = args
        .secrets_dir
        .unwrap_or_else(|| PathBuf::from(phase.default_dir()));
    let report = if args.rollback {
        activate::rollback(&secrets_dir, phase).map_err(failure)?
    } else {
        let (store, config) = locate(repo, args.store)?;
        let opts = activate::Options {
            machine: args.machine.unwrap_or_default(),
            config,
            store,
            identities: args.identities,
            secrets_dir,
            phase,
            keep_generations: args.keep_generations as usize,
            dry_run: args.dry_run,
            allow_disk: args.allow_disk,
        };
        activate::activate(&opts).map_err(failure)?
    };
    print_report(&report, args.json)?;
    Ok(0)
}

/// `vars upload`.
pub fn upload(repo: &Repo, args: UploadArgs) -> Result<i32, Failure> {
    let (store, config) = locate(repo, args.store)?;
    let opts = activate::UploadOptions {
        config,
        machine: args.machine,
        store,
        identities: args.identities,
        to: args.to,
    };
    let report = activate::upload(&opts).map_err(failure)?;
    for path in &report.written {
        println!("{}", path.display());
    }
    Ok(0)
}
