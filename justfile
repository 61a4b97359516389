# The one command interface, locally and in CI. Every recipe runs the same bare
# and as `nix develop -c just <recipe>`: it needs only the tools on PATH, and
# says so (and exits non-zero) when one it cannot do without is missing.

set shell := ["bash", "-euo", "pipefail", "-c"]

# The vars binary (override with VARS=/path/to/vars just ...).
vars := env("VARS", "cargo run --quiet --release --bin vars --")

nix := "nix --extra-experimental-features 'nix-command flakes'"

default:
    @just --list

# vars check on fleet.nix; then nix flake check where flakes are usable
check:
    #!/usr/bin/env bash
    set -euo pipefail
    command -v nix-instantiate >/dev/null || { echo "check: nix-instantiate not found: install Nix (Debian: apt-get install nix-bin)" >&2; exit 1; }
    {{vars}} check --config fleet.nix
    if ! command -v nix >/dev/null; then
        echo "check: nix flake check skipped: nix not installed" >&2
    elif ! err=$(timeout 60 {{nix}} flake metadata . 2>&1 >/dev/null); then
        echo "check: nix flake check skipped: flakes are not usable here: $(printf '%s\n' "$err" | grep -m1 '^error:' || printf '%s\n' "$err" | tail -n1)" >&2
    else
        {{nix}} flake check
    fi

# nix build of a darwin system (default: blackphos)
verify host="blackphos":
    #!/usr/bin/env bash
    set -euo pipefail
    command -v nix >/dev/null || { echo "verify: nix not installed: cannot build darwinConfigurations.{{host}}" >&2; exit 1; }
    if ! err=$(timeout 60 {{nix}} flake metadata . 2>&1 >/dev/null); then
        echo "verify: nix build cannot work here: the flake's inputs cannot be fetched ($(printf '%s\n' "$err" | grep -m1 '^error:' || printf '%s\n' "$err" | tail -n1))" >&2
        exit 1
    fi
    if [ "$({{nix}} eval --json '.#darwinConfigurations' --apply 'c: c ? "{{host}}"')" != true ]; then
        echo "verify: no darwinConfigurations.{{host}}: enable the nix-darwin input in flake.nix" >&2
        exit 1
    fi
    if [ "$(uname -s)" != Darwin ]; then
        echo "verify: building a darwin system needs a macOS host or a darwin remote builder; trying anyway" >&2
    fi
    {{nix}} build --no-link --print-out-paths '.#darwinConfigurations.{{host}}.system'

# parse every .nix file, statix (when installed), rustfmt, clippy
lint:
    #!/usr/bin/env bash
    set -euo pipefail
    command -v nix-instantiate >/dev/null || { echo "lint: nix-instantiate not found: install Nix (Debian: apt-get install nix-bin)" >&2; exit 1; }
    ran=()
    n=0
    while IFS= read -r -d '' f; do
        nix-instantiate --parse "$f" >/dev/null
        n=$((n + 1))
    done < <(find . \( -name target -o -name .git \) -prune -o -name '*.nix' -print0)
    ran+=("nix-instantiate --parse ($n files)")
    if command -v statix >/dev/null; then
        statix check .
        ran+=("statix check")
    else
        echo "lint: statix is not installed: statix check skipped (it is in nix develop)" >&2
    fi
    cargo fmt --check
    ran+=("cargo fmt --check")
    cargo clippy --all-targets -- -D warnings
    ran+=("cargo clippy -D warnings")
    printf 'lint: ran: %s\n' "$(IFS=','; echo "${ran[*]}" | sed 's/,/, /g')"

# dry-run switch of a darwin host
activate-darwin host:
    #!/usr/bin/env bash
    set -euo pipefail
    command -v darwin-rebuild >/dev/null || { echo "activate-darwin: darwin-rebuild not found: it exists on a nix-darwin (macOS) host only" >&2; exit 1; }
    darwin-rebuild switch --flake '.#{{host}}' --dry-run

# generate (only what is missing or outdated) for one machine
generate machine:
    {{vars}} generate --machine {{machine}}

# every test target
test:
    cargo test --all-targets

# side-by-side benchmark against the sops and age CLI pipelines (issue 6): table + target/bench.json
bench *args:
    #!/usr/bin/env bash
    set -euo pipefail
    for tool in sops age bwrap; do
        command -v "$tool" >/dev/null || { echo "bench: $tool not found: run scripts/install-deps.sh" >&2; exit 1; }
    done
    cargo build --release --quiet --bin vars --bin vars-bench
    cargo run --release --quiet --bin vars-bench -- {{args}}

# the seed's fleet end to end, in a scratch copy (scripts/demo.sh)
demo:
    scripts/demo.sh

# every cargo-fuzz target for SECS seconds each (scripts/fuzz.sh)
fuzz secs="60":
    scripts/fuzz.sh {{secs}}
