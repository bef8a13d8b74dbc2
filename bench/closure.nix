# The benchmark closure (DESIGN.md §7): a layered DAG of `layers × width`
# derivations, each with 2–3 inputs from the layers below, a third with
# structured attrs (every seventh of those opted in to derivation-meta), and
# ~1.5 KiB of padding so that the closure is about 40 MB of .drv files.
# The result is the top layer; every derivation is reachable from it.
{ layers ? 100, width ? 200 }:
let
  system = "x86_64-linux";
  mod = a: b: a - (a / b) * b;
  at = l: i: builtins.elemAt (builtins.elemAt drvs l) (mod i width);
  mk = l: i:
    let
      name = "bench-${toString l}-${toString i}";
      deps = if l == 0 then [ ] else
        [ (at (l - 1) i) (at (l - 1) (i + 1)) ]
        ++ (if l >= 2 && mod i 2 == 0 then [ (at (l - 2) (i * 7)) ] else [ ]);
      structured = mod i 3 == 0;
      optedIn = structured && mod i 7 == 0;
      padding = builtins.concatStringsSep " "
        (builtins.genList (k: "${name}-padding-${toString k}") 60);
      base = {
        inherit name system;
        builder = "/bin/sh";
        args = [ "-c" "echo ${builtins.concatStringsSep " " (map toString deps)} > $out" ];
        description = "benchmark derivation ${name} ${padding}";
        version = "1.${toString l}.${toString i}";
        inputs = deps;
      };
      structuredAttrs = {
        __structuredAttrs = true;
        settings = { level = l; index = i; ratio = 0.5; flags = [ "a" "b" "c" ]; };
      };
      meta = {
        __meta = {
          description = "derivation ${name}";
          license = "mit";
          provenance.kernel = { commit = builtins.hashString "sha1" name; dirty = false; };
        };
        requiredSystemFeatures = [ "derivation-meta" ];
      };
    in
    derivation (base
      // (if structured then structuredAttrs else { })
      // (if optedIn then meta else { }));
  drvs = builtins.genList (l: builtins.genList (i: mk l i) width) layers;
in
builtins.elemAt drvs (layers - 1)
