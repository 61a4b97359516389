//! The on-disk layout under `sops/`, atomic commits of a generator's outputs,
//! and the lock that serialises writers.
//!
//! ```text
//! sops/users/<user>/key.json                      admin recipients
//! sops/machines/<m>/key.json                      machine recipient
//! sops/machines/<m>/age-key                       the machine's age key, sealed to the admins
//! sops/machines/<m>/secrets/<gen>/<file>          SOPS binary
//! sops/machines/<m>/public/<gen>/<file>           raw bytes
//! sops/machines/<m>/meta/<gen>.json               what the generator was made from
//! sops/shared/{secrets,public}/<gen>/<file>, sops/shared/meta/<gen>.json
//! sops/.lock, sops/.tx/<id>/                      lock file, in-flight commits
//! ```

mod lock;
mod meta;
mod tx;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub use lock::Lock;
pub use meta::GenMeta;
pub use tx::{pending as tx_pending, Tx};

use crate::keys::{self, KeyError, Recipient};
use crate::sops::SopsFile;

/// Store failures; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Sops(#[from] crate::sops::SopsError),
    #[error("{path}: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("{path} already exists; not overwriting it")]
    Exists { path: String },
}

/// An I/O error on `path`, for the layers above.
pub(crate) fn io_error(path: &Path, source: std::io::Error) -> StoreError {
    io(path)(source)
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Whose outputs: one machine's, or the shared ones.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Owner {
    Machine(String),
    Shared,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::Machine(m) => f.write_str(m),
            Owner::Shared => f.write_str("shared"),
        }
    }
}

/// Secret files are sealed; public files are raw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Secret,
    Public,
}

impl Kind {
    pub fn dir(self) -> &'static str {
        match self {
            Kind::Secret => "secrets",
            Kind::Public => "public",
        }
    }
}

/// A name usable as one path component: not empty, not `.`/`..`, no `/` or NUL.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// The store of one repository.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// The store of `repo` (its `sops/` directory).
    pub fn new(repo: &Path) -> Store {
        Store {
            root: repo.join("sops"),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the writer lock, waiting for another vars process to finish, then
    /// completes or discards any commit a crash interrupted.
    pub fn lock(&self) -> Result<Lock, StoreError> {
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        let lock = Lock::acquire(&self.root)?;
        tx::recover(&self.root)?;
        Ok(lock)
    }

    pub fn owner_dir(&self, owner: &Owner) -> PathBuf {
        match owner {
            Owner::Machine(m) => self.root.join("machines").join(m),
            Owner::Shared => self.root.join("shared"),
        }
    }

    /// The directory of one generator's files of one kind.
    pub fn gen_dir(&self, owner: &Owner, kind: Kind, gen: &str) -> PathBuf {
        self.owner_dir(owner).join(kind.dir()).join(gen)
    }

    pub fn file_path(&self, owner: &Owner, kind: Kind, gen: &str, file: &str) -> PathBuf {
        self.gen_dir(owner, kind, gen).join(file)
    }

    pub fn meta_path(&self, owner: &Owner, gen: &str) -> PathBuf {
        self.owner_dir(owner)
            .join("meta")
            .join(format!("{gen}.json"))
    }

    /// What a generator was made from; `None` when it was never generated.
    pub fn read_meta(&self, owner: &Owner, gen: &str) -> Result<Option<GenMeta>, StoreError> {
        let path = self.meta_path(owner, gen);
        match read_small(&path) {
            Ok(bytes) => GenMeta::parse(&bytes)
                .map(Some)
                .map_err(|reason| StoreError::Corrupt {
                    path: path.display().to_string(),
                    reason,
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// A stored file's bytes (sealed or raw); `None` when absent.
    pub fn read_file(
        &self,
        owner: &Owner,
        kind: Kind,
        gen: &str,
        file: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.file_path(owner, kind, gen, file);
        match read_small(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// A stored secret, parsed but not decrypted.
    pub fn read_sealed(
        &self,
        owner: &Owner,
        gen: &str,
        file: &str,
    ) -> Result<Option<SopsFile>, StoreError> {
        let path = self.file_path(owner, Kind::Secret, gen, file);
        match self.read_file(owner, Kind::Secret, gen, file)? {
            Some(bytes) => Ok(Some(SopsFile::parse(
                &bytes,
                crate::sops::Format::Binary,
                &path.display().to_string(),
            )?)),
            None => Ok(None),
        }
    }

    /// Every (generator, kind, file) stored for an owner, sorted. The generators'
    /// directories are listed in parallel (a directory listing is three system calls).
    pub fn stored_files(&self, owner: &Owner) -> Result<Vec<(String, Kind, String)>, StoreError> {
        use rayon::prelude::*;
        let mut dirs = Vec::new();
        for kind in [Kind::Secret, Kind::Public] {
            let dir = self.owner_dir(owner).join(kind.dir());
            for gen in list_dir(&dir)? {
                let path = dir.join(&gen);
                dirs.push((gen, kind, path));
            }
        }
        let listed: Vec<Result<Vec<String>, StoreError>> =
            dirs.par_iter().map(|(_, _, path)| list_dir(path)).collect();
        let mut out = Vec::new();
        for ((gen, kind, _), files) in dirs.into_iter().zip(listed) {
            for file in files? {
                out.push((gen.clone(), kind, file));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Generators with metadata for an owner.
    pub fn stored_generators(&self, owner: &Owner) -> Result<Vec<String>, StoreError> {
        Ok(list_dir(&self.owner_dir(owner).join("meta"))?
            .into_iter()
            .filter_map(|f| f.strip_suffix(".json").map(str::to_string))
            .collect())
    }

    /// Machines with a directory in the store.
    pub fn stored_machines(&self) -> Result<Vec<String>, StoreError> {
        list_dir(&self.root.join("machines"))
    }

    /// The admins: every `sops/users/<name>/key.json`, sorted by name.
    pub fn admins(&self) -> Result<Vec<(String, Vec<Recipient>)>, StoreError> {
        let dir = self.root.join("users");
        let mut out = Vec::new();
        for user in list_dir(&dir)? {
            let path = dir.join(&user).join("key.json");
            if path.exists() {
                out.push((user, keys::read_key_json(&path)?));
            }
        }
        Ok(out)
    }

    /// A machine's recipients from its key.json; `None` when it has none yet.
    pub fn machine_recipients(&self, machine: &str) -> Result<Option<Vec<Recipient>>, StoreError> {
        let path = self
            .owner_dir(&Owner::Machine(machine.into()))
            .join("key.json");
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some(keys::read_key_json(&path)?))
    }

    /// Writes `sops/users/<user>/key.json`.
    pub fn write_user_key(&self, user: &str, recipient: &Recipient) -> Result<PathBuf, StoreError> {
        let path = self.root.join("users").join(user).join("key.json");
        write_atomic(
            &path,
            keys::key_json_text(std::slice::from_ref(recipient)).as_bytes(),
        )?;
        Ok(path)
    }

    /// Creates a machine key: the private key sealed to `admins` in `age-key`,
    /// then the public key in key.json (in that order, so a crash never leaves a
    /// key.json without its private key).
    pub fn create_machine_key(
        &self,
        machine: &str,
        admins: &[Recipient],
    ) -> Result<Recipient, StoreError> {
        let (id, text) = keys::generate_identity();
        let mut line = zeroize::Zeroizing::new(text.as_bytes().to_vec());
        line.push(b'\n');
        let sealed = crate::sops::encrypt_binary(&line, admins)?;
        let dir = self.owner_dir(&Owner::Machine(machine.into()));
        write_atomic(&dir.join("age-key"), &sealed)?;
        let recipient: Recipient = id
            .to_public()
            .to_string()
            .parse()
            .map_err(StoreError::Key)?;
        write_atomic(
            &dir.join("key.json"),
            keys::key_json_text(std::slice::from_ref(&recipient)).as_bytes(),
        )?;
        Ok(recipient)
    }

    /// Starts a commit of generator outputs.
    pub fn begin(&self, _lock: &Lock) -> Result<Tx, StoreError> {
        Tx::begin(self)
    }
}

/// A small file's bytes. Unlike `std::fs::read`, no `fstat` for a size hint: a no-op
/// `generate` or `check` reads thousands of metadata and sealed files of a few KiB, and
/// the call is a tenth of each read.
fn read_small(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::with_capacity(4096);
    // Through `take`: `File::read_to_end` itself asks for the size.
    std::fs::File::open(path)?
        .take(u64::MAX)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Sorted entry names of a directory, without hidden entries; empty when absent.
pub fn list_dir(dir: &Path) -> Result<Vec<String>, StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// Writes a file through a temporary sibling and a rename, fsyncing both.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".vars-tmp-")
        .tempfile_in(dir)
        .map_err(io(dir))?;
    tmp.write_all(bytes).map_err(io(path))?;
    tmp.as_file().sync_all().map_err(io(path))?;
    tmp.persist(path).map_err(|e| io(path)(e.error))?;
    sync_dir(dir);
    Ok(())
}

/// fsync a directory so a rename in it is durable (best effort).
pub fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Creates a new age key file (0600), never overwriting; returns its recipient.
pub fn create_age_key_file(path: &Path) -> Result<Recipient, StoreError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let (id, text) = keys::generate_identity();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => StoreError::Exists {
                path: path.display().to_string(),
            },
            _ => io(path)(e),
        })?;
    let public = id.to_public().to_string();
    let body = zeroize::Zeroizing::new(format!(
        "# created by vars keygen\n# public key: {public}\n{}\n",
        text.as_str()
    ));
    file.write_all(body.as_bytes()).map_err(io(path))?;
    file.sync_all().map_err(io(path))?;
    public.parse().map_err(StoreError::Key)
}
