# user-password: a user's login password, prompted or random, hashed for
# `users.users.<user>.hashedPasswordFile`.
#
# role "default":
#   settings:
#     user   : str   the user name (required)
#     prompt : bool  ask for the password (hidden; an empty answer means a random
#                    one) instead of always making a random one (default true)
#   generator user-password-<user>:
#     password      secret, deploy = false (for the admin: `vars get`)
#     password-hash secret, neededFor = "users" (installed before users exist)
#
# Tools: random passwords come from `openssl rand` (fallback: od on
# /dev/urandom, coreutils). The hash is SHA-512 crypt from `mkpasswd -m sha-512`
# (whois) or, as a fallback, `openssl passwd -6`; with neither the script fails
# naming both.
{
  description = "A user's password, prompted or random, hashed with SHA-512 crypt";

  roles.default =
    { settings, instance, ... }:
    let
      user =
        settings.user
          or (throw "user-password: instance \"${instance}\": settings.user is required (the user name)");
      prompt = settings.prompt or true;
      name = "user-password-${user}";
    in
    {
      ${name} = {
        files.password = {
          secret = true;
          deploy = false;
        };
        files.password-hash = {
          secret = true;
          neededFor = "users";
        };
        prompts =
          if prompt then
            {
              password = {
                description = "Password for user ${user} (leave empty for a random one)";
                type = "hidden";
              };
            }
          else
            { };
        script = ''
          set -eu
          umask 077
          pw=""
          if [ -f "$prompts/password" ]; then
            pw=$(cat "$prompts/password")
          fi
          if [ -z "$pw" ]; then
            if command -v openssl >/dev/null 2>&1; then
              pw=$(openssl rand -base64 18)
            else
              pw=$(od -An -N18 -tx1 /dev/urandom | tr -d ' \n')
            fi
          fi
          printf '%s' "$pw" > "$out/password"
          if command -v mkpasswd >/dev/null 2>&1; then
            hash=$(mkpasswd -m sha-512 -s < "$out/password")
          elif command -v openssl >/dev/null 2>&1; then
            hash=$(openssl passwd -6 -stdin < "$out/password")
          else
            echo "${name}: mkpasswd not found: install whois (mkpasswd) or openssl" >&2
            exit 1
          fi
          case "$hash" in
            '$6$'*) ;;
            *) echo "${name}: hashing failed: got '$hash'" >&2; exit 1 ;;
          esac
          printf '%s' "$hash" > "$out/password-hash"
        '';
      };
    };
}
