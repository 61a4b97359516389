# The vars inventory: machines, tags, service instances and roles, evaluated
# into the manifest the `vars` engine reads (issue 3, "The manifest (input)").
#
# Pure Nix, builtins only: `nix-instantiate --eval --strict --json` on a file
# that calls this function prints the manifest.
#
#   import ./nix/inventory.nix {
#     machines.cinnabar = { machineClass = "nixos"; tags = [ "vps" ]; };
#     instances.sshd-clan = {
#       module = { name = "sshd"; input = "clan-core"; };
#       roles.server.tags.all = { };
#       roles.server.machines.cinnabar.settings = { hostNames = [ "cinnabar.example" ]; };
#       roles.server.settings = { };
#       settings = { };
#     };
#   }
#
# Machines: `machines.<name> = { tags ? [ ]; machineClass ? "nixos"; }`
# (class "nixos" or "darwin"; the tag `all` matches every machine).
#
# Instances: `module.name` names a service module, the file
# `<modulesDir>/<name>.nix`. `module.input` is accepted for clan compatibility
# and otherwise ignored: every module comes from `modulesDir`. A role gets
# machines by name (`roles.<role>.machines.<m> = { settings = ...; }`) and by
# tag (`roles.<role>.tags.<tag> = { }`). Settings are merged instance -> role ->
# machine, attribute sets recursively, the later one winning.
#
# A service module is an attribute set `{ description ? ""; roles.<role> = f; }`
# where `f` is a function of
#   machine  = { name; class; tags; }        the machine being configured
#   instance = the instance name (string)
#   role     = the role name (string)
#   settings = the merged settings of this machine in this role
#   roles    = { <role> = { machines = { <m> = { settings; }; }; }; } for every
#              role of the module in this instance (empty when unassigned)
#   store    = { dir; public { machine, generator, file, placeholder }; sharedPublic {...}; }
#              public values of the vars store, read at evaluation time
#   vars     = the helpers of ./lib.nix
# returning `{ <generator> = <definition in the manifest schema>; }`. Only the
# arguments `f` names are passed (so `{ machine, settings, ... }:` is fine).
#
# Generators contributed to one machine by several instances or roles merge by
# name; a differing value is an error naming both contributors.
{
  machines,
  instances,
  modulesDir ? ../generators,
  storeDir ? null,
}:
let
  vars = import ./lib.nix;
  inherit (vars) quote namesOf concatMap;
  inherit (builtins)
    attrNames
    elem
    filter
    isAttrs
    isFunction
    isList
    isString
    listToAttrs
    mapAttrs
    ;

  machineNames = attrNames machines;
  machineList = namesOf machineNames;

  # ------------------------------------------------------------- machines --
  checkedMachines = mapAttrs (
    name: m:
    let
      where = "inventory: machine ${quote name}";
      unknown = filter (
        n:
        !(elem n [
          "tags"
          "machineClass"
          "description"
        ])
      ) (attrNames m);
      class = m.machineClass or "nixos";
      tags = m.tags or [ ];
    in
    if !vars.validName name then
      throw "${where}: invalid machine name"
    else if !isAttrs m then
      throw "${where}: expected an attribute set { tags; machineClass; }"
    else if unknown != [ ] then
      throw "${where}: unknown attribute ${quote (builtins.head unknown)} (known: description, machineClass, tags)"
    else if
      !(elem class [
        "nixos"
        "darwin"
      ])
    then
      throw "${where}: machineClass must be \"nixos\" or \"darwin\", got ${vars.showValue class}"
    else if !(isList tags && builtins.all isString tags) then
      throw "${where}: tags must be a list of strings"
    else
      {
        inherit name class tags;
      }
  ) machines;

  machinesWithTag =
    tag:
    if tag == "all" then
      machineNames
    else
      filter (m: elem tag checkedMachines.${m}.tags) machineNames;

  # -------------------------------------------------------------- modules --
  availableModules = if builtins.pathExists modulesDir then
    map (f: builtins.substring 0 (builtins.stringLength f - 4) f) (
      filter (f: builtins.match ".*\\.nix" f != null) (attrNames (builtins.readDir modulesDir))
    )
  else
    [ ];

  loadModule =
    instanceName: moduleName:
    let
      file = modulesDir + "/${moduleName}.nix";
    in
    if !(isString moduleName) || !vars.validName moduleName || !builtins.pathExists file then
      throw "inventory: instance ${quote instanceName}: module ${quote (toString moduleName)} does not exist (modules: ${namesOf availableModules})"
    else
      let
        mod = import file;
      in
      if !(isAttrs mod && mod ? roles && isAttrs mod.roles) then
        throw "inventory: instance ${quote instanceName}: module ${quote moduleName} is not a service module (expected { roles.<role> = { machine, instance, role, settings, roles }: { ... }; })"
      else
        mod;

  # ------------------------------------------------------------ instances --
  checkKeys =
    where: known: set:
    let
      unknown = filter (n: !(elem n known)) (attrNames set);
    in
    if !isAttrs set then
      throw "${where}: expected an attribute set"
    else if unknown != [ ] then
      throw "${where}: unknown attribute ${quote (builtins.head unknown)} (known: ${namesOf known})"
    else
      set;

  # Everything about one instance: its module and, per role, the machines with
  # their merged settings.
  resolveInstance =
    instanceName: inst0:
    let
      iwhere = "inventory: instance ${quote instanceName}";
      inst = checkKeys iwhere [
        "module"
        "roles"
        "settings"
        "description"
      ] inst0;
      moduleName =
        if !(inst ? module) then
          throw "${iwhere}: missing attribute \"module\" (module = { name = \"...\"; })"
        else if isString inst.module then
          inst.module
        else
          (checkKeys "${iwhere}: module" [ "name" "input" ] inst.module).name
            or (throw "${iwhere}: module has no name");
      module = loadModule instanceName moduleName;
      instanceSettings = inst.settings or { };
      usedRoles = inst.roles or { };

      resolveRole =
        roleName: r0:
        let
          rwhere = "inventory: instance ${quote instanceName}, role ${quote roleName}";
          r = checkKeys rwhere [ "machines" "tags" "settings" ] r0;
          byName = r.machines or { };
          byTag = r.tags or { };
          checkedByName = mapAttrs (
            m: v:
            if !(machines ? ${m}) then
              throw "${rwhere}: machine ${quote m} does not exist (machines: ${machineList})"
            else
              checkKeys "${rwhere}, machine ${quote m}" [ "settings" ] v
          ) byName;
          tagged = concatMap (
            t:
            let
              v = checkKeys "${rwhere}, tag ${quote t}" [ ] byTag.${t};
            in
            builtins.seq v (machinesWithTag t)
          ) (attrNames byTag);
          members = vars.unique (attrNames checkedByName ++ tagged);
          missing = filter (m: !(machines ? ${m})) (attrNames byName);
        in
        if !(module.roles ? ${roleName}) then
          throw "${rwhere}: module ${quote moduleName} has no role ${quote roleName} (roles: ${namesOf module.roles})"
        else if missing != [ ] then
          throw "${rwhere}: machine ${quote (builtins.head missing)} does not exist (machines: ${machineList})"
        else
          # every per-machine entry is checked here, not when first used
          builtins.seq (builtins.foldl' (ok: v: builtins.seq v ok) true (builtins.attrValues checkedByName)) (
          listToAttrs (
            map (m: {
              name = m;
              value = {
                settings = vars.recursiveMergeAll [
                  instanceSettings
                  (r.settings or { })
                  ((checkedByName.${m} or { }).settings or { })
                ];
              };
            }) members
          )
          );

      resolvedRoles = mapAttrs resolveRole usedRoles;
    in
    {
      inherit moduleName module;
      roles = mapAttrs (
        _: _: { machines = { }; }
      ) module.roles // mapAttrs (_: ms: { machines = ms; }) resolvedRoles;
    };

  resolved = mapAttrs resolveInstance instances;

  store = vars.mkStore storeDir;

  callRole =
    f: args:
    let
      formals = builtins.functionArgs f;
    in
    if formals == { } then f args else f (builtins.intersectAttrs formals args);

  # One contribution per (instance, role, machine).
  contributionsFor =
    machineName:
    concatMap (
      instanceName:
      let
        ri = resolved.${instanceName};
      in
      concatMap (
        roleName:
        let
          members = ri.roles.${roleName}.machines;
          source = "instance ${quote instanceName}, role ${quote roleName}";
          where = "inventory: ${source}, machine ${quote machineName}";
          f = ri.module.roles.${roleName};
          out = callRole f {
            machine = checkedMachines.${machineName};
            instance = instanceName;
            role = roleName;
            inherit (members.${machineName}) settings;
            inherit (ri) roles;
            inherit store vars;
          };
        in
        if !(members ? ${machineName}) then
          [ ]
        else if !isFunction f then
          throw "${where}: role ${quote roleName} of module ${quote ri.moduleName} is not a function"
        else if !isAttrs out then
          throw "${where}: the role returned ${vars.showValue out}, expected { <generator> = { ... }; }"
        else
          [
            {
              inherit source;
              generators = mapAttrs (g: def: vars.normalizeGenerator "${where}: generator ${quote g}" def) (
                vars.checkNames where "generator" out
              );
            }
          ]
      ) (attrNames ri.roles)
    ) (attrNames resolved);

  # Every instance, module, role and machine reference is checked even when no
  # machine ends up with a generator from it.
  checked = builtins.deepSeq (mapAttrs (
    _: ri: mapAttrs (_: r: attrNames r.machines) ri.roles
  ) resolved) true;
in
assert checked;
{
  machines = mapAttrs (name: m: {
    inherit (m) class tags;
    generators = vars.mergeContributions name (contributionsFor name);
  }) checkedMachines;
}
