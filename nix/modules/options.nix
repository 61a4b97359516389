# Options shared by the NixOS and nix-darwin modules: `vars.generators.<name>`
# typed like the manifest of the engine (issue 3), plus where the store, the
# package and the secrets live. The platform modules (./nixos.nix,
# ./darwin.nix) only add activation; the manifest itself is built by the pure
# function `machineManifest` of ../lib.nix.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.vars;
  varsLib = import ../lib.nix;

  fileType =
    generatorName:
    types.submodule (
      { name, config, ... }:
      {
        options = {
          secret = mkOption {
            type = types.bool;
            default = true;
            description = "Sealed with SOPS/age (true) or stored raw under public/ (false).";
          };
          deploy = mkOption {
            type = types.bool;
            default = true;
            description = "Installed on the machine by `vars activate` (secret files only).";
          };
          owner = mkOption {
            type = types.str;
            default = "root";
          };
          group = mkOption {
            type = types.str;
            default = cfg.defaultGroup;
            defaultText = lib.literalExpression ''"root" on NixOS, "wheel" on darwin'';
          };
          mode = mkOption {
            type = types.strMatching "^[0-7]{4}$";
            default = "0400";
          };
          neededFor = mkOption {
            type = types.enum varsLib.neededForValues;
            default = "services";
            description = "partitioning: never installed (see `vars upload`); users: before users exist; activation, services: at activation.";
          };
          restartUnits = mkOption {
            type = types.listOf types.str;
            default = [ ];
            description = "Units restarted when this file changes (systemd units on NixOS, launchd labels on darwin).";
          };
          path = mkOption {
            type = types.nullOr (types.strMatching "^/.*");
            default = null;
            description = "An extra symlink at this absolute path to the installed file.";
          };

          # Read-only conveniences for the rest of the configuration; they are
          # not part of the manifest.
          installedPath = mkOption {
            type = types.str;
            readOnly = true;
            defaultText = lib.literalExpression ''"''${config.vars.secretsDir}/<generator>.<file>"'';
            default =
              if config.neededFor == "users" then
                "${cfg.secretsForUsersDir}/${generatorName}.${name}"
              else
                "${cfg.secretsDir}/${generatorName}.${name}";
            description = "Where `vars activate` installs this secret file.";
          };
          value = mkOption {
            type = types.str;
            readOnly = true;
            defaultText = lib.literalMD "the content of `sops/machines/<machine>/public/<generator>/<file>` (or `sops/shared/public/...`)";
            default =
              let
                shared = cfg.generators.${generatorName}.share;
                rel =
                  if shared then
                    "shared/public/${generatorName}/${name}"
                  else
                    "machines/${cfg.machineName}/public/${generatorName}/${name}";
              in
              if config.secret then
                throw "vars.generators.${generatorName}.files.${name}.value: a secret has no public value"
              else if cfg.storeDir == null then
                throw "vars.generators.${generatorName}.files.${name}.value: vars.storeDir is not set"
              else
                varsLib.readPublicFile {
                  inherit (cfg) storeDir;
                  relPath = rel;
                  placeholder = throw "vars.generators.${generatorName}.files.${name}.value: not generated yet (sops/${rel}): run vars generate --machine ${cfg.machineName}";
                };
            description = "The public value, read from the store at evaluation time.";
          };
        };
      }
    );

  promptType = types.submodule (
    { name, ... }:
    {
      options = {
        description = mkOption {
          type = types.str;
          default = name;
        };
        type = mkOption {
          type = types.enum varsLib.promptTypes;
          default = "line";
        };
        persist = mkOption {
          type = types.bool;
          default = false;
          description = "Keep the answer as this generator's secret file of the same name.";
        };
      };
    }
  );

  generatorType = types.submodule (
    { name, ... }:
    {
      options = {
        share = mkOption {
          type = types.bool;
          default = false;
          description = "One generator for every machine declaring it, stored under sops/shared/.";
        };
        dependencies = mkOption {
          type = types.listOf types.str;
          default = [ ];
        };
        files = mkOption {
          type = types.attrsOf (fileType name);
          default = { };
        };
        prompts = mkOption {
          type = types.attrsOf promptType;
          default = { };
        };
        runtimeInputs = mkOption {
          type = types.listOf (types.either types.package types.str);
          default = [ ];
          description = "Packages whose bin/ is on the script's PATH.";
        };
        script = mkOption {
          type = types.str;
          description = "Shell script writing every declared file to $out; $in/<dep>/<file>, $prompts/<name>.";
        };
        validation = mkOption {
          type = types.nullOr types.anything;
          default = null;
          description = "When this value changes the generator is re-run.";
        };
      };
    }
  );
in
{
  options.vars = {
    package = mkOption {
      type = types.package;
      description = "The vars binary.";
    };
    class = mkOption {
      type = types.enum [
        "nixos"
        "darwin"
      ];
      internal = true;
    };
    defaultGroup = mkOption {
      type = types.str;
      internal = true;
    };
    machineName = mkOption {
      type = types.str;
      default = config.networking.hostName;
      defaultText = lib.literalExpression "config.networking.hostName";
      description = "This machine's name in the fleet.";
    };
    tags = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };
    storeDir = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = lib.literalExpression "./sops";
      description = "The repository's vars store (its `sops/` directory).";
    };
    fleet = mkOption {
      type = types.nullOr types.attrs;
      default = null;
      example = lib.literalExpression "import ./fleet.nix";
      description = "An evaluated inventory (fleet.nix); its generators for this machine become vars.generators.";
    };
    generators = mkOption {
      type = types.attrsOf generatorType;
      default = { };
    };
    secretsDir = mkOption {
      type = types.str;
      description = "Where `vars activate` installs secrets (a symlink to the current generation).";
    };
    secretsForUsersDir = mkOption {
      type = types.str;
      description = "Where the neededFor = \"users\" secrets go.";
    };
    identities = mkOption {
      type = types.listOf types.str;
      default = [
        "/var/lib/vars/key.txt"
        "/etc/ssh/ssh_host_ed25519_key"
      ];
      description = "age identities `vars activate` tries.";
    };
    manifest = mkOption {
      type = types.package;
      readOnly = true;
      description = "This machine's manifest (JSON) in the Nix store.";
    };
    activateCommand = mkOption {
      type = types.str;
      readOnly = true;
      internal = true;
    };
  };

  config = {
    # The fleet's definitions merge with any made here (a differing leaf is a
    # conflict; override it with lib.mkForce).
    vars.generators = lib.mkIf (cfg.fleet != null) (
      cfg.fleet.machines.${cfg.machineName}.generators or { }
    );
    vars.tags = lib.mkIf (cfg.fleet != null) (
      lib.mkDefault (cfg.fleet.machines.${cfg.machineName}.tags or [ ])
    );

    vars.manifest = pkgs.writeText "vars-manifest-${cfg.machineName}.json" (
      builtins.toJSON (
        varsLib.machineManifest {
          name = cfg.machineName;
          inherit (cfg) class tags;
          generators = lib.mapAttrs (
            _: g: g // { runtimeInputs = map toString g.runtimeInputs; }
          ) cfg.generators;
        }
      )
    );

    vars.activateCommand = lib.concatStringsSep " " (
      [
        "${cfg.package}/bin/vars"
        "activate"
        "--machine"
        (lib.escapeShellArg cfg.machineName)
        "--config"
        "${cfg.manifest}"
      ]
      ++ lib.optionals (cfg.storeDir != null) [
        "--store"
        "${cfg.storeDir}"
      ]
      ++ lib.concatMap (i: [
        "--identity"
        (lib.escapeShellArg i)
      ]) cfg.identities
    );

    assertions = [
      {
        assertion = cfg.generators == { } || cfg.storeDir != null;
        message = "vars: vars.generators is set but vars.storeDir (the repo's sops/ directory) is not";
      }
    ];
  };
}
