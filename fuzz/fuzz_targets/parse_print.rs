//! parse → print → parse is stable, and the meta functions never panic.
//!
//! Run with `cargo +nightly fuzz run parse_print` from the project root (on a
//! stable toolchain: `RUSTC_BOOTSTRAP=1 cargo fuzz run parse_print`)
//! (seed corpus: `fuzz/seed.sh` copies the fixtures and shared vectors).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nix_derivation::{Derivation, StoreDir};

fuzz_target!(|bytes: &[u8]| {
    let store_dir = StoreDir::default();
    let Ok(drv) = drvmeta::closure::parse_drv(bytes, "fuzz", &store_dir, Path::new("fuzz.drv")) else {
        return;
    };
    let printed = drv.to_aterm_bytes();
    let reparsed = Derivation::from_aterm_bytes(&printed, "fuzz")
        .expect("a printed derivation parses again");
    assert_eq!(reparsed, drv, "parse → print → parse changed the derivation");
    assert_eq!(reparsed.to_aterm_bytes(), printed, "printing is not stable");

    let info = drvmeta::meta::inspect(&drv);
    if let Some(stripped) = drvmeta::meta::stripped_attrs(&drv) {
        assert!(info.opt_in, "only opted-in derivations are stripped");
        assert!(stripped.get(drvmeta::meta::META_KEY).is_none());
    }
    let _ = drvmeta::show::derivation_json(&drv);
});
