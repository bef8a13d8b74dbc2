//! The hashing floor of `drvmeta hash -r` on the benchmark closure: every
//! `.drv` read as drvmeta reads it (`safe_read::read_regular`: open,
//! statx, read, close) and SHA-256'd five times over its length — the path
//! check plus up to four hash-modulo forms (classic and modulo meta,
//! output and input form; on this closure 3.9 forms per derivation, 77,916
//! for 20,000, counted with callgrind) — on all cores, nothing parsed,
//! rendered or kept. What `hash` costs beyond this is parsing, checking
//! `__json`, the walk and the report.
//!
//!   cargo run --release --example hash_floor -- bench/out/closure.txt
use rayon::prelude::*;
use sha2::{Digest, Sha256};

fn main() {
    let list = std::env::args()
        .nth(1)
        .expect("usage: hash_floor CLOSURE.txt (one .drv path per line)");
    let list = std::fs::read_to_string(&list).expect("the closure list");
    let files: Vec<&str> = list.lines().collect();
    let checksum = files
        .par_iter()
        .map(|file| {
            let bytes = drvmeta::safe_read::read_regular(
                std::path::Path::new(file),
                false,
                drvmeta::safe_read::DRV_LIMIT,
            )
            .expect("a readable .drv");
            // Five different messages, so that no pass can be skipped.
            (0..5u8).fold(0u8, |acc, pass| {
                let mut hasher = Sha256::new();
                hasher.update([pass]);
                hasher.update(&bytes);
                acc ^ hasher.finalize()[0]
            })
        })
        .reduce(|| 0, |a, b| a ^ b);
    println!("{} files, checksum {checksum}", files.len());
}
