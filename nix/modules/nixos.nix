# NixOS: `vars activate` at every boot and switch.
#   1. phase "users", ordered before the "users" activation script (deps), so
#      that hashedPasswordFile = config.vars.generators.<g>.files.<f>.installedPath
#      exists when users and groups are created;
#   2. phase "services" after users and groups exist; the units listed in the
#      `--json` change report (`restartUnits`, the union of the changed
#      secrets' restartUnits) are handed to switch-to-configuration through
#      /run/nixos/activation-restart-list, so only those units restart.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.vars;
  hasSecrets = phases: lib.any (
    g: lib.any (f: f.secret && f.deploy && lib.elem f.neededFor phases) (lib.attrValues g.files)
  ) (lib.attrValues cfg.generators);
  # with systemd-sysusers or userborn there is no "users" activation script
  usersScript =
    !(config.systemd.sysusers.enable or false) && !(config.services.userborn.enable or false);
in
{
  imports = [ ./options.nix ];

  config = lib.mkMerge [
    {
      vars.class = "nixos";
      vars.defaultGroup = "root";
      vars.secretsDir = lib.mkDefault "/run/secrets";
      vars.secretsForUsersDir = lib.mkDefault "/run/secrets-for-users";
    }
    (lib.mkIf (cfg.generators != { }) {
      system.activationScripts = lib.mkMerge [
        (lib.mkIf (hasSecrets [ "users" ]) {
          vars-users = {
            deps = [ "specialfs" ];
            text = ''
              echo "vars: installing secrets for users"
              ${cfg.activateCommand} --phase users --secrets-dir ${lib.escapeShellArg cfg.secretsForUsersDir} \
                || echo "vars: activation of the users phase failed" >&2
            '';
          };
        })
        (lib.mkIf (hasSecrets [ "users" ] && usersScript) {
          users.deps = [ "vars-users" ];
        })
        {
          vars = {
            # after users and groups exist, so that owners resolve by name
            deps = [ "specialfs" ] ++ lib.optionals usersScript [ "users" ];
            text = ''
              echo "vars: installing secrets"
              if report=$(${cfg.activateCommand} --phase services --secrets-dir ${lib.escapeShellArg cfg.secretsDir} --json); then
                mkdir -p /run/nixos
                ${pkgs.jq}/bin/jq -r '(.restartUnits // [])[]' <<<"$report" >> /run/nixos/activation-restart-list || true
              else
                echo "vars: activation failed; the previous secrets stay in place" >&2
              fi
            '';
          };
        }
      ];

      environment.systemPackages = [ cfg.package ];
    })
  ];
}
