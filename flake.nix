{
  description = "vars: secrets generators for Nix fleets (the engine behind clan-style vars)";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
    # Only needed to build darwinConfigurations (`just verify`); the darwin
    # module below does not depend on it:
    # nix-darwin.url = "github:nix-darwin/nix-darwin";
    # nix-darwin.inputs.nixpkgs.follows = "nixpkgs";
  };

  outputs =
    inputs@{ self, nixpkgs, ... }:
    let
      fleet = import ./fleet.nix;
      machinesOfClass =
        class: nixpkgs.lib.filterAttrs (_: m: m.class == class) fleet.machines;

      # The per-host configuration every machine shares here: its generators
      # come from the fleet (the inventory), its secrets from ./sops.
      varsHost = name: {
        networking.hostName = name;
        vars.fleet = fleet;
        vars.storeDir = ./sops;
      };

      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "x86_64-darwin"
        "aarch64-darwin"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # The repository without build outputs (and, for the package, without the store).
      cleanSrc =
        pkgs: excluded:
        pkgs.lib.cleanSourceWith {
          src = ./.;
          filter = path: _type: !(builtins.elem (baseNameOf path) excluded);
        };

      # Sets the package default of the modules to this flake's build.
      packageModule =
        module:
        { pkgs, lib, ... }:
        {
          imports = [ module ];
          vars.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        };
    in
    {
      # The fleet's manifest, as the engine reads it (pure: builtins only).
      lib = {
        inventory = import ./nix/inventory.nix;
        varsLib = import ./nix/lib.nix;
        inherit fleet;
      };

      packages = forAllSystems (pkgs: {
        default = pkgs.rustPlatform.buildRustPackage {
          pname = "vars";
          version = (builtins.fromTOML (builtins.readFile ./Cargo.toml)).package.version;
          src = cleanSrc pkgs [
            "target"
            "sops"
            ".git"
          ];
          cargoLock.lockFile = ./Cargo.lock;
          # the integration tests need nix, bubblewrap and network namespaces
          doCheck = false;
          meta = {
            description = "Secrets generators for Nix fleets";
            license = pkgs.lib.licenses.mit;
            mainProgram = "vars";
          };
        };
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages =
            with pkgs;
            [
              rustc
              cargo
              clippy
              rustfmt
              just
              age
              sops
              statix
              nixfmt-rfc-style
              openssh
              openssl
              mkpasswd
              wireguard-tools
            ]
            ++ pkgs.lib.optionals pkgs.stdenv.isLinux [ bubblewrap ];
        };
      });

      nixosModules.default = packageModule ./nix/modules/nixos.nix;
      darwinModules.default = packageModule ./nix/modules/darwin.nix;

      # Minimal systems for the fleet's machines, to evaluate and build the
      # modules (`nix flake check`, `just verify`). Real hosts import their own
      # modules next to these.
      nixosConfigurations = builtins.mapAttrs (
        name: _:
        nixpkgs.lib.nixosSystem {
          modules = [
            self.nixosModules.default
            (varsHost name)
            (
              { config, ... }:
              {
                nixpkgs.hostPlatform = "x86_64-linux";
                boot.loader.grub.devices = [ "nodev" ];
                fileSystems."/" = {
                  device = "/dev/disk/by-label/nixos";
                  fsType = "ext4";
                };
                # the password hash is installed by the "users" phase, before users exist
                users.users.crs58 = {
                  isNormalUser = true;
                  hashedPasswordFile =
                    config.vars.generators.user-password-crs58.files.password-hash.installedPath;
                };
                system.stateVersion = "25.05";
              }
            )
          ];
        }
      ) (machinesOfClass "nixos");

      # Needs the nix-darwin input above (commented out: not fetched offline).
      darwinConfigurations =
        if inputs ? nix-darwin then
          builtins.mapAttrs (
            name: _:
            inputs.nix-darwin.lib.darwinSystem {
              modules = [
                self.darwinModules.default
                (varsHost name)
                {
                  nixpkgs.hostPlatform = "aarch64-darwin";
                  system.stateVersion = 6;
                }
              ];
            }
          ) (machinesOfClass "darwin")
        else
          { };

      checks = forAllSystems (pkgs: {
        # `vars check` on the committed fleet: every declared file present,
        # up to date and sealed for the right recipients. Reads metadata only.
        vars =
          let
            # fleet.nix evaluated here, so the check needs no Nix inside the build
            manifest = pkgs.writeText "fleet.json" (builtins.toJSON fleet);
          in
          pkgs.runCommand "vars-check"
            { nativeBuildInputs = [ self.packages.${pkgs.stdenv.hostPlatform.system}.default ]; }
            ''
              cp -r ${cleanSrc pkgs [ "target" ".git" ]} repo
              chmod -R u+w repo
              vars check --repo repo --config ${manifest}
              touch $out
            '';
      });
    };
}
