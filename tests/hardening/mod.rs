//! Shared pieces of the issue-7 hardening suites (crash_generate, locking,
//! hostile, hygiene, escape): a scratch repository with an admin key, hermetic
//! runs of the built `vars`, snapshots of the store, and reading generator
//! outputs back through the library.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;
use vars::graph::{Graph, NodeId};
use vars::keys::Identities;
use vars::manifest::Manifest;
use vars::store::Store;

/// The built binary.
pub fn vars_bin() -> &'static str {
    env!("CARGO_BIN_EXE_vars")
}

/// Whether `path` is on a tmpfs (statfs).
pub fn is_tmpfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
}

/// Whether a tool is on PATH. Outside CI a missing tool skips the test (false,
/// with a note on stderr); under `CI=true` it fails the test.
pub fn require(tool: &str) -> bool {
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(tool))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    });
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("`{tool}` is not on PATH, and CI=true: this test may not be skipped");
        }
        eprintln!("skipped: `{tool}` is not on PATH");
    }
    found
}

/// A scratch repository: `<dir>/vars.json`, `<dir>/sops/`, `$HOME` at
/// `<dir>/home` holding the admin's age key, and `XDG_RUNTIME_DIR` on a private
/// directory of a tmpfs (so the sandbox's working directories of this test, and
/// anything a crash leaves there, can be looked at).
pub struct Repo {
    _tmp: TempDir,
    _run: Option<TempDir>,
    pub dir: PathBuf,
    pub home: PathBuf,
    /// `XDG_RUNTIME_DIR` of every run (a tmpfs directory), when /dev/shm is a tmpfs.
    pub run_dir: Option<PathBuf>,
}

impl Repo {
    /// A repository in the system temporary directory (persistent disk, usually).
    pub fn new(manifest: &serde_json::Value) -> Repo {
        Repo::create(None, manifest)
    }

    /// A repository on a tmpfs when one is available (fast commits: kill -9
    /// leaves the page cache intact, so fsync plays no part in what it tests).
    pub fn on_tmpfs(manifest: &serde_json::Value) -> Repo {
        let shm = Path::new("/dev/shm");
        Repo::create(is_tmpfs(shm).then_some(shm), manifest)
    }

    fn create(base: Option<&Path>, manifest: &serde_json::Value) -> Repo {
        let mut builder = tempfile::Builder::new();
        builder.prefix("hardening-test-");
        let tmp = match base {
            Some(b) => builder.tempdir_in(b),
            None => builder.tempdir(),
        }
        .expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let home = dir.join("home");
        std::fs::create_dir_all(&home).expect("home");
        let shm = Path::new("/dev/shm");
        let run = is_tmpfs(shm).then(|| {
            tempfile::Builder::new()
                .prefix("hardening-run-")
                .tempdir_in(shm)
                .expect("run dir")
        });
        let run_dir = run.as_ref().map(|t| t.path().to_path_buf());
        let repo = Repo {
            _tmp: tmp,
            _run: run,
            dir,
            home,
            run_dir,
        };
        repo.write_manifest(manifest);
        repo.ok(&["keygen", "--user", "alice"]);
        repo
    }

    /// For a repository kept in a `static`, which is never dropped: its directories are
    /// removed when the test process exits.
    pub fn remove_at_exit(&self) {
        static PATHS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
        extern "C" fn remove_all() {
            if let Ok(paths) = PATHS.lock() {
                for p in paths.iter() {
                    let _ = std::fs::remove_dir_all(p);
                }
            }
        }
        let mut paths = PATHS.lock().unwrap_or_else(|p| p.into_inner());
        if paths.is_empty() {
            // SAFETY: registers a plain function; it runs once, at exit.
            unsafe { libc::atexit(remove_all) };
        }
        paths.push(self.dir.clone());
        paths.extend(self.run_dir.clone());
    }

    pub fn write_manifest(&self, manifest: &serde_json::Value) {
        std::fs::write(
            self.dir.join("vars.json"),
            serde_json::to_vec_pretty(manifest).unwrap(),
        )
        .expect("write vars.json");
    }

    pub fn sops(&self) -> PathBuf {
        self.dir.join("sops")
    }

    /// The admin's age key file.
    pub fn admin_key(&self) -> PathBuf {
        self.home.join(".config/sops/age/keys.txt")
    }

    /// A hermetic `vars` command in the repository: HOME, XDG_CONFIG_HOME and
    /// XDG_RUNTIME_DIR are the test's, no SOPS_* variable is inherited.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(vars_bin());
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("SOPS_") || k == "XDG_RUNTIME_DIR" {
                cmd.env_remove(&*k);
            }
        }
        cmd.env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("USER", "tester")
            .current_dir(&self.dir)
            .args(args)
            .stdin(Stdio::null());
        if let Some(run) = &self.run_dir {
            cmd.env("XDG_RUNTIME_DIR", run);
        }
        cmd
    }

    /// `sh -c script` with the environment of [`Repo::cmd`] and `$VARS` the binary.
    pub fn shell(&self, script: &str) -> Command {
        let template = self.cmd(&[]);
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script).env("VARS", vars_bin());
        for (k, v) in template.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.current_dir(&self.dir).stdin(Stdio::null());
        cmd
    }

    /// Runs `vars args` with `stdin`; asserts it neither panicked nor died of a signal.
    pub fn run_with(&self, args: &[&str], stdin: &[u8]) -> Output {
        use std::io::Write;
        let mut cmd = self.cmd(args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn vars");
        let mut pipe = child.stdin.take().unwrap();
        let _ = pipe.write_all(stdin);
        drop(pipe);
        let out = child.wait_with_output().expect("wait vars");
        assert_sane(args, &out);
        out
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, b"")
    }

    /// Runs and asserts exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "vars {args:?} failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `vars check` must be clean.
    pub fn check_clean(&self) {
        let out = self.run(&["check"]);
        assert_eq!(
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).as_ref(),
                String::from_utf8_lossy(&out.stderr).as_ref()
            ),
            (Some(0), "", "ok: the store matches the configuration\n"),
            "vars check is not clean"
        );
    }

    pub fn store(&self) -> Store {
        Store::new(&self.dir)
    }

    /// The admin identity, through the library.
    pub fn ids(&self) -> Identities {
        let mut ids = Identities::default();
        ids.add_file("admin", &self.admin_key()).expect("admin key");
        ids
    }

    pub fn manifest(&self) -> (Manifest, Graph) {
        let text = std::fs::read_to_string(self.dir.join("vars.json")).unwrap();
        let manifest = Manifest::from_json(&text, "vars.json").expect("manifest");
        let graph = Graph::build(&manifest).expect("graph");
        (manifest, graph)
    }

    /// Every entry left in the run directory (the sandbox's tmpfs base).
    pub fn run_dir_entries(&self) -> Vec<String> {
        let Some(run) = &self.run_dir else {
            return Vec::new();
        };
        let mut names: Vec<String> = std::fs::read_dir(run)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// No panic, no death by signal (a stack overflow aborts with SIGSEGV/SIGABRT).
pub fn assert_sane(args: &[&str], out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("stack overflow"),
        "vars {args:?} panicked:\n{stderr}"
    );
    assert!(
        out.status.code().is_some(),
        "vars {args:?} died of a signal ({}):\n{stderr}",
        out.status
    );
}

/// Every file and directory under `root` (relative path → mode and bytes;
/// directories have no bytes). `skip` names relative paths left out.
pub fn snapshot(root: &Path, skip: &[&str]) -> BTreeMap<String, (u32, Option<Vec<u8>>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if skip.contains(&rel.as_str()) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode();
            if meta.is_dir() {
                out.insert(rel, (mode, None));
                stack.push(path);
            } else {
                out.insert(rel, (mode, Some(std::fs::read(&path).unwrap_or_default())));
            }
        }
    }
    out
}

/// One stored output in clear, through the library (`None` when absent).
pub fn output(
    repo: &Repo,
    ids: &Identities,
    node: &NodeId,
    file: &str,
    secret: bool,
) -> Option<Vec<u8>> {
    vars::generate::read_output(&repo.store(), ids, node, file, secret)
        .unwrap_or_else(|e| panic!("{node}/{file}: {e}"))
        .map(|z| z.to_vec())
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}
