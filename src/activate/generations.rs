//! The installed tree of one secrets directory:
//!
//! ```text
//! <parent>/<name>            symlink → <name>.d/<N>   (swapped atomically: new link + rename)
//! <parent>/<name>.d/         ramfs, 0751
//! <parent>/<name>.d/<N>/     one complete generation: <generator>.<file>, 0751
//! <parent>/<name>.d/<N>.json what generation N holds: restartUnits and path of each file
//! <parent>/<name>.d/.new-<N> a generation being written (never linked)
//!
//! Concurrent runs on one directory are serialised by an `flock` on `<parent>`.
//! ```
//!
//! A generation directory only gets its number once it is complete, and the
//! link only ever points at a numbered directory, so the link always points
//! at a complete generation whenever the process is killed.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::fsx::{Attrs, DirFd, EntryKind};
use super::secrets::Prepared;

/// What `<N>.json` records about each installed file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileInfo {
    pub generator: String,
    pub file: String,
    #[serde(default)]
    pub restart_units: Vec<String>,
    #[serde(default)]
    pub path: Option<String>,
}

/// `<N>.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenInfo {
    #[serde(default)]
    pub machine: String,
    #[serde(default)]
    pub phase: String,
    #[serde(default)]
    pub files: BTreeMap<String, FileInfo>,
}

/// One installed (or to be installed) file.
pub struct Installed {
    pub content: Zeroizing<Vec<u8>>,
    pub attrs: Attrs,
    pub info: FileInfo,
}

/// The files of a generation, by installed name.
#[derive(Default)]
pub struct Snapshot {
    pub machine: String,
    pub files: BTreeMap<String, Installed>,
}

impl Snapshot {
    pub fn from_prepared(machine: &str, prepared: Vec<Prepared>) -> Snapshot {
        let files = prepared
            .into_iter()
            .map(|p| {
                let name = p.wanted.name();
                let info = FileInfo {
                    generator: p.wanted.generator,
                    file: p.wanted.file,
                    restart_units: p.wanted.decl.restart_units,
                    path: p.wanted.decl.path,
                };
                let attrs = Attrs {
                    uid: p.uid,
                    gid: p.gid,
                    mode: p.mode,
                };
                (
                    name,
                    Installed {
                        content: p.content,
                        attrs,
                        info,
                    },
                )
            })
            .collect();
        Snapshot {
            machine: machine.to_string(),
            files,
        }
    }

    fn info(&self, phase: &str) -> GenInfo {
        GenInfo {
            machine: self.machine.clone(),
            phase: phase.to_string(),
            files: self
                .files
                .iter()
                .map(|(n, f)| (n.clone(), f.info.clone()))
                .collect(),
        }
    }
}

/// What changed between two generations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// The union of the restartUnits of every added, changed and removed file.
    pub restart_units: Vec<String>,
}

/// Compares content, owner, group and mode of every file.
pub fn compare(old: Option<&Snapshot>, new: &Snapshot) -> Changes {
    let empty = Snapshot::default();
    let old = old.unwrap_or(&empty);
    let mut ch = Changes::default();
    let mut units = BTreeSet::new();
    for (name, f) in &new.files {
        match old.files.get(name) {
            None => ch.added.push(name.clone()),
            Some(o) if o.content.as_slice() != f.content.as_slice() || o.attrs != f.attrs => {
                ch.changed.push(name.clone())
            }
            Some(_) => continue,
        }
        units.extend(f.info.restart_units.iter().cloned());
    }
    for (name, o) in &old.files {
        if !new.files.contains_key(name) {
            ch.removed.push(name.clone());
            units.extend(o.info.restart_units.iter().cloned());
        }
    }
    ch.restart_units = units.into_iter().collect();
    ch
}

/// Where a secrets directory lives.
pub struct Layout {
    /// The absolute path of the link (`/run/secrets`).
    pub link: PathBuf,
    pub parent: PathBuf,
    pub link_name: OsString,
    pub dotd_name: OsString,
}

fn number(name: &OsStr) -> Option<u64> {
    let s = name.to_str()?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

fn os(s: impl AsRef<str>) -> OsString {
    OsString::from(s.as_ref())
}

impl Layout {
    pub fn new(link: &Path) -> io::Result<Layout> {
        let link = std::path::absolute(link)?;
        let (Some(parent), Some(name)) = (link.parent(), link.file_name()) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the secrets directory must have a parent directory and a name",
            ));
        };
        let mut dotd = name.to_os_string();
        dotd.push(".d");
        Ok(Layout {
            link: link.clone(),
            parent: parent.to_path_buf(),
            link_name: name.to_os_string(),
            dotd_name: dotd,
        })
    }

    pub fn dotd(&self) -> PathBuf {
        self.parent.join(&self.dotd_name)
    }

    pub fn open_parent(&self) -> io::Result<DirFd> {
        DirFd::open_following(&self.parent)
    }

    /// The generation the link points at. `Ok(None)`: no link. An error when
    /// the name holds something other than a symlink.
    pub fn current(&self, parent: &DirFd) -> io::Result<Option<u64>> {
        match parent.readlink(&self.link_name) {
            Ok(None) => Ok(None),
            Ok(Some(target)) => {
                let in_dotd = target
                    .parent()
                    .and_then(Path::file_name)
                    .is_some_and(|p| p == self.dotd_name.as_os_str());
                Ok(target.file_name().filter(|_| in_dotd).and_then(number))
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not the symlink vars manages; move it away first",
                    self.link.display()
                ),
            )),
            Err(e) => Err(e),
        }
    }

    /// Points the link at generation `n`: a new link beside it, renamed over it.
    pub fn swap_link(&self, parent: &DirFd, n: u64) -> io::Result<()> {
        let mut tmp = OsString::from(".");
        tmp.push(&self.link_name);
        tmp.push(format!(".vars-new-{}", std::process::id()));
        parent.unlink(&tmp)?;
        let target = Path::new(&self.dotd_name).join(n.to_string());
        parent.symlink(&target, &tmp)?;
        if let Err(e) = parent.rename(&tmp, &self.link_name) {
            let _ = parent.unlink(&tmp);
            return Err(e);
        }
        parent.sync()
    }

    /// The absolute path a `path` symlink points at: `<link>/<name>`.
    pub fn installed_path(&self, name: &str) -> PathBuf {
        self.link.join(name)
    }
}

/// The numbered generations in `.d`, ascending (any entry with a number counts,
/// so a planted entry cannot make a number be reused).
pub fn numbers(dotd: &DirFd) -> io::Result<Vec<u64>> {
    let mut out: Vec<u64> = dotd
        .entries()?
        .iter()
        .filter_map(|(n, _)| number(n))
        .collect();
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Reads generation `n`; `None` when it is not a directory. Symlinks inside
/// are never followed (such entries are skipped).
pub fn read_generation(dotd: &DirFd, n: u64) -> io::Result<Option<Snapshot>> {
    let dir = match dotd.open_dir(&os(n.to_string())) {
        Ok(d) => d,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT | libc::ELOOP | libc::ENOTDIR)
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let info: GenInfo = match dotd.read_file(&os(format!("{n}.json")))? {
        Some((bytes, _)) => serde_json::from_slice(&bytes).unwrap_or_default(),
        None => GenInfo::default(),
    };
    let names: Vec<String> = dir
        .entries()?
        .into_iter()
        .filter(|(name, kind)| *kind == EntryKind::File && !name.as_bytes().starts_with(b"."))
        .filter_map(|(name, _)| name.into_string().ok())
        .collect();
    let read: Vec<Option<(String, Installed)>> = names
        .into_par_iter()
        .map(|name| {
            Ok(dir.read_file(OsStr::new(&name))?.map(|(content, attrs)| {
                let info = info.files.get(&name).cloned().unwrap_or_default();
                (
                    name,
                    Installed {
                        content,
                        attrs,
                        info,
                    },
                )
            }))
        })
        .collect::<io::Result<_>>()?;
    let files: BTreeMap<String, Installed> = read.into_iter().flatten().collect();
    Ok(Some(Snapshot {
        machine: info.machine,
        files,
    }))
}

/// Removes what an interrupted run left behind: `.new-*` directories,
/// temporary files, and `<N>.json` files without their generation.
pub fn clean_leftovers(dotd: &DirFd) -> io::Result<()> {
    let nums: BTreeSet<u64> = numbers(dotd)?.into_iter().collect();
    for (name, _) in dotd.entries()? {
        let bytes = name.as_bytes();
        let stale_json = name
            .to_str()
            .and_then(|s| s.strip_suffix(".json"))
            .and_then(|s| number(OsStr::new(s)))
            .is_some_and(|n| !nums.contains(&n));
        if bytes.starts_with(b".new-") || bytes.starts_with(b".tmp-") || stale_json {
            dotd.remove_tree(&name)?;
        }
    }
    Ok(())
}

/// Writes generation `n` completely under a temporary name, records its
/// `<n>.json`, then gives it its number.
pub fn write_generation(dotd: &DirFd, n: u64, snap: &Snapshot, phase: &str) -> io::Result<()> {
    let staging = os(format!(".new-{n}"));
    dotd.remove_tree(&staging)?;
    dotd.mkdir(&staging, 0o700)?;
    let dir = dotd.open_dir(&staging)?;
    snap.files.par_iter().try_for_each(|(name, f)| {
        dir.create_file(OsStr::new(name), Some(f.attrs), f.attrs.mode, &f.content)
    })?;
    dir.chmod(0o751)?;
    let mut json = serde_json::to_vec_pretty(&snap.info(phase)).map_err(io::Error::other)?;
    json.push(b'\n');
    let tmp = os(format!(".tmp-{n}.json"));
    dotd.unlink(&tmp)?;
    dotd.create_file(&tmp, None, 0o600, &json)?;
    // One flush for every file above, before any of them gets its final name.
    dotd.sync_fs()?;
    dotd.rename(&tmp, &os(format!("{n}.json")))?;
    dotd.rename(&staging, &os(n.to_string()))?;
    dotd.sync()
}

/// Removes generation `n` and its record.
pub fn remove_generation(dotd: &DirFd, n: u64) -> io::Result<()> {
    dotd.remove_tree(&os(n.to_string()))?;
    dotd.unlink(&os(format!("{n}.json")))
}

/// Keeps `current` and the `keep - 1` newest generations before it; removes
/// every other numbered entry. Returns the removed numbers.
pub fn prune(dotd: &DirFd, current: u64, keep: usize) -> io::Result<Vec<u64>> {
    let nums = numbers(dotd)?;
    let older: Vec<u64> = nums.iter().copied().filter(|&n| n < current).collect();
    let kept_older: BTreeSet<u64> = older
        .iter()
        .rev()
        .take(keep.saturating_sub(1))
        .copied()
        .collect();
    let mut removed = Vec::new();
    for n in nums {
        if n != current && !kept_older.contains(&n) {
            remove_generation(dotd, n)?;
            removed.push(n);
        }
    }
    dotd.sync()?;
    Ok(removed)
}

/// Creates or atomically replaces the symlink `path` → `target`. Only a
/// missing entry or a symlink is replaced.
pub fn install_path_link(path: &Path, target: &Path) -> io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an absolute file path",
        ));
    };
    std::fs::create_dir_all(parent)?;
    let dir = DirFd::open_following(parent)?;
    match dir.stat(name)? {
        None | Some((EntryKind::Symlink, _)) => {}
        Some(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists and is not a symlink; vars only replaces its own symlinks",
            ))
        }
    }
    if dir.readlink(name).ok().flatten().as_deref() == Some(target) {
        return Ok(());
    }
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".vars-new-{}", std::process::id()));
    dir.unlink(&tmp)?;
    dir.symlink(target, &tmp)?;
    if let Err(e) = dir.rename(&tmp, name) {
        let _ = dir.unlink(&tmp);
        return Err(e);
    }
    dir.sync()
}

/// Removes the symlink `path` if it still points at `target`.
pub fn remove_path_link(path: &Path, target: &Path) -> io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(());
    };
    let dir = match DirFd::open_following(parent) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    match dir.readlink(name) {
        Ok(Some(t)) if t == target => dir.unlink(name),
        _ => Ok(()),
    }
}
