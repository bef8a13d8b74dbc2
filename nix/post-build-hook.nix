# Installing `drvmeta hook` as Nix's post-build-hook (NixOS module snippet).
#
# Import it from configuration.nix with the drvmeta package:
#
#   imports = [ (import ./nix/post-build-hook.nix { drvmeta = pkgs.drvmeta; }) ];
#
# Nix runs the hook after every build (not substitution) with DRV_PATH and
# OUT_PATHS set; drvmeta writes one in-toto/SLSA record per output into the
# records directory (laid out like a binary cache: serve or sync it as is)
# and fails the Nix command if it cannot (remove --best-effort's absence to
# keep going instead). The full NixOS module with options is nix/module.nix
# (issue 6); this snippet is the minimal wiring.
{ drvmeta
, recordsDir ? "/nix/var/drvmeta/records"
, signingKeyFile ? null
, builderId ? null
, bestEffort ? false
}:
{ pkgs, lib, ... }:
let
  hook = pkgs.writeShellScript "drvmeta-post-build-hook" ''
    exec ${drvmeta}/bin/drvmeta hook \
      --records ${lib.escapeShellArg recordsDir} \
      ${lib.optionalString (signingKeyFile != null) "--signing-key ${lib.escapeShellArg signingKeyFile}"} \
      ${lib.optionalString (builderId != null && signingKeyFile == null) "--builder-id ${lib.escapeShellArg builderId}"} \
      ${lib.optionalString bestEffort "--best-effort"}
  '';
in
{
  nix.settings = {
    post-build-hook = "${hook}";
    # Opted-in derivations require this feature; a stock Nix builds them
    # (hashing __meta classically) once the machine declares it.
    extra-system-features = [ "derivation-meta" ];
  };
  systemd.tmpfiles.rules = [ "d ${recordsDir} 0755 root root -" ];
}
