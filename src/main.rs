//! The `drvmeta` command line.

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;

/// mimalloc's `mi_option_purge_delay` (the enum value in the `mimalloc.h`
/// of mimalloc 3, which libmimalloc-sys 0.1.49 builds by default, and of
/// mimalloc 2; libmimalloc-sys exports no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> ExitCode {
    cli::main(return_freed_memory_after)
}

/// Return freed memory to the OS after `milliseconds` instead of after a
/// second (the default purge delay of mimalloc 3). Commands that load a
/// closure and then walk it free memory all along, and the freed pages
/// count in their peak RSS (sbom of the 20k-derivation bench closure: 148
/// -> ~107 MB at 0 ms, same time). The walks timed against Nix, and sbom,
/// use 100 ms: at 0, re-faulting purged pages cost them 12-25% of their
/// time (docs/performance.md).
fn return_freed_memory_after(milliseconds: i64) {
    // SAFETY: sets a global option while only the main thread exists; the
    // call takes plain integers.
    unsafe {
        libmimalloc_sys::mi_option_set(
            MI_OPTION_PURGE_DELAY,
            std::os::raw::c_long::from(milliseconds),
        );
    };
}
