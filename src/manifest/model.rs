//! The typed manifest: what the evaluated fleet configuration declares.
//!
//! These types are plain data. Parsing and validation live in `parse` and `validate`;
//! everything here is already checked when it comes out of [`Manifest::from_json`].
//!
//! [`Manifest::from_json`]: super::Manifest::from_json

use std::collections::BTreeMap;
use std::fmt;

/// The whole fleet: every machine and the generators it declares.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    /// Machines by name, sorted.
    pub machines: BTreeMap<String, Machine>,
}

/// One machine of the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// The operating system family, which decides some defaults (the `wheel` group on darwin).
    pub class: Class,
    /// Free-form tags from the configuration.
    pub tags: Vec<String>,
    /// Generators by name, sorted. Shared ones (`share = true`) appear on every machine declaring them.
    pub generators: BTreeMap<String, Generator>,
}

/// The operating system family of a machine (JSON `"nixos"` or `"darwin"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// NixOS (Linux).
    Nixos,
    /// nix-darwin (macOS).
    Darwin,
}

/// A generator: a script producing a set of files, from its dependencies' files and prompts.
/// `Default` is the JSON defaults: a per-machine generator declaring nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Generator {
    /// One generator for the whole fleet (stored under `sops/shared/`) rather than one per machine.
    pub share: bool,
    /// Names of generators of the same machine whose files this one reads.
    pub dependencies: Vec<String>,
    /// The files the script must produce, by name.
    pub files: BTreeMap<String, FileDecl>,
    /// Values asked from the user before the script runs, by name.
    pub prompts: BTreeMap<String, Prompt>,
    /// Store paths whose `bin/` goes on the script's `PATH`, in order.
    pub runtime_inputs: Vec<String>,
    /// The shell script.
    pub script: String,
    /// Arbitrary data; when it changes, the generator is outdated.
    pub validation: Option<serde_json::Value>,
}

/// One declared output file of a generator. `Default` is the JSON defaults of a NixOS machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDecl {
    /// Sealed with SOPS (true) or stored raw as a public value (false).
    pub secret: bool,
    /// Whether machines receive the file at activation.
    pub deploy: bool,
    /// Owner of the deployed file.
    pub owner: String,
    /// Group of the deployed file (`root` by default, `wheel` on darwin).
    pub group: String,
    /// Permission bits of the deployed file, e.g. `0o400`.
    pub mode: u32,
    /// The activation phase that needs the file.
    pub needed_for: NeededFor,
    /// systemd units restarted when the file changes.
    pub restart_units: Vec<String>,
    /// Where the file is deployed, when not at the default location; absolute and normalized.
    pub path: Option<String>,
}

/// The activation phase that needs a file (JSON lowercase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum NeededFor {
    /// Before disks are partitioned (e.g. disk encryption keys).
    Partitioning,
    /// Early in activation, before users exist.
    Activation,
    /// When users are created (e.g. password hashes).
    Users,
    /// When services start (the default).
    #[default]
    Services,
}

/// A value asked from the user before the generator runs. `Default` is the JSON defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Prompt {
    /// The question shown to the user.
    pub description: String,
    /// How the value is entered (JSON field `type`).
    pub kind: PromptType,
    /// Keep the answer as the generator's secret file of the same name.
    pub persist: bool,
}

/// How a prompt is entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum PromptType {
    /// One echoed line (JSON `"line"`, the default).
    #[default]
    Line,
    /// One line, not echoed (JSON `"hidden"`).
    Hidden,
    /// Several echoed lines (JSON `"multiline"`).
    Multiline,
    /// Several lines, not echoed (JSON `"multiline-hidden"`).
    MultilineHidden,
}

impl Default for FileDecl {
    fn default() -> FileDecl {
        FileDecl {
            secret: true,
            deploy: true,
            owner: "root".to_string(),
            group: Class::Nixos.default_group().to_string(),
            mode: 0o400,
            needed_for: NeededFor::default(),
            restart_units: Vec::new(),
            path: None,
        }
    }
}

impl Class {
    /// Every class, in the order error messages list them.
    pub const ALL: [Class; 2] = [Class::Nixos, Class::Darwin];

    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Nixos => "nixos",
            Class::Darwin => "darwin",
        }
    }

    /// The group owning deployed files when a file does not say.
    pub fn default_group(self) -> &'static str {
        match self {
            Class::Nixos => "root",
            Class::Darwin => "wheel",
        }
    }
}

impl NeededFor {
    /// Every phase, in activation order.
    pub const ALL: [NeededFor; 4] = [
        NeededFor::Partitioning,
        NeededFor::Activation,
        NeededFor::Users,
        NeededFor::Services,
    ];

    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            NeededFor::Partitioning => "partitioning",
            NeededFor::Activation => "activation",
            NeededFor::Users => "users",
            NeededFor::Services => "services",
        }
    }
}

impl PromptType {
    /// Every prompt type, in the order error messages list them.
    pub const ALL: [PromptType; 4] = [
        PromptType::Line,
        PromptType::Hidden,
        PromptType::Multiline,
        PromptType::MultilineHidden,
    ];

    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PromptType::Line => "line",
            PromptType::Hidden => "hidden",
            PromptType::Multiline => "multiline",
            PromptType::MultilineHidden => "multiline-hidden",
        }
    }

    /// Whether the answer must not be echoed.
    pub fn is_hidden(self) -> bool {
        matches!(self, PromptType::Hidden | PromptType::MultilineHidden)
    }

    /// Whether the answer may span several lines.
    pub fn is_multiline(self) -> bool {
        matches!(self, PromptType::Multiline | PromptType::MultilineHidden)
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for NeededFor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for PromptType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
