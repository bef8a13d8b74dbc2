//! The `drvmeta` command line.

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;

/// mimalloc's `mi_option_purge_delay` (the enum value in mimalloc 2's
/// `mimalloc.h`; libmimalloc-sys exports no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> ExitCode {
    // Return freed memory to the OS at once instead of after 10 ms: loading
    // a closure parses every derivation and frees the result, and without
    // this the freed pages count in peak RSS (sbom of the 20k-derivation
    // bench closure: 145 -> ~120 MB, same time).
    // SAFETY: sets a global option before any other thread exists; the call
    // takes plain integers.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    cli::main()
}
