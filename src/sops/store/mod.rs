//! The file formats sops stores documents in.

pub mod flat;
pub mod json;
pub mod yaml;

use std::path::Path;

/// A sops store type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Any bytes, kept as the one value `data` of a JSON envelope (the engine's format).
    Binary,
    Yaml,
    Json,
    Dotenv,
    Ini,
}

impl Format {
    /// The store named on the command line (`--input-type`).
    pub fn from_name(name: &str) -> Option<Format> {
        Some(match name {
            "binary" => Format::Binary,
            "yaml" => Format::Yaml,
            "json" => Format::Json,
            "dotenv" => Format::Dotenv,
            "ini" => Format::Ini,
            _ => return None,
        })
    }

    /// The store sops picks from a file name: by extension, binary otherwise.
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Format::Yaml,
            Some("json") => Format::Json,
            Some("env") => Format::Dotenv,
            Some("ini") => Format::Ini,
            _ => Format::Binary,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Binary => "binary",
            Format::Yaml => "yaml",
            Format::Json => "json",
            Format::Dotenv => "dotenv",
            Format::Ini => "ini",
        }
    }
}
