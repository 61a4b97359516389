//! `vars get`, `vars set`, `vars list`: one stored value in and out.

use serde::Serialize;
use zeroize::Zeroizing;

use crate::graph::{Graph, NodeId};
use crate::keys::Identities;
use crate::manifest::{FileDecl, Manifest};
use crate::status::{self, owner};
use crate::store::{Kind, Lock, Store, StoreError};

/// Errors naming what was asked for.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Decrypt(String),
}

/// Finds `GEN/FILE` of machine `m`: its node and declaration.
pub fn locate<'m>(
    manifest: &'m Manifest,
    machine: &str,
    spec: &str,
) -> Result<(NodeId, &'m FileDecl), ValueError> {
    let (gen, file) = spec
        .split_once('/')
        .ok_or_else(|| ValueError::NotFound(format!("expected GENERATOR/FILE, got {spec:?}")))?;
    let mach = manifest
        .machines
        .get(machine)
        .ok_or_else(|| ValueError::NotFound(format!("unknown machine {machine:?}")))?;
    let g = mach.generators.get(gen).ok_or_else(|| {
        ValueError::NotFound(format!("machine {machine} has no generator {gen:?}"))
    })?;
    let decl = g.files.get(file).ok_or_else(|| {
        ValueError::NotFound(format!(
            "generator {gen} of {machine} declares no file {file:?}"
        ))
    })?;
    let node = if g.share {
        NodeId::shared(gen)
    } else {
        NodeId::per_machine(machine, gen)
    };
    Ok((node, decl))
}

/// A value in clear.
pub fn get(
    manifest: &Manifest,
    store: &Store,
    ids: &Identities,
    machine: &str,
    spec: &str,
) -> Result<Zeroizing<Vec<u8>>, ValueError> {
    let (node, decl) = locate(manifest, machine, spec)?;
    let file = spec.split_once('/').map(|(_, f)| f).unwrap_or_default();
    crate::generate::read_output(store, ids, &node, file, decl.secret)
        .map_err(ValueError::Decrypt)?
        .ok_or_else(|| {
            ValueError::NotFound(format!(
                "{node}/{file} is not in the store; run `vars generate --machine {machine}`"
            ))
        })
}

/// Stores a value (sealed when secret) as a new generation of its generator,
/// so dependents become outdated.
pub fn set(
    manifest: &Manifest,
    graph: &Graph,
    store: &Store,
    lock: &Lock,
    machine: &str,
    spec: &str,
    value: &[u8],
) -> Result<(), ValueError> {
    let (node, decl) = locate(manifest, machine, spec)?;
    let file = spec.split_once('/').map(|(_, f)| f).unwrap_or_default();
    let gen = graph
        .generator(manifest, &node)
        .ok_or_else(|| ValueError::NotFound(format!("{node} is not in the configuration")))?;
    let own = owner(&node);
    let admins = status::admin_recipients(store)?;
    let mut machine_keys = status::machine_keys(store, manifest)?;
    if admins.is_empty() && decl.secret {
        return Err(ValueError::NotFound(
            "no admin keys: sops/users/*/key.json is empty; run `vars keygen` first".into(),
        ));
    }
    status::ensure_machine_keys(store, &admins, &mut machine_keys, graph.machines_of(&node))?;
    let (kind, bytes) = if decl.secret {
        let recipients =
            status::wanted_recipients(manifest, graph, &node, file, &admins, &machine_keys);
        (
            Kind::Secret,
            crate::sops::encrypt_binary(value, &recipients).map_err(StoreError::from)?,
        )
    } else {
        (Kind::Public, value.to_vec())
    };
    let previous = store.read_meta(&own, &node.generator)?;
    let meta = status::new_meta(gen, previous.map(|p| p.inputs).unwrap_or_default());
    let mut tx = store.begin(lock)?;
    tx.put_file(
        store,
        &store.file_path(&own, kind, &node.generator, file),
        &bytes,
    )?;
    tx.put_file(
        store,
        &store.meta_path(&own, &node.generator),
        &meta.to_bytes(),
    )?;
    tx.commit()?;
    Ok(())
}

/// One row of `vars list`.
#[derive(Clone, Debug, Serialize)]
pub struct Listed {
    pub machine: String,
    pub generator: String,
    pub file: String,
    pub secret: bool,
    pub status: String,
    /// The value of public files.
    pub value: Option<String>,
}

/// Every declared file of the selected machines with its status.
pub fn list(
    manifest: &Manifest,
    graph: &Graph,
    store: &Store,
    machine: Option<&str>,
) -> Result<Vec<Listed>, StoreError> {
    let metas = status::read_metas(store, graph)?;
    let mut out = Vec::new();
    for (mname, mach) in &manifest.machines {
        if machine.is_some_and(|m| m != mname) {
            continue;
        }
        for (gname, gen) in &mach.generators {
            let node = if gen.share {
                NodeId::shared(gname)
            } else {
                NodeId::per_machine(mname, gname)
            };
            let stale = status::stale(store, graph, &node, gen, &metas)?;
            for (file, decl) in &gen.files {
                let kind = if decl.secret {
                    Kind::Secret
                } else {
                    Kind::Public
                };
                let present = store.file_path(&owner(&node), kind, gname, file).exists();
                let status = match (&stale, present) {
                    (_, false) => "missing".to_string(),
                    (None, true) => "ok".to_string(),
                    (Some(s), true) => s.to_string(),
                };
                let value = if decl.secret || !present {
                    None
                } else {
                    store
                        .read_file(&owner(&node), Kind::Public, gname, file)?
                        .map(|b| String::from_utf8_lossy(&b).trim_end().to_string())
                };
                out.push(Listed {
                    machine: mname.clone(),
                    generator: gname.clone(),
                    file: file.clone(),
                    secret: decl.secret,
                    status,
                    value,
                });
            }
        }
    }
    Ok(out)
}
