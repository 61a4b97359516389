//! Shared helpers for the engine's integration tests, casey/just style: a
//! [`Fleet`] is a repository in a temporary directory (a `vars.json`, an admin
//! key, the store under `sops/`), and every command runs the built `vars`
//! binary in it, hermetically: `HOME` and `XDG_CONFIG_HOME` point into the
//! temporary directory and no `SOPS_AGE_*` variable leaks in from the caller.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use serde_json::{json, Value};
use tempfile::TempDir;

/// Variables through which sops and vars find identities or recipients.
pub const KEY_VARS: [&str; 5] = [
    "SOPS_AGE_KEY",
    "SOPS_AGE_KEY_FILE",
    "SOPS_AGE_KEY_CMD",
    "SOPS_AGE_SSH_PRIVATE_KEY_FILE",
    "SOPS_AGE_RECIPIENTS",
];

/// Whether `tool` is on PATH. Outside CI a missing tool skips the test (false,
/// with a note on stderr); with `CI=true` it fails the test.
pub fn require(tool: &str) -> bool {
    if which(tool).is_some() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("`{tool}` is not on PATH, and CI=true: this test may not be skipped");
    }
    eprintln!("skipped: `{tool}` is not on PATH");
    false
}

/// The first executable `tool` on PATH.
pub fn which(tool: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// What one run of a command printed, and how it exited.
#[derive(Debug, Clone)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

impl Output {
    /// Panics with the whole output unless the command exited with `code`.
    #[track_caller]
    pub fn code(self, code: i32) -> Output {
        assert_eq!(self.code, code, "exit code\n{self}");
        self
    }

    /// Panics unless the command succeeded.
    #[track_caller]
    pub fn ok(self) -> Output {
        self.code(0)
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--- exit {} ---\n--- stdout ---\n{}--- stderr ---\n{}---",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A repository with a configuration and (usually) an admin.
pub struct Fleet {
    tmp: TempDir,
    /// The repository (the store is `repo/sops`).
    pub repo: PathBuf,
    /// `$HOME` of every command.
    pub home: PathBuf,
}

/// A store's files: path relative to `sops/` → bytes. The lock file is left
/// out (it holds the pid of the last writer and is not part of the store).
pub type Tree = BTreeMap<String, Vec<u8>>;

impl Fleet {
    /// A repository with `manifest` as `vars.json` and the admin `admin`
    /// (a new age key in `$XDG_CONFIG_HOME/sops/age/keys.txt`).
    pub fn new(manifest: Value) -> Fleet {
        let fleet = Fleet::without_admin(manifest);
        fleet.run(&["keygen", "--user", "admin"]).ok();
        fleet
    }

    /// A repository with `manifest` as `vars.json` and no admin yet.
    pub fn without_admin(manifest: Value) -> Fleet {
        let tmp = tempfile::Builder::new()
            .prefix("vars-engine-")
            .tempdir()
            .expect("tempdir");
        let repo = tmp.path().join("repo");
        let home = tmp.path().join("home");
        std::fs::create_dir_all(&repo).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        let fleet = Fleet { tmp, repo, home };
        fleet.configure(&manifest);
        fleet
    }

    /// The temporary directory holding the repository and `$HOME`.
    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// Replaces `vars.json`.
    pub fn configure(&self, manifest: &Value) {
        let text = serde_json::to_string_pretty(manifest).unwrap();
        std::fs::write(self.repo.join("vars.json"), text).unwrap();
    }

    /// The admin's key file.
    pub fn keys_txt(&self) -> PathBuf {
        self.home.join(".config/sops/age/keys.txt")
    }

    /// A `vars` command run in the repository, hermetic.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vars"));
        hermetic(&mut cmd, &self.home);
        cmd.args(args).current_dir(&self.repo);
        cmd
    }

    /// Runs `vars ARGS` with no stdin.
    pub fn run(&self, args: &[&str]) -> Output {
        run(self.command(args), b"")
    }

    /// Runs `vars ARGS` with `stdin`.
    pub fn run_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        run(self.command(args), stdin)
    }

    /// Runs `vars generate --jobs 1 ARGS` (deterministic progress lines).
    pub fn generate(&self, args: &[&str]) -> Output {
        let mut all = vec!["generate", "--jobs", "1"];
        all.extend_from_slice(args);
        self.run(&all)
    }

    /// `vars check`, exit status asserted.
    #[track_caller]
    pub fn check(&self, code: i32) -> Output {
        self.run(&["check"]).code(code)
    }

    /// Every file under `sops/` except the lock file.
    pub fn tree(&self) -> Tree {
        tree(&self.repo.join("sops"))
    }

    /// A file of the repository.
    #[track_caller]
    pub fn read(&self, rel: &str) -> Vec<u8> {
        let path = self.repo.join(rel);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// A text file of the repository.
    #[track_caller]
    pub fn read_string(&self, rel: &str) -> String {
        String::from_utf8(self.read(rel)).expect("UTF-8")
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.repo.join(rel).exists()
    }

    /// The admin's public key (from `sops/users/admin/key.json`).
    pub fn admin(&self) -> String {
        self.publickey("sops/users/admin/key.json")
    }

    /// A machine's public key (from its key.json).
    pub fn machine_key(&self, machine: &str) -> String {
        self.publickey(&format!("sops/machines/{machine}/key.json"))
    }

    fn publickey(&self, rel: &str) -> String {
        let v: Value = serde_json::from_slice(&self.read(rel)).unwrap();
        v["publickey"].as_str().expect("publickey").to_string()
    }

    /// The age recipients in a sealed file's SOPS metadata, sorted.
    pub fn recipients(&self, rel: &str) -> BTreeSet<String> {
        let v: Value = serde_json::from_slice(&self.read(rel)).unwrap();
        v["sops"]["age"]
            .as_array()
            .expect("sops.age")
            .iter()
            .map(|r| r["recipient"].as_str().unwrap().to_string())
            .collect()
    }

    /// Adds a second admin with a key of its own (written outside `$HOME`);
    /// returns its public key.
    pub fn add_admin(&self, name: &str) -> String {
        let (secret, public) = age_keypair();
        let dir = self.root().join(format!("keys-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("keys.txt"), format!("{secret}\n")).unwrap();
        let user = self.repo.join("sops/users").join(name);
        std::fs::create_dir_all(&user).unwrap();
        std::fs::write(
            user.join("key.json"),
            format!("{{\n  \"publickey\": \"{public}\",\n  \"type\": \"age\"\n}}\n"),
        )
        .unwrap();
        public
    }

    /// The real `sops` decrypting a binary SOPS file with the identities in
    /// `key_file`; returns the plaintext.
    #[track_caller]
    pub fn sops_decrypt(&self, rel: &str, key_file: &Path) -> Vec<u8> {
        let mut cmd = Command::new("sops");
        hermetic(&mut cmd, &self.home);
        cmd.env("SOPS_AGE_KEY_FILE", key_file)
            .args([
                "--decrypt",
                "--input-type",
                "binary",
                "--output-type",
                "binary",
            ])
            .arg(self.repo.join(rel));
        let out = run(cmd, b"");
        assert_eq!(out.code, 0, "sops --decrypt {rel}\n{out}");
        out.stdout.into_bytes()
    }
}

/// A fresh age key pair, made by vars' own keygen in a scratch home.
pub fn age_keypair() -> (String, String) {
    let scratch = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vars"));
    hermetic(&mut cmd, scratch.path());
    cmd.args(["keygen", "--user", "k"])
        .current_dir(scratch.path());
    let out = run(cmd, b"");
    assert_eq!(out.code, 0, "{out}");
    let keys = std::fs::read_to_string(scratch.path().join(".config/sops/age/keys.txt")).unwrap();
    let secret = keys
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap()
        .to_string();
    let public = keys
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_string();
    (secret, public)
}

/// HOME and XDG_CONFIG_HOME under `home`, no key variables.
pub fn hermetic(cmd: &mut Command, home: &Path) {
    for var in KEY_VARS {
        cmd.env_remove(var);
    }
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("USER", "tester");
}

/// Runs a command to completion, feeding `stdin`.
pub fn run(mut cmd: Command, stdin: &[u8]) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    Output {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code().unwrap_or(-1),
    }
}

/// Every file under `dir` (relative paths), except `.lock`.
pub fn tree(dir: &Path) -> Tree {
    let mut out = Tree::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            if rel != ".lock" {
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// The paths whose content differs between two trees (added, removed or changed).
pub fn changed(before: &Tree, after: &Tree) -> Vec<String> {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect()
}

/// Panics listing the paths that differ.
#[track_caller]
pub fn assert_same_tree(before: &Tree, after: &Tree) {
    let diff = changed(before, after);
    assert!(diff.is_empty(), "files changed: {diff:#?}");
}

/// A NixOS machine declaring `generators`.
pub fn machine(generators: Value) -> Value {
    json!({ "class": "nixos", "tags": [], "generators": generators })
}

/// A manifest of one machine.
pub fn one_machine(name: &str, generators: Value) -> Value {
    json!({ "machines": { name: machine(generators) } })
}

/// A generator writing `content` into each listed public file.
pub fn public_gen(files: &[&str], content: &str) -> Value {
    let mut decl = serde_json::Map::new();
    let mut script = String::new();
    for f in files {
        decl.insert(f.to_string(), json!({ "secret": false }));
        script.push_str(&format!("printf '%s\\n' '{content}' > \"$out/{f}\"\n"));
    }
    json!({ "files": decl, "script": script })
}

/// Lines of `text` that start with `prefix`.
pub fn lines_starting<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}
