# sshd: certificate-based SSH.
#
# role "server": every server gets an ed25519 host key and a host certificate
#   signed by the shared CA generator `openssh-ca`.
#   settings:
#     hostNames  : [ str ]  certificate principals (default [ <machine name> ])
#     domain     : str|null also certify "<machine>.<domain>" (default null)
#     certificateValidity : str|null  ssh-keygen -V interval (default: forever)
# role "client": the CA public key as an `@cert-authority` line for
#   ssh_known_hosts, so clients trust every certified host.
#   settings:
#     knownHostsPatterns : [ str ]  host patterns the CA is trusted for (default [ "*" ])
#
# The CA is a shared generator: every machine of the fleet declares it with the
# same definition (nothing machine-specific in it), its private key is never
# deployed (deploy = false: only admins can open it).
let
  caGenerator = vars: {
    share = true;
    files."id_ed25519" = {
      secret = true;
      deploy = false;
    };
    files."id_ed25519.pub" = {
      secret = false;
    };
    script = ''
      set -eu
      umask 077
      ${vars.requireTool {
        generator = "openssh-ca";
        tool = "ssh-keygen";
        package = "openssh-client (openssh)";
      }}
      ssh-keygen -q -t ed25519 -N "" -C "vars openssh-ca" -f "$out/id_ed25519"
    '';
  };

  restartUnitsFor =
    machine:
    if machine.class == "darwin" then [ "com.openssh.sshd" ] else [ "sshd.service" ];
in
{
  description = "OpenSSH host keys with host certificates signed by a shared CA";

  roles.server =
    {
      machine,
      settings,
      vars,
      ...
    }:
    let
      domain = settings.domain or null;
      principals = vars.unique (
        (settings.hostNames or [ machine.name ])
        ++ (if domain == null then [ ] else [ "${machine.name}.${domain}" ])
      );
      validity = settings.certificateValidity or null;
    in
    {
      openssh-ca = caGenerator vars;
      openssh = {
        dependencies = [ "openssh-ca" ];
        files."ssh_host_ed25519_key" = {
          secret = true;
          restartUnits = restartUnitsFor machine;
        };
        files."ssh_host_ed25519_key.pub" = {
          secret = false;
        };
        files."ssh_host_ed25519_key-cert.pub" = {
          secret = false;
        };
        # validation: a change of principals or validity re-issues the certificate
        validation = builtins.toJSON {
          inherit principals validity;
        };
        script = ''
          set -eu
          umask 077
          ${vars.requireTool {
            generator = "openssh";
            tool = "ssh-keygen";
            package = "openssh-client (openssh)";
          }}
          ssh-keygen -q -t ed25519 -N "" -C ${vars.shellQuote "root@${machine.name}"} -f "$out/ssh_host_ed25519_key"
          # ssh-keygen refuses a CA key that others can read: sign with a private copy
          work=$(mktemp -d "''${TMPDIR:-/tmp}/openssh-ca.XXXXXX")
          trap 'rm -rf "$work"' EXIT
          cp "$in/openssh-ca/id_ed25519" "$work/ca"
          chmod 0600 "$work/ca"
          ssh-keygen -q -s "$work/ca" -h \
            -I ${vars.shellQuote "${machine.name} host key"} \
            -n ${vars.shellQuote (builtins.concatStringsSep "," principals)} \
            ${if validity == null then "" else "-V ${vars.shellQuote validity}"} \
            "$out/ssh_host_ed25519_key.pub"
          # ssh-keygen names the certificate <key>-cert.pub
          test -s "$out/ssh_host_ed25519_key-cert.pub"
        '';
      };
    };

  roles.client =
    {
      settings,
      vars,
      ...
    }:
    let
      patterns = settings.knownHostsPatterns or [ "*" ];
    in
    {
      openssh-ca = caGenerator vars;
      openssh-known-hosts = {
        dependencies = [ "openssh-ca" ];
        files."ssh_known_hosts" = {
          secret = false;
        };
        validation = builtins.toJSON {
          inherit patterns;
        };
        script = ''
          set -eu
          umask 077
          printf '@cert-authority %s %s\n' ${vars.shellQuote (builtins.concatStringsSep "," patterns)} \
            "$(cat "$in/openssh-ca/id_ed25519.pub")" > "$out/ssh_known_hosts"
        '';
      };
    };
}
