//! `vars check`: every problem between the configuration and the store, from
//! metadata alone (no key needed, nothing decrypted), each with its fix.

use std::collections::{BTreeMap, BTreeSet};

use rayon::prelude::*;
use serde::Serialize;

use crate::graph::{Graph, NodeId};
use crate::keys::Recipient;
use crate::manifest::Manifest;
use crate::status::{self, Stale};
use crate::store::{GenMeta, Kind, Owner, Store, StoreError};

/// One problem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// `cinnabar/openssh/ssh_host_ed25519_key`, `shared/openssh-ca`, …
    pub subject: String,
    /// missing, outdated, recipients, orphan, kind
    pub kind: &'static str,
    pub detail: String,
    /// The command that fixes it.
    pub fix: String,
}

fn generate_fix(node: &NodeId, graph: &Graph) -> String {
    let machine = node
        .machine
        .clone()
        .or_else(|| graph.machines_of(node).into_iter().next())
        .unwrap_or_default();
    format!(
        "vars generate --machine {machine} --generator {}",
        node.generator
    )
}

/// Checks the selected machines (all when empty).
pub fn check(
    manifest: &Manifest,
    graph: &Graph,
    store: &Store,
    machines: &[String],
) -> Result<Vec<Problem>, StoreError> {
    let mut problems = Vec::new();
    let metas = status::read_metas(store, graph)?;
    let admins = status::admin_recipients(store)?;
    let machine_keys = status::machine_keys(store, manifest)?;
    let selected = status::selected(manifest, graph, machines);
    // Each node reads its metadata, stats its files and parses its sealed files: thousands
    // of small reads on a large fleet, done in parallel and reported in order.
    let per_node: Vec<Vec<Problem>> = selected
        .par_iter()
        .map(|node| node_problems(manifest, graph, store, node, &metas, &admins, &machine_keys))
        .collect::<Result<_, _>>()?;
    problems.extend(per_node.into_iter().flatten());
    // Each machine's private key, sealed to the admins: to exactly the admins.
    for m in status::key_machines(manifest, machines) {
        if let Some(status::AgeKeyDrift { have, want, .. }) =
            status::age_key_drift(store, &m, &admins)?
        {
            problems.push(Problem {
                subject: format!("{m}/age-key"),
                kind: "recipients",
                detail: differences(&have, &want, &[]),
                fix: format!("vars rekey --machine {m}"),
            });
        }
    }
    // A file stored with the wrong kind is already reported on its generator.
    let mismatched: BTreeSet<String> = problems
        .iter()
        .filter(|p| p.kind == "kind")
        .map(|p| format!("{}/", p.subject))
        .collect();
    problems.extend(
        orphans(manifest, graph, store, machines)?
            .into_iter()
            .filter(|o| !(o.kind == "kind" && mismatched.iter().any(|n| o.subject.starts_with(n)))),
    );
    Ok(problems)
}

/// The problems of one generator: stale (then nothing more is said of it), or each of
/// its sealed files whose recipients drifted.
fn node_problems(
    manifest: &Manifest,
    graph: &Graph,
    store: &Store,
    node: &NodeId,
    metas: &BTreeMap<NodeId, Option<GenMeta>>,
    admins: &[Recipient],
    machine_keys: &BTreeMap<String, Vec<Recipient>>,
) -> Result<Vec<Problem>, StoreError> {
    let Some(gen) = graph.generator(manifest, node) else {
        return Ok(Vec::new());
    };
    if let Some(stale) = status::stale(store, graph, node, gen, metas)? {
        // The detail does not repeat the kind ("outdated: its definition changed").
        let (kind, detail) = match &stale {
            Stale::Missing(files) if files.is_empty() => ("missing", "never generated".into()),
            Stale::Missing(files) => ("missing", format!("absent: {}", files.join(", "))),
            Stale::KindMismatch(_) => ("kind", stale.to_string()),
            Stale::DefinitionChanged => ("outdated", "its definition changed".into()),
            Stale::InputChanged(dep) => {
                ("outdated", format!("its dependency {dep} was regenerated"))
            }
        };
        return Ok(vec![Problem {
            subject: node.to_string(),
            kind,
            detail,
            fix: generate_fix(node, graph),
        }]);
    }
    let mut problems = Vec::new();
    for item in status::stored_secrets(manifest, graph, store, [node])? {
        let drift = item.drift(manifest, graph, admins, machine_keys);
        if !drift.differs() {
            continue;
        }
        let machine = node.machine.clone().unwrap_or_else(|| "shared".into());
        problems.push(Problem {
            subject: format!("{node}/{}", item.file),
            kind: "recipients",
            detail: differences(&drift.have, &drift.want_text(), &drift.keyless),
            fix: if machine == "shared" {
                "vars rekey".into()
            } else {
                format!("vars rekey --machine {machine}")
            },
        });
    }
    Ok(problems)
}

/// "not sealed to …; not sealed to machine M, which has no key yet; still sealed to …".
/// A machine that receives a file but has no key yet (a new machine declaring a
/// shared generator) is missing from it too.
fn differences(have: &BTreeSet<String>, want: &BTreeSet<String>, keyless: &[String]) -> String {
    let added: Vec<&String> = want.difference(have).collect();
    let removed: Vec<&String> = have.difference(want).collect();
    let mut detail = Vec::new();
    if !added.is_empty() {
        detail.push(format!("not sealed to {}", join(&added)));
    }
    for m in keyless {
        detail.push(format!("not sealed to machine {m}, which has no key yet"));
    }
    if !removed.is_empty() {
        detail.push(format!("still sealed to {}", join(&removed)));
    }
    detail.join("; ")
}

fn join(items: &[&String]) -> String {
    items
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Stored generators and files that the configuration no longer declares.
pub fn orphans(
    manifest: &Manifest,
    graph: &Graph,
    store: &Store,
    machines: &[String],
) -> Result<Vec<Problem>, StoreError> {
    let mut owners: Vec<Owner> = Vec::new();
    if machines.is_empty() {
        owners.push(Owner::Shared);
        owners.extend(store.stored_machines()?.into_iter().map(Owner::Machine));
    } else {
        owners.extend(machines.iter().cloned().map(Owner::Machine));
    }
    // Each owner's directories are listed on their own: in parallel, reported in order.
    let per_owner: Vec<Vec<Problem>> = owners
        .par_iter()
        .map(|o| {
            let mut out = Vec::new();
            let node_of = |gen: &str| match o {
                Owner::Machine(m) => NodeId::per_machine(m.clone(), gen),
                Owner::Shared => NodeId::shared(gen),
            };
            let fix = match o {
                Owner::Machine(m) => format!("vars prune --machine {m}"),
                Owner::Shared => "vars prune".into(),
            };
            let declared = |gen: &str| graph.contains(&node_of(gen));
            let mut reported = BTreeSet::new();
            let mut gens: BTreeSet<String> = store.stored_generators(o)?.into_iter().collect();
            let files = store.stored_files(o)?;
            gens.extend(files.iter().map(|(g, _, _)| g.clone()));
            for g in &gens {
                if !declared(g) {
                    reported.insert(g.clone());
                    out.push(Problem {
                        subject: node_of(g).to_string(),
                        kind: "orphan",
                        detail: "stored but no longer declared".into(),
                        fix: fix.clone(),
                    });
                }
            }
            for (g, kind, f) in files {
                if reported.contains(&g) {
                    continue;
                }
                let node = node_of(&g);
                let Some(gen) = graph.generator(manifest, &node) else {
                    continue;
                };
                let expected =
                    gen.files
                        .get(&f)
                        .map(|d| if d.secret { Kind::Secret } else { Kind::Public });
                if expected.is_none() {
                    out.push(Problem {
                        subject: format!("{node}/{f}"),
                        kind: "orphan",
                        detail: format!("stored under {} but not declared", kind.dir()),
                        fix: fix.clone(),
                    });
                } else if expected != Some(kind) {
                    out.push(Problem {
                        subject: format!("{node}/{f}"),
                        kind: "kind",
                        detail: format!(
                            "stored under {} but declared {}",
                            kind.dir(),
                            if kind == Kind::Secret {
                                "public"
                            } else {
                                "secret"
                            }
                        ),
                        fix: generate_fix(&node, graph),
                    });
                }
            }
            Ok(out)
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(per_owner.into_iter().flatten().collect())
}
