# drvmeta's Nix library: add `__meta` provenance to derivations so that a
# derivation-meta Nix (NixOS/nix PR #16285) — or `drvmeta realise` on today's
# Nix — never rebuilds for a provenance change. Plain Nix: works with
# `builtins.derivation` attribute sets and with nixpkgs' `mkDerivation` ones,
# and needs no nixpkgs (it is the flake's `lib`).
let
  inherit (builtins) elem filter foldl' isAttrs isString match sort lessThan;

  unique = foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ];

  # Merge b into a, recursing into attribute sets.
  recursiveMerge = a: b:
    a // builtins.mapAttrs
      (name: value:
        if isAttrs value && isAttrs (a.${name} or null) then recursiveMerge a.${name} value else value)
      b;

  isCommit = s: isString s && (match "[0-9a-f]{40}|[0-9a-f]{64}" s) != null;

  # Commits are kept lowercase, as kernels does (`builtins` has no toLower:
  # only hex digits matter here).
  lowerHex = builtins.replaceStrings
    [ "A" "B" "C" "D" "E" "F" ] [ "a" "b" "c" "d" "e" "f" ];

  optional = rev: name: if rev ? ${name} && rev.${name} != null then { ${name} = rev.${name}; } else { };

  # The git state of a revision: `commit` (or kernel-builder's legacy `sha`)
  # and `dirty`, together or not at all; null when neither is given.
  git = what: rev:
    let
      commit = rev.commit or rev.sha or null;
      dirty = rev.dirty or null;
    in
    if commit == null && dirty == null then null
    else if commit == null || dirty == null then
      throw "drvmeta: ${what} provenance needs `commit` (or `sha`) and `dirty` together (got ${builtins.toJSON rev})"
    else if !(isCommit (lowerHex commit)) then
      throw "drvmeta: ${what} commit must be a full SHA-1 or SHA-256 id, got ${builtins.toJSON commit}"
    else if !(builtins.isBool dirty) then
      throw "drvmeta: ${what} dirty must be a boolean"
    else
      { commit = lowerHex commit; inherit dirty; };

  # The kernel's revision, in kernels' metadata.json vocabulary: git state
  # required; never defaulted.
  kernelRevision = rev:
    let g = if isAttrs rev then git "kernel" rev else null; in
    if g == null then
      throw "drvmeta: kernel provenance needs `commit` (or `sha`) and `dirty` (got ${builtins.toJSON rev})"
    else g // optional rev "source";

  # kernel-builder's revision: `version` required (kernels requires it), git
  # state optional (a builder used from a non-git source has none).
  builderRevision = rev:
    if !(isAttrs rev && rev ? version && isString rev.version) then
      throw "drvmeta: kernel-builder provenance needs `version` (got ${builtins.toJSON rev})"
    else
      let g = git "kernel-builder" rev; in
      { inherit (rev) version; } // (if g == null then { } else g) // optional rev "source";
in
rec {
  /* The revision of a flake's source, the kernels way:
     `self.rev` → { commit; dirty = false; },
     `self.dirtyRev` → { commit = dirtyRev minus "-dirty"; dirty = true; },
     anything else (a path, no git) → null. Never a made-up default. */
  flakeProvenance = self:
    if self ? rev && isString self.rev then
      { commit = self.rev; dirty = false; }
    else if self ? dirtyRev && isString self.dirtyRev then
      let m = match "(.*)-dirty" self.dirtyRev; in
      { commit = if m == null then self.dirtyRev else builtins.head m; dirty = true; }
    else
      null;

  /* Opt `attrs` (derivation arguments) in to hash modulo meta: structured
     attrs on, `meta` merged into `__meta`, "derivation-meta" added to
     `requiredSystemFeatures` (sorted, without duplicates, as a
     derivation-meta Nix requires). */
  withMeta = meta: attrs:
    attrs // {
      __structuredAttrs = true;
      __meta = recursiveMerge (attrs.__meta or { }) meta;
      requiredSystemFeatures =
        sort lessThan (unique ((attrs.requiredSystemFeatures or [ ]) ++ [ "derivation-meta" ]));
    };

  /* `withMeta` with `__meta.provenance` in the kernels vocabulary:
     `kernel` is { commit; dirty; source?; } (or kernel-builder's own Nix's
     { sha; dirty; }), `builder` is { version; commit?; dirty?; } (commit and
     dirty together; `version` alone for a builder not from git) (e.g.
     from `flakeProvenance self`) or null to leave them out. */
  withProvenance = { kernel ? null, builder ? null }: attrs:
    withMeta
      {
        provenance =
          (if kernel == null then { } else { kernel = kernelRevision kernel; })
          // (if builder == null then { } else { kernel-builder = builderRevision builder; });
      }
      attrs;
}
