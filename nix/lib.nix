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

  # A revision in the kernels metadata.json vocabulary; never defaulted.
  revision = what: rev:
    if !(isAttrs rev && rev ? commit && rev ? dirty) then
      throw "drvmeta: ${what} provenance needs `commit` and `dirty` (got ${builtins.toJSON rev})"
    else if !(isCommit rev.commit) then
      throw "drvmeta: ${what} commit must be a full lowercase SHA-1 or SHA-256 id, got ${builtins.toJSON rev.commit}"
    else if !(builtins.isBool rev.dirty) then
      throw "drvmeta: ${what} dirty must be a boolean"
    else
      { inherit (rev) commit dirty; }
      // (if rev ? version && rev.version != null then { inherit (rev) version; } else { })
      // (if rev ? source && rev.source != null then { inherit (rev) source; } else { });
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
     `kernel` and `builder` are { commit; dirty; source?; version?; } (e.g.
     from `flakeProvenance self`) or null to leave them out. */
  withProvenance = { kernel ? null, builder ? null }: attrs:
    withMeta
      {
        provenance =
          (if kernel == null then { } else { kernel = revision "kernel" kernel; })
          // (if builder == null then { } else { kernel-builder = revision "kernel-builder" builder; });
      }
      attrs;
}
