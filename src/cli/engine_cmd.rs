//! The engine's commands: generate, check, list, get, set, rekey, prune, graph.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use zeroize::Zeroizing;

use super::Failure;
use crate::generate::{self, Event, Outcome};
use crate::graph::Graph;
use crate::keys::Identities;
use crate::manifest::{Manifest, Prompt};
use crate::sandbox::{Isolation, Sandbox};
use crate::store::Store;

/// Where the configuration and the store are.
#[derive(Args, Clone)]
pub struct Repo {
    /// The repository; the store is DIR/sops.
    #[arg(long, value_name = "DIR", default_value = ".", global = true)]
    pub repo: PathBuf,
    /// The configuration: a .json manifest, a .nix file, or REF#ATTR
    /// (default: DIR/fleet.nix, else DIR/vars.json).
    #[arg(long, value_name = "MANIFEST", global = true)]
    pub config: Option<String>,
}

impl Repo {
    fn config_path(&self) -> Result<String, Failure> {
        if let Some(c) = &self.config {
            return Ok(c.clone());
        }
        for name in ["fleet.nix", "vars.json"] {
            let p = self.repo.join(name);
            if p.exists() {
                return Ok(p.display().to_string());
            }
        }
        Err(Failure::new(
            format!(
                "no configuration: neither {} nor {} exists; pass --config FILE",
                self.repo.join("fleet.nix").display(),
                self.repo.join("vars.json").display()
            ),
            2,
        ))
    }

    /// Loads and validates the configuration and its DAG (exit 2 on errors).
    pub fn load(&self) -> Result<(Manifest, Graph), Failure> {
        let manifest =
            Manifest::load(&self.config_path()?).map_err(|e| Failure::new(&e, e.exit_code()))?;
        let graph = Graph::build(&manifest).map_err(|e| Failure::new(&e, e.exit_code()))?;
        Ok((manifest, graph))
    }

    /// True when the configuration is evaluated by Nix (and so may read the store).
    pub fn evaluates_nix(&self) -> Result<bool, Failure> {
        let config = self.config_path()?;
        Ok(config.ends_with(".nix") || config.contains('#'))
    }

    pub fn store(&self) -> Store {
        Store::new(&self.repo)
    }
}

#[derive(Args)]
pub struct GenerateArgs {
    /// Only these machines (repeatable; default: all).
    #[arg(long = "machine", value_name = "M")]
    machines: Vec<String>,
    /// Force this generator, its missing dependencies and its dependents (repeatable).
    #[arg(long = "generator", value_name = "G")]
    generators: Vec<String>,
    /// Regenerate everything of the selected machines.
    #[arg(long)]
    regenerate: bool,
    /// Answer a prompt: GEN.PROMPT=VALUE (or MACHINE/GEN.PROMPT=VALUE). Values in argv are
    /// visible to other users of the machine: prefer --prompt-file for secrets.
    #[arg(long = "prompt", value_name = "GEN.PROMPT=VALUE")]
    prompts: Vec<String>,
    /// Prompt answers as JSON: {"GEN.PROMPT": "value"}.
    #[arg(long, value_name = "FILE")]
    prompt_file: Option<PathBuf>,
    /// Run scripts without bubblewrap (a private tmpfs dir and a clean environment only).
    #[arg(long)]
    no_sandbox: bool,
    /// Kill a script after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    timeout: u64,
    /// Generators run in parallel (default: the number of cores).
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
    /// Admin identity to read dependencies' secrets (repeatable; then sops' sources).
    #[arg(long = "identity", value_name = "FILE")]
    identities: Vec<PathBuf>,
    /// Print what would run, and why, without running anything.
    #[arg(long)]
    dry_run: bool,
}

fn parse_prompts(args: &GenerateArgs) -> Result<BTreeMap<String, Zeroizing<String>>, Failure> {
    let mut out = BTreeMap::new();
    if let Some(path) = &args.prompt_file {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| Failure::new(format!("{}: {e}", path.display()), 2))?,
        );
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Failure::new(format!("{}: invalid JSON: {e}", path.display()), 2))?;
        let obj = value.as_object().ok_or_else(|| {
            Failure::new(
                format!(
                    "{}: expected an object {{\"GEN.PROMPT\": \"value\"}}",
                    path.display()
                ),
                2,
            )
        })?;
        for (k, v) in obj {
            let s = v.as_str().ok_or_else(|| {
                Failure::new(format!("{}: {k}: expected a string", path.display()), 2)
            })?;
            out.insert(k.clone(), Zeroizing::new(s.to_string()));
        }
    }
    for p in &args.prompts {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| Failure::new(format!("--prompt {p:?}: expected GEN.PROMPT=VALUE"), 2))?;
        out.insert(k.to_string(), Zeroizing::new(v.to_string()));
    }
    Ok(out)
}

/// Asks a prompt on the terminal (hidden types: no echo, asked twice).
fn ask_tty(name: &str, prompt: &Prompt) -> Option<Zeroizing<String>> {
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return None;
    }
    let label = if prompt.description.is_empty() {
        name.to_string()
    } else {
        format!("{} ({name})", prompt.description)
    };
    let read = |question: &str| -> Option<Zeroizing<String>> {
        // Echo goes off before the question shows, so nothing typed after it is echoed.
        let _echo = prompt.kind.is_hidden().then(EchoOff::new);
        eprint!("{question}: ");
        let _ = std::io::stderr().flush();
        let mut value = Zeroizing::new(String::new());
        if prompt.kind.is_multiline() {
            eprintln!("(end with Ctrl-D)");
            std::io::stdin().read_to_string(&mut value).ok()?;
        } else {
            std::io::stdin().read_line(&mut value).ok()?;
            let trimmed = value.trim_end_matches(['\n', '\r']).len();
            value.truncate(trimmed);
        }
        if prompt.kind.is_hidden() {
            eprintln!();
        }
        Some(value)
    };
    loop {
        let first = read(&label)?;
        if !prompt.kind.is_hidden() {
            return Some(first);
        }
        let again = read(&format!("{label}, again"))?;
        if *first == *again {
            return Some(first);
        }
        eprintln!("the two answers differ; try again");
    }
}

/// Turns terminal echo off until dropped.
struct EchoOff(Option<nix::sys::termios::Termios>);

impl EchoOff {
    fn new() -> EchoOff {
        use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
        let stdin = std::io::stdin();
        let Ok(old) = tcgetattr(&stdin) else {
            return EchoOff(None);
        };
        let mut new = old.clone();
        new.local_flags.remove(LocalFlags::ECHO);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &new);
        EchoOff(Some(old))
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                old,
            );
        }
    }
}

pub fn generate(repo: &Repo, args: GenerateArgs) -> Result<i32, Failure> {
    let (mut manifest, mut graph) = repo.load()?;
    let store = repo.store();
    let mut opts = generate::Options {
        machines: args.machines.clone(),
        generators: args.generators.clone(),
        regenerate: args.regenerate,
        prompts: parse_prompts(&args)?,
        timeout: Duration::from_secs(args.timeout),
        jobs: args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
    };
    let lock = store.lock()?;
    let planned =
        generate::plan(&manifest, &graph, &store, &opts).map_err(|e| Failure::new(e, 2))?;
    // Stored secrets of the selection sealed to other recipients than the
    // wanted set (say a machine that started declaring a shared generator):
    // re-sealed after the run, so every selected secret ends up readable by
    // exactly the machines and admins that should read it.
    let reseal = crate::maintain::rekey_needed(&manifest, &graph, &store, &opts.machines)?;
    if args.dry_run {
        for (n, why) in &planned {
            println!("{n}: {why}");
        }
        for f in &reseal {
            println!("{f}: re-seal: its recipients changed");
        }
        return Ok(0);
    }
    if planned.is_empty() {
        if reseal.is_empty() {
            eprintln!("everything is up to date");
        } else {
            let ids = Identities::discover(&args.identities)?;
            for f in crate::maintain::rekey(&manifest, &graph, &store, &lock, &ids, &opts.machines)?
            {
                println!("re-sealed {f}");
            }
        }
        return Ok(0);
    }
    let isolation = if args.no_sandbox {
        eprintln!("warning: --no-sandbox: scripts run without namespaces (a private tmpfs dir and a clean environment only)");
        Isolation::None
    } else {
        Isolation::Bubblewrap
    };
    let sandbox = Sandbox::new(isolation)?;
    let ids = Identities::discover(&args.identities)?;
    let tty = std::io::stderr().is_terminal();
    let progress = |ev: Event| match ev {
        Event::Started(n) if tty => eprint!("\r\x1b[K  running {n}"),
        Event::Started(_) => {}
        Event::Finished(row, done, total) => {
            let what = match &row.outcome {
                Outcome::Generated(_) => "generated",
                Outcome::Failed(_) => "FAILED",
                Outcome::Skipped(_) => "skipped",
            };
            if tty {
                eprint!("\r\x1b[K[{done}/{total}] {} {what}", row.node);
                if done == total {
                    eprintln!();
                }
            } else {
                eprintln!("[{done}/{total}] {} {what}", row.node);
            }
        }
    };
    // Answers given at the terminal are reused by later passes.
    let mut answered: BTreeMap<String, Zeroizing<String>> = BTreeMap::new();
    let mut ask = |name: &str, prompt: &Prompt| {
        let value = ask_tty(name, prompt)?;
        answered.insert(name.to_string(), value.clone());
        Some(value)
    };
    let mut rows: BTreeMap<crate::graph::NodeId, generate::Row> = BTreeMap::new();
    let mut planned = planned;
    // A Nix configuration may read public values from the store at evaluation time
    // (e.g. a peer reading its controller's network id): after a pass that generated
    // something, evaluate again and run what that changed, up to three passes.
    for pass in 1..=3 {
        let env = generate::Env {
            manifest: &manifest,
            graph: &graph,
            store: &store,
            lock: &lock,
            sandbox: &sandbox,
            ids: &ids,
        };
        let done =
            generate::run(&env, &opts, &planned, &mut ask, &progress).map_err(|e| match e {
                generate::GenerateError::MissingPrompts(_) => Failure::new(e, 2),
                other => Failure::new(other, 1),
            })?;
        let generated = done
            .iter()
            .any(|r| matches!(r.outcome, Outcome::Generated(_)));
        rows.extend(done.into_iter().map(|r| (r.node.clone(), r)));
        if pass == 3 || !generated || !repo.evaluates_nix()? {
            break;
        }
        let (next_manifest, next_graph) = repo.load()?;
        if next_manifest == manifest {
            break;
        }
        (manifest, graph) = (next_manifest, next_graph);
        // Later passes only catch up with the new evaluation: nothing is forced again.
        opts.regenerate = false;
        opts.generators.clear();
        planned =
            generate::plan(&manifest, &graph, &store, &opts).map_err(|e| Failure::new(e, 2))?;
        if planned.is_empty() {
            break;
        }
        eprintln!(
            "the configuration changed with the new values: evaluating again (pass {})",
            pass + 1
        );
    }
    // The summary, in the final graph's order.
    let rows: Vec<&generate::Row> = graph.order().iter().filter_map(|n| rows.get(n)).collect();
    let width = rows
        .iter()
        .map(|r| r.node.to_string().len())
        .max()
        .unwrap_or(0)
        .max(9);
    println!("{:width$}  result", "generator");
    let mut failed = 0;
    for row in &rows {
        let text = match &row.outcome {
            Outcome::Generated(why) => format!("generated ({why})"),
            Outcome::Failed(e) => {
                failed += 1;
                format!("failed: {e}")
            }
            Outcome::Skipped(why) => format!("skipped: {why}"),
        };
        println!("{:width$}  {text}", row.node.to_string());
    }
    if !reseal.is_empty() {
        for f in crate::maintain::rekey(&manifest, &graph, &store, &lock, &ids, &opts.machines)? {
            println!("re-sealed {f}");
        }
    }
    if failed > 0 {
        eprintln!(
            "error: {failed} generator{} failed",
            if failed == 1 { "" } else { "s" }
        );
        return Ok(1);
    }
    Ok(0)
}

pub fn check(repo: &Repo, machines: &[String], json: bool) -> Result<i32, Failure> {
    let (manifest, graph) = repo.load()?;
    let store = repo.store();
    if crate::store::tx_pending(store.root()) {
        // A crash left a commit half applied: finish it first.
        drop(store.lock()?);
    }
    let problems = crate::check::check(&manifest, &graph, &store, machines)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&problems).unwrap_or_default()
        );
    } else {
        for p in &problems {
            println!("{}: {}: {} (fix: {})", p.subject, p.kind, p.detail, p.fix);
        }
        if problems.is_empty() {
            eprintln!("ok: the store matches the configuration");
        } else {
            eprintln!(
                "{} problem{}",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
        }
    }
    Ok(if problems.is_empty() { 0 } else { 1 })
}

pub fn list(repo: &Repo, machine: Option<&str>, json: bool) -> Result<i32, Failure> {
    let (manifest, graph) = repo.load()?;
    let rows = crate::values::list(&manifest, &graph, &repo.store(), machine)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
        return Ok(0);
    }
    for r in rows {
        // One line per file: control characters in a value (a multi-line
        // public file) are shown escaped.
        let value = r
            .value
            .map(|v| {
                let shown: String = v
                    .chars()
                    .map(|c| {
                        if c.is_control() {
                            c.escape_default().to_string()
                        } else {
                            c.to_string()
                        }
                    })
                    .collect();
                format!("  {shown}")
            })
            .unwrap_or_default();
        println!(
            "{}/{}/{}  {}  {}{}",
            r.machine,
            r.generator,
            r.file,
            if r.secret { "secret" } else { "public" },
            r.status,
            value
        );
    }
    Ok(0)
}

pub fn get(repo: &Repo, machine: &str, spec: &str, identities: &[PathBuf]) -> Result<i32, Failure> {
    let (manifest, _) = repo.load()?;
    let ids = Identities::discover(identities)?;
    let value = crate::values::get(&manifest, &repo.store(), &ids, machine, spec)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&value)
        .and_then(|()| out.flush())
        .map_err(|e| Failure::new(e, 1))?;
    Ok(0)
}

pub fn set(repo: &Repo, machine: &str, spec: &str) -> Result<i32, Failure> {
    let (manifest, graph) = repo.load()?;
    let store = repo.store();
    let mut value = Zeroizing::new(Vec::new());
    std::io::stdin()
        .read_to_end(&mut value)
        .map_err(|e| Failure::new(format!("reading stdin: {e}"), 1))?;
    let lock = store.lock()?;
    crate::values::set(&manifest, &graph, &store, &lock, machine, spec, &value)?;
    eprintln!("stored {machine} {spec}");
    Ok(0)
}

pub fn rekey(repo: &Repo, machines: &[String], identities: &[PathBuf]) -> Result<i32, Failure> {
    let (manifest, graph) = repo.load()?;
    let store = repo.store();
    let ids = Identities::discover(identities)?;
    let lock = store.lock()?;
    let done = crate::maintain::rekey(&manifest, &graph, &store, &lock, &ids, machines)?;
    for f in &done {
        println!("re-sealed {f}");
    }
    if done.is_empty() {
        eprintln!("every secret already has the wanted recipients");
    }
    Ok(0)
}

pub fn prune(repo: &Repo, machines: &[String]) -> Result<i32, Failure> {
    let (manifest, graph) = repo.load()?;
    let store = repo.store();
    let lock = store.lock()?;
    for f in crate::maintain::prune(&manifest, &graph, &store, &lock, machines)? {
        println!("removed {f}");
    }
    Ok(0)
}

pub fn graph(repo: &Repo, machine: Option<&str>) -> Result<i32, Failure> {
    let (manifest, graph) = repo.load()?;
    if let Some(m) = machine {
        if !manifest.machines.contains_key(m) {
            return Err(Failure::new(format!("unknown machine {m:?}"), 2));
        }
    }
    print!("{}", graph.to_dot(machine));
    Ok(0)
}
