//! The definition hash of a generator: a fingerprint of everything that decides its outputs,
//! recorded next to the outputs so a changed definition marks them outdated.
//!
//! The encoding is versioned and length-prefixed, so no two different definitions share an
//! input, and independent of how the manifest was written: dependencies are sorted and
//! `validation` is hashed as canonical JSON (object keys sorted).

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::model::Generator;

/// Prefix of the hashed input; bump it when the encoding changes.
const VERSION: &[u8] = b"vars generator definition v1";

impl Generator {
    /// A stable SHA-256 hex digest of everything that defines the generator's outputs: script,
    /// validation, sorted declared file names with their secret flag, runtime inputs,
    /// dependencies (sorted) and prompt names.
    ///
    /// Deployment settings (owner, group, mode, paths, ...) and `share` are not part of it.
    pub fn definition_hash(&self) -> String {
        let mut hasher = Sha256::new();
        put(&mut hasher, VERSION);

        put(&mut hasher, b"script");
        put(&mut hasher, self.script.as_bytes());

        put(&mut hasher, b"validation");
        let validation = self.validation.as_ref().unwrap_or(&Value::Null);
        put(&mut hasher, canonical_json(validation).as_bytes());

        put(&mut hasher, b"files");
        put_count(&mut hasher, self.files.len());
        for (name, file) in &self.files {
            put(&mut hasher, name.as_bytes());
            put(&mut hasher, if file.secret { b"secret" } else { b"public" });
        }

        put(&mut hasher, b"runtimeInputs");
        put_count(&mut hasher, self.runtime_inputs.len());
        for input in &self.runtime_inputs {
            put(&mut hasher, input.as_bytes());
        }

        put(&mut hasher, b"dependencies");
        let mut dependencies: Vec<&String> = self.dependencies.iter().collect();
        dependencies.sort_unstable();
        put_count(&mut hasher, dependencies.len());
        for dependency in dependencies {
            put(&mut hasher, dependency.as_bytes());
        }

        put(&mut hasher, b"prompts");
        put_count(&mut hasher, self.prompts.len());
        for name in self.prompts.keys() {
            put(&mut hasher, name.as_bytes());
        }

        hasher
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

/// Hash `bytes` preceded by their length.
fn put(hasher: &mut Sha256, bytes: &[u8]) {
    put_count(hasher, bytes.len());
    hasher.update(bytes);
}

fn put_count(hasher: &mut Sha256, count: usize) {
    hasher.update((count as u64).to_le_bytes());
}

/// `value` as compact JSON with every object's keys sorted. Iterative, so any depth is fine.
fn canonical_json(value: &Value) -> String {
    enum Item<'v> {
        Value(&'v Value),
        Key(&'v str),
        Text(&'static str),
    }
    let mut out = String::new();
    let mut stack = vec![Item::Value(value)];
    while let Some(item) = stack.pop() {
        match item {
            Item::Text(text) => out.push_str(text),
            Item::Key(key) => {
                out.push_str(&Value::from(key).to_string());
                out.push(':');
            }
            Item::Value(Value::Array(items)) => {
                out.push('[');
                stack.push(Item::Text("]"));
                for (i, item) in items.iter().enumerate().rev() {
                    stack.push(Item::Value(item));
                    if i > 0 {
                        stack.push(Item::Text(","));
                    }
                }
            }
            Item::Value(Value::Object(map)) => {
                let mut members: Vec<(&String, &Value)> = map.iter().collect();
                members.sort_unstable_by(|a, b| a.0.cmp(b.0));
                out.push('{');
                stack.push(Item::Text("}"));
                for (i, (key, value)) in members.into_iter().enumerate().rev() {
                    stack.push(Item::Value(value));
                    stack.push(Item::Key(key));
                    if i > 0 {
                        stack.push(Item::Text(","));
                    }
                }
            }
            Item::Value(scalar) => out.push_str(&scalar.to_string()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{FileDecl, NeededFor, Prompt, PromptType};
    use serde_json::json;
    use std::collections::BTreeMap;

    fn file(secret: bool) -> FileDecl {
        FileDecl {
            secret,
            deploy: true,
            owner: "root".into(),
            group: "root".into(),
            mode: 0o400,
            needed_for: NeededFor::Services,
            restart_units: vec![],
            path: None,
        }
    }

    fn sample() -> Generator {
        Generator {
            share: false,
            dependencies: vec!["b".into(), "a".into()],
            files: BTreeMap::from([("key".into(), file(true)), ("key.pub".into(), file(false))]),
            prompts: BTreeMap::from([(
                "token".into(),
                Prompt {
                    description: "API token".into(),
                    kind: PromptType::Hidden,
                    persist: true,
                },
            )]),
            runtime_inputs: vec!["/nix/store/x-openssh".into()],
            script: "ssh-keygen -f $out/key".into(),
            validation: Some(json!({"b": 1, "a": [true, null, "x"]})),
        }
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        assert_eq!(
            canonical_json(&json!({"b": {"d": 1, "c": [{"z": 0, "y": "\"q\""}]}, "a": null})),
            r#"{"a":null,"b":{"c":[{"y":"\"q\"","z":0}],"d":1}}"#
        );
        assert_eq!(canonical_json(&json!([])), "[]");
        assert_eq!(canonical_json(&json!({})), "{}");
        assert_eq!(canonical_json(&json!(1.5)), "1.5");
    }

    #[test]
    fn canonical_json_survives_deep_values() {
        let mut value = json!(0);
        for _ in 0..10_000 {
            value = Value::Array(vec![value]);
        }
        let text = canonical_json(&value);
        assert_eq!(text.len(), 20_001);
        // serde_json drops values recursively; unwrap the chain by hand.
        while let Value::Array(mut items) = value {
            value = items.pop().unwrap_or(Value::Null);
        }
    }

    #[test]
    fn hash_is_pinned() {
        // Changing this value makes every stored generator outdated: bump VERSION instead.
        assert_eq!(
            sample().definition_hash(),
            "9a0c0de8c6edb22c9ed3a13a83a2de2cfd4980d2adb49839476a6ec2eb8ed969"
        );
        assert_eq!(sample().definition_hash().len(), 64);
    }

    #[test]
    fn hash_ignores_presentation_and_deployment() {
        let base = sample().definition_hash();
        let mut g = sample();
        g.dependencies.reverse();
        g.validation = Some(json!({"a": [true, null, "x"], "b": 1}));
        g.share = true;
        let key = g.files.get_mut("key").unwrap();
        key.owner = "sshd".into();
        key.mode = 0o440;
        key.deploy = false;
        key.path = Some("/etc/ssh/key".into());
        let token = g.prompts.get_mut("token").unwrap();
        token.description = "another".into();
        token.kind = PromptType::Line;
        assert_eq!(g.definition_hash(), base);
    }

    #[test]
    fn hash_covers_every_defining_field() {
        let base = sample().definition_hash();
        let changes: Vec<fn(&mut Generator)> = vec![
            |g| g.script.push(' '),
            |g| g.validation = None,
            |g| g.validation = Some(json!({"b": 2, "a": [true, null, "x"]})),
            |g| g.files.get_mut("key").unwrap().secret = false,
            |g| {
                g.files.remove("key.pub");
            },
            |g| {
                g.files.insert("other".into(), file(true));
            },
            |g| g.runtime_inputs.push("/nix/store/y".into()),
            |g| g.runtime_inputs = vec![],
            |g| g.dependencies.push("c".into()),
            |g| {
                g.prompts.clear();
            },
        ];
        for (i, change) in changes.into_iter().enumerate() {
            let mut g = sample();
            change(&mut g);
            assert_ne!(g.definition_hash(), base, "change {i}");
        }
    }

    #[test]
    fn length_prefixes_keep_fields_apart() {
        let mut a = sample();
        a.runtime_inputs = vec!["ab".into(), "c".into()];
        let mut b = sample();
        b.runtime_inputs = vec!["a".into(), "bc".into()];
        assert_ne!(a.definition_hash(), b.definition_hash());
        let mut c = sample();
        c.validation = None;
        let mut d = sample();
        d.validation = Some(Value::Null);
        assert_eq!(c.definition_hash(), d.definition_hash());
    }
}
