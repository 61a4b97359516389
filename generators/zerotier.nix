# zerotier: a mesh VPN with one always-on controller.
#
# role "controller" (exactly one machine per instance):
#   zerotier-controller: the controller's node identity (identity-secret,
#   secret; identity-public, node-id public) and the network id (public):
#   <10 hex digits of the controller's node address><6 random hex digits>.
# role "peer":
#   zerotier: the peer's node identity (identity-secret, node-id). On the
#     controller machine the peer reuses the controller's identity (one
#     zerotier-one daemon, one node), by depending on zerotier-controller.
#   zerotier-ip: the peer's RFC 4193 address in the network, computed from the
#     network id and the node id (public, for other machines' /etc/hosts etc.).
#
# Public values another machine needs are read from the store at evaluation
# time: a peer that is not the controller reads the network id from
# sops/machines/<controller>/public/zerotier-controller/network-id. Until the
# controller has been generated that file does not exist; evaluation still
# succeeds (placeholder), and the peer's zerotier-ip script fails with a message
# telling to generate the controller first. Bootstrapping a fresh store is
# therefore: `vars generate --machine <controller>`, then `vars generate`.
# Its `validation` holds the network id, so a new network re-computes every
# peer's address (never the identities).
#
# Tools: `zerotier-idtool` (from zerotier-one) makes real identities. FALLBACK
# when it is not installed: an identity-shaped random value from `openssl rand`
# (<address>:0:<128 hex>:<128 hex>), with a warning on stderr. It is NOT a valid
# ZeroTier identity (the address is not derived from the key pair): zerotier-one
# will reject it. Regenerate (`vars generate --generator zerotier-controller
# --regenerate`, `--generator zerotier`) on a host that has zerotier-idtool.
let
  controllerOf =
    instance: roles:
    let
      cs = builtins.attrNames (roles.controller.machines or { });
    in
    if builtins.length cs == 1 then
      builtins.head cs
    else
      throw "zerotier: instance \"${instance}\" needs exactly one controller machine, got ${toString (builtins.length cs)}";

  restartUnitsFor =
    machine: if machine.class == "darwin" then [ "com.zerotier.one" ] else [ "zerotierone.service" ];

  # Writes $1/identity.secret and $1/identity.public.
  makeIdentity = generator: ''
    make_identity() {
      if command -v zerotier-idtool >/dev/null 2>&1; then
        zerotier-idtool generate "$1/identity.secret" "$1/identity.public" >/dev/null
      else
        command -v openssl >/dev/null 2>&1 || {
          echo "${generator}: zerotier-idtool not found: install zerotier-one (fallback needs openssl, not found either)" >&2
          exit 1
        }
        echo "${generator}: warning: zerotier-idtool not found: writing a random identity-shaped placeholder (not a valid ZeroTier identity; regenerate where zerotier-one is installed)" >&2
        while :; do
          addr=$(openssl rand -hex 5)
          case "$addr" in
            ff*|0000000000) ;;
            *) break ;;
          esac
        done
        pub=$(openssl rand -hex 64)
        priv=$(openssl rand -hex 64)
        printf '%s:0:%s:%s' "$addr" "$pub" "$priv" > "$1/identity.secret"
        printf '%s:0:%s' "$addr" "$pub" > "$1/identity.public"
      fi
    }
    node_id_of() {
      cut -d: -f1 < "$1" | tr -d '\n'
    }
  '';

  ipScript = ''
    case "$nwid" in
      [0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]) ;;
      *) echo "zerotier-ip: malformed network id: $nwid" >&2; exit 1 ;;
    esac
    node=$(tr -d '\n' < "$in/zerotier/node-id")
    # RFC 4193 address: fd<network id>9993<node id>
    printf 'fd%s9993%s' "$nwid" "$node" | sed 's/..../&:/g; s/:$//' > "$out/ip"
  '';
in
{
  description = "ZeroTier mesh: controller identity and network id, peer identities and addresses";

  roles.controller =
    { machine, vars, ... }:
    {
      zerotier-controller = {
        files.identity-secret = {
          secret = true;
          restartUnits = restartUnitsFor machine;
        };
        files.identity-public.secret = false;
        files.node-id.secret = false;
        files.network-id.secret = false;
        script = ''
          set -eu
          umask 077
          ${makeIdentity "zerotier-controller"}
          work=$(mktemp -d "''${TMPDIR:-/tmp}/zerotier.XXXXXX")
          trap 'rm -rf "$work"' EXIT
          make_identity "$work"
          cp "$work/identity.secret" "$out/identity-secret"
          cp "$work/identity.public" "$out/identity-public"
          node=$(node_id_of "$work/identity.public")
          printf '%s' "$node" > "$out/node-id"
          ${vars.requireTool {
            generator = "zerotier-controller";
            tool = "od";
            package = "coreutils";
          }}
          # network number: 24 random bits (the controller's own address + 6 hex digits)
          suffix=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
          printf '%s%s' "$node" "$suffix" > "$out/network-id"
        '';
      };
    };

  roles.peer =
    {
      machine,
      instance,
      roles,
      store,
      vars,
      ...
    }:
    let
      controller = controllerOf instance roles;
      isController = controller == machine.name;
      networkIdFile = "sops/machines/${controller}/public/zerotier-controller/network-id";
      networkId = store.public {
        machine = controller;
        generator = "zerotier-controller";
        file = "network-id";
        placeholder = null;
      };
    in
    {
      zerotier = {
        dependencies = if isController then [ "zerotier-controller" ] else [ ];
        files.identity-secret = {
          secret = true;
          restartUnits = restartUnitsFor machine;
        };
        files.node-id.secret = false;
        script =
          if isController then
            ''
              set -eu
              umask 077
              # the controller is a peer of its own network with the same node identity
              cp "$in/zerotier-controller/identity-secret" "$out/identity-secret"
              cp "$in/zerotier-controller/node-id" "$out/node-id"
            ''
          else
            ''
              set -eu
              umask 077
              ${makeIdentity "zerotier"}
              work=$(mktemp -d "''${TMPDIR:-/tmp}/zerotier.XXXXXX")
              trap 'rm -rf "$work"' EXIT
              make_identity "$work"
              cp "$work/identity.secret" "$out/identity-secret"
              node_id_of "$work/identity.public" > "$out/node-id"
            '';
      };

      zerotier-ip = {
        dependencies = [ "zerotier" ] ++ (if isController then [ "zerotier-controller" ] else [ ]);
        files.ip.secret = false;
        validation = if isController then null else builtins.toJSON { inherit networkId; };
        script =
          if isController then
            ''
              set -eu
              umask 077
              nwid=$(tr -d '\n' < "$in/zerotier-controller/network-id")
              ${ipScript}
            ''
          else if networkId == null then
            ''
              echo "zerotier-ip: the network id of controller ${controller} was not in the store when the configuration was evaluated (${networkIdFile}): generate the controller first (vars generate --machine ${controller}), then run vars generate again" >&2
              exit 1
            ''
          else
            ''
              set -eu
              umask 077
              nwid=${vars.shellQuote networkId}
              ${ipScript}
            '';
      };
    };
}
