//! `vars upload --machine M --to DIR`: what a fresh install needs before the
//! machine can decrypt anything itself, decrypted with the admin's identity:
//!
//! ```text
//! DIR/var/lib/vars/key.txt                      the machine's age key (0400; dirs var, var/lib 0755, var/lib/vars 0700)
//! DIR/run/partitioning-secrets/<gen>.<file>     neededFor = "partitioning" secrets (0400; dir 0700)
//! ```
//!
//! `var/` is meant for nixos-anywhere's `--extra-files DIR` (so DIR itself is
//! created 0755: its mode becomes the mode of the target's `/`), and each
//! partitioning secret for `--disk-encryption-keys /run/partitioning-secrets/<gen>.<file> DIR/run/partitioning-secrets/<gen>.<file>`.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use zeroize::Zeroizing;

use super::secrets::{self, StoreRoot};
use super::{locate_store, machine, ActivateError, Problem};
use crate::keys::Identities;
use crate::manifest::{Manifest, NeededFor};

#[derive(Clone, Debug)]
pub struct UploadOptions {
    pub machine: String,
    pub config: String,
    pub store: PathBuf,
    /// Admin identity files, tried before sops' own sources.
    pub identities: Vec<PathBuf>,
    pub to: PathBuf,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct UploadReport {
    /// Every file written, absolute.
    pub written: Vec<PathBuf>,
}

/// Creates `dir` (and missing parents) with `mode`, leaving existing ones alone.
fn mkdir(dir: &Path, mode: u32) -> Result<(), ActivateError> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(|e| ActivateError::io(dir, e))?;
    // The umask may have narrowed it.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(|e| ActivateError::io(dir, e))
}

/// Writes a 0400 file through a fresh temporary sibling and a rename.
fn write_secret(path: &Path, content: &[u8]) -> Result<(), ActivateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.vars-tmp-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let io = |e| ActivateError::io(path, e);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(io)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o400))
        .map_err(io)?;
    let written = f
        .write_all(content)
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    Ok(())
}

/// `vars upload`.
pub fn upload(opts: &UploadOptions) -> Result<UploadReport, ActivateError> {
    let manifest = Manifest::load(&opts.config)?;
    let mach = machine(&manifest, &opts.machine)?;
    let store: StoreRoot = locate_store(&opts.store)?;
    let ids =
        Identities::discover(&opts.identities).map_err(|e| ActivateError::Setup(e.to_string()))?;
    if ids.is_empty() {
        return Err(ActivateError::NoIdentity {
            machine: opts.machine.clone(),
            tried: ids.tried.clone(),
        });
    }
    let wanted = secrets::select(mach, |n| n == NeededFor::Partitioning);

    // Decrypt everything first: nothing is written unless all of it works.
    let key_path = store.age_key(&opts.machine);
    let (key, parts) = rayon::join(
        || secrets::decrypt_file(&key_path, &ids, &opts.machine),
        || {
            wanted
                .par_iter()
                .map(|w| {
                    secrets::decrypt_file(
                        &store.secret(&opts.machine, w.shared, &w.generator, &w.file),
                        &ids,
                        &opts.machine,
                    )
                })
                .collect::<Vec<_>>()
        },
    );
    let mut problems = Vec::new();
    let key = key
        .map_err(|cause| {
            problems.push(Problem {
                machine: opts.machine.clone(),
                generator: "(machine key)".into(),
                file: "age-key".into(),
                cause,
            })
        })
        .ok();
    let mut files: Vec<(String, Zeroizing<Vec<u8>>)> = Vec::new();
    for (w, r) in wanted.iter().zip(parts) {
        match r {
            Ok(c) => files.push((w.name(), c)),
            Err(cause) => problems.push(Problem {
                machine: opts.machine.clone(),
                generator: w.generator.clone(),
                file: w.file.clone(),
                cause,
            }),
        }
    }
    let (Some(key), true) = (key, problems.is_empty()) else {
        return Err(ActivateError::Refused {
            what: format!("upload of {}", opts.machine),
            problems,
            unchanged: format!("nothing was written to {}", opts.to.display()),
        });
    };

    let to = std::path::absolute(&opts.to).map_err(|e| ActivateError::io(&opts.to, e))?;
    let mut written = Vec::new();
    mkdir(&to, 0o755)?;
    mkdir(&to.join("var"), 0o755)?;
    mkdir(&to.join("var/lib"), 0o755)?;
    mkdir(&to.join("var/lib/vars"), 0o700)?;
    let key_file = to.join("var/lib/vars/key.txt");
    write_secret(&key_file, &key)?;
    written.push(key_file);
    if !files.is_empty() {
        mkdir(&to.join("run"), 0o755)?;
        let dir = to.join("run/partitioning-secrets");
        mkdir(&dir, 0o700)?;
        for (name, content) in &files {
            let path = dir.join(name);
            write_secret(&path, content)?;
            written.push(path);
        }
    }
    Ok(UploadReport { written })
}
