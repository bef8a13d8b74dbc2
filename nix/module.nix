# NixOS module: record provenance of every local build with drvmeta.
#
#   services.drvmeta = {
#     enable = true;
#     recordsDir = "/nix/var/drvmeta/records";   # served/synced like a binary cache
#     bestEffort = false;                         # fail the build command if a record cannot be written
#     builderId = "https://ci.example.org/builders/1";
#   };
#
# It installs `drvmeta hook` as Nix's post-build-hook and declares the
# `derivation-meta` system feature, so derivations opted in to hash modulo
# meta build on this (stock) Nix.
{ config, lib, pkgs, ... }:
let
  cfg = config.services.drvmeta;
  hook = pkgs.writeShellScript "drvmeta-post-build-hook" ''
    exec ${cfg.package}/bin/drvmeta hook \
      --records ${lib.escapeShellArg cfg.recordsDir} \
      ${lib.optionalString (cfg.builderId != null) "--builder-id ${lib.escapeShellArg cfg.builderId}"} \
      ${lib.optionalString cfg.bestEffort "--best-effort"}
  '';
in
{
  options.services.drvmeta = {
    enable = lib.mkEnableOption "provenance records for every Nix build (drvmeta post-build hook)";
    package = lib.mkOption {
      type = lib.types.package;
      default = pkgs.drvmeta;
      defaultText = lib.literalExpression "pkgs.drvmeta";
      description = "The drvmeta package (the flake's module sets it to the flake's package).";
    };
    recordsDir = lib.mkOption {
      type = lib.types.str;
      default = "/nix/var/drvmeta/records";
      description = "Where records go: <dir>/<output-hash>/<drv-hash>.intoto.json.";
    };
    bestEffort = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Warn instead of failing the Nix command when a record cannot be written.";
    };
    builderId = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      description = "runDetails.builder.id of the records (default: urn:drvmeta:builder:<hostname>).";
    };
  };

  config = lib.mkIf cfg.enable {
    environment.systemPackages = [ cfg.package ];
    nix.settings = {
      post-build-hook = "${hook}";
      extra-system-features = [ "derivation-meta" ];
    };
    systemd.tmpfiles.rules = [ "d ${cfg.recordsDir} 0755 root root -" ];
  };
}
