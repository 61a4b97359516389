# The fleet: machines, service instances and roles. `vars` reads this file by
# default (`nix-instantiate --eval --strict --json fleet.nix` prints the
# manifest: per machine its class, tags and generators).
#
# Secrets and public values live in ./sops (generated and committed with
# `vars generate`). Public values another machine needs (the zerotier network
# id) are read from there at evaluation time; `vars generate` evaluates this
# file again after generating them, so one run suffices on a fresh store.
import ./nix/inventory.nix {
  storeDir = ./sops;

  machines = {
    cinnabar = {
      machineClass = "nixos";
      tags = [
        "nixos"
        "vps"
        "cloud"
      ];
    };
    blackphos = {
      machineClass = "darwin";
      tags = [
        "darwin"
        "workstation"
      ];
    };
    rosegold = {
      machineClass = "darwin";
      tags = [
        "darwin"
        "workstation"
      ];
    };
    argentum = {
      machineClass = "darwin";
      tags = [
        "darwin"
        "workstation"
      ];
    };
    stibnite = {
      machineClass = "darwin";
      tags = [
        "darwin"
        "workstation"
      ];
    };
  };

  instances = {
    # ZeroTier mesh: cinnabar (always-on VPS) controls the network, every
    # machine is a peer.
    zerotier-local = {
      module = {
        name = "zerotier";
        input = "clan-core";
      };
      roles.controller.machines.cinnabar = { };
      roles.peer.tags.all = { };
    };

    # Certificate-based SSH: every machine has a host key certified by the
    # shared CA and trusts that CA for every host.
    sshd-clan = {
      module = {
        name = "sshd";
        input = "clan-core";
      };
      roles.server.tags.all = { };
      roles.client.tags.all = { };
    };

    # The admin user's password: random (no prompt), hashed for
    # users.users.crs58.hashedPasswordFile on every machine.
    user-crs58 = {
      module = {
        name = "user-password";
        input = "clan-core";
      };
      roles.default.tags.all = { };
      settings = {
        user = "crs58";
        prompt = false;
      };
    };

    # Disk encryption of the VPS (disko).
    luks = {
      module.name = "luks";
      roles.default.machines.cinnabar = { };
    };

    # Hetzner Cloud API token for terraform/terranix (asked once, hidden).
    hcloud-token = {
      module.name = "hcloud-token";
      roles.default.machines.cinnabar = { };
    };

    # WireGuard key pair of the VPS.
    wireguard = {
      module.name = "wireguard";
      roles.peer.machines.cinnabar = { };
    };
  };
}
