//! The manifest: the evaluated fleet configuration, as JSON, parsed and validated.
//!
//! [`Manifest::load`] gets the JSON (a file, or an evaluation by Nix), [`Manifest::from_json`]
//! turns it into typed data. Validation is strict and every [`ManifestError::Invalid`]
//! message starts with the JSON path of the offending value, like
//! `machines.cinnabar.generators.openssh.files.key.mode: expected four octal digits like "0400", got "rw"`.
//!
//! Validation happens in two passes, each deterministic: the shape of every value (`parse`),
//! then references between values (`validate`). Dependency cycles are reported by
//! [`crate::graph::Graph::build`].

mod error;
mod hash;
mod json;
mod load;
mod model;
mod parse;
mod path;
mod text;
mod validate;

pub use error::ManifestError;
pub use model::{Class, FileDecl, Generator, Machine, Manifest, NeededFor, Prompt, PromptType};

impl Manifest {
    /// Parse and validate JSON text. `source` is the file name used in messages.
    pub fn from_json(text: &str, source: &str) -> Result<Manifest, ManifestError> {
        Manifest::from_json_bytes(text.as_bytes(), source)
    }

    /// Parse and validate JSON bytes (which must be UTF-8). `source` is the file name used in
    /// messages.
    pub fn from_json_bytes(bytes: &[u8], source: &str) -> Result<Manifest, ManifestError> {
        let value = json::parse(bytes, source)?;
        let manifest = parse::manifest(&value, source)?;
        validate::validate(&manifest, source)?;
        Ok(manifest)
    }

    /// Load a configuration: a `.json` file is read directly; a `.nix` file is evaluated with
    /// `nix-instantiate --eval --strict --json FILE`; `REF#ATTR` with `nix eval --json REF#ATTR`
    /// (flakes enabled for the call).
    pub fn load(config: &str) -> Result<Manifest, ManifestError> {
        let source = load::Source::of(config)?;
        let bytes = load::read(&source)?;
        Manifest::from_json_bytes(&bytes, config)
    }
}

#[cfg(test)]
mod tests;
