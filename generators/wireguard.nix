# wireguard: a Curve25519 key pair per machine.
#
# role "peer":
#   settings:
#     interface : str  interface name (default "wg0")
#   generator wireguard-<interface>:
#     private-key  secret (restarts wireguard-<interface>.service on NixOS)
#     public-key   public
#
# Tools: `wg genkey` / `wg pubkey` (wireguard-tools). FALLBACK: openssl's X25519
# (`openssl genpkey -algorithm X25519`; the raw 32-byte keys are the last 32
# bytes of the DER encodings), which yields the same key format (base64 of 32
# bytes). With neither, the script fails naming wg.
{
  description = "WireGuard key pair";

  roles.peer =
    { machine, settings, ... }:
    let
      interface = settings.interface or "wg0";
      name = "wireguard-${interface}";
    in
    {
      ${name} = {
        files.private-key = {
          secret = true;
          restartUnits = if machine.class == "nixos" then [ "wireguard-${interface}.service" ] else [ ];
        };
        files.public-key.secret = false;
        script = ''
          set -eu
          umask 077
          if command -v wg >/dev/null 2>&1; then
            wg genkey > "$out/private-key"
            wg pubkey < "$out/private-key" > "$out/public-key"
          elif command -v openssl >/dev/null 2>&1; then
            echo "${name}: wg not found: using the openssl X25519 fallback" >&2
            work=$(mktemp -d "''${TMPDIR:-/tmp}/wireguard.XXXXXX")
            trap 'rm -rf "$work"' EXIT
            openssl genpkey -algorithm X25519 -outform DER -out "$work/key.der"
            openssl pkey -inform DER -in "$work/key.der" -pubout -outform DER -out "$work/pub.der"
            tail -c 32 "$work/key.der" > "$work/key.raw"
            tail -c 32 "$work/pub.der" > "$work/pub.raw"
            { openssl base64 -A -in "$work/key.raw"; echo; } > "$out/private-key"
            { openssl base64 -A -in "$work/pub.raw"; echo; } > "$out/public-key"
          else
            echo "${name}: wg not found: install wireguard-tools (or openssl for the fallback)" >&2
            exit 1
          fi
        '';
      };
    };
}
