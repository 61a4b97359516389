//! `vars rekey` and `vars prune`: bring stored files to the wanted recipients,
//! and remove what the configuration no longer declares. Files that are
//! already right stay byte-identical (no git churn).

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
    for item in status::stored_secrets(manifest, graph, store, &selected)? {
        let node = &item.node;
        status::ensure_machine_keys(store, &admins, &mut machine_keys, graph.machines_of(node))?;
        let drift = item.drift(manifest, graph, &admins, &machine_keys);
        if !drift.differs() {
            continue;
        }
        let plain = item.sealed.decrypt_binary(ids)?;
        let bytes = crate::sops::encrypt_binary(&plain, &drift.want)?;
        let mut tx = store.begin(lock)?;
        tx.put_file(
            store,
            &store.file_path(&owner(node), Kind::Secret, &node.generator, &item.file),
            &bytes,
        )?;
        tx.commit()?;
        done.push(format!("{node}/{}", item.file));
    }
    // Each machine's private key, to exactly the admins: a removed admin must
    // not keep a way to every secret of the machine.
    for m in status::key_machines(manifest, machines) {
        let Some(status::AgeKeyDrift { path, .. }) = status::age_key_drift(store, &m, &admins)?
        else {
            continue;
        };
        let bytes = std::fs::read(&path).map_err(|e| crate::store::io_error(&path, e))?;
        let sealed = crate::sops::SopsFile::parse(
            &bytes,
            crate::sops::Format::Binary,
            &path.display().to_string(),
        )?;
        let plain = sealed.decrypt_binary(ids)?;
        let bytes = crate::sops::encrypt_binary(&plain, &admins)?;
        let mut tx = store.begin(lock)?;
        tx.put_file(store, &path, &bytes)?;
        tx.commit()?;
        done.push(format!("{m}/age-key"));
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
    let selected = status::selected(manifest, graph, machines);
    let mut out: Vec<String> = status::stored_secrets(manifest, graph, store, &selected)?
        .into_iter()
        .filter(|item| {
            item.drift(manifest, graph, &admins, &machine_keys)
                .differs()
        })
        .map(|item| format!("{}/{}", item.node, item.file))
        .collect();
    for m in status::key_machines(manifest, machines) {
        if status::age_key_drift(store, &m, &admins)?.is_some() {
            out.push(format!("{m}/age-key"));
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
