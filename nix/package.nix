# drvmeta, built from this checkout with the committed Cargo.lock.
{ lib, rustPlatform }:
let
  cargo = builtins.fromTOML (builtins.readFile ../Cargo.toml);
in
rustPlatform.buildRustPackage {
  pname = "drvmeta";
  inherit (cargo.package) version;
  src = lib.cleanSourceWith {
    src = ../.;
    filter = path: type:
      let base = baseNameOf path; in
      !(builtins.elem base [ "target" "bench" "fuzz" ".ci" ]);
  };
  cargoLock.lockFile = ../Cargo.lock;
  # The test suite needs a writable Nix store, real Nix and the shared
  # conformance vectors: it runs in CI (.ci/run), not in the sandbox.
  doCheck = false;
  meta = {
    description = cargo.package.description;
    license = lib.licenses.asl20;
    mainProgram = "drvmeta";
  };
}
