# luks: the passphrase of a LUKS volume, for disko. neededFor = "partitioning":
# never installed by `vars activate`; `vars upload` hands it to nixos-anywhere
# (--disk-encryption-keys /tmp/<generator>.passphrase ...).
#
# role "default":
#   settings:
#     name : str  generator name (default "luks"; one per encrypted volume)
#   generator <name>: passphrase (secret, neededFor "partitioning"),
#     32 random bytes in base64, no trailing newline (cryptsetup reads a key
#     file byte for byte).
#
# Tools: `openssl rand`; fallback: od on /dev/urandom (hex), coreutils.
{
  description = "A LUKS passphrase for disko, neededFor partitioning";

  roles.default =
    { settings, ... }:
    {
      ${settings.name or "luks"} = {
        files.passphrase = {
          secret = true;
          neededFor = "partitioning";
        };
        script = ''
          set -eu
          umask 077
          if command -v openssl >/dev/null 2>&1; then
            pass=$(openssl rand -base64 32)
          else
            pass=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
          fi
          test -n "$pass"
          printf '%s' "$pass" > "$out/passphrase"
        '';
      };
    };
}
