# A kernel-builder-shaped build carrying its provenance in __meta, without
# flakes and offline (builtins.derivation only). Build it with
#   nix-build examples/kernel --option sandbox false --option extra-system-features derivation-meta
# (the feature is what services.drvmeta declares on NixOS).
#
#   kernel   { commit; dirty; source?; } of the kernel source, or null
#            (flake.nix passes `drvmeta.lib.flakeProvenance self`)
#   builder  { commit; dirty; version?; } of kernel-builder, or null
{ kernel ? { commit = "0123456789abcdef0123456789abcdef01234567"; dirty = false; source = "git+https://huggingface.co/kernels-community/activation"; }
, builder ? { commit = "89abcdef0123456789abcdef0123456789abcdef"; dirty = false; version = "0.17.0"; }
, drvmetaLib ? import ../../nix/lib.nix
}:
let
  system = "x86_64-linux";
  # A build tool, not opted in (no meta).
  build2cmake = derivation {
    name = "build2cmake-0.17.0";
    inherit system;
    builder = "/bin/sh";
    args = [ "-c" "/bin/mkdir -p $out/bin; echo '#!/bin/sh' > $out/bin/build2cmake" ];
  };
  variant = "torch25-cxx11-cu124-x86_64-linux";
in
derivation (drvmetaLib.withProvenance { inherit kernel builder; } (drvmetaLib.withMeta
  {
    description = "Activation kernels (drvmeta example)";
    homepage = "https://huggingface.co/kernels-community/activation";
    license = "asl20";
  }
  {
    name = "activation-kernel-1.0.0";
    pname = "activation-kernel";
    version = "1.0.0";
    inherit system;
    builder = "/bin/bash";
    tools = build2cmake;
    args = [ "-euc" ''
      . ./.attrs.sh
      out=''${outputs[out]}
      v=$out/${variant}
      /bin/mkdir -p $v/activation
      echo 'def gelu(x): return x' > $v/activation/__init__.py
      echo 'binary kernel' > $v/activation/_activation.so
      # kernels' metadata.json (it loads in the kernels package): the
      # digests are those of the two files written above.
      echo '{"name":"activation","id":"activation-1.0.0","version":1,"license":"Apache-2.0","python-depends":[],"backend":{"type":"cuda"},"digest":{"algorithm":"sha256","files":{"activation/__init__.py":"/kqSkvPKXpE2ik7HghHeQaSf4oPMxFX1jxQ4oTg4vps=","activation/_activation.so":"F6ugBjTUFSOdCA9jWLxGjAilBOHtr8fyguqMLq/C4QM="}}}' > $v/metadata.json
    '' ];
  }))
