//! Records the git commit the binary is built from, and whether the tree
//! was dirty, for `drvmeta --version` (the `built` crate). A build outside
//! a git checkout (the Nix package) can pass the commit in
//! `DRVMETA_GIT_COMMIT` (the flake passes `self.rev` or `self.dirtyRev`).

fn main() {
    built::write_built_file().expect("cannot write the build information");
    // Rebuild the information when HEAD moves or the tree changes.
    for path in [
        ".git/HEAD",
        ".git/index",
        ".git/refs",
        "src",
        "Cargo.toml",
        "build.rs",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-env-changed=DRVMETA_GIT_COMMIT");
}
