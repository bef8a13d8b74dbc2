{
  description = "drvmeta: Nix derivations hashed modulo meta, post-processed, with provenance and SBOMs";

  inputs.nixpkgs.url = "github:nixos/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
      forAllSystems = f: builtins.listToAttrs (map (system: { name = system; value = f system; }) systems);
      pkgsFor = system: import nixpkgs { inherit system; overlays = [ self.overlays.default ]; };
    in
    {
      # Pure Nix, no nixpkgs: evaluating it never fetches nixpkgs.
      lib = import ./nix/lib.nix;

      overlays.default = final: prev: {
        drvmeta = final.callPackage ./nix/package.nix {
          # `drvmeta --version` names the commit (the sandbox has no .git).
          rev = self.rev or self.dirtyRev or null;
        };
      };

      packages = forAllSystems (system: rec {
        drvmeta = (pkgsFor system).drvmeta;
        default = drvmeta;
      });

      nixosModules.default = { pkgs, lib, ... }: {
        imports = [ ./nix/module.nix ];
        services.drvmeta.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
      };

      devShells = forAllSystems (system:
        let pkgs = pkgsFor system; in {
          default = pkgs.mkShell {
            packages = [
              pkgs.cargo pkgs.rustc pkgs.clippy pkgs.rustfmt pkgs.nix
              pkgs.python3
            ];
          };
        });

      checks = forAllSystems (system:
        let
          pkgs = pkgsFor system;
          lib' = self.lib;
          provenance = lib'.flakeProvenance { dirtyRev = "0123456789abcdef0123456789abcdef01234567-dirty"; };
        in {
          package = self.packages.${system}.default;
          lib = assert provenance == { commit = "0123456789abcdef0123456789abcdef01234567"; dirty = true; };
            assert (lib'.withMeta { a = 1; } { requiredSystemFeatures = [ "kvm" "big-parallel" ]; }).requiredSystemFeatures
              == [ "big-parallel" "derivation-meta" "kvm" ];
            pkgs.runCommand "drvmeta-lib-checks" { } "touch $out";
        });
    };
}
