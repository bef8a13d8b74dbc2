//! The least work `drvmeta hash` must ask of `nix-derivation`, timed on one
//! core: what any implementation built on the crate (as drvmeta must be)
//! spends at least, whatever it does around it.
//!
//! For every `.drv` of a closure, in dependency order, with the files
//! already in memory:
//!
//! 1. parse it once (`Derivation::from_aterm_bytes_in`),
//! 2. check its store path (`StoreDir::build_text_path`: drvPathMatches),
//! 3. the classic output-form and input-form hashes
//!    (`hash_output_path_modulo`, `hash_input_derivation_modulo`),
//! 4. the modulo-meta ones for a derivation with an opted-in derivation
//!    below it: its meta-normal form built with the inputs' hashes
//!    (`into_builder().build_with_input_hashes`, which hashes the output
//!    form to fill in the outputs), then its input-form and output-form
//!    hashes.
//!
//! Step 4 is done only for derivations that are opted in or have an
//! opted-in derivation below them (in the benchmark closure: 18,958 of
//! 20,000); the others' modulo-meta hashes are their classic ones. Reading
//! the files is timed separately (one thread, `std::fs::read`).
//!
//! ```text
//! cargo bench --bench crate_floor -- bench/out/closure.txt
//! ```
//!
//! `closure.txt` lists the `.drv` files, inputs before dependents (as
//! `nix-store --query --requisites` prints them; `bench/run.sh` writes it).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use nix_derivation::{Derivation, InputDerivationHash, OutputPathHash, StoreDir, StorePath};

fn main() {
    let list = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with('-'))
        .unwrap_or_else(|| "bench/out/closure.txt".to_owned());
    let files: Vec<String> = std::fs::read_to_string(&list)
        .unwrap_or_else(|error| panic!("{list}: {error} (run bench/run.sh first)"))
        .lines()
        .map(str::to_owned)
        .collect();
    let store_dir = StoreDir::default();

    let start = Instant::now();
    let bytes: Vec<Vec<u8>> = files
        .iter()
        .map(|file| std::fs::read(file).unwrap_or_else(|error| panic!("{file}: {error}")))
        .collect();
    let read = start.elapsed();

    let mut parse = Duration::ZERO;
    let mut write_and_hash = Duration::ZERO;
    let mut buffer = Vec::new();
    let mut text_path = Duration::ZERO;
    let mut classic = Duration::ZERO;
    let mut modulo = Duration::ZERO;
    let mut hashes: HashMap<StorePath, InputDerivationHash> = HashMap::new();
    // Whether meta changes a derivation's modulo-meta hash.
    let mut changed: HashMap<StorePath, bool> = HashMap::new();
    let mut normal_forms = 0;
    for (file, bytes) in files.iter().zip(&bytes) {
        let path = store_dir
            .parse_path(file.as_bytes())
            .unwrap_or_else(|error| panic!("{file}: {error}"));
        let name = path.name().strip_suffix(".drv").expect("a .drv file");

        let start = Instant::now();
        let drv = Derivation::from_aterm_bytes_in(bytes, name, store_dir.clone())
            .unwrap_or_else(|error| panic!("{file}: {error}"));
        parse += start.elapsed();

        let start = Instant::now();
        let references = drv.input_derivations().keys().chain(drv.input_sources());
        let computed = store_dir.build_text_path(path.name(), bytes, references);
        assert_eq!(computed.as_ref().ok(), Some(&path), "{file}");
        text_path += start.elapsed();

        let resolve = |input: &StorePath| -> InputDerivationHash {
            *hashes.get(input).unwrap_or_else(|| {
                panic!("{file}: input {input:?} not listed before it (not in dependency order)")
            })
        };
        let start = Instant::now();
        let output = drv.hash_output_path_modulo(resolve);
        let input = drv
            .hash_input_derivation_modulo(resolve)
            .unwrap_or_else(|error| panic!("{file}: {error}"));
        std::hint::black_box(output.ok());
        classic += start.elapsed();

        let meta_changes = drvmeta::meta::inspect(&drv).opt_in
            || drv.input_derivations().keys().any(|input| changed[input]);
        changed.insert(path.clone(), meta_changes);
        let start = Instant::now();
        if meta_changes && matches!(input, InputDerivationHash::Regular(_)) {
            normal_forms += 1;
            let normal = drv
                .into_builder()
                .build_with_input_hashes(resolve)
                .unwrap_or_else(|error| panic!("{file}: {error}"));
            let output = normal.hash_output_path_modulo(resolve);
            assert!(matches!(output, Ok(OutputPathHash::Ready(_))), "{file}");
            std::hint::black_box(normal.hash_input_derivation_modulo(resolve).ok());
            modulo += start.elapsed();

            // For comparison, not in the total: writing the ATerm into a
            // buffer and hashing that, which is what one of the crate's
            // hash-modulo calls amounts to, minus its fragment-by-fragment
            // hashing and its bookkeeping of the inputs.
            let start = Instant::now();
            buffer.clear();
            normal.write_aterm(&mut buffer).expect("writing to memory");
            std::hint::black_box(<sha2::Sha256 as sha2::Digest>::digest(&buffer));
            write_and_hash += start.elapsed();
        } else {
            modulo += start.elapsed();
        }

        hashes.insert(path, input);
    }

    let total = parse + text_path + classic + modulo;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let row = |what: &str, time: Duration| println!("| {what} | {:.3} |", time.as_secs_f64());
    println!(
        "{} derivations, {} bytes; nix-derivation's share of `drvmeta hash`, one core:",
        files.len(),
        bytes.iter().map(Vec::len).sum::<usize>()
    );
    println!();
    println!("| step | core-seconds |");
    println!("|---|---:|");
    row("read every file (one thread, not counted below)", read);
    row("parse once", parse);
    row("store path check (drvPathMatches)", text_path);
    row("classic output + input hash", classic);
    row(
        &format!("meta-normal form + its input + output hash ({normal_forms} derivations)"),
        modulo,
    );
    row("**total (crate work)**", total);
    println!(
        "| **lower bound on {cores} cores (total / {cores})** | {:.3} |",
        total.as_secs_f64() / cores as f64
    );
    row(
        "for comparison: write_aterm into a buffer + SHA-256 of it, once per \
         meta-normal form (the meta-normal-form row hashes each twice)",
        write_and_hash,
    );
}
