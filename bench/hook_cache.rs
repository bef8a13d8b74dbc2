//! The closure-dependent part of `drvmeta hook` on the benchmark closure's
//! root (20,000 derivations below it): hashing it with the persistent cache
//! empty (cold: the whole closure is read, hashed and cached) and full
//! (warm: only the root and its direct inputs are read). The rest of the
//! hook (two `nix-store` queries, writing the record) does not depend on
//! the closure; bench/provenance.sh times it end to end on a small output.
//!
//!   cargo bench --bench hook_cache -- ROOT.drv [RUNS]
use std::time::Instant;

use drvmeta::closure::LoadOptions;
use drvmeta::closure::cache::HashCache;
use drvmeta::hashing::roots_with_cache;

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let root = args
        .first()
        .expect("usage: hook_cache ROOT.drv [RUNS]")
        .clone();
    let runs: usize = args.get(1).map_or(7, |r| r.parse().unwrap());
    let options = LoadOptions::default();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mut cold, mut cold_cpu, mut warm, mut warm_cpu) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = HashCache::open(dir.path(), &options.store_dir);
        let (t, c) = (Instant::now(), cpu_seconds());
        roots_with_cache(&options, std::slice::from_ref(&root), Some(&mut cache)).unwrap();
        cold.push(t.elapsed().as_secs_f64());
        cold_cpu.push(cpu_seconds() - c);
        for _ in 0..3 {
            let mut cache = HashCache::open(dir.path(), &options.store_dir);
            let (t, c) = (Instant::now(), cpu_seconds());
            roots_with_cache(&options, std::slice::from_ref(&root), Some(&mut cache)).unwrap();
            warm.push(t.elapsed().as_secs_f64());
            warm_cpu.push(cpu_seconds() - c);
        }
    }
    println!("| hook's closure hashing, cache | median wall (s) | median CPU (s) |");
    println!("|---|---:|---:|");
    println!(
        "| cold (empty cache, whole closure) | {:.4} | {:.3} |",
        median(cold),
        median(cold_cpu)
    );
    println!(
        "| warm (root and direct inputs only) | {:.4} | {:.3} |",
        median(warm),
        median(warm_cpu)
    );
}
