//! parse → print → parse is stable, and the meta and JSON functions never
//! panic, on drvmeta's own derivation core.
//!
//! Run with `cargo +nightly fuzz run parse_print` from the project root (on a
//! stable toolchain: `RUSTC_BOOTSTRAP=1 cargo fuzz run parse_print`)
//! (seed corpus: `fuzz/seed.sh` copies the fixtures and shared vectors).
//! `tests/core_oracle.rs` runs the same property on generated derivations
//! in CI.
#![no_main]

use drvmeta::derivation::{Derivation, StoreDir, meta};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let store_dir = StoreDir::default();
    let Ok(drv) = Derivation::parse(bytes.to_vec(), "fuzz", &store_dir) else {
        return;
    };
    let printed = drv.to_aterm_bytes();
    if drv.is_canonical() {
        assert_eq!(printed, bytes, "a canonical derivation prints as read");
    }
    let reparsed = Derivation::parse(printed.clone(), "fuzz", &store_dir)
        .expect("a printed derivation parses again");
    assert!(reparsed.is_canonical(), "printing gives a canonical derivation");
    assert_eq!(reparsed.to_aterm_bytes(), printed, "printing is not stable");

    let info = meta::inspect(&drv);
    if let Some(stripped) = meta::stripped_json(&drv) {
        assert!(info.opt_in, "only opted-in derivations are stripped");
        let again = Derivation::parse(
            drv.with_edits(None, Some(&drvmeta::derivation::escape(&stripped)))
                .expect("a stripped derivation parses")
                .into_bytes(),
            "fuzz",
            &store_dir,
        )
        .expect("a stripped derivation parses again");
        assert!(!meta::inspect(&again).opt_in, "stripping removes the opt-in");
    }
    let _ = drvmeta::show::derivation_json(&drv);
});
