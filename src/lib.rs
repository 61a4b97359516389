//! vars: secrets generators for Nix fleets.
//!
//! Data flows one way, and the module list reads in that order:
//! configuration (`manifest`) → plan (`graph`) → run (`sandbox`) → seal (`sops`, `keys`)
//! → persist (`store`) → use cases (`generate`, `check`, `activate`) → `cli`.
//! Lower layers never import higher ones.

pub mod activate;
pub mod check;
pub mod cli;
pub mod generate;
pub mod graph;
pub mod keys;
pub mod maintain;
pub mod manifest;
pub mod sandbox;
pub mod sops;
pub mod status;
pub mod store;
pub mod values;
