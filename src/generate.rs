//! `vars generate`: run what is missing or outdated, in the DAG's order,
//! independent generators in parallel, and commit each generator's outputs
//! atomically.
//!
//! Workers (`--jobs` of them) run scripts and seal their outputs (the files of
//! one generator in parallel); one committer thread writes what they staged
//! to the store. It takes everything staged since its last commit as one
//! transaction, so the flushes that make a commit durable (a few milliseconds
//! each on a virtual disk) are paid once per batch rather than per generator,
//! while the workers go on running scripts. Each generator's outputs still
//! change all at once; a dependent starts only once its dependencies are
//! committed.
//!
//! A commit has a fixed cost (a transaction directory, a plan, a marker and a
//! few flushes), so the committer lets outputs gather for up to [`LINGER`]
//! while scripts are still running and nothing waits for what is staged; with
//! quick scripts it would otherwise commit one generator at a time, and its
//! work competes with the scripts for the cores (issue 6, B3).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use zeroize::Zeroizing;

use crate::graph::{Graph, NodeId};
use crate::keys::{Identities, Recipient};
use crate::manifest::{Generator, Manifest};
use crate::sandbox::{Job, Sandbox};
use crate::status::{self, owner, Stale};
use crate::store::{GenMeta, Kind, Lock, Owner, Store, StoreError};

/// How long staged outputs may wait for more to join their commit.
const LINGER: Duration = Duration::from_millis(50);
/// The most generators one commit takes once [`LINGER`] applies.
const BATCH_MAX: usize = 64;

/// What the user asked for.
pub struct Options {
    /// Machines to generate for (empty: all).
    pub machines: Vec<String>,
    /// Generators to force, by name.
    pub generators: Vec<String>,
    /// Force every generator of the selected machines.
    pub regenerate: bool,
    /// Prompt answers: `GEN.PROMPT` → value.
    pub prompts: BTreeMap<String, Zeroizing<String>>,
    pub timeout: Duration,
    pub jobs: usize,
}

/// How one generator ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Generated(String),
    Failed(String),
    /// Not run because a dependency failed.
    Skipped(String),
}

/// One line of the summary, in the DAG's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub node: NodeId,
    pub outcome: Outcome,
}

/// Errors that stop the run before any script starts.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no admin keys: sops/users/*/key.json is empty; run `vars keygen` first")]
    NoAdmins,
    #[error("unknown machine {0:?}: the configuration declares {1}")]
    UnknownMachine(String, String),
    #[error("unknown generator {0:?} on the selected machines")]
    UnknownGenerator(String),
    #[error("{}", missing_prompts(.0))]
    MissingPrompts(Vec<String>),
    #[error("{0}")]
    Input(String),
}

fn missing_prompts(names: &[String]) -> String {
    format!(
        "no terminal to ask on, and these prompts have no answer: {}; pass --prompt GEN.PROMPT=VALUE or --prompt-file FILE.json",
        names.join(", ")
    )
}

/// Progress events for the caller to display.
pub enum Event<'a> {
    Started(&'a NodeId),
    Finished(&'a Row, usize, usize),
}

/// The plan: what runs, and why, in order.
pub fn plan(
    manifest: &Manifest,
    graph: &Graph,
    store: &Store,
    opts: &Options,
) -> Result<Vec<(NodeId, String)>, GenerateError> {
    for m in &opts.machines {
        if !manifest.machines.contains_key(m) {
            let known: Vec<&str> = manifest.machines.keys().map(String::as_str).collect();
            return Err(GenerateError::UnknownMachine(m.clone(), known.join(", ")));
        }
    }
    let selected = status::selected(manifest, graph, &opts.machines);
    for g in &opts.generators {
        if !selected.iter().any(|n| &n.generator == g) {
            return Err(GenerateError::UnknownGenerator(g.clone()));
        }
    }
    let metas = status::read_metas(store, graph)?;
    let mut reasons: BTreeMap<NodeId, String> = BTreeMap::new();
    let stale_of = |n: &NodeId| -> Result<Option<Stale>, GenerateError> {
        let gen = graph
            .generator(manifest, n)
            .ok_or_else(|| GenerateError::Input(format!("{n}: not in the configuration")))?;
        Ok(status::stale(store, graph, n, gen, &metas)?)
    };
    for n in &selected {
        if opts.regenerate {
            reasons.insert(n.clone(), "--regenerate".into());
        } else if opts.generators.contains(&n.generator) {
            reasons.insert(n.clone(), "--generator".into());
        } else if opts.generators.is_empty() {
            // With --generator, other stale generators run only as a
            // dependency or a dependent of a forced one (below).
            if let Some(s) = stale_of(n)? {
                reasons.insert(n.clone(), s.to_string());
            }
        }
    }
    // Close over dependents (on every machine), then pull in any missing or
    // outdated dependency of what runs, until nothing changes.
    loop {
        let seeds: BTreeSet<NodeId> = reasons.keys().cloned().collect();
        let run = graph.closure(&seeds);
        let before = reasons.len();
        for n in &run {
            if !reasons.contains_key(n) {
                let dep = graph
                    .dependencies(n)
                    .into_iter()
                    .find(|d| reasons.contains_key(d))
                    .map(|d| d.to_string())
                    .unwrap_or_default();
                reasons.insert(n.clone(), format!("dependency {dep} runs"));
            }
        }
        // One walk over the dependencies of everything that runs (per node, a chain of
        // 10 000 would take quadratic time).
        for a in graph.with_ancestors(&run) {
            if let std::collections::btree_map::Entry::Vacant(slot) = reasons.entry(a) {
                if let Some(s) = stale_of(slot.key())? {
                    slot.insert(s.to_string());
                }
            }
        }
        if reasons.len() == before {
            break;
        }
    }
    Ok(graph
        .order()
        .iter()
        .filter_map(|n| reasons.get(n).map(|r| (n.clone(), r.clone())))
        .collect())
}

/// Prompt answers per node: (prompt name, value).
type PromptValues = BTreeMap<NodeId, Vec<(String, Zeroizing<Vec<u8>>)>>;

/// The fixed inputs of a run.
pub struct Env<'a> {
    pub manifest: &'a Manifest,
    pub graph: &'a Graph,
    pub store: &'a Store,
    pub lock: &'a Lock,
    pub sandbox: &'a Sandbox,
    pub ids: &'a Identities,
}

/// Everything a worker needs, shared read-only between threads.
struct Ctx<'a> {
    manifest: &'a Manifest,
    graph: &'a Graph,
    store: &'a Store,
    lock: &'a Lock,
    sandbox: &'a Sandbox,
    ids: &'a Identities,
    admins: Vec<Recipient>,
    machine_keys: BTreeMap<String, Vec<Recipient>>,
    prompts: PromptValues,
    timeout: Duration,
}

/// Runs the plan. Returns one row per planned generator, in plan order.
pub fn run(
    env: &Env,
    opts: &Options,
    planned: &[(NodeId, String)],
    ask: &mut dyn FnMut(&str, &crate::manifest::Prompt) -> Option<Zeroizing<String>>,
    progress: &(dyn Fn(Event) + Sync),
) -> Result<Vec<Row>, GenerateError> {
    let Env {
        manifest,
        graph,
        store,
        lock,
        sandbox,
        ids,
    } = *env;
    if planned.is_empty() {
        return Ok(Vec::new());
    }
    let admins = status::admin_recipients(store)?;
    if admins.is_empty() {
        return Err(GenerateError::NoAdmins);
    }
    let prompts = collect_prompts(manifest, graph, store, ids, opts, planned, ask)?;
    // Every machine that will receive a sealed file gets a key before anything runs.
    let mut machine_keys = status::machine_keys(store, manifest)?;
    let needing: BTreeSet<String> = planned
        .iter()
        .flat_map(|(n, _)| graph.machines_of(n))
        .collect();
    status::ensure_machine_keys(store, &admins, &mut machine_keys, needing)?;
    let ctx = Ctx {
        manifest,
        graph,
        store,
        lock,
        sandbox,
        ids,
        admins,
        machine_keys,
        prompts,
        timeout: opts.timeout,
    };
    Ok(schedule(&ctx, planned, opts.jobs.max(1), progress))
}

/// Decides every prompt answer before anything runs.
fn collect_prompts(
    manifest: &Manifest,
    graph: &Graph,
    store: &Store,
    ids: &Identities,
    opts: &Options,
    planned: &[(NodeId, String)],
    ask: &mut dyn FnMut(&str, &crate::manifest::Prompt) -> Option<Zeroizing<String>>,
) -> Result<PromptValues, GenerateError> {
    let mut out = BTreeMap::new();
    let mut unanswered = Vec::new();
    let mut asked: BTreeMap<String, Zeroizing<String>> = BTreeMap::new();
    for (n, _) in planned {
        let Some(gen) = graph.generator(manifest, n) else {
            continue;
        };
        let mut values = Vec::new();
        for (name, prompt) in &gen.prompts {
            let key = format!("{}.{}", n.generator, name);
            let qualified = format!("{n}.{name}");
            let given = opts
                .prompts
                .get(&qualified)
                .or_else(|| opts.prompts.get(&key))
                .or_else(|| asked.get(&key));
            let value = match given {
                Some(v) => Some(v.clone()),
                None if prompt.persist && !opts.regenerate => {
                    stored_prompt(store, ids, n, gen, name)?
                }
                None => None,
            };
            let value = match value {
                Some(v) => v,
                None => match ask(&qualified, prompt) {
                    Some(v) => {
                        asked.insert(key, v.clone());
                        v
                    }
                    None => {
                        unanswered.push(qualified);
                        continue;
                    }
                },
            };
            values.push((name.clone(), Zeroizing::new(value.as_bytes().to_vec())));
        }
        out.insert(n.clone(), values);
    }
    if !unanswered.is_empty() {
        return Err(GenerateError::MissingPrompts(unanswered));
    }
    Ok(out)
}

/// A persisted prompt's earlier answer: the generator's file of the same name.
fn stored_prompt(
    store: &Store,
    ids: &Identities,
    n: &NodeId,
    gen: &Generator,
    name: &str,
) -> Result<Option<Zeroizing<String>>, GenerateError> {
    let Some(decl) = gen.files.get(name) else {
        return Ok(None);
    };
    let bytes = read_output(store, ids, n, name, decl.secret).map_err(GenerateError::Input)?;
    Ok(bytes.map(|b| Zeroizing::new(String::from_utf8_lossy(&b).into_owned())))
}

/// One stored output in clear; `None` when absent.
pub fn read_output(
    store: &Store,
    ids: &Identities,
    n: &NodeId,
    file: &str,
    secret: bool,
) -> Result<Option<Zeroizing<Vec<u8>>>, String> {
    let owner = owner(n);
    if secret {
        match store.read_sealed(&owner, &n.generator, file) {
            Ok(Some(sealed)) => sealed
                .decrypt_binary(ids)
                .map(Some)
                .map_err(|e| e.to_string()),
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    } else {
        store
            .read_file(&owner, Kind::Public, &n.generator, file)
            .map(|b| b.map(Zeroizing::new))
            .map_err(|e| e.to_string())
    }
}

/// Runs nodes as their dependencies finish, `jobs` at a time; rows come back
/// in plan order whatever the interleaving.
fn schedule(
    ctx: &Ctx,
    planned: &[(NodeId, String)],
    jobs: usize,
    progress: &(dyn Fn(Event) + Sync),
) -> Vec<Row> {
    let index: BTreeMap<&NodeId, usize> = planned
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (n, i))
        .collect();
    // Dependencies within the plan, by index.
    let deps: Vec<Vec<usize>> = planned
        .iter()
        .map(|(n, _)| {
            ctx.graph
                .dependencies(n)
                .iter()
                .filter_map(|d| index.get(d).copied())
                .collect()
        })
        .collect();
    // The reverse: who waits for each node.
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); planned.len()];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    struct State {
        outcomes: Vec<Option<Outcome>>,
        /// Picked by a worker and not committed yet.
        running: BTreeSet<usize>,
        /// Run and sealed, waiting for the committer.
        staged: Vec<(usize, Staged)>,
        done: usize,
    }
    let state = Mutex::new(State {
        outcomes: vec![None; planned.len()],
        running: BTreeSet::new(),
        staged: Vec::new(),
        done: 0,
    });
    let wake = Condvar::new();
    let total = planned.len();
    let lock = || match state.lock() {
        Ok(s) => s,
        Err(p) => p.into_inner(),
    };
    let wait = |st| match wake.wait(st) {
        Ok(s) => s,
        Err(p) => p.into_inner(),
    };
    let wait_for = |st, timeout| match wake.wait_timeout(st, timeout) {
        Ok((s, _)) => s,
        Err(p) => p.into_inner().0,
    };
    // Records a node's final outcome (under the state lock).
    let finish = |st: &mut State, i: usize, outcome: Outcome| {
        st.running.remove(&i);
        st.outcomes[i] = Some(outcome.clone());
        st.done += 1;
        let row = Row {
            node: planned[i].0.clone(),
            outcome,
        };
        progress(Event::Finished(&row, st.done, total));
    };
    std::thread::scope(|scope| {
        // The committer: everything staged since its last commit, as one transaction.
        scope.spawn(|| loop {
            let batch = {
                let mut st = lock();
                let mut first_staged: Option<Instant> = None;
                loop {
                    if !st.staged.is_empty() {
                        let since = *first_staged.get_or_insert_with(Instant::now);
                        let lingered = since.elapsed();
                        if lingered >= LINGER
                            || commit_now(&st.staged, &st.running, &st.outcomes, &dependents)
                        {
                            break Some(std::mem::take(&mut st.staged));
                        }
                        st = wait_for(st, LINGER - lingered);
                        continue;
                    }
                    if st.done == total {
                        break None;
                    }
                    st = wait(st);
                }
            };
            let Some(mut batch) = batch else { break };
            batch.sort_by_key(|(i, _)| *i);
            let result = commit(ctx, &batch);
            let mut st = lock();
            for (i, _) in &batch {
                let outcome = match &result {
                    Ok(()) => Outcome::Generated(planned[*i].1.clone()),
                    Err(e) => Outcome::Failed(e.clone()),
                };
                finish(&mut st, *i, outcome);
            }
            wake.notify_all();
        });
        for _ in 0..jobs.min(total) {
            scope.spawn(|| loop {
                // Pick the first node whose dependencies are all done.
                let picked = {
                    let mut st = lock();
                    loop {
                        if st.done == total {
                            break None;
                        }
                        let ready = (0..total).find(|&i| {
                            st.outcomes[i].is_none()
                                && !st.running.contains(&i)
                                && deps[i].iter().all(|&d| st.outcomes[d].is_some())
                        });
                        match ready {
                            Some(i) => {
                                let failed_dep = deps[i].iter().find(|&&d| {
                                    !matches!(st.outcomes[d], Some(Outcome::Generated(_)))
                                });
                                if let Some(&d) = failed_dep {
                                    st.outcomes[i] = Some(Outcome::Skipped(format!(
                                        "dependency {} did not generate",
                                        planned[d].0
                                    )));
                                    st.done += 1;
                                    let row = Row {
                                        node: planned[i].0.clone(),
                                        outcome: Outcome::Skipped(String::new()),
                                    };
                                    progress(Event::Finished(&row, st.done, total));
                                    wake.notify_all();
                                    continue;
                                }
                                st.running.insert(i);
                                break Some(i);
                            }
                            None => st = wait(st),
                        }
                    }
                };
                let Some(i) = picked else { break };
                let node = &planned[i].0;
                progress(Event::Started(node));
                let prepared = prepare(ctx, node);
                let mut st = lock();
                match prepared {
                    Ok(staged) => st.staged.push((i, staged)),
                    Err(e) => finish(&mut st, i, Outcome::Failed(e)),
                }
                wake.notify_all();
            });
        }
    });
    let st = match state.into_inner() {
        Ok(s) => s,
        Err(p) => p.into_inner(),
    };
    planned
        .iter()
        .zip(st.outcomes)
        .map(|((n, _), o)| Row {
            node: n.clone(),
            outcome: o.unwrap_or(Outcome::Skipped(String::new())),
        })
        .collect()
}

/// Whether the `staged` outputs should be committed now rather than gathered a little
/// longer: a node not started yet waits for one of them, no script is running (`running`
/// holds the staged nodes too: nothing more will come meanwhile), or the batch is full.
fn commit_now<S, T>(
    staged: &[(usize, S)],
    running: &BTreeSet<usize>,
    outcomes: &[Option<T>],
    dependents: &[Vec<usize>],
) -> bool {
    staged.len() >= BATCH_MAX
        || running.len() == staged.len()
        || staged.iter().any(|&(i, _)| {
            dependents[i]
                .iter()
                .any(|&d| outcomes[d].is_none() && !running.contains(&d))
        })
}

/// One generator's outputs, sealed, with its metadata: ready to commit.
struct Staged {
    owner: Owner,
    generator: String,
    secrets: Vec<(String, Vec<u8>)>,
    publics: Vec<(String, Vec<u8>)>,
    meta: GenMeta,
}

/// Commits staged generators in one transaction: all of them or none.
fn commit(ctx: &Ctx, batch: &[(usize, Staged)]) -> Result<(), String> {
    let mut tx = ctx.store.begin(ctx.lock).map_err(|e| e.to_string())?;
    for (_, s) in batch {
        tx.put_generator(
            ctx.store,
            &s.owner,
            &s.generator,
            &s.secrets,
            &s.publics,
            &s.meta,
        )
        .map_err(|e| e.to_string())?;
    }
    tx.commit().map_err(|e| e.to_string())
}

/// Runs one generator and seals its outputs; the error is the summary text.
fn prepare(ctx: &Ctx, node: &NodeId) -> Result<Staged, String> {
    let gen = ctx
        .graph
        .generator(ctx.manifest, node)
        .ok_or_else(|| format!("{node}: not in the configuration"))?;
    // Inputs: every file of every dependency, secrets decrypted.
    let mut inputs = Vec::new();
    let mut recorded = BTreeMap::new();
    for dep in ctx.graph.dependencies(node) {
        let dep_gen = ctx
            .graph
            .generator(ctx.manifest, &dep)
            .ok_or_else(|| format!("{dep}: not in the configuration"))?;
        let meta = ctx
            .store
            .read_meta(&owner(&dep), &dep.generator)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("dependency {dep} has not been generated"))?;
        recorded.insert(dep.to_string(), meta.generation);
        for (file, decl) in &dep_gen.files {
            let bytes = read_output(ctx.store, ctx.ids, &dep, file, decl.secret)
                .map_err(|e| format!("reading input {dep}/{file}: {e}"))?
                .ok_or_else(|| format!("input {dep}/{file} is missing from the store"))?;
            inputs.push((dep.generator.clone(), file.clone(), bytes));
        }
    }
    let prompts = ctx.prompts.get(node).cloned().unwrap_or_default();
    let name = node.to_string();
    let job = Job {
        name: &name,
        script: &gen.script,
        inputs: &inputs,
        prompts: &prompts,
        runtime_inputs: &gen.runtime_inputs,
        timeout: ctx.timeout,
    };
    let mut outputs = ctx.sandbox.run(&job).map_err(|e| e.to_string())?;
    // A persisted prompt is stored as the generator's file of the same name.
    for (pname, value) in &prompts {
        if gen.prompts.get(pname).is_some_and(|p| p.persist) && gen.files.contains_key(pname) {
            outputs
                .entry(pname.clone())
                .or_insert_with(|| value.clone());
        }
    }
    let produced: Vec<&String> = outputs.keys().collect();
    let missing: Vec<&String> = gen
        .files
        .keys()
        .filter(|f| !outputs.contains_key(*f))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "declared file{} {} not produced (the script produced: {})",
            if missing.len() == 1 { "" } else { "s" },
            quoted(&missing),
            if produced.is_empty() {
                "nothing".into()
            } else {
                quoted(&produced)
            }
        ));
    }
    let extra: Vec<&String> = outputs
        .keys()
        .filter(|f| !gen.files.contains_key(*f))
        .collect();
    if !extra.is_empty() {
        return Err(format!(
            "undeclared file{} in $out: {} (declare {} in files, or do not write {})",
            if extra.len() == 1 { "" } else { "s" },
            quoted(&extra),
            if extra.len() == 1 { "it" } else { "them" },
            if extra.len() == 1 { "it" } else { "them" },
        ));
    }
    let mut to_seal = Vec::new();
    let mut publics = Vec::new();
    for (file, decl) in &gen.files {
        let bytes = &outputs[file];
        if decl.secret {
            let recipients = status::wanted_recipients(
                ctx.manifest,
                ctx.graph,
                node,
                file,
                &ctx.admins,
                &ctx.machine_keys,
            );
            to_seal.push((file, bytes, recipients));
        } else {
            publics.push((file.clone(), bytes.to_vec()));
        }
    }
    // Sealing is X25519 and AES per file: a generator's files are sealed in parallel
    // (one file is sealed right here: handing it to the pool costs more than it saves).
    let seal = |(file, bytes, recipients): &(&String, &Zeroizing<Vec<u8>>, Vec<Recipient>)| {
        crate::sops::encrypt_binary(bytes, recipients)
            .map(|sealed| ((*file).clone(), sealed))
            .map_err(|e| e.to_string())
    };
    let secrets = if to_seal.len() > 1 {
        to_seal
            .par_iter()
            .map(seal)
            .collect::<Result<Vec<_>, String>>()?
    } else {
        to_seal
            .iter()
            .map(seal)
            .collect::<Result<Vec<_>, String>>()?
    };
    let meta = status::new_meta(gen, recorded);
    Ok(Staged {
        owner: owner(node),
        generator: node.generator.clone(),
        secrets,
        publics,
        meta,
    })
}

fn quoted(names: &[&String]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod commit_batching {
    use super::*;

    /// Nodes 0 → 2 (2 depends on 0); 1 and 3 independent.
    fn dependents() -> Vec<Vec<usize>> {
        vec![vec![2], vec![], vec![], vec![]]
    }

    #[test]
    fn gathers_while_scripts_run_and_nothing_waits() {
        let running: BTreeSet<usize> = [1, 3].into();
        let outcomes: Vec<Option<()>> = vec![Some(()), None, Some(()), None];
        assert!(!commit_now(&[(1, ())], &running, &outcomes, &dependents()));
    }

    #[test]
    fn commits_at_once_when_a_dependent_waits() {
        let running: BTreeSet<usize> = [0, 1].into();
        let outcomes: Vec<Option<()>> = vec![None, None, None, Some(())];
        assert!(commit_now(&[(0, ())], &running, &outcomes, &dependents()));
        // A dependent already finished (skipped) does not wait.
        let outcomes: Vec<Option<()>> = vec![None, None, Some(()), Some(())];
        assert!(!commit_now(&[(0, ())], &running, &outcomes, &dependents()));
    }

    #[test]
    fn commits_at_once_when_no_script_runs() {
        let running: BTreeSet<usize> = [1].into();
        let outcomes: Vec<Option<()>> = vec![Some(()), None, Some(()), Some(())];
        assert!(commit_now(&[(1, ())], &running, &outcomes, &dependents()));
    }

    #[test]
    fn commits_a_full_batch() {
        let staged: Vec<(usize, ())> = (0..BATCH_MAX).map(|i| (i, ())).collect();
        let mut running: BTreeSet<usize> = (0..BATCH_MAX).collect();
        running.insert(BATCH_MAX);
        let outcomes: Vec<Option<()>> = vec![None; BATCH_MAX + 1];
        let dependents = vec![Vec::new(); BATCH_MAX + 1];
        assert!(commit_now(&staged, &running, &outcomes, &dependents));
        assert!(!commit_now(&staged[1..], &running, &outcomes, &dependents));
    }
}
