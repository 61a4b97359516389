//! Crash safety of `vars generate` (issue 7): a fleet of 53 generators (shared
//! ones, diamonds, chains across machines) is regenerated and killed with
//! SIGKILL at more than 50 moments spread over the run. After each kill:
//!
//! * `vars list` and `vars check` show no temporary file, and check reports
//!   nothing but the dependents left older than a regenerated dependency;
//! * every generator's outputs, decrypted, are its complete old set or its
//!   complete new set (its three files carry one per-run nonce, and its
//!   metadata changed exactly when they did), and a generator only ever got new
//!   outputs after all its dependencies did;
//! * a plain re-run completes, regenerates exactly the dependents left behind
//!   (and what depends on them), `vars check` is clean, and every generator's
//!   outputs were made from its dependencies' current outputs (each output
//!   embeds a hash of its inputs' bytes, recomputed here from the store).

mod hardening;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use hardening::Repo;
use serde_json::{json, Value};
use vars::graph::{Graph, NodeId};
use vars::keys::Identities;
use vars::sops::{Format, SopsFile};
use vars::status::owner;
use vars::store::Kind;

const MACHINES: [&str; 3] = ["alpha", "beta", "gamma"];
/// Every generator's files: one public, two secret.
const FILES: [(&str, bool); 3] = [("p", false), ("s1", true), ("s2", true)];

/// Each machine's generators and their dependencies: four diamonds
/// (`aJ` → `bJ`, `cJ` → `dJ`), the first hanging off the shared `ca-int`, the
/// third off the shared `ca`, and `x` closing a diamond through the shared
/// generators (`ca` → `ca-int` → `x` ← `ca`). Independent diamonds keep the
/// re-run after a kill short: it regenerates only what depends on a cut.
fn machine_generators() -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for j in 0..4 {
        let root_deps = match j {
            0 => vec!["ca-int".to_string()],
            2 => vec!["ca".to_string()],
            _ => vec![],
        };
        out.push((format!("a{j}"), root_deps));
        out.push((format!("b{j}"), vec![format!("a{j}")]));
        out.push((format!("c{j}"), vec![format!("a{j}")]));
        out.push((format!("d{j}"), vec![format!("b{j}"), format!("c{j}")]));
    }
    out.push(("x".into(), vec!["ca".into(), "ca-int".into()]));
    out
}

/// A script writing `gen=<node> file=<f> nonce=<random, one per run> in=<inputs>`
/// into each file, where `<inputs>` lists the nonce found in each input file
/// (every file of every dependency, dependencies and files in sorted order), so
/// an output names the exact dependency outputs it was made from. Only bash
/// builtins: the run's time goes to vars, not to starting processes.
fn script(node: &str, deps: &[String]) -> String {
    let mut inputs = String::new();
    for d in deps {
        for (f, _) in FILES {
            inputs.push_str(&format!(" \"$in/{d}/{f}\""));
        }
    }
    format!(
        "printf -v n '%08x%08x' \"$SRANDOM\" \"$SRANDOM\"\ni=none\n\
         for x in{inputs}; do read -r l < \"$x\"; l=${{l#*nonce=}}; i=\"${{i#none}}${{l%% *}},\"; done\n\
         for f in p s1 s2; do printf 'gen=%s file=%s nonce=%s in=%s\\n' {node} \"$f\" \"$n\" \"$i\" > \"$out/$f\"; done\n"
    )
}

fn generator(node: &str, deps: Vec<String>, share: bool) -> Value {
    let files: serde_json::Map<String, Value> = FILES
        .iter()
        .map(|(f, secret)| (f.to_string(), json!({ "secret": secret })))
        .collect();
    json!({
        "share": share,
        "dependencies": deps,
        "files": files,
        "script": script(node, &deps),
    })
}

fn fleet() -> Value {
    let mut machines = serde_json::Map::new();
    for m in MACHINES {
        let mut gens = serde_json::Map::new();
        gens.insert("ca".into(), generator("shared/ca", vec![], true));
        gens.insert(
            "ca-int".into(),
            generator("shared/ca-int", vec!["ca".into()], true),
        );
        for (name, deps) in machine_generators() {
            gens.insert(name.clone(), generator(&format!("{m}/{name}"), deps, false));
        }
        machines.insert(m.into(), json!({"class": "nixos", "generators": gens}));
    }
    json!({ "machines": machines })
}

/// One generator's stored state.
#[derive(Clone, Debug, PartialEq)]
struct Stored {
    nonce: String,
    /// The hash of the inputs its outputs say they were made from.
    inputs: String,
    /// Its metadata's generation id.
    generation: String,
    /// The generation of each dependency it recorded.
    recorded: BTreeMap<String, String>,
}

/// Reads outputs through the library; decrypts each distinct sealed file once.
struct Reader {
    ids: Identities,
    cache: HashMap<Vec<u8>, Vec<u8>>,
}

impl Reader {
    /// A node's files in clear, in `FILES` order; panics when one is missing.
    fn files(&mut self, repo: &Repo, node: &NodeId) -> Vec<Vec<u8>> {
        let store = repo.store();
        FILES
            .iter()
            .map(|(f, secret)| {
                let kind = if *secret { Kind::Secret } else { Kind::Public };
                let bytes = store
                    .read_file(&owner(node), kind, &node.generator, f)
                    .unwrap()
                    .unwrap_or_else(|| panic!("{node}/{f} is missing from the store"));
                if !secret {
                    return bytes;
                }
                if let Some(plain) = self.cache.get(&bytes) {
                    return plain.clone();
                }
                let plain = SopsFile::parse(&bytes, Format::Binary, f)
                    .and_then(|s| s.decrypt_binary(&self.ids))
                    .unwrap_or_else(|e| panic!("{node}/{f}: {e}"))
                    .to_vec();
                self.cache.insert(bytes, plain.clone());
                plain
            })
            .collect()
    }
}

/// `(nonce, inputs hash)` of one output line, checking its node and file names.
fn parse_output(node: &NodeId, file: &str, bytes: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(bytes);
    let fields: BTreeMap<&str, &str> = text
        .trim_end()
        .split(' ')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    assert_eq!(
        fields.get("gen"),
        Some(&node.to_string().as_str()),
        "{node}/{file}: {text}"
    );
    assert_eq!(fields.get("file"), Some(&file), "{node}/{file}: {text}");
    (
        fields.get("nonce").expect("nonce").to_string(),
        fields.get("in").expect("in").to_string(),
    )
}

/// Every node's state, asserting that each node's files belong to one run.
fn state(repo: &Repo, graph: &Graph, reader: &mut Reader) -> BTreeMap<NodeId, Stored> {
    let store = repo.store();
    let mut out = BTreeMap::new();
    for node in graph.order() {
        let files = reader.files(repo, node);
        let parsed: Vec<(String, String)> = FILES
            .iter()
            .zip(&files)
            .map(|((f, _), b)| parse_output(node, f, b))
            .collect();
        assert!(
            parsed.windows(2).all(|w| w[0] == w[1]),
            "{node}: its files come from different runs: {parsed:?}"
        );
        let meta = store
            .read_meta(&owner(node), &node.generator)
            .unwrap()
            .unwrap_or_else(|| panic!("{node}: no metadata"));
        out.insert(
            node.clone(),
            Stored {
                nonce: parsed[0].0.clone(),
                inputs: parsed[0].1.clone(),
                generation: meta.generation,
                recorded: meta.inputs,
            },
        );
    }
    out
}

/// Every node's outputs were made from its dependencies' current outputs.
fn assert_provenance(
    repo: &Repo,
    graph: &Graph,
    reader: &mut Reader,
    st: &BTreeMap<NodeId, Stored>,
) {
    for node in graph.order() {
        let mut deps = graph.dependencies(node);
        deps.sort_by(|a, b| a.generator.cmp(&b.generator));
        let mut want = String::new();
        for d in &deps {
            for ((f, _), bytes) in FILES.iter().zip(reader.files(repo, d)) {
                want.push_str(&parse_output(d, f, &bytes).0);
                want.push(',');
            }
        }
        if want.is_empty() {
            want.push_str("none");
        }
        assert_eq!(
            st[node].inputs, want,
            "{node} was not made from its dependencies' current outputs"
        );
        for d in &deps {
            assert_eq!(
                st[node].recorded.get(&d.to_string()),
                Some(&st[d].generation),
                "{node} records another generation of {d}"
            );
        }
    }
}

/// `vars-*` entries on the sandbox's tmpfs base.
fn work_dirs(repo: &Repo) -> BTreeSet<String> {
    repo.run_dir_entries()
        .into_iter()
        .filter(|e| e.starts_with("vars-") || e.starts_with(".vars-"))
        .collect()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// 56 kill points over the run, the repository on a tmpfs (fast: SIGKILL
/// leaves the page cache alone, so where the bytes live does not matter to
/// what is tested, and the re-runs cost little). At least 50 must land while
/// vars runs (a run that ends first shortens the estimate of its length).
#[test]
fn generate_survives_sigkill_at_56_points_on_tmpfs() {
    let repo = Repo::on_tmpfs(&fleet());
    let stats = kill_generate_repeatedly(&repo, 56, "tmpfs");
    assert!(
        stats.kills >= 50,
        "only {} kills landed while vars ran",
        stats.kills
    );
    assert!(
        stats.distinct_counts >= 10 && stats.partial >= 20,
        "the kills were not spread over the run: {stats:?}"
    );
}

/// Fewer kill points with the repository on the temporary directory's disk:
/// every write is fsynced there, so most kills land while a commit is staged
/// or applied, and recovery of interrupted commits is exercised every time.
#[test]
fn generate_survives_sigkill_during_commits_on_disk() {
    let repo = Repo::new(&fleet());
    let stats = kill_generate_repeatedly(&repo, 12, "disk");
    assert!(
        stats.kills >= 10,
        "only {} kills landed while vars ran",
        stats.kills
    );
    if !hardening::is_tmpfs(&std::env::temp_dir()) {
        assert!(
            stats.pending >= 4,
            "too few kills interrupted a commit: {stats:?}"
        );
    }
}

#[derive(Debug)]
#[allow(dead_code)]
struct Stats {
    kills: usize,
    /// Kills after which some generators had new outputs and others old ones.
    partial: usize,
    /// Kills that left an interrupted commit (staged, or committed and not yet applied).
    pending: usize,
    /// Of those, committed ones (finished by recovery).
    committed: usize,
    distinct_counts: usize,
}

/// Regenerates the fleet `points` times, killing each run at a moment spread
/// over its length, and checks the store after each kill and each re-run.
fn kill_generate_repeatedly(repo: &Repo, points: usize, label: &str) -> Stats {
    let started = Instant::now();
    let (_manifest, graph) = repo.manifest();
    let total = graph.order().len();
    assert!(total >= 50, "{total} generators");
    let shared: Vec<&NodeId> = graph.order().iter().filter(|n| n.is_shared()).collect();
    assert_eq!(shared.len(), 2);
    let mut reader = Reader {
        ids: repo.ids(),
        cache: HashMap::new(),
    };
    let regenerate = ["generate", "--no-sandbox", "--regenerate", "--jobs", "2"];
    let plain = ["generate", "--no-sandbox", "--jobs", "2"];

    repo.ok(&plain);
    repo.check_clean();
    let mut current = state(repo, &graph, &mut reader);
    assert_provenance(repo, &graph, &mut reader, &current);

    // How long a whole regeneration takes here, now.
    let t0 = Instant::now();
    repo.ok(&regenerate);
    let full = t0.elapsed();
    let mut estimate = full;
    current = state(repo, &graph, &mut reader);
    assert_provenance(repo, &graph, &mut reader, &current);

    let mut kills = 0;
    let mut partial = 0;
    let mut changed_counts = BTreeSet::new();
    let mut pending_after_kill = 0;
    let mut committed = 0;
    let mut repaired_total = 0;
    // Kill point i is at `fraction` of the estimated run. A run that ends
    // first is a complete regeneration (checked the same way), shortens the
    // estimate, and the same point is tried again.
    let mut attempts = 0;
    while kills < points && attempts < 2 * points {
        attempts += 1;
        let fraction = (kills as f64 + 0.5) / points as f64;
        let mut killed = false;
        let mut child = repo
            .cmd(&regenerate)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn vars");
        std::thread::sleep(estimate.mul_f64(fraction));
        if child.try_wait().unwrap().is_none() {
            child.kill().expect("SIGKILL");
            killed = true;
        }
        let status = child.wait().unwrap();
        // The run may have ended between try_wait and kill: then it is a complete run.
        let killed = killed && std::os::unix::process::ExitStatusExt::signal(&status) == Some(9);
        if killed {
            kills += 1;
        } else {
            assert!(status.success(), "an unkilled run failed: {status}");
            estimate = estimate.mul_f64(0.85);
        }
        // A killed run's working directories (decrypted inputs) stay on the tmpfs until
        // the next run that starts a sandbox removes them: never more than --jobs.
        let after_kill: BTreeSet<String> = work_dirs(repo);
        assert!(
            after_kill.len() <= 2,
            "working directories pile up: {after_kill:?}"
        );
        let tx = repo.sops().join(".tx");
        let interrupted: Vec<std::path::PathBuf> = std::fs::read_dir(&tx)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        if !interrupted.is_empty() {
            pending_after_kill += 1;
        }
        if interrupted.iter().any(|t| t.join("COMMITTED").exists()) {
            committed += 1;
        }

        // What readers see: no temporary file anywhere, only dependents outdated.
        let listed = repo.run(&["list"]);
        assert_eq!(listed.status.code(), Some(0));
        let listed = stdout(&listed);
        assert_eq!(
            listed.lines().count(),
            MACHINES.len() * (machine_generators().len() + 2) * FILES.len()
        );
        for bad in [".vars-tmp", ".tx", "tx-", "missing"] {
            assert!(!listed.contains(bad), "vars list shows {bad:?}:\n{listed}");
        }
        let checked = repo.run(&["check"]);
        assert!(matches!(checked.status.code(), Some(0 | 1)), "{checked:?}");
        let mut outdated = BTreeSet::new();
        for line in stdout(&checked).lines() {
            let (subject, rest) = line.split_once(": ").unwrap();
            let (kind, detail) = rest.split_once(": ").unwrap();
            assert!(
                kind == "outdated" && detail.starts_with("its dependency "),
                "after a kill, vars check reports {line:?}"
            );
            outdated.insert(subject.to_string());
        }
        assert!(
            std::fs::read_dir(&tx).map_or(true, |mut e| e.next().is_none()),
            "an interrupted commit is left after recovery"
        );

        // Every generator: complete old set or complete new set.
        let after = state(repo, &graph, &mut reader);
        let changed: BTreeSet<&NodeId> = graph
            .order()
            .iter()
            .filter(|n| after[*n].nonce != current[*n].nonce)
            .collect();
        for n in graph.order() {
            if changed.contains(n) {
                assert_ne!(
                    after[n].generation, current[n].generation,
                    "{n}: new outputs, old metadata"
                );
                for d in graph.dependencies(n) {
                    assert!(
                        changed.contains(&d),
                        "{n} was regenerated before its dependency {d}"
                    );
                }
            } else {
                assert_eq!(after[n], current[n], "{n}: old outputs, new metadata");
            }
        }
        // Exactly the unchanged dependents of changed generators are outdated.
        let stale: BTreeSet<NodeId> = graph
            .order()
            .iter()
            .filter(|n| {
                !changed.contains(n) && graph.dependencies(n).iter().any(|d| changed.contains(d))
            })
            .cloned()
            .collect();
        let stale_names: BTreeSet<String> = stale.iter().map(|n| n.to_string()).collect();
        assert_eq!(outdated, stale_names, "vars check's outdated generators");
        changed_counts.insert(changed.len());
        if killed && !changed.is_empty() && changed.len() < total {
            partial += 1;
        }

        // A plain re-run repairs exactly what was left behind, from current inputs.
        let out = repo.run(&plain);
        assert_eq!(out.status.code(), Some(0), "re-run failed: {out:?}");
        repo.check_clean();
        let repaired = state(repo, &graph, &mut reader);
        let expected: BTreeSet<NodeId> = graph.closure(&stale).into_iter().collect();
        let regenerated: BTreeSet<NodeId> = graph
            .order()
            .iter()
            .filter(|n| repaired[*n].nonce != after[*n].nonce)
            .cloned()
            .collect();
        assert_eq!(
            regenerated, expected,
            "the re-run regenerated other generators than the outdated ones"
        );
        repaired_total += regenerated.len();
        assert_provenance(repo, &graph, &mut reader, &repaired);
        let left = work_dirs(repo);
        assert!(
            left.is_subset(&after_kill),
            "a completed run left working directories: {left:?}"
        );
        current = repaired;
    }
    repo.ok(&regenerate);
    assert_eq!(
        work_dirs(repo),
        BTreeSet::new(),
        "killed runs' working directories were not removed"
    );
    repo.check_clean();
    let stats = Stats {
        kills,
        partial,
        pending: pending_after_kill,
        committed,
        distinct_counts: changed_counts.len(),
    };
    eprintln!(
        "crash_generate ({label}): {total} generators, {kills} SIGKILLs survived ({partial} mid-run \
         with some generators new and others old; {pending_after_kill} left an interrupted commit, \
         {committed} of them committed and finished by recovery), {} distinct numbers of \
         regenerated generators at the kill, {repaired_total} generators regenerated by re-runs; \
         a full run {:.1?}, in all {:.0?}",
        changed_counts.len(),
        full,
        started.elapsed()
    );
    stats
}

/// What a crash can leave in `sops/.tx/`, recovered by the next reader or
/// writer: an uncommitted transaction is discarded (the live files stay), a
/// committed one is finished, and a committed one whose removal was cut short
/// after its plan was deleted (what earlier builds could leave) is removed.
#[test]
fn recovery_handles_every_interrupted_state() {
    let manifest = json!({"machines": {"m": {"class": "nixos", "generators": {
        "g": {"files": {"v": {"secret": false}}, "script": "echo old > $out/v"}
    }}}});
    let repo = Repo::new(&manifest);
    repo.ok(&["generate", "--no-sandbox"]);
    let live = repo.sops().join("machines/m/public/g/v");
    let tx = repo.sops().join(".tx");
    let stage = |name: &str, committed: bool, plan: bool| {
        let dir = tx.join(name);
        let new = dir.join("new/machines/m/public/g");
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(new.join("v"), format!("{name}\n")).unwrap();
        if plan {
            std::fs::write(
                dir.join("plan.json"),
                r#"[{"rel":"machines/m/public/g","present":true}]"#,
            )
            .unwrap();
        }
        if committed {
            std::fs::write(dir.join("COMMITTED"), b"").unwrap();
        }
    };
    stage("tx-staged", false, true);
    stage("tx-cleanup", true, false);
    repo.ok(&["list"]);
    assert_eq!(std::fs::read(&live).unwrap(), b"old\n");
    assert!(std::fs::read_dir(&tx).unwrap().next().is_none());
    stage("tx-committed", true, true);
    assert_eq!(repo.ok(&["get", "m", "g/v"]), "tx-committed\n");
    assert!(std::fs::read_dir(&tx).unwrap().next().is_none());
}
