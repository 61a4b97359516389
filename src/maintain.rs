//! `vars rekey` and `vars prune`: bring stored files to the wanted recipients,
//! and remove what the configuration no longer declares. Files that are
//! already right stay byte-identical (no git churn).

use std::collections::BTreeSet;

use crate::check;
use crate::graph::Graph;
use crate::keys::Identities;
use crate::manifest::Manifest;
use crate::status::{self, owner};
use crate::store::{Kind, Lock, Owner, Store, StoreError};

/// Re-seals every secret whose recipients differ from the wanted set.
/// Returns the files re-sealed, as `node/file`.
pub fn rekey(
    manifest: &Manifest,
    graph: &Graph,
    store: &Store,
    lock: &Lock,
    ids: &Identities,
    machines: &[String],
) -> Result<Vec<String>, StoreError> {
    let admins = status::admin_recipients(store)?;
    let mut machine_keys = status::machine_keys(store, manifest)?;
    let selected = status::selected(manifest, graph, machines);
    let mut done = Vec::new();
    for node in &selected {
        let Some(gen) = graph.generator(manifest, node) else {
            continue;
        };
        for (file, decl) in &gen.files {
            if !decl.secret {
                continue;
            }
            let Some(sealed) = store.read_sealed(&owner(node), &node.generator, file)? else {
                continue;
            };
            status::ensure_machine_keys(
                store,
                &admins,
                &mut machine_keys,
                graph.machines_of(node),
            )?;
            let want =
                status::wanted_recipients(manifest, graph, node, file, &admins, &machine_keys);
            let have: BTreeSet<String> = sealed.recipients().into_iter().collect();
            let want_text: BTreeSet<String> = want.iter().map(|r| r.to_string()).collect();
            if have == want_text {
                continue;
            }
            let plain = sealed.decrypt_binary(ids)?;
            let bytes = crate::sops::encrypt_binary(&plain, &want)?;
            let mut tx = store.begin(lock)?;
            tx.put_file(
                store,
                &store.file_path(&owner(node), Kind::Secret, &node.generator, file),
                &bytes,
            )?;
            tx.commit()?;
            done.push(format!("{node}/{file}"));
        }
    }
    Ok(done)
}

/// The secrets of the selected machines that `rekey` would re-seal (as
/// `node/file`): sealed to other recipients than the wanted set, or wanted by
/// a machine that has no key yet. Reads metadata only.
pub fn rekey_needed(
    manifest: &Manifest,
    graph: &Graph,
    store: &Store,
    machines: &[String],
) -> Result<Vec<String>, StoreError> {
    let admins = status::admin_recipients(store)?;
    let machine_keys = status::machine_keys(store, manifest)?;
    let mut out = Vec::new();
    for node in status::selected(manifest, graph, machines) {
        let Some(gen) = graph.generator(manifest, &node) else {
            continue;
        };
        for (file, decl) in &gen.files {
            if !decl.secret {
                continue;
            }
            let Some(sealed) = store.read_sealed(&owner(&node), &node.generator, file)? else {
                continue;
            };
            let keyless = status::receiving_machines(manifest, graph, &node, file)
                .iter()
                .any(|m| !machine_keys.contains_key(m));
            let want: BTreeSet<String> =
                status::wanted_recipients(manifest, graph, &node, file, &admins, &machine_keys)
                    .iter()
                    .map(|r| r.to_string())
                    .collect();
            let have: BTreeSet<String> = sealed.recipients().into_iter().collect();
            if keyless || have != want {
                out.push(format!("{node}/{file}"));
            }
        }
    }
    Ok(out)
}

/// Removes orphaned generators and files. Returns what was removed.
pub fn prune(
    manifest: &Manifest,
    graph: &Graph,
    store: &Store,
    lock: &Lock,
    machines: &[String],
) -> Result<Vec<String>, StoreError> {
    let mut removed = Vec::new();
    for p in check::orphans(manifest, graph, store, machines)? {
        if p.kind != "orphan" {
            continue;
        }
        // subject: "<owner>/<gen>" or "<owner>/<gen>/<file>"
        let mut parts = p.subject.splitn(3, '/');
        let (Some(o), Some(gen)) = (parts.next(), parts.next()) else {
            continue;
        };
        let own = if o == "shared" {
            Owner::Shared
        } else {
            Owner::Machine(o.to_string())
        };
        let mut tx = store.begin(lock)?;
        match parts.next() {
            None => tx.remove_generator(store, &own, gen)?,
            Some(file) => {
                for kind in [Kind::Secret, Kind::Public] {
                    let path = store.file_path(&own, kind, gen, file);
                    if path.exists() {
                        tx.remove_path(store, &path)?;
                    }
                }
            }
        }
        tx.commit()?;
        removed.push(p.subject);
    }
    Ok(removed)
}
