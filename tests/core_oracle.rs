//! The derivation core against its oracles:
//!
//! - `nix-derivation` (a dev-dependency, never a runtime one), on every
//!   `.drv` that Nix 2.8 and modern Nix write for the generators' corpora:
//!   the same fields, drv path and ATerm, and the same hash modulo wherever
//!   the crate is right (its re-print of the structured attributes equals
//!   the text Nix wrote — not so for Nix 2.8's six-digit floats — and no
//!   two inputs share a hash, which the crate does not unite);
//! - a property test on random ATerms: print(parse(x)) = x for every
//!   canonical x, and parsing any mutation of it never panics; what parses
//!   prints to something that parses to the same derivation.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use drvmeta::closure::Closure;
use drvmeta::derivation::{Derivation, InputHash, StoreDir};
use sha2::Digest;
use support::NixVersion;
use support::generator::{Options, Rng, generate};

#[derive(Default, Debug)]
struct Counts {
    derivations: usize,
    hashes_compared: usize,
    crate_wrong_json: usize,
}

fn compare_closure(closure: &Closure, counts: &mut Counts, context: &str) {
    let hashes = drvmeta::hashing::hash_closure(closure);
    let ours: HashMap<String, InputHash> = closure
        .nodes()
        .iter()
        .zip(&hashes)
        .map(|(node, h)| {
            (
                closure.render(&node.path),
                h.classic.as_ref().unwrap().input_hash,
            )
        })
        .collect();
    for (node, node_hashes) in closure.nodes().iter().zip(&hashes) {
        let path = closure.render(&node.path);
        let context = format!("{context}: {path}");
        let drv = node.derivation().unwrap();
        let bytes = std::fs::read(&node.file).unwrap();
        // Whatever Nix wrote prints back byte for byte.
        assert!(drv.is_canonical(), "{context}: not canonical");
        assert!(
            drv.to_aterm_bytes() == bytes,
            "{context}: print(parse(bytes)) != bytes"
        );
        let oracle = nix_derivation::Derivation::from_aterm_bytes_in(
            &bytes,
            drv.name(),
            nix_derivation::StoreDir::default(),
        )
        .unwrap_or_else(|error| panic!("{context}: the oracle cannot parse it: {error}"));
        counts.derivations += 1;

        // Fields.
        let outputs: BTreeMap<String, Option<String>> = drv
            .outputs()
            .map(|o| (o.name.to_owned(), o.path().map(|p| closure.render(p))))
            .collect();
        let oracle_outputs: BTreeMap<String, Option<String>> = oracle
            .outputs()
            .iter()
            .map(|(name, o)| {
                let path = o
                    .path_in(&nix_derivation::StoreDir::default(), oracle.name(), name)
                    .unwrap()
                    .map(|p| p.to_absolute_path());
                (name.clone(), path)
            })
            .collect();
        assert_eq!(outputs, oracle_outputs, "{context}: outputs");
        let inputs: BTreeMap<String, BTreeSet<String>> = drv
            .input_derivations()
            .iter()
            .map(|i| {
                (
                    closure.render(&i.path),
                    i.node.outputs.iter().cloned().collect(),
                )
            })
            .collect();
        let oracle_inputs: BTreeMap<String, BTreeSet<String>> = oracle
            .input_derivations()
            .iter()
            .map(|(p, i)| (p.to_absolute_path(), i.outputs().clone()))
            .collect();
        assert_eq!(inputs, oracle_inputs, "{context}: input derivations");
        let srcs: Vec<String> = drv
            .input_sources()
            .iter()
            .map(|p| closure.render(p))
            .collect();
        let oracle_srcs: Vec<String> = oracle
            .input_sources()
            .iter()
            .map(nix_derivation::StorePath::to_absolute_path)
            .collect();
        assert_eq!(srcs, oracle_srcs, "{context}: input sources");
        assert_eq!(
            *drv.system(),
            *oracle.system().as_bytes(),
            "{context}: system"
        );
        assert_eq!(
            *drv.builder(),
            *oracle.builder().as_bytes(),
            "{context}: builder"
        );
        let args: Vec<Vec<u8>> = drv.arguments().map(|a| a.into_owned()).collect();
        let oracle_args: Vec<Vec<u8>> = oracle
            .arguments()
            .iter()
            .map(|a| a.as_bytes().to_vec())
            .collect();
        assert_eq!(args, oracle_args, "{context}: args");
        let env: BTreeMap<Vec<u8>, Vec<u8>> = drv
            .environment()
            .filter(|(k, _)| **k != *b"__json")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let oracle_env: BTreeMap<Vec<u8>, Vec<u8>> = oracle
            .environment()
            .iter()
            .filter(|(k, _)| *k != "__json")
            .map(|(k, v)| (k.as_bytes().to_vec(), v.clone()))
            .collect();
        assert_eq!(env, oracle_env, "{context}: environment");
        assert_eq!(
            drv.structured_attrs().as_deref(),
            oracle.structured_attrs().map(|a| a.raw_json()),
            "{context}: the structured attributes' text"
        );

        // Printing and hashing, where the crate is right.
        let crate_right = oracle
            .structured_attrs()
            .is_none_or(|a| a.canonical_json() == a.raw_json());
        if !crate_right {
            counts.crate_wrong_json += 1;
            continue;
        }
        assert_eq!(
            drv.to_aterm_bytes(),
            oracle.to_aterm_bytes(),
            "{context}: ATerm"
        );
        let input_hashes: Vec<[u8; 32]> = drv
            .input_derivations()
            .iter()
            .filter_map(|i| ours[&closure.render(&i.path)].value().copied())
            .collect();
        let unique: BTreeSet<&[u8; 32]> = input_hashes.iter().collect();
        if unique.len() != input_hashes.len() {
            continue; // the crate keeps one of two inputs with one hash
        }
        let resolved = oracle.try_hash_input_derivation_modulo(|p: &nix_derivation::StorePath| {
            Ok::<_, String>(match ours[&p.to_absolute_path()] {
                InputHash::Regular(h) => nix_derivation::InputDerivationHash::regular(h),
                InputHash::Fixed(h) => nix_derivation::InputDerivationHash::fixed_output(h),
                InputHash::Deferred => nix_derivation::InputDerivationHash::Deferred,
            })
        });
        let theirs = match resolved.unwrap() {
            nix_derivation::InputDerivationHash::Regular(h)
            | nix_derivation::InputDerivationHash::FixedOutput(h) => Some(*h.as_bytes()),
            nix_derivation::InputDerivationHash::Deferred => None,
        };
        let classic = node_hashes.classic.as_ref().unwrap();
        assert_eq!(
            classic.input_hash.value().copied(),
            theirs,
            "{context}: hash modulo (input form)"
        );
        counts.hashes_compared += 1;
    }
}

#[test]
fn the_core_agrees_with_nix_derivation_on_both_nix_versions_corpora() {
    for version in NixVersion::BOTH {
        let mut counts = Counts::default();
        for (seed, options) in (0..support::seed_count(8))
            .map(|s| (6000 + s, Options::default()))
            .chain((0..support::seed_count(8)).map(|s| {
                (
                    7000 + s,
                    Options {
                        exotic: true,
                        ..Options::default()
                    },
                )
            }))
        {
            let generated = generate(seed, &options);
            let (a, b) = support::instantiate_twins_with(version, &generated);
            for roots in [a, b] {
                let closure = Closure::load(&version.load_options(), &roots).unwrap();
                compare_closure(
                    &closure,
                    &mut counts,
                    &format!("{} seed {seed}", version.label()),
                );
            }
        }
        eprintln!("{}: {counts:?}", version.label());
        assert!(counts.derivations >= 1000, "{counts:?}");
        assert!(counts.hashes_compared >= 500, "{counts:?}");
        if version == NixVersion::Old {
            // Nix 2.8's six-digit floats: the reason the core exists.
            assert!(counts.crate_wrong_json > 0, "{counts:?}");
        }
    }
}

// ------------------------------------------------------------ properties

const STRING_BYTES: &[u8] = b"ab-_.\"\\\n\r\t \x01\x7f\xc3\xa9\xff{}[],:()";

fn random_raw(rng: &mut Rng, max: usize) -> Vec<u8> {
    let len = rng.below(max + 1);
    let unescaped: Vec<u8> = (0..len)
        .map(|_| {
            if rng.chance(70) {
                b'a' + rng.below(26) as u8
            } else {
                *rng.pick(STRING_BYTES)
            }
        })
        .collect();
    drvmeta::derivation::escape(&unescaped).into_owned()
}

fn quoted(raw: &[u8]) -> Vec<u8> {
    let mut out = vec![b'"'];
    out.extend_from_slice(raw);
    out.push(b'"');
    out
}

fn random_name(rng: &mut Rng) -> String {
    const CHARS: &[u8] = b"abcxyz019+-._?=";
    let mut name = String::from(char::from(b'a' + rng.below(26) as u8));
    for _ in 0..rng.below(6) {
        name.push(char::from(*rng.pick(CHARS)));
    }
    name
}

fn random_path(rng: &mut Rng, suffix: &str) -> String {
    const NIX32: &[u8] = b"0123456789abcdfghijklmnpqrsvwxyz";
    let hash: String = (0..32).map(|_| char::from(*rng.pick(NIX32))).collect();
    format!("/nix/store/{hash}-{}{suffix}", random_name(rng))
}

fn list(items: Vec<Vec<u8>>) -> Vec<u8> {
    let mut out = vec![b'['];
    out.extend(items.join(&b","[..]));
    out.push(b']');
    out
}

/// A random canonical ATerm (sorted, unique keys; only Nix's escapes),
/// input-addressed or floating, possibly with dynamic inputs.
fn random_aterm(rng: &mut Rng) -> Vec<u8> {
    let dynamic = rng.chance(10);
    let mut outputs: BTreeSet<String> = (0..1 + rng.below(3)).map(|_| random_name(rng)).collect();
    outputs.insert("out".to_owned());
    let floating = rng.chance(20);
    let outputs = list(
        outputs
            .iter()
            .map(|name| {
                let fields = if floating {
                    format!("(\"{name}\",\"\",\"r:sha256\",\"\")")
                } else if rng.chance(50) {
                    format!("(\"{name}\",\"\",\"\",\"\")")
                } else {
                    format!("(\"{name}\",\"{}\",\"\",\"\")", random_path(rng, ""))
                };
                fields.into_bytes()
            })
            .collect(),
    );
    let mut inputs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for _ in 0..rng.below(4) {
        let names: BTreeSet<String> = (0..1 + rng.below(2)).map(|_| random_name(rng)).collect();
        let names = list(names.iter().map(|n| quoted(n.as_bytes())).collect());
        let node = if dynamic && rng.chance(50) {
            let mut out = b"(".to_vec();
            out.extend(names);
            out.extend(b",[(\"out\",[\"out\"])])");
            out
        } else {
            names
        };
        inputs.insert(random_path(rng, ".drv"), node);
    }
    let inputs = list(
        inputs
            .into_iter()
            .map(|(p, node)| {
                let mut out = format!("(\"{p}\",").into_bytes();
                out.extend(node);
                out.push(b')');
                out
            })
            .collect(),
    );
    let srcs: BTreeSet<String> = (0..rng.below(3)).map(|_| random_path(rng, "")).collect();
    let srcs = list(srcs.iter().map(|p| quoted(p.as_bytes())).collect());
    let args = list(
        (0..rng.below(3))
            .map(|_| quoted(&random_raw(rng, 12)))
            .collect(),
    );
    let mut env: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for _ in 0..rng.below(5) {
        let key_raw = random_raw(rng, 8);
        let key = drvmeta::derivation::unescape(&key_raw).into_owned();
        if key == b"__json" {
            continue;
        }
        env.insert(key, random_raw(rng, 16));
    }
    if rng.chance(30) {
        let json = if rng.chance(50) {
            r#"{"__meta":{"a":[1e+06,-0]},"requiredSystemFeatures":["derivation-meta"],"x":"\u00e9"}"#
        } else {
            r#"{"x":1.23457e+07,"y":[{"z":null}]}"#
        };
        env.insert(
            b"__json".to_vec(),
            drvmeta::derivation::escape(json.as_bytes()).into_owned(),
        );
    }
    let env = list(
        env.into_iter()
            .map(|(k, v)| {
                let mut out = b"(".to_vec();
                out.extend(quoted(&drvmeta::derivation::escape(&k)));
                out.push(b',');
                out.extend(quoted(&v));
                out.push(b')');
                out
            })
            .collect(),
    );
    let mut out = if dynamic {
        b"DrvWithVersion(\"xp-dyn-drv\",".to_vec()
    } else {
        b"Derive(".to_vec()
    };
    for (i, part) in [
        outputs,
        inputs,
        srcs,
        quoted(&random_raw(rng, 10)),
        quoted(&random_raw(rng, 10)),
        args,
        env,
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            out.push(b',');
        }
        out.extend(part);
    }
    out.push(b')');
    out
}

/// Everything observable of a parsed derivation, for equality.
fn observe(drv: &Derivation) -> String {
    format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        drv.outputs()
            .map(|o| (o.name, o.kind.clone(), o.hash_algo, o.hash))
            .collect::<Vec<_>>(),
        drv.input_derivations(),
        drv.input_sources(),
        drv.system(),
        drv.builder(),
        drv.arguments().collect::<Vec<_>>(),
        drv.environment().collect::<Vec<_>>(),
    )
}

#[test]
fn print_parse_round_trips_and_mutations_never_panic() {
    let iterations: u64 = std::env::var("DRVMETA_PROPTEST_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let store_dir = StoreDir::default();
    let mut rng = Rng::new(0xD2F);
    let (mut parsed_mutants, mut rejected_mutants) = (0u64, 0u64);
    let mut hashed_forms = 0u64;
    for i in 0..iterations {
        let bytes = random_aterm(&mut rng);
        let drv = Derivation::parse(bytes.clone(), "x", &store_dir)
            .unwrap_or_else(|e| panic!("iteration {i}: {e}\n{}", String::from_utf8_lossy(&bytes)));
        assert!(drv.is_canonical(), "iteration {i}");
        assert_eq!(drv.to_aterm_bytes(), bytes, "iteration {i}");
        let _ = drvmeta::derivation::meta::inspect(&drv);
        let _ = drvmeta::derivation::meta::stripped_json(&drv);
        let _ = drvmeta::show::derivation_json(&drv);
        // A canonical file's forms are hashed from its own bytes; the masked
        // form printed whole must hash the same.
        let hashes = hashes_of(&drv);
        if let (Ok(Some(printed)), Ok(Some(output_hash))) = (
            drvmeta::derivation::hash::masked_aterm(&drv, fake_input_hash),
            hashes.as_ref().map(|h| h.output_hash),
        ) {
            let digest: [u8; 32] = sha2::Sha256::digest(&printed).into();
            assert_eq!(digest, output_hash, "iteration {i}");
            hashed_forms += 1;
        }

        // A mutation: flip, insert or delete a few bytes.
        let mut mutant = bytes;
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(mutant.len());
            match rng.below(3) {
                0 => mutant[at] = *rng.pick(b"\"\\(),[]\nx-/"),
                1 => mutant.insert(at, *rng.pick(b"\"\\(),[]\nx-/")),
                _ => {
                    mutant.remove(at);
                }
            }
        }
        match Derivation::parse(mutant.clone(), "x", &store_dir) {
            Ok(parsed) => {
                parsed_mutants += 1;
                let printed = parsed.to_aterm_bytes();
                let reparsed =
                    Derivation::parse(printed.clone(), "x", &store_dir).unwrap_or_else(|e| {
                        panic!("iteration {i}: a printed derivation does not parse: {e}")
                    });
                assert!(reparsed.is_canonical(), "iteration {i}");
                assert_eq!(reparsed.to_aterm_bytes(), printed, "iteration {i}");
                assert_eq!(observe(&reparsed), observe(&parsed), "iteration {i}");
                // Printed (a mutant may be out of order) or hashed from its
                // own bytes (canonical): the same hashes.
                assert_eq!(hashes_of(&parsed), hashes_of(&reparsed), "iteration {i}");
            }
            Err(error) => {
                rejected_mutants += 1;
                assert!(error.offset <= mutant.len(), "iteration {i}: {error}");
            }
        }
    }
    eprintln!(
        "{iterations} round trips, {hashed_forms} masked forms hashed both ways; mutants: \
         {parsed_mutants} parsed, {rejected_mutants} rejected"
    );
    assert!(parsed_mutants > 0 && rejected_mutants > 0);
    assert!(hashed_forms > iterations / 4, "{hashed_forms}");
}

/// A stand-in input-form hash for any input derivation (its path hashed).
fn fake_input_hash(path: &drvmeta::derivation::StorePath) -> Option<InputHash> {
    Some(InputHash::Regular(
        sha2::Sha256::digest(path.to_basename().as_bytes()).into(),
    ))
}

/// The classic hashes of `drv` with [`fake_input_hash`] inputs, or the
/// error's message.
fn hashes_of(drv: &Derivation) -> Result<drvmeta::derivation::Hashes, String> {
    drvmeta::derivation::hash::hash_derivation(
        drv,
        drvmeta::derivation::hash::HashOptions::default(),
        fake_input_hash,
    )
    .map_err(|error| error.to_string())
}

#[test]
fn the_fuzz_finding_of_the_old_core_is_rejected() {
    // nix-derivation printed an output named `"` back as a broken ATerm.
    let error = Derivation::parse(
        br#"Derive([("\"","","","")],[],[],"","",[],[])"#.to_vec(),
        "x",
        &StoreDir::default(),
    )
    .unwrap_err();
    assert_eq!(error.offset, 9);
    assert!(error.to_string().contains("backslash"), "{error}");
}
