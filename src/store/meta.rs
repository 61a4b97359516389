//! `meta/<gen>.json`: what a generator's stored outputs were made from.
//! Dependents compare their recorded inputs with each dependency's current
//! `generation`, so a regenerated dependency makes them outdated. No secret
//! (nor a hash of one) is stored here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenMeta {
    /// A random id, new every time the outputs change.
    pub generation: String,
    /// The generator's definition hash (script, files, validation, …).
    pub definition: String,
    /// Declared files and whether each is secret.
    pub files: BTreeMap<String, bool>,
    /// Each dependency (`machine/gen` or `shared/gen`) and the generation it had.
    pub inputs: BTreeMap<String, String>,
}

impl GenMeta {
    pub fn parse(bytes: &[u8]) -> Result<GenMeta, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("invalid metadata: {e}"))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// A fresh random generation id.
    pub fn new_generation() -> String {
        use rand::RngCore;
        let mut b = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut b);
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
