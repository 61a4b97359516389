//! Getting the manifest's JSON text from a configuration: a `.json` file, a `.nix` file
//! evaluated by `nix-instantiate`, or a flake output evaluated by `nix eval`.

use std::io;
use std::process::{Command, Stdio};

use super::error::ManifestError;

/// Where a configuration's JSON comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source<'a> {
    /// A JSON file, read as is.
    Json(&'a str),
    /// A Nix file evaluating to the manifest.
    NixFile(&'a str),
    /// A flake output, `REF#ATTR`.
    Flake(&'a str),
}

impl<'a> Source<'a> {
    /// Classify `config`: by extension first, then a `#` makes a flake reference.
    pub(crate) fn of(config: &'a str) -> Result<Source<'a>, ManifestError> {
        if config.ends_with(".json") {
            Ok(Source::Json(config))
        } else if config.ends_with(".nix") {
            Ok(Source::NixFile(config))
        } else if config.contains('#') {
            Ok(Source::Flake(config))
        } else {
            Err(ManifestError::Unsupported {
                config: config.to_string(),
            })
        }
    }
}

/// The JSON bytes of the configuration `source`.
pub(crate) fn read(source: &Source) -> Result<Vec<u8>, ManifestError> {
    match source {
        Source::Json(file) => std::fs::read(file).map_err(|error| ManifestError::Read {
            file: file.to_string(),
            error,
        }),
        Source::NixFile(file) => {
            // An argument starting with '-' would be taken for an option.
            let argument = if file.starts_with('-') {
                format!("./{file}")
            } else {
                file.to_string()
            };
            let mut command = Command::new("nix-instantiate");
            command.args(["--eval", "--strict", "--json"]).arg(argument);
            run(command, "nix-instantiate", file)
        }
        Source::Flake(reference) => {
            let mut command = Command::new("nix");
            command
                .args(["eval", "--json", "--extra-experimental-features"])
                .arg("nix-command flakes")
                .arg(reference);
            run(command, "nix", reference)
        }
    }
}

/// Run a Nix evaluation and return its standard output.
fn run(
    mut command: Command,
    program: &'static str,
    config: &str,
) -> Result<Vec<u8>, ManifestError> {
    let output = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|error| ManifestError::NixUnavailable {
            config: config.to_string(),
            program,
            reason: if error.kind() == io::ErrorKind::NotFound {
                format!("{program} not found on PATH (install Nix, or pass a .json manifest)")
            } else {
                error.to_string()
            },
        })?;
    if !output.status.success() {
        return Err(ManifestError::NixFailed {
            config: config.to_string(),
            program,
            status: output.status.to_string(),
            message: error_line(&String::from_utf8_lossy(&output.stderr)),
        });
    }
    Ok(output.stdout)
}

/// The most specific line of Nix's error output: the last one mentioning `error:` (Nix prints
/// the evaluation trace first and the cause last) with the location Nix gives on the next
/// line, else the last non-empty line.
fn error_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    let Some(at) = lines.iter().rposition(|line| line.contains("error:")) else {
        return lines
            .last()
            .map_or_else(|| "no error output".to_string(), |line| line.to_string());
    };
    match lines.get(at + 1).filter(|next| next.starts_with("at ")) {
        Some(location) => format!("{} ({})", lines[at], location.trim_end_matches(':')),
        None => lines[at].to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_classified_by_extension_then_hash() {
        assert_eq!(Source::of("vars.json").unwrap(), Source::Json("vars.json"));
        assert_eq!(
            Source::of("/x/fleet.nix").unwrap(),
            Source::NixFile("/x/fleet.nix")
        );
        assert_eq!(Source::of(".#vars").unwrap(), Source::Flake(".#vars"));
        assert_eq!(
            Source::of("github:o/r#a.b").unwrap(),
            Source::Flake("github:o/r#a.b")
        );
        assert_eq!(
            Source::of("fleet.toml").unwrap_err().to_string(),
            "fleet.toml: unsupported configuration: expected a .json file, a .nix file \
             or a flake reference like .#vars"
        );
    }

    #[test]
    fn missing_json_file_is_a_read_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("absent.json");
        let file = file.to_str().unwrap();
        let err = read(&Source::Json(file)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{file}: cannot read: No such file or directory (os error 2)")
        );
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn missing_program_is_reported() {
        let command = Command::new("/nonexistent/nix-instantiate");
        let err = run(command, "nix-instantiate", "fleet.nix").unwrap_err();
        assert_eq!(
            err.to_string(),
            "fleet.nix: cannot run nix-instantiate: nix-instantiate not found on PATH \
             (install Nix, or pass a .json manifest)"
        );
    }

    #[test]
    fn failing_evaluation_reports_the_last_error_line() {
        let mut command = Command::new("sh");
        command.args([
            "-c",
            "echo 'error:' >&2; echo '  … while evaluating' >&2; \
             echo '  error: undefined variable \"x\"' >&2; exit 1",
        ]);
        let err = run(command, "nix-instantiate", "fleet.nix").unwrap_err();
        assert_eq!(
            err.to_string(),
            "fleet.nix: nix-instantiate failed (exit status: 1): error: undefined variable \"x\""
        );
    }

    #[test]
    fn error_line_keeps_the_location() {
        let stderr = "error: undefined variable 'x'\n\n       at /tmp/fleet.nix:1:14:\n\n  \
                      1| { machines = x; }\n";
        assert_eq!(
            error_line(stderr),
            "error: undefined variable 'x' (at /tmp/fleet.nix:1:14)"
        );
    }

    #[test]
    fn error_line_falls_back_to_the_last_line() {
        assert_eq!(error_line("a\nb\n\n"), "b");
        assert_eq!(error_line(""), "no error output");
    }

    #[test]
    fn successful_evaluation_returns_stdout() {
        let mut command = Command::new("sh");
        command.args(["-c", "printf '{\"machines\":{}}'"]);
        assert_eq!(run(command, "nix", ".#vars").unwrap(), b"{\"machines\":{}}");
    }
}
