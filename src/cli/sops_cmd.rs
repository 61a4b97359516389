//! `vars sops decrypt|encrypt` and `vars keygen`.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::Failure;
use crate::keys::{self, Identities, Recipient};
use crate::sops::{self, Format, SopsError, SopsFile};

#[derive(Subcommand)]
pub enum SopsCommand {
    /// Print the plaintext of a SOPS file (binary: the raw bytes).
    Decrypt {
        /// An age key file or OpenSSH private key (repeatable); then sops' own sources.
        #[arg(long = "identity", value_name = "FILE")]
        identities: Vec<PathBuf>,
        /// binary, yaml, json, dotenv or ini (default: from the file name).
        #[arg(long, value_name = "TYPE")]
        input_type: Option<String>,
        /// Print one value, e.g. '["a"]["b"]'.
        #[arg(long, value_name = "PATH")]
        extract: Option<String>,
        file: PathBuf,
    },
    /// Print FILE encrypted to the given age recipients.
    Encrypt {
        /// Recipients, comma separated: age1…, ssh-ed25519 …, ssh-rsa …, age1<plugin>1….
        #[arg(long = "age", value_name = "R[,R...]", required = true)]
        recipients: Vec<String>,
        /// binary, yaml or json (default: from the file name).
        #[arg(long, value_name = "TYPE")]
        input_type: Option<String>,
        file: PathBuf,
    },
}

fn format_of(input_type: Option<&str>, file: &Path) -> Result<Format, Failure> {
    match input_type {
        Some(name) => Format::from_name(name)
            .ok_or_else(|| Failure::new(SopsError::UnknownFormat(name.to_string()), 1)),
        None => Ok(Format::from_path(file)),
    }
}

fn read(file: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(file).map_err(|e| Failure::new(format!("{}: {e}", file.display()), 1))
}

fn write_stdout(bytes: &[u8]) -> Result<i32, Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(0),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(Failure::new(format!("writing to stdout: {e}"), 1)),
    }
}

pub fn run(cmd: SopsCommand) -> Result<i32, Failure> {
    match cmd {
        SopsCommand::Decrypt {
            identities,
            input_type,
            extract,
            file,
        } => {
            let format = format_of(input_type.as_deref(), &file)?;
            let name = file.display().to_string();
            let bytes = read(&file)?;
            let sealed = SopsFile::parse(&bytes, format, &name)?;
            let ids = Identities::discover(&identities)?;
            let plain = sealed.decrypt(&ids)?;
            let out = match extract {
                None => sops::emit_plain(&plain, format, &name)?,
                Some(path) => {
                    let node = sops::extract(&plain, &path).ok_or_else(|| {
                        Failure::new(format!("{name}: --extract {path}: no such key"), 1)
                    })?;
                    match node {
                        sops::Node::Scalar(s) => s.to_bytes(),
                        other => {
                            let fmt = if format == Format::Json {
                                Format::Json
                            } else {
                                Format::Yaml
                            };
                            sops::emit_plain(other, fmt, &name)?
                        }
                    }
                }
            };
            write_stdout(&out)
        }
        SopsCommand::Encrypt {
            recipients,
            input_type,
            file,
        } => {
            let format = format_of(input_type.as_deref(), &file)?;
            let recipients = parse_recipients(&recipients)?;
            let name = file.display().to_string();
            let bytes = zeroize::Zeroizing::new(read(&file)?);
            let tree = sops::parse_plain(&bytes, format, &name)?;
            let out = sops::encrypt_tree(&tree, format, &recipients, &name)?;
            write_stdout(&out)
        }
    }
}

/// `--age a,b --age c` → recipients. ssh keys contain spaces but no commas.
fn parse_recipients(args: &[String]) -> Result<Vec<Recipient>, Failure> {
    args.iter()
        .flat_map(|a| a.split(','))
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| r.parse::<Recipient>().map_err(Failure::from))
        .collect()
}

/// `vars keygen`: records the admin's public key, creating an age key when none exists.
pub fn keygen(user: Option<String>, repo: &Path, explicit: &[PathBuf]) -> Result<i32, Failure> {
    let user = match user.or_else(|| std::env::var("USER").ok()) {
        Some(u) if crate::store::valid_name(&u) => u,
        Some(u) => return Err(Failure::new(format!("invalid user name {u:?}"), 2)),
        None => {
            return Err(Failure::new(
                "no user name: pass --user NAME or set $USER",
                2,
            ))
        }
    };
    let ids = Identities::discover(explicit)?;
    let recipient = match ids.keys.iter().find_map(|(_, id)| id.to_recipient()) {
        Some(r) => r,
        None => {
            let path = keys::default_keys_txt()
                .ok_or_else(|| Failure::new("cannot find a home directory for the new key", 1))?;
            let recipient = crate::store::create_age_key_file(&path)?;
            eprintln!("created a new age key in {}", path.display());
            recipient
        }
    };
    let written = crate::store::Store::new(repo).write_user_key(&user, &recipient)?;
    eprintln!("{}: {recipient}", written.display());
    Ok(0)
}
