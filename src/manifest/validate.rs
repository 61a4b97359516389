//! Checks across values, once every value has the right shape: dependencies resolve on their
//! machine, shared generators agree between machines, deployed files do not collide.
//!
//! Checks run machine by machine in sorted order, then shared generator by sorted name, so the
//! first error reported is deterministic. Dependency cycles are found when the graph is built
//! (`crate::graph`). Nothing here recurses, so a chain of any length is fine.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::error::ManifestError;
use super::model::{Generator, Machine, Manifest};
use super::path::JsonPath;
use super::text::{excerpt_pair, quote};

type Result<T> = std::result::Result<T, ManifestError>;

/// Every cross-value check of `manifest`, read from `source`.
pub(crate) fn validate(manifest: &Manifest, source: &str) -> Result<()> {
    let root = JsonPath::root(source);
    let machines = root.key("machines");
    for (name, machine) in &manifest.machines {
        let path = machines.key(name);
        dependencies(machine, &path)?;
        deployed_paths(machine, &path)?;
    }
    shared_definitions(manifest, &root)
}

/// Each dependency names a generator of the same machine, once; a shared generator depends on
/// shared generators only.
fn dependencies(machine: &Machine, path: &JsonPath) -> Result<()> {
    let generators = path.key("generators");
    for (name, generator) in &machine.generators {
        let generator_path = generators.key(name);
        let list = generator_path.key("dependencies");
        let mut seen = BTreeSet::new();
        for (i, dependency) in generator.dependencies.iter().enumerate() {
            let at = list.index(i);
            if !seen.insert(dependency.as_str()) {
                return Err(at.error(format!("duplicate dependency {}", quote(dependency))));
            }
            let Some(target) = machine.generators.get(dependency) else {
                return Err(at.error(format!(
                    "unknown generator {}: the machine declares no generator of that name",
                    quote(dependency)
                )));
            };
            if generator.share && !target.share {
                return Err(at.error(format!(
                    "a shared generator cannot depend on the per-machine generator {}",
                    quote(dependency)
                )));
            }
        }
    }
    Ok(())
}

/// No two deployed files of the machine are placed at the same explicit `path`.
fn deployed_paths(machine: &Machine, path: &JsonPath) -> Result<()> {
    let generators = path.key("generators");
    let mut owners: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
    for (generator_name, generator) in &machine.generators {
        for (file_name, file) in &generator.files {
            let Some(target) = file.path.as_deref().filter(|_| file.deploy) else {
                continue;
            };
            if let Some((other_generator, other_file)) =
                owners.insert(target, (generator_name, file_name))
            {
                let generator_path = generators.key(generator_name);
                let files = generator_path.key("files");
                let file_path = files.key(file_name);
                let other_generator_path = generators.key(other_generator);
                let other_files = other_generator_path.key("files");
                return Err(file_path.key("path").error(format!(
                    "{} is also the path of {}",
                    quote(target),
                    other_files.key(other_file).render()
                )));
            }
        }
    }
    Ok(())
}

/// Every machine declaring a shared generator declares the same definition.
///
/// The definition is what decides the outputs: dependencies, file names and their secret flag,
/// prompts, runtime inputs, script and validation. How each machine deploys the files (owner,
/// group, mode, `deploy`, `path`, ...) may differ per machine.
fn shared_definitions(manifest: &Manifest, root: &JsonPath) -> Result<()> {
    let mut first: BTreeMap<&str, (&str, &Generator)> = BTreeMap::new();
    let mut conflict: BTreeMap<&str, (&str, &str, Difference)> = BTreeMap::new();
    for (machine_name, machine) in &manifest.machines {
        for (name, generator) in machine.generators.iter().filter(|(_, g)| g.share) {
            let Some((first_machine, first_generator)) = first.get(name.as_str()) else {
                first.insert(name, (machine_name, generator));
                continue;
            };
            if conflict.contains_key(name.as_str()) {
                continue;
            }
            if let Some(difference) = first_difference(first_generator, generator) {
                conflict.insert(name, (first_machine, machine_name, difference));
            }
        }
    }
    match conflict.into_iter().next() {
        None => Ok(()),
        Some((name, (a, b, difference))) => {
            let generators = root.key("generators");
            let (on_a, on_b) = excerpt_pair(&difference.on_a, &difference.on_b);
            Err(generators.key(name).error(format!(
                "shared generator defined differently on machines {a} and {b}: {}: {on_a} vs {on_b}",
                difference.field
            )))
        }
    }
}

/// The first field where two definitions of a shared generator differ, rendered as JSON.
struct Difference {
    field: String,
    on_a: String,
    on_b: String,
}

/// Compare the fields defining a generator's outputs, in sorted field order.
fn first_difference(a: &Generator, b: &Generator) -> Option<Difference> {
    let root = JsonPath::root("");
    let differ = |field: &JsonPath, on_a: Value, on_b: Value| {
        (on_a != on_b).then(|| Difference {
            field: field.render(),
            on_a: on_a.to_string(),
            on_b: on_b.to_string(),
        })
    };
    let names = |keys: Vec<&String>| Value::from(keys.into_iter().cloned().collect::<Vec<_>>());

    let dependencies = root.key("dependencies");
    let files = root.key("files");
    let prompts = root.key("prompts");
    differ(
        &dependencies,
        Value::from(a.dependencies.clone()),
        Value::from(b.dependencies.clone()),
    )
    .or_else(|| {
        differ(
            &files,
            names(a.files.keys().collect()),
            names(b.files.keys().collect()),
        )
    })
    .or_else(|| {
        a.files
            .iter()
            .zip(&b.files)
            .find_map(|((name, fa), (_, fb))| {
                differ(
                    &files.key(name).key("secret"),
                    Value::from(fa.secret),
                    Value::from(fb.secret),
                )
            })
    })
    .or_else(|| {
        differ(
            &prompts,
            names(a.prompts.keys().collect()),
            names(b.prompts.keys().collect()),
        )
    })
    .or_else(|| {
        a.prompts
            .iter()
            .zip(&b.prompts)
            .find_map(|((name, pa), (_, pb))| {
                let prompt = prompts.key(name);
                differ(
                    &prompt.key("description"),
                    Value::from(pa.description.as_str()),
                    Value::from(pb.description.as_str()),
                )
                .or_else(|| {
                    differ(
                        &prompt.key("persist"),
                        Value::from(pa.persist),
                        Value::from(pb.persist),
                    )
                })
                .or_else(|| {
                    differ(
                        &prompt.key("type"),
                        Value::from(pa.kind.as_str()),
                        Value::from(pb.kind.as_str()),
                    )
                })
            })
    })
    .or_else(|| {
        differ(
            &root.key("runtimeInputs"),
            Value::from(a.runtime_inputs.clone()),
            Value::from(b.runtime_inputs.clone()),
        )
    })
    .or_else(|| {
        differ(
            &root.key("script"),
            Value::from(a.script.as_str()),
            Value::from(b.script.as_str()),
        )
    })
    .or_else(|| {
        differ(
            &root.key("validation"),
            a.validation.clone().unwrap_or(Value::Null),
            b.validation.clone().unwrap_or(Value::Null),
        )
    })
}
