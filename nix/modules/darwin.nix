# nix-darwin: `vars activate` at every switch (postActivation) and at boot (a
# launchd daemon, since /var/run is emptied at boot). macOS has no ramfs: the
# secrets go to /var/run/vars (a tmpfs-like, boot-cleared directory; see the
# README). Units to restart are launchd labels: every label listed in the
# `--json` change report's restartUnits is kickstarted (`launchctl kickstart -k
# system/<label>`). nix-darwin does not consume password hashes, so the
# "users" phase simply runs first.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.vars;
  activate = pkgs.writeShellScript "vars-activate" ''
    set -u
    ${cfg.activateCommand} --phase users --secrets-dir ${lib.escapeShellArg cfg.secretsForUsersDir} \
      || echo "vars: activation of the users phase failed" >&2
    if report=$(${cfg.activateCommand} --phase services --secrets-dir ${lib.escapeShellArg cfg.secretsDir} --json); then
      for label in $(${pkgs.jq}/bin/jq -r '(.restartUnits // [])[]' <<<"$report"); do
        echo "vars: restarting $label"
        /bin/launchctl kickstart -k "system/$label" || true
      done
    else
      echo "vars: activation failed; the previous secrets stay in place" >&2
      exit 1
    fi
  '';
in
{
  imports = [ ./options.nix ];

  config = lib.mkMerge [
    {
      vars.class = "darwin";
      vars.defaultGroup = "wheel";
      vars.secretsDir = lib.mkDefault "/var/run/vars/secrets";
      vars.secretsForUsersDir = lib.mkDefault "/var/run/vars/secrets-for-users";
    }
    (lib.mkIf (cfg.generators != { }) {
      system.activationScripts.postActivation.text = lib.mkAfter ''
        echo "vars: installing secrets"
        ${activate} || true
      '';

      launchd.daemons.vars-activate = {
        serviceConfig = {
          Label = "org.vars.activate";
          ProgramArguments = [ "${activate}" ];
          RunAtLoad = true;
          KeepAlive = false;
          StandardOutPath = "/var/log/vars-activate.log";
          StandardErrorPath = "/var/log/vars-activate.log";
        };
      };

      environment.systemPackages = [ cfg.package ];
    })
  ];
}
