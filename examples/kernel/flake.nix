# Real use from a kernel repository's flake: the kernel revision comes from
# the flake's own `self` (clean: self.rev; dirty: self.dirtyRev), so every
# commit is recorded — and, modulo meta, never rebuilds.
{
  inputs.drvmeta.url = "github:drvmeta/drvmeta";

  outputs = { self, drvmeta }: {
    packages.x86_64-linux.default = import ./default.nix {
      drvmetaLib = drvmeta.lib;
      kernel = drvmeta.lib.flakeProvenance self;   # null outside git: left out, never made up
      builder = { commit = "89abcdef0123456789abcdef0123456789abcdef"; dirty = false; version = "0.17.0"; };
    };
  };
}
