# NixOS module: record provenance of every local build with drvmeta.
#
#   services.drvmeta = {
#     enable = true;
#     recordsDir = "/nix/var/drvmeta/records";   # served/synced like a binary cache
#     bestEffort = false;                         # fail the build command if a record cannot be written
#     signingKeyFile = "/etc/nix/builder-1.sec"; # a Nix key: records become signed DSSE envelopes
#     builderId = "https://ci.example.org/builders/1"; # unsigned records only
#     pushTo = "https://records.example.org/";   # share records (docs/record-stores.md)
#     trustedKeys = [ "builder-1:…" ];           # whose records `provenance verify` counts
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
      ${lib.optionalString (cfg.signingKeyFile != null) "--signing-key ${lib.escapeShellArg cfg.signingKeyFile}"} \
      ${lib.optionalString (cfg.builderId != null && cfg.signingKeyFile == null) "--builder-id ${lib.escapeShellArg cfg.builderId}"} \
      ${lib.optionalString (cfg.pushTo != null) "--push-to ${lib.escapeShellArg cfg.pushTo}"} \
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
      description = "Where records go: <dir>/<output-hash>/<drv-hash>.<content>.dsse.json.";
    };
    bestEffort = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Warn instead of failing the Nix command when a record cannot be written.";
    };
    signingKeyFile = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      description = "A Nix secret key file (nix-store --generate-binary-cache-key) that signs the records; without one they are unsigned.";
    };
    builderId = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      description = "runDetails.builder.id of unsigned records (default: urn:drvmeta:builder:<hostname>); a signed record's is its key's.";
    };
    trustedKeys = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [ "builder-1:ZmFrZWtleWZha2VrZXlmYWtla2V5ZmFrZWtleWZha2U=" ];
      description = "Public keys (NAME:BASE64, as in trusted-public-keys) whose records provenance show/verify count, set system-wide as DRVMETA_TRUSTED_KEYS; empty: Nix's own trusted-public-keys.";
    };
    pushTo = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "https://records.example.org/";
      description = "A shared record store (http(s)://, file:// or a directory) each build's records are pushed to, in a detached background process so Nix's build loop never waits on the network; its log is recordsDir/.push.log.";
    };
  };

  config = lib.mkIf cfg.enable {
    environment.systemPackages = [ cfg.package ];
    environment.variables = lib.mkIf (cfg.trustedKeys != [ ]) {
      DRVMETA_TRUSTED_KEYS = lib.concatStringsSep " " cfg.trustedKeys;
    };
    nix.settings = {
      post-build-hook = "${hook}";
      extra-system-features = [ "derivation-meta" ];
    };
    systemd.tmpfiles.rules = [ "d ${cfg.recordsDir} 0755 root root -" ];
  };
}
