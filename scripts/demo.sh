#!/usr/bin/env bash
# The example fleet, end to end, in a scratch copy: an admin key, every
# generator of the seed's five machines, check, list, get, a CA-signed host
# certificate, the real sops opening a secret, and cinnabar's activation into a
# private RAM mount (root: in its own mount namespace; never the host's /run).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cargo build --quiet --release --manifest-path "$repo/Cargo.toml"
vars="$repo/target/release/vars"
work=$(mktemp -d /tmp/vars-demo.XXXXXX)
mkdir -p "$work/mnt"
trap 'rm -rf "$work"' EXIT
cp -r "$repo/fleet.nix" "$repo/generators" "$repo/nix" "$work/"
cd "$work"
export HOME="$work/home" XDG_CONFIG_HOME="$work/home/.config"
unset SOPS_AGE_KEY SOPS_AGE_KEY_FILE SOPS_AGE_KEY_CMD
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step "$vars" keygen --user admin
printf '{"hcloud-token.hcloud-token": "demo-hetzner-token"}' >"$work/prompts.json"
# zerotier peers read the controller's network id at evaluation time: vars evaluates
# fleet.nix again after the controller is generated, and runs what that changed
step "$vars" generate --prompt-file "$work/prompts.json"
step "$vars" check
step "$vars" list --machine cinnabar
step "$vars" get cinnabar zerotier-controller/network-id
echo
step ssh-keygen -L -f sops/machines/cinnabar/public/openssh/ssh_host_ed25519_key-cert.pub
echo "the real sops opens a secret vars sealed:"
SOPS_AGE_KEY_FILE="$XDG_CONFIG_HOME/sops/age/keys.txt" sops --decrypt --input-type binary --output-type binary \
    sops/machines/cinnabar/secrets/luks/passphrase | head -c 12; echo "…"
step "$vars" generate
if [ "$(id -u)" -eq 0 ] && command -v unshare >/dev/null; then
    echo
    echo "activation of cinnabar, in a private mount namespace:"
    "$vars" upload --machine cinnabar --to "$work/upload" >/dev/null
    unshare -m sh -c '
        mount -t tmpfs none "$1" 2>/dev/null || true
        mkdir -p "$1/run" "$1/var/lib/vars"
        "$2" activate --machine cinnabar --identity "$3/upload/var/lib/vars/key.txt" --secrets-dir "$1/run/secrets" &&
        ls -l "$1/run/secrets/"' demo "$work/mnt" "$vars" "$work" || echo "(activation not available in this build)"
fi
echo
echo "demo: done"
