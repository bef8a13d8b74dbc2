# drvmeta, built from this checkout with the committed Cargo.lock, with
# its shell completions and man pages. `rev`: the git commit `drvmeta
# --version` names (the flake passes self.rev or self.dirtyRev).
{ lib, rustPlatform, installShellFiles, stdenv, rev ? null }:
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
  env = lib.optionalAttrs (rev != null) { DRVMETA_GIT_COMMIT = rev; };
  nativeBuildInputs = [ installShellFiles ];
  postInstall = lib.optionalString (stdenv.buildPlatform.canExecute stdenv.hostPlatform) ''
    installShellCompletion --cmd drvmeta \
      --bash <($out/bin/drvmeta completions bash) \
      --zsh <($out/bin/drvmeta completions zsh) \
      --fish <($out/bin/drvmeta completions fish)
    $out/bin/drvmeta man --dir man
    installManPage man/*.1
  '';
  # The test suite needs a writable Nix store, real Nix and the shared
  # conformance vectors: it runs in CI (.ci/run), not in the sandbox.
  doCheck = false;
  meta = {
    description = cargo.package.description;
    license = lib.licenses.asl20;
    mainProgram = "drvmeta";
  };
}
