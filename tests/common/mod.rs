//! The shared test harness, in the style of casey/just's: a `Test` runs the
//! built `vars` binary in a fresh temporary directory and asserts its exact
//! stdout, stderr and exit status.
//!
//! Every run is hermetic: HOME and XDG_CONFIG_HOME point into the temporary
//! directory and every `SOPS_AGE_*` variable is removed, so the developer's own
//! keys never take part in a test.

#![allow(dead_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// The interoperability vectors (never modified: copy them before writing).
pub const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/vectors");

/// The path of a vector file, e.g. `vector("sops-3.11/key.txt")`.
pub fn vector(rel: &str) -> PathBuf {
    Path::new(VECTORS).join(rel)
}

/// The bytes of a vector file.
pub fn read_vector(rel: &str) -> Vec<u8> {
    let path = vector(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Environment variables through which sops (and vars) find identities.
const KEY_VARS: [&str; 5] = [
    "SOPS_AGE_KEY",
    "SOPS_AGE_KEY_FILE",
    "SOPS_AGE_KEY_CMD",
    "SOPS_AGE_SSH_PRIVATE_KEY_FILE",
    "SOPS_AGE_RECIPIENTS",
];

/// Whether an external tool is on PATH. Outside CI a missing tool skips the
/// test (returns false, says so on stderr); under `CI=true` it fails the test.
pub fn require(tool: &str) -> bool {
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            let candidate = dir.join(tool);
            std::fs::metadata(&candidate).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
        })
    });
    if found {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("`{tool}` is not on PATH, and CI=true: interop tests may not be skipped");
    }
    eprintln!("skipped: `{tool}` is not on PATH");
    false
}

/// Makes a command hermetic: HOME and XDG_CONFIG_HOME under `home`, no key variables.
pub fn hermetic(cmd: &mut std::process::Command, home: &Path) {
    for var in KEY_VARS {
        cmd.env_remove(var);
    }
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("USER", "tester");
}

/// What a stream must hold.
enum Expect {
    Exact(Vec<u8>),
    Regex(regex::bytes::Regex),
    Anything,
}

impl Expect {
    fn check(&self, what: &str, actual: &[u8]) {
        match self {
            Expect::Exact(want) => {
                if actual != want.as_slice() {
                    panic!(
                        "{what} differs\n--- expected ---\n{}\n--- actual ---\n{}\n---",
                        String::from_utf8_lossy(want),
                        String::from_utf8_lossy(actual)
                    );
                }
            }
            Expect::Regex(re) => {
                if !re.is_match(actual) {
                    panic!(
                        "{what} does not match /{}/\n--- actual ---\n{}\n---",
                        re.as_str(),
                        String::from_utf8_lossy(actual)
                    );
                }
            }
            Expect::Anything => {}
        }
    }
}

/// One run of `vars`, built up and then `run()`.
pub struct Test {
    /// The temporary directory this run owns, if any (see `Test::in_dir`).
    tempdir: Option<TempDir>,
    dir: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    stdin: Vec<u8>,
    current_dir: Option<PathBuf>,
    stdout: Expect,
    stderr: Expect,
    status: i32,
}

impl Default for Test {
    fn default() -> Self {
        Test::new()
    }
}

impl Test {
    /// A run in a fresh temporary directory, expecting exit 0 and empty stdout and stderr.
    pub fn new() -> Test {
        let tempdir = tempfile::Builder::new()
            .prefix("vars-test-")
            .tempdir()
            .expect("tempdir");
        let dir = tempdir.path().to_path_buf();
        let mut test = Test::in_dir(&dir);
        test.tempdir = Some(tempdir);
        test
    }

    /// A run in an existing directory (HOME is `<dir>/home`), for a sequence of
    /// commands sharing files.
    pub fn in_dir(dir: &Path) -> Test {
        std::fs::create_dir_all(dir.join("home")).expect("home");
        Test {
            tempdir: None,
            dir: dir.to_path_buf(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: Vec::new(),
            current_dir: None,
            stdout: Expect::Exact(Vec::new()),
            stderr: Expect::Exact(Vec::new()),
            status: 0,
        }
    }

    /// The temporary directory (the working directory of the run).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `$HOME` of the run: `<dir>/home`.
    pub fn home(&self) -> PathBuf {
        self.dir().join("home")
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Test {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Test
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Test {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn stdin(mut self, bytes: impl AsRef<[u8]>) -> Test {
        self.stdin = bytes.as_ref().to_vec();
        self
    }

    /// Runs in `dir` (relative paths are taken inside the temporary directory).
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Test {
        self.current_dir = Some(self.dir().join(dir));
        self
    }

    /// Writes a file (creating directories) inside the temporary directory.
    pub fn write(self, rel: &str, contents: impl AsRef<[u8]>) -> Test {
        let path = self.dir().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create dir");
        }
        std::fs::write(&path, contents).expect("write");
        self
    }

    /// Copies a vector into the temporary directory under `rel`.
    pub fn vector(self, vector_rel: &str, rel: &str) -> Test {
        let bytes = read_vector(vector_rel);
        self.write(rel, bytes)
    }

    pub fn stdout(mut self, bytes: impl AsRef<[u8]>) -> Test {
        self.stdout = Expect::Exact(bytes.as_ref().to_vec());
        self
    }

    pub fn stderr(mut self, bytes: impl AsRef<[u8]>) -> Test {
        self.stderr = Expect::Exact(bytes.as_ref().to_vec());
        self
    }

    /// stderr must match this regex (anchor it yourself).
    pub fn stderr_regex(mut self, re: &str) -> Test {
        self.stderr = Expect::Regex(regex::bytes::Regex::new(re).expect("regex"));
        self
    }

    /// stdout is checked by the caller on the returned `Output`.
    pub fn stdout_any(mut self) -> Test {
        self.stdout = Expect::Anything;
        self
    }

    /// stderr is checked by the caller on the returned `Output`.
    pub fn stderr_any(mut self) -> Test {
        self.stderr = Expect::Anything;
        self
    }

    pub fn status(mut self, code: i32) -> Test {
        self.status = code;
        self
    }

    /// Runs `vars` and asserts status, stdout and stderr.
    pub fn run(self) -> Output {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vars"));
        hermetic(&mut cmd, &self.home());
        cmd.args(&self.args)
            .current_dir(self.current_dir.as_deref().unwrap_or(self.dir()));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let output = assert_cmd::Command::from_std(cmd)
            .write_stdin(self.stdin.clone())
            .output()
            .expect("run vars");
        let code = output.status.code().unwrap_or(-1);
        if code != self.status {
            panic!(
                "exit status {code}, expected {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n---",
                self.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        self.stdout.check("stdout", &output.stdout);
        self.stderr.check("stderr", &output.stderr);
        Output {
            tempdir: self.tempdir,
            dir: self.dir,
            stdout: output.stdout,
            stderr: output.stderr,
        }
    }
}

/// What a run printed; keeps its temporary directory alive.
pub struct Output {
    pub tempdir: Option<TempDir>,
    pub dir: PathBuf,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn stdout_str(&self) -> &str {
        std::str::from_utf8(&self.stdout).expect("stdout is UTF-8")
    }
}

/// Runs an external tool hermetically (HOME under `home`), returning its output;
/// panics with its stderr when it fails.
pub fn tool(
    program: &str,
    args: &[&str],
    dir: &Path,
    env: &[(&str, &Path)],
    stdin: &[u8],
) -> Vec<u8> {
    let out = tool_output(program, args, dir, env, stdin);
    if !out.status.success() {
        panic!(
            "{program} {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.stdout
}

/// Like `tool`, but returns the whole output whatever the status.
pub fn tool_output(
    program: &str,
    args: &[&str],
    dir: &Path,
    env: &[(&str, &Path)],
    stdin: &[u8],
) -> std::process::Output {
    use std::io::Write;
    let home = dir.join("home");
    std::fs::create_dir_all(&home).expect("home");
    let mut cmd = std::process::Command::new(program);
    hermetic(&mut cmd, &home);
    cmd.args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{program}: {e}"));
    let mut pipe = child.stdin.take().expect("stdin");
    pipe.write_all(stdin).expect("write stdin");
    drop(pipe);
    child.wait_with_output().expect("wait")
}

/// The public key (`age1…`) of an age key file, computed by vars' library.
pub fn age_public_key(key_file: &Path) -> String {
    let mut ids = vars::keys::Identities::default();
    ids.add_file("key", key_file).expect("identity file");
    ids.keys[0].1.to_recipient().expect("recipient").to_string()
}

/// Lines of text, trimmed, without blanks, sorted: a dotenv/ini document as a set.
pub fn line_set(text: &[u8]) -> Vec<String> {
    let mut lines: Vec<String> = String::from_utf8_lossy(text)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    lines.sort();
    lines
}

/// A YAML document parsed independently of vars (serde_yaml).
pub fn yaml(text: &[u8]) -> serde_yaml::Value {
    serde_yaml::from_slice(text)
        .unwrap_or_else(|e| panic!("not YAML: {e}\n---\n{}\n---", String::from_utf8_lossy(text)))
}

/// A JSON document parsed with serde_json.
pub fn json(text: &[u8]) -> serde_json::Value {
    serde_json::from_slice(text)
        .unwrap_or_else(|e| panic!("not JSON: {e}\n---\n{}\n---", String::from_utf8_lossy(text)))
}
