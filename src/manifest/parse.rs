//! From a JSON value to the typed [`Manifest`], checking the shape of every value on the way:
//! unknown fields, types, enums, names, modes and paths.
//!
//! The walk is deterministic: names are visited in sorted order, a record's unknown fields are
//! reported before anything else in it, then its fields are read in sorted order, so the first
//! error found is the same on every run. Defaults apply when a field is absent or `null`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::error::ManifestError;
use super::model::{Class, FileDecl, Generator, Machine, Manifest, NeededFor, Prompt, PromptType};
use super::path::JsonPath;
use super::text::{excerpt, kind, quote};

type Result<T> = std::result::Result<T, ManifestError>;

const MANIFEST_FIELDS: &[&str] = &["machines"];
const MACHINE_FIELDS: &[&str] = &["class", "generators", "tags"];
const GENERATOR_FIELDS: &[&str] = &[
    "dependencies",
    "files",
    "prompts",
    "runtimeInputs",
    "script",
    "share",
    "validation",
];
const FILE_FIELDS: &[&str] = &[
    "deploy",
    "group",
    "mode",
    "neededFor",
    "owner",
    "path",
    "restartUnits",
    "secret",
];
const PROMPT_FIELDS: &[&str] = &["description", "persist", "type"];

/// The default permission bits of a file, as written in JSON.
const DEFAULT_MODE: u32 = 0o400;

/// Read the whole manifest from the document `value` read from `source`.
pub(crate) fn manifest(value: &Value, source: &str) -> Result<Manifest> {
    let root = JsonPath::root(source);
    let map = match value {
        Value::Object(map) => map,
        other => {
            return Err(root.error(format!(
                "expected the top level to be an object, got {}",
                kind(other)
            )))
        }
    };
    check_fields(map, &root, MANIFEST_FIELDS)?;
    let Some(machines_value) = map.get("machines") else {
        return Err(root.error("missing field \"machines\""));
    };
    let path = root.key("machines");
    let mut machines = BTreeMap::new();
    for (name, value) in names(machines_value, &path, "machine")? {
        machines.insert(name.to_string(), machine(value, &path.key(name))?);
    }
    Ok(Manifest { machines })
}

fn machine(value: &Value, path: &JsonPath) -> Result<Machine> {
    let map = record(value, path, MACHINE_FIELDS)?;
    let class = match map.get("class") {
        None => return Err(path.error("missing field \"class\"")),
        Some(value) => choice(value, &path.key("class"), &Class::ALL, |c| c.as_str())?,
    };
    let mut generators = BTreeMap::new();
    if let Some(value) = present(map, "generators") {
        let path = path.key("generators");
        for (name, value) in names(value, &path, "generator")? {
            generators.insert(name.to_string(), generator(value, &path.key(name), class)?);
        }
    }
    let tags = strings_field(map, path, "tags")?;
    Ok(Machine {
        class,
        tags,
        generators,
    })
}

fn generator(value: &Value, path: &JsonPath, class: Class) -> Result<Generator> {
    let map = record(value, path, GENERATOR_FIELDS)?;
    let dependencies = strings_field(map, path, "dependencies")?;
    let mut files = BTreeMap::new();
    if let Some(value) = present(map, "files") {
        let path = path.key("files");
        for (name, value) in names(value, &path, "file")? {
            files.insert(name.to_string(), file(value, &path.key(name), class)?);
        }
    }
    let mut prompts = BTreeMap::new();
    if let Some(value) = present(map, "prompts") {
        let path = path.key("prompts");
        for (name, value) in names(value, &path, "prompt")? {
            prompts.insert(name.to_string(), prompt(value, &path.key(name))?);
        }
    }
    let runtime_inputs = strings_field(map, path, "runtimeInputs")?;
    let script = match present(map, "script") {
        None => String::new(),
        Some(value) => string(value, &path.key("script"))?,
    };
    let share = bool_field(map, path, "share", false)?;
    let validation = present(map, "validation").cloned();
    Ok(Generator {
        share,
        dependencies,
        files,
        prompts,
        runtime_inputs,
        script,
        validation,
    })
}

fn file(value: &Value, path: &JsonPath, class: Class) -> Result<FileDecl> {
    let map = record(value, path, FILE_FIELDS)?;
    let deploy = bool_field(map, path, "deploy", true)?;
    let group = account_field(map, path, "group", class.default_group())?;
    let mode = match present(map, "mode") {
        None => DEFAULT_MODE,
        Some(value) => mode(value, &path.key("mode"))?,
    };
    let needed_for = match present(map, "neededFor") {
        None => NeededFor::Services,
        Some(value) => choice(value, &path.key("neededFor"), &NeededFor::ALL, |n| {
            n.as_str()
        })?,
    };
    let owner = account_field(map, path, "owner", "root")?;
    let file_path = match present(map, "path") {
        None => None,
        Some(value) => Some(absolute_path(value, &path.key("path"))?),
    };
    let restart_units = strings_field(map, path, "restartUnits")?;
    let secret = bool_field(map, path, "secret", true)?;
    Ok(FileDecl {
        secret,
        deploy,
        owner,
        group,
        mode,
        needed_for,
        restart_units,
        path: file_path,
    })
}

fn prompt(value: &Value, path: &JsonPath) -> Result<Prompt> {
    let map = record(value, path, PROMPT_FIELDS)?;
    let description = match present(map, "description") {
        None => String::new(),
        Some(value) => string(value, &path.key("description"))?,
    };
    let persist = bool_field(map, path, "persist", false)?;
    let kind = match present(map, "type") {
        None => PromptType::Line,
        Some(value) => choice(value, &path.key("type"), &PromptType::ALL, |t| t.as_str())?,
    };
    Ok(Prompt {
        description,
        kind,
        persist,
    })
}

// ---- records and names ------------------------------------------------------------------

/// `value` as an object whose keys are all among `allowed`.
fn record<'v>(
    value: &'v Value,
    path: &JsonPath,
    allowed: &[&str],
) -> Result<&'v Map<String, Value>> {
    let map = object(value, path)?;
    check_fields(map, path, allowed)?;
    Ok(map)
}

/// Fail on the (alphabetically) first key of `map` that is not in `allowed`.
fn check_fields(map: &Map<String, Value>, path: &JsonPath, allowed: &[&str]) -> Result<()> {
    let unknown = map
        .keys()
        .filter(|key| !allowed.contains(&key.as_str()))
        .min();
    match unknown {
        None => Ok(()),
        Some(key) => {
            let expected: Vec<String> = allowed.iter().map(|field| quote(field)).collect();
            Err(path.error(format!(
                "unknown field {}, expected one of {}",
                quote(key),
                expected.join(", ")
            )))
        }
    }
}

fn object<'v>(value: &'v Value, path: &JsonPath) -> Result<&'v Map<String, Value>> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(path.error(format!("expected an object, got {}", kind(other)))),
    }
}

/// The members of the object `value`, sorted by name, each name checked to be usable as a
/// file name: `what` says what the names are ("machine", "generator", ...).
fn names<'v>(value: &'v Value, path: &JsonPath, what: &str) -> Result<Vec<(&'v str, &'v Value)>> {
    let map = object(value, path)?;
    let mut members: Vec<(&str, &Value)> = map.iter().map(|(k, v)| (k.as_str(), v)).collect();
    members.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for (name, _) in &members {
        if let Some(problem) = name_problem(name) {
            return Err(path
                .key(name)
                .error(format!("invalid {what} name: {problem}")));
        }
    }
    Ok(members)
}

/// Why `name` cannot name a directory or file in the store, if it cannot. Control characters
/// are refused too, so every name prints on one line.
fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("must not be empty")
    } else if name.contains('\0') {
        Some("must not contain a NUL byte")
    } else if name.chars().any(char::is_control) {
        Some("must not contain control characters")
    } else if name == "." || name == ".." {
        Some("must not be \".\" or \"..\"")
    } else if name.contains('/') {
        Some("must not contain \"/\"")
    } else {
        None
    }
}

/// The member `name` of `map`, unless it is absent or `null` (which both mean "the default").
fn present<'v>(map: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    map.get(name).filter(|value| !value.is_null())
}

// ---- scalar fields ------------------------------------------------------------------------

fn bool_field(
    map: &Map<String, Value>,
    path: &JsonPath,
    name: &str,
    default: bool,
) -> Result<bool> {
    match present(map, name) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(path
            .key(name)
            .error(format!("expected a boolean, got {}", kind(other)))),
    }
}

/// A string without NUL bytes (they cannot survive as arguments, environment or file names).
fn string(value: &Value, path: &JsonPath) -> Result<String> {
    match value {
        Value::String(s) if s.contains('\0') => Err(path.error("must not contain a NUL byte")),
        Value::String(s) => Ok(s.clone()),
        other => Err(path.error(format!("expected a string, got {}", kind(other)))),
    }
}

/// A string that must not be empty.
fn non_empty_string(value: &Value, path: &JsonPath) -> Result<String> {
    let s = string(value, path)?;
    if s.is_empty() {
        return Err(path.error("must not be empty"));
    }
    Ok(s)
}

/// A list of non-empty strings, empty when absent.
fn strings_field(map: &Map<String, Value>, path: &JsonPath, name: &str) -> Result<Vec<String>> {
    let Some(value) = present(map, name) else {
        return Ok(Vec::new());
    };
    let path = path.key(name);
    let Value::Array(items) = value else {
        return Err(path.error(format!("expected an array, got {}", kind(value))));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| non_empty_string(item, &path.index(i)))
        .collect()
}

/// A user or group name, `default` when absent.
fn account_field(
    map: &Map<String, Value>,
    path: &JsonPath,
    name: &str,
    default: &str,
) -> Result<String> {
    match present(map, name) {
        None => Ok(default.to_string()),
        Some(value) => non_empty_string(value, &path.key(name)),
    }
}

/// One of the enum values `all`, spelled in JSON as `spell` says.
fn choice<T: Copy>(
    value: &Value,
    path: &JsonPath,
    all: &[T],
    spell: impl Fn(T) -> &'static str,
) -> Result<T> {
    if let Value::String(s) = value {
        if let Some(found) = all.iter().copied().find(|item| spell(*item) == s) {
            return Ok(found);
        }
    }
    let allowed: Vec<String> = all.iter().map(|item| quote(spell(*item))).collect();
    Err(path.error(format!(
        "expected one of {}, got {}",
        allowed.join(", "),
        excerpt(value)
    )))
}

/// Permission bits written as exactly four octal digits, like `"0400"`.
fn mode(value: &Value, path: &JsonPath) -> Result<u32> {
    if let Value::String(s) = value {
        if s.len() == 4 && s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            if let Ok(mode) = u32::from_str_radix(s, 8) {
                return Ok(mode);
            }
        }
    }
    Err(path.error(format!(
        "expected four octal digits like \"0400\", got {}",
        excerpt(value)
    )))
}

/// An absolute, normalized path: starts with `/`, no empty, `.` or `..` components, no
/// trailing `/`.
fn absolute_path(value: &Value, path: &JsonPath) -> Result<String> {
    let s = string(value, path)?;
    let Some(relative) = s.strip_prefix('/') else {
        return Err(path.error(format!(
            "expected an absolute path like \"/etc/ssh/key\", got {}",
            quote(&s)
        )));
    };
    if relative
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(path.error(format!(
            "expected a normalized path (no empty, \".\" or \"..\" components, no trailing \"/\"), got {}",
            quote(&s)
        )));
    }
    Ok(s)
}
