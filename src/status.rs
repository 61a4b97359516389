//! What the store holds for each generator against what the manifest wants:
//! the shared reading of `generate` (what must run) and `check` (what to
//! report). Reads metadata only: nothing is decrypted, no process starts.

use std::collections::{BTreeMap, BTreeSet};

use crate::graph::{Graph, NodeId};
use crate::keys::Recipient;
use crate::manifest::{Generator, Manifest};
use crate::sops::SopsFile;
use crate::store::{GenMeta, Kind, Owner, Store, StoreError};

/// Where a node's outputs live.
pub fn owner(node: &NodeId) -> Owner {
    match &node.machine {
        Some(m) => Owner::Machine(m.clone()),
        None => Owner::Shared,
    }
}

/// Why a generator must run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stale {
    /// Never generated, or declared files are absent.
    Missing(Vec<String>),
    /// Script, validation, files or other definition changed.
    DefinitionChanged,
    /// A dependency was regenerated since.
    InputChanged(String),
    /// A file is stored as secret but declared public, or the reverse.
    KindMismatch(String),
}

impl std::fmt::Display for Stale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stale::Missing(files) if files.is_empty() => f.write_str("never generated"),
            Stale::Missing(files) => write!(f, "missing {}", files.join(", ")),
            Stale::DefinitionChanged => f.write_str("outdated: its definition changed"),
            Stale::InputChanged(dep) => write!(f, "outdated: its dependency {dep} was regenerated"),
            Stale::KindMismatch(file) => {
                write!(f, "{file} is stored with the wrong secret/public kind")
            }
        }
    }
}

/// A node's current state, from its metadata.
pub fn stale(
    store: &Store,
    graph: &Graph,
    node: &NodeId,
    gen: &Generator,
    metas: &BTreeMap<NodeId, Option<GenMeta>>,
) -> Result<Option<Stale>, StoreError> {
    let Some(Some(meta)) = metas.get(node) else {
        return Ok(Some(Stale::Missing(Vec::new())));
    };
    let owner = owner(node);
    let mut missing = Vec::new();
    for (name, decl) in &gen.files {
        let kind = if decl.secret {
            Kind::Secret
        } else {
            Kind::Public
        };
        let other = if decl.secret {
            Kind::Public
        } else {
            Kind::Secret
        };
        if !store
            .file_path(&owner, kind, &node.generator, name)
            .exists()
        {
            if store
                .file_path(&owner, other, &node.generator, name)
                .exists()
            {
                return Ok(Some(Stale::KindMismatch(name.clone())));
            }
            missing.push(name.clone());
        }
    }
    if !missing.is_empty() {
        return Ok(Some(Stale::Missing(missing)));
    }
    let declared: BTreeMap<String, bool> = gen
        .files
        .iter()
        .map(|(n, d)| (n.clone(), d.secret))
        .collect();
    if meta.definition != gen.definition_hash() || meta.files != declared {
        return Ok(Some(Stale::DefinitionChanged));
    }
    for dep in graph.dependencies(node) {
        let current = metas
            .get(&dep)
            .and_then(|m| m.as_ref())
            .map(|m| &m.generation);
        if meta.inputs.get(&dep.to_string()) != current {
            return Ok(Some(Stale::InputChanged(dep.to_string())));
        }
    }
    Ok(None)
}

/// Reads every node's metadata once (in parallel: on a large fleet these thousands of
/// small reads are most of a no-op `generate` or `check`). The first error in graph order
/// is reported, whatever the interleaving.
pub fn read_metas(
    store: &Store,
    graph: &Graph,
) -> Result<BTreeMap<NodeId, Option<GenMeta>>, StoreError> {
    use rayon::prelude::*;
    let read: Vec<Result<Option<GenMeta>, StoreError>> = graph
        .order()
        .par_iter()
        .map(|n| store.read_meta(&owner(n), &n.generator))
        .collect();
    graph
        .order()
        .iter()
        .zip(read)
        .map(|(n, meta)| Ok((n.clone(), meta?)))
        .collect()
}

/// The nodes of the selected machines (every machine when empty): their
/// per-machine generators and the shared ones they declare, in graph order.
pub fn selected(manifest: &Manifest, graph: &Graph, machines: &[String]) -> Vec<NodeId> {
    let chosen: BTreeSet<&str> = if machines.is_empty() {
        manifest.machines.keys().map(String::as_str).collect()
    } else {
        machines.iter().map(String::as_str).collect()
    };
    graph
        .order()
        .iter()
        .filter(|n| {
            graph
                .machines_of(n)
                .iter()
                .any(|m| chosen.contains(m.as_str()))
        })
        .cloned()
        .collect()
}

/// The recipients a node's file must be sealed to: the admins, plus each
/// machine that receives it (per-machine: its machine; shared: every machine
/// declaring the generator with `deploy = true` for that file).
pub fn wanted_recipients(
    manifest: &Manifest,
    graph: &Graph,
    node: &NodeId,
    file: &str,
    admins: &[Recipient],
    machine_keys: &BTreeMap<String, Vec<Recipient>>,
) -> Vec<Recipient> {
    let mut out: BTreeSet<Recipient> = admins.iter().cloned().collect();
    for m in receiving_machines(manifest, graph, node, file) {
        if let Some(keys) = machine_keys.get(&m) {
            out.extend(keys.iter().cloned());
        }
    }
    out.into_iter().collect()
}

/// The machines a node's file is sealed to: per-machine, its machine; shared,
/// every machine declaring the generator with `deploy = true` for that file.
pub fn receiving_machines(
    manifest: &Manifest,
    graph: &Graph,
    node: &NodeId,
    file: &str,
) -> Vec<String> {
    match &node.machine {
        Some(m) => vec![m.clone()],
        None => graph
            .machines_of(node)
            .into_iter()
            .filter(|m| {
                manifest
                    .machines
                    .get(m)
                    .and_then(|mach| mach.generators.get(&node.generator))
                    .and_then(|g| g.files.get(file))
                    .is_some_and(|d| d.deploy)
            })
            .collect(),
    }
}

/// A stored secret file of a node, parsed: its metadata only, nothing decrypted.
pub struct StoredSecret {
    pub node: NodeId,
    pub file: String,
    pub sealed: SopsFile,
}

/// The recipients a stored secret has against those it should have.
pub struct Drift {
    pub have: BTreeSet<String>,
    pub want: Vec<Recipient>,
    /// Machines that should receive the file but have no key yet.
    pub keyless: Vec<String>,
}

impl Drift {
    pub fn want_text(&self) -> BTreeSet<String> {
        self.want.iter().map(|r| r.to_string()).collect()
    }

    /// True when the file must be re-sealed.
    pub fn differs(&self) -> bool {
        self.have != self.want_text() || !self.keyless.is_empty()
    }
}

/// Every declared secret file of `nodes` that is in the store, in order.
pub fn stored_secrets<'a>(
    manifest: &Manifest,
    graph: &Graph,
    store: &Store,
    nodes: impl IntoIterator<Item = &'a NodeId>,
) -> Result<Vec<StoredSecret>, StoreError> {
    use rayon::prelude::*;
    let mut wanted: Vec<(&NodeId, &String)> = Vec::new();
    for node in nodes {
        let Some(gen) = graph.generator(manifest, node) else {
            continue;
        };
        wanted.extend(
            gen.files
                .iter()
                .filter(|(_, decl)| decl.secret)
                .map(|(file, _)| (node, file)),
        );
    }
    // Thousands of small reads and parses on a large fleet: in parallel, kept in order.
    let read: Vec<Option<StoredSecret>> = wanted
        .par_iter()
        .map(|&(node, file)| {
            Ok(store
                .read_sealed(&owner(node), &node.generator, file)?
                .map(|sealed| StoredSecret {
                    node: node.clone(),
                    file: file.clone(),
                    sealed,
                }))
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(read.into_iter().flatten().collect())
}

impl StoredSecret {
    /// How this file's recipients differ from the wanted set.
    pub fn drift(
        &self,
        manifest: &Manifest,
        graph: &Graph,
        admins: &[Recipient],
        machine_keys: &BTreeMap<String, Vec<Recipient>>,
    ) -> Drift {
        Drift {
            have: self.sealed.recipients().into_iter().collect(),
            want: wanted_recipients(
                manifest,
                graph,
                &self.node,
                &self.file,
                admins,
                machine_keys,
            ),
            keyless: receiving_machines(manifest, graph, &self.node, &self.file)
                .into_iter()
                .filter(|m| !machine_keys.contains_key(m))
                .collect(),
        }
    }
}

/// Every admin recipient, flattened and sorted.
pub fn admin_recipients(store: &Store) -> Result<Vec<Recipient>, StoreError> {
    let mut all: BTreeSet<Recipient> = BTreeSet::new();
    for (_, keys) in store.admins()? {
        all.extend(keys);
    }
    Ok(all.into_iter().collect())
}

/// Each manifest machine's recipients, for machines that have a key.json.
pub fn machine_keys(
    store: &Store,
    manifest: &Manifest,
) -> Result<BTreeMap<String, Vec<Recipient>>, StoreError> {
    let mut out = BTreeMap::new();
    for m in manifest.machines.keys() {
        if let Some(keys) = store.machine_recipients(m)? {
            out.insert(m.clone(), keys);
        }
    }
    Ok(out)
}

/// Creates a key for every listed machine that has none (sealed to the admins).
pub fn ensure_machine_keys(
    store: &Store,
    admins: &[Recipient],
    keys: &mut BTreeMap<String, Vec<Recipient>>,
    machines: impl IntoIterator<Item = String>,
) -> Result<(), StoreError> {
    for m in machines {
        if let std::collections::btree_map::Entry::Vacant(slot) = keys.entry(m) {
            let r = store.create_machine_key(slot.key(), admins)?;
            slot.insert(vec![r]);
        }
    }
    Ok(())
}

/// Metadata for a new generation of `gen`'s outputs, made from `inputs`.
pub fn new_meta(gen: &Generator, inputs: BTreeMap<String, String>) -> GenMeta {
    GenMeta {
        generation: GenMeta::new_generation(),
        definition: gen.definition_hash(),
        files: gen
            .files
            .iter()
            .map(|(n, d)| (n.clone(), d.secret))
            .collect(),
        inputs,
    }
}

/// A machine's `age-key` sealed to other recipients than the admins.
pub struct AgeKeyDrift {
    pub path: std::path::PathBuf,
    pub have: BTreeSet<String>,
    pub want: BTreeSet<String>,
}

/// A machine's `age-key` (its private key, sealed to the admins) when its
/// recipients differ from the current admins. After an admin is removed, the
/// old admin could otherwise still open the machine's key from the
/// repository, and through it every secret of the machine.
pub fn age_key_drift(
    store: &Store,
    machine: &str,
    admins: &[Recipient],
) -> Result<Option<AgeKeyDrift>, StoreError> {
    let path = store
        .owner_dir(&Owner::Machine(machine.to_string()))
        .join("age-key");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(crate::store::io_error(&path, e)),
    };
    let sealed = crate::sops::SopsFile::parse(
        &bytes,
        crate::sops::Format::Binary,
        &path.display().to_string(),
    )?;
    let have: BTreeSet<String> = sealed.recipients().into_iter().collect();
    let want: BTreeSet<String> = admins.iter().map(|r| r.to_string()).collect();
    Ok((have != want).then_some(AgeKeyDrift { path, have, want }))
}

/// The machines whose keys a command on `machines` looks after: those given,
/// else every machine of the configuration.
pub fn key_machines(manifest: &Manifest, machines: &[String]) -> Vec<String> {
    if machines.is_empty() {
        manifest.machines.keys().cloned().collect()
    } else {
        machines.to_vec()
    }
}
