# Pure helpers for the vars inventory (builtins only: no nixpkgs, no `lib`).
#
# Everything here is a plain function on plain values so that the real
# `nix-instantiate --eval --strict --json` evaluates it anywhere, and so that the
# NixOS and nix-darwin modules can stay thin wrappers around the same logic.
let
  inherit (builtins)
    all
    any
    attrNames
    concatStringsSep
    elem
    filter
    foldl'
    isAttrs
    isBool
    isList
    isString
    length
    listToAttrs
    map
    mapAttrs
    match
    typeOf
    ;

  # ---------------------------------------------------------------- generic --

  # Recursive attribute-set merge, the right-hand side winning on leaves.
  recursiveMerge =
    a: b:
    a
    // mapAttrs (
      n: v: if isAttrs v && a ? ${n} && isAttrs a.${n} then recursiveMerge a.${n} v else v
    ) b;

  # Merge a list of attribute sets left to right (later wins).
  recursiveMergeAll = foldl' recursiveMerge { };

  # Keep list order, drop repeated elements.
  unique = foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ];

  concatMap = f: xs: builtins.concatLists (map f xs);

  # Attribute names of `xs` as a comma separated list, for messages.
  namesOf = xs: concatStringsSep ", " (if isAttrs xs then attrNames xs else xs);

  quote = s: "\"${s}\"";

  # Drop leading and trailing whitespace (files read from the store end in "\n").
  trim =
    s:
    let
      m = match "[[:space:]]*(.*[^[:space:]])[[:space:]]*" s;
    in
    if m == null then "" else builtins.head m;

  # Shell single-quoting: 'it'\''s'.
  shellQuote = s: "'" + builtins.replaceStrings [ "'" ] [ "'\\''" ] s + "'";

  # A shell line that fails with a message naming the tool when it is missing.
  requireTool =
    {
      generator,
      tool,
      package,
    }:
    ''command -v ${tool} >/dev/null 2>&1 || { echo "${generator}: ${tool} not found: install ${package}" >&2; exit 1; }'';

  # ------------------------------------------------------------------ store --

  # Public values of the vars store (the repo's `sops/` directory), read at
  # evaluation time. `storeDir` is a path (e.g. `./sops`) or null; while the
  # value has not been generated yet the placeholder is returned instead.
  # The path is never interpolated into a string, so nothing is copied.
  readPublicFile =
    {
      storeDir,
      relPath,
      placeholder,
    }:
    if storeDir == null then
      placeholder
    else
      let
        p = storeDir + "/${relPath}";
      in
      if builtins.pathExists p then trim (builtins.readFile p) else placeholder;

  mkStore = storeDir: {
    dir = storeDir;
    # A per-machine public file: sops/machines/<m>/public/<generator>/<file>.
    public =
      {
        machine,
        generator,
        file,
        placeholder ? null,
      }:
      readPublicFile {
        inherit storeDir placeholder;
        relPath = "machines/${machine}/public/${generator}/${file}";
      };
    # A shared public file: sops/shared/public/<generator>/<file>.
    sharedPublic =
      {
        generator,
        file,
        placeholder ? null,
      }:
      readPublicFile {
        inherit storeDir placeholder;
        relPath = "shared/public/${generator}/${file}";
      };
  };

  # ----------------------------------------------------------------- schema --
  # The manifest schema of the generation engine. Only these fields exist; the
  # engine rejects any other, so the inventory rejects them first, with the
  # instance, role and machine that produced them.

  neededForValues = [
    "partitioning"
    "activation"
    "users"
    "services"
  ];
  promptTypes = [
    "line"
    "hidden"
    "multiline"
    "multiline-hidden"
  ];

  isStrList = v: isList v && all isString v;
  isMode = v: isString v && match "[0-7]{4}" v != null;
  validName = n: n != "" && n != "." && n != ".." && match ".*[/].*" n == null;

  fileFields = {
    secret = {
      check = isBool;
      expected = "a bool";
    };
    deploy = {
      check = isBool;
      expected = "a bool";
    };
    owner = {
      check = isString;
      expected = "a string";
    };
    group = {
      check = isString;
      expected = "a string";
    };
    mode = {
      check = isMode;
      expected = "four octal digits like \"0400\"";
    };
    neededFor = {
      check = v: elem v neededForValues;
      expected = "one of ${namesOf neededForValues}";
    };
    restartUnits = {
      check = isStrList;
      expected = "a list of strings";
    };
    path = {
      check = v: v == null || (isString v && match "/.*" v != null);
      expected = "null or an absolute path";
    };
  };

  promptFields = {
    description = {
      check = isString;
      expected = "a string";
    };
    type = {
      check = v: elem v promptTypes;
      expected = "one of ${namesOf promptTypes}";
    };
    persist = {
      check = isBool;
      expected = "a bool";
    };
  };

  generatorFields = {
    share = {
      check = isBool;
      expected = "a bool";
    };
    dependencies = {
      check = isStrList;
      expected = "a list of generator names";
    };
    files = {
      check = isAttrs;
      expected = "an attribute set of files";
    };
    prompts = {
      check = isAttrs;
      expected = "an attribute set of prompts";
    };
    runtimeInputs = {
      check = isStrList;
      expected = "a list of store paths (strings)";
    };
    script = {
      check = isString;
      expected = "a string";
    };
    validation = {
      check = _: true;
      expected = "anything";
    };
  };

  showValue =
    v:
    if isString v then
      quote v
    else if isBool v then
      (if v then "true" else "false")
    else if v == null then
      "null"
    else if builtins.isInt v then
      toString v
    else
      "a ${typeOf v}";

  # Check the fields of one record against a field table; return the record.
  # `where` names the contributor, `path` the record inside the generator
  # ("" for the generator itself, "files.<f>", "prompts.<p>").
  checkRecord =
    where: path: fields: r:
    let
      at = n: if path == "" then n else "${path}.${n}";
      loc = if path == "" then where else "${where}: ${path}";
    in
    if !isAttrs r then
      throw "${loc}: expected an attribute set, got ${showValue r}"
    else
      let
        unknown = filter (n: !(fields ? ${n})) (attrNames r);
        bad = filter (n: !(fields.${n}.check r.${n})) (attrNames r);
      in
      if unknown != [ ] then
        throw "${loc}: unknown field ${quote (builtins.head unknown)} (known: ${namesOf fields})"
      else if bad != [ ] then
        let
          n = builtins.head bad;
        in
        throw "${where}: ${at n}: expected ${fields.${n}.expected}, got ${showValue r.${n}}"
      else
        r;

  checkNames =
    where: what: set:
    let
      bad = filter (n: !(validName n)) (attrNames set);
    in
    if bad != [ ] then
      throw "${where}: invalid ${what} name ${quote (builtins.head bad)} (empty, \".\", \"..\" or containing \"/\")"
    else
      set;

  # Validate one generator definition and fill the generator-level defaults.
  # File and prompt records keep only the fields that were set: the engine
  # applies clan's defaults (which differ by machine class for `group`).
  normalizeGenerator =
    where: def:
    let
      g = checkRecord where "" generatorFields def;
      files = mapAttrs (n: f: checkRecord where "files.${n}" fileFields f) (
        checkNames where "file" (g.files or { })
      );
      prompts = mapAttrs (n: p: checkRecord where "prompts.${n}" promptFields p) (
        checkNames where "prompt" (g.prompts or { })
      );
    in
    if !(g ? script) then
      throw "${where}: missing field \"script\""
    else if files == { } then
      throw "${where}: declares no files"
    else
      {
        share = g.share or false;
        dependencies = g.dependencies or [ ];
        inherit files prompts;
        runtimeInputs = g.runtimeInputs or [ ];
        inherit (g) script;
        validation = g.validation or null;
      };

  # ------------------------------------------------------ generator merging --

  # Merge two definitions of the same generator on one machine. Attribute sets
  # merge key by key, lists are united, any other differing value is an error
  # naming both contributors and the field.
  mergeDefs =
    {
      machine,
      generator,
      leftSource,
      rightSource,
    }:
    let
      go =
        path: a: b:
        if isAttrs a && isAttrs b then
          a // mapAttrs (n: v: if a ? ${n} then go (path ++ [ n ]) a.${n} v else v) b
        else if isList a && isList b then
          unique (a ++ b)
        else if a == b then
          a
        else
          throw (
            "inventory: machine ${quote machine}: generator ${quote generator}: "
            + "field ${quote (concatStringsSep "." path)} is defined differently by "
            + "${leftSource} (${showValue a}) and ${rightSource} (${showValue b})"
          );
    in
    go [ ];

  # contributions: [ { source = "instance \"i\", role \"r\""; generators = { name = def; }; } ]
  # (definitions already normalized). Result: { name = def; }.
  mergeContributions =
    machine: contributions:
    let
      step =
        acc: c:
        foldl' (
          acc': name:
          let
            def = c.generators.${name};
          in
          if acc' ? ${name} then
            acc'
            // {
              ${name} = {
                source = "${acc'.${name}.source}";
                def = mergeDefs {
                  inherit machine;
                  generator = name;
                  leftSource = acc'.${name}.source;
                  rightSource = c.source;
                } acc'.${name}.def def;
              };
            }
          else
            acc'
            // {
              ${name} = {
                inherit (c) source;
                inherit def;
              };
            }
        ) acc (attrNames c.generators);
    in
    mapAttrs (_: v: v.def) (foldl' step { } contributions);

  # The manifest of one machine from already-typed generator definitions (the
  # NixOS and nix-darwin modules): only the manifest's fields are kept, checked
  # by the same rules as the inventory.
  machineManifest =
    {
      name,
      class,
      tags,
      generators,
    }:
    let
      pick = fields: r: builtins.intersectAttrs fields r;
      strip =
        g: d:
        normalizeGenerator "vars.generators.${g}" (
          (pick generatorFields d)
          // {
            files = mapAttrs (_: pick fileFields) (d.files or { });
            prompts = mapAttrs (_: pick promptFields) (d.prompts or { });
          }
        );
    in
    {
      machines.${name} = {
        inherit class tags;
        generators = mapAttrs strip generators;
      };
    };

in
{
  inherit
    recursiveMerge
    recursiveMergeAll
    unique
    concatMap
    namesOf
    quote
    trim
    shellQuote
    requireTool
    readPublicFile
    mkStore
    neededForValues
    promptTypes
    validName
    normalizeGenerator
    checkNames
    machineManifest
    mergeContributions
    showValue
    ;
  # re-exported so that modules need no nixpkgs
  inherit any length listToAttrs;
}
