//! Hash modulo (Nix's `hashDerivationModulo`), classic and modulo meta,
//! computed by streaming the ATerm with its substitutions into SHA-256.
//!
//! - *Input form* (what dependents see): a fixed-output derivation gives
//!   `sha256("fixed:out:<method+algo>:<hex>:<path>")`; floating CA, impure,
//!   deferred derivations and those with a deferred input give no hash
//!   ([`InputHash::Deferred`]); otherwise the SHA-256 of the ATerm with
//!   every input derivation path replaced by its input-form hash (the
//!   requested outputs of inputs with equal hashes united).
//! - *Output form* (own output paths): the same ATerm with every output
//!   printed `("name","","","")` and every environment variable named like
//!   an output set to `""`.

use sha2::{Digest, Sha256};

use super::error::HashError;
use super::store_path::{StoreDir, StorePath, output_path_name};
use super::write::{Form, HashedInput, HashedOutputs, emit_canonical_form, write_aterm};
use super::{Derivation, OutputKind};

/// Output paths by output name, sorted by name, `None` where a path is not
/// known before building.
pub type OutputPaths = Vec<(String, Option<StorePath>)>;

/// A derivation's hash modulo in input form: what its dependents see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputHash {
    /// An input-addressed derivation's hash.
    Regular([u8; 32]),
    /// A fixed-output derivation's hash (of its content address and path).
    Fixed([u8; 32]),
    /// No hash before building (content-addressed, impure, or deferred).
    Deferred,
}

impl InputHash {
    /// The hash, `None` when deferred.
    #[must_use]
    pub fn value(&self) -> Option<&[u8; 32]> {
        match self {
            Self::Regular(hash) | Self::Fixed(hash) => Some(hash),
            Self::Deferred => None,
        }
    }
}

/// The hashes of one derivation under one scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashes {
    /// Output form: decides input-addressed output paths. `None` for
    /// fixed-output, floating CA and impure derivations, and while an input
    /// is deferred.
    pub output_hash: Option<[u8; 32]>,
    /// Input form: what dependents see.
    pub input_hash: InputHash,
    /// Output paths by output name (sorted).
    pub outputs: OutputPaths,
}

/// How to hash a derivation.
#[derive(Debug, Clone, Copy, Default)]
pub struct HashOptions<'a> {
    /// Raw (escaped) `__json` to hash instead of the written one (the
    /// meta-stripped text).
    pub json: Option<&'a [u8]>,
    /// Hash the input form with the outputs set to the computed paths (the
    /// meta-normal form) instead of the paths as written (classic).
    pub set_outputs: bool,
}

/// A content-address method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The file's bytes.
    Flat,
    /// The NAR serialisation (`r:`).
    Nar,
    /// Text (`text:`), as `.drv` files are.
    Text,
    /// Git's tree hashing (`git:`).
    Git,
}

impl Method {
    /// The name Nix's derivation JSON gives the method (`flat`, `nar`,
    /// `text`, `git`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Flat => "flat",
            Self::Nar => "nar",
            Self::Text => "text",
            Self::Git => "git",
        }
    }
}

/// Split a hash algorithm field (`r:sha256`, `sha1`, `text:sha256`,
/// `git:sha1`) into method and algorithm.
///
/// # Errors
/// An unknown algorithm.
pub fn split_method_algo(field: &str) -> Result<(Method, &str), String> {
    let (method, algo) = if let Some(rest) = field.strip_prefix("r:") {
        (Method::Nar, rest)
    } else if let Some(rest) = field.strip_prefix("text:") {
        (Method::Text, rest)
    } else if let Some(rest) = field.strip_prefix("git:") {
        (Method::Git, rest)
    } else {
        (Method::Flat, field)
    };
    if digest_len(algo).is_none() {
        return Err(format!(
            "unknown hash algorithm {algo:?} (md5, sha1, sha256, sha512, blake3)"
        ));
    }
    Ok((method, algo))
}

fn digest_len(algo: &str) -> Option<usize> {
    match algo {
        "md5" => Some(16),
        "sha1" => Some(20),
        "sha256" | "blake3" => Some(32),
        "sha512" => Some(64),
        _ => None,
    }
}

/// Decode lowercase hexadecimal, as Nix writes fixed-output hashes.
#[must_use]
pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// The path of fixed output `output` of derivation `drv_name` whose hash
/// algorithm field is `algo_field` and hash `hex_hash` (lowercase hex, as
/// Nix writes it).
///
/// # Errors
/// A message when the algorithm is unknown or the hash malformed.
pub fn fixed_output_path(
    store_dir: &StoreDir,
    drv_name: &str,
    output: &str,
    algo_field: &str,
    hex_hash: &str,
) -> Result<StorePath, String> {
    let (method, algo) = split_method_algo(algo_field)?;
    let digest = decode_hex(hex_hash)
        .filter(|d| Some(d.len()) == digest_len(algo))
        .ok_or_else(|| format!("hash {hex_hash:?} is not the lowercase hex of a {algo} digest"))?;
    let name = output_path_name(drv_name, output);
    let path = match method {
        Method::Nar if algo == "sha256" => {
            store_dir.make_store_path("source", algo, &digest, &name)
        }
        Method::Git => store_dir.make_store_path("source", algo, &digest, &name),
        Method::Text if algo == "sha256" => store_dir.make_store_path("text", algo, &digest, &name),
        Method::Text => return Err("text hashing needs sha256".to_owned()),
        Method::Flat | Method::Nar => {
            let prefix = if method == Method::Nar { "r:" } else { "" };
            let inner = Sha256::digest(format!("fixed:out:{prefix}{algo}:{hex_hash}:").as_bytes());
            store_dir.make_store_path("output:out", "sha256", &inner, &name)
        }
    };
    path.map_err(|error| error.to_string())
}

/// SHA-256 of `drv` printed in `form`. A canonical file (every file Nix
/// writes) is hashed from its own bytes, with only what `form` changes
/// printed ([`emit_canonical_form`]); any other is printed whole into a
/// buffer kept per thread and hashed in one call, which costs less than
/// feeding the hasher field by field.
fn hash_form(drv: &Derivation, form: &Form<'_>) -> [u8; 32] {
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUFFER.with(|buffer| {
        let mut buffer = buffer.borrow_mut();
        let digest = if drv.is_canonical() {
            let mut hasher = Sha256::new();
            emit_canonical_form(drv, form, &mut buffer, &mut |piece| hasher.update(piece));
            hasher.finalize().into()
        } else {
            buffer.clear();
            write_aterm(drv, &mut *buffer, form).expect("writing to memory cannot fail");
            Sha256::digest(buffer.as_slice()).into()
        };
        if buffer.capacity() > 1 << 24 {
            // Do not keep a huge buffer for the rest of the run.
            *buffer = Vec::new();
        }
        digest
    })
}

/// The kind all outputs share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    InputAddressed,
    Fixed,
    Floating,
    Impure,
}

fn kind(drv: &Derivation) -> Result<Kind, HashError> {
    let of = |o: &super::OutputEntry| match o.kind {
        OutputKind::InputAddressed(_) | OutputKind::Deferred => Kind::InputAddressed,
        OutputKind::Fixed(_) => Kind::Fixed,
        OutputKind::Floating => Kind::Floating,
        OutputKind::Impure => Kind::Impure,
    };
    let Some(first) = drv.outputs.first().map(of) else {
        return Err(HashError::MixedOutputs("no outputs".to_owned()));
    };
    if drv.outputs.iter().any(|o| of(o) != first) {
        let mut kinds: Vec<Kind> = drv.outputs.iter().map(of).collect();
        kinds.dedup();
        return Err(HashError::MixedOutputs(format!("{kinds:?}")));
    }
    if first == Kind::Fixed && (drv.outputs.len() != 1 || drv.output("out").is_none()) {
        return Err(HashError::FixedNotSingleOut);
    }
    Ok(first)
}

/// The input derivations of `drv` replaced by their input-form hashes,
/// requested outputs united, sorted by hash (hex order is byte order) — or
/// `None` when an input is deferred.
///
/// An input with dynamic outputs (`builtins.outputOf`): Nix master defers
/// the derivation (its outputs are written empty). Nix 2.34 writes an
/// input-addressed path, computed from the input's static outputs alone
/// (an input with none drops out) under the `DrvWithVersion` prefix; a file
/// whose outputs are all recorded is hashed that way.
fn hashed_inputs(
    drv: &Derivation,
    input: impl Fn(&StorePath) -> Option<InputHash>,
) -> Result<Option<Vec<HashedInput<'_>>>, HashError> {
    let store_dir = drv.store_dir();
    let written_by_2_34 = drv
        .outputs
        .iter()
        .all(|o| matches!(o.kind, OutputKind::InputAddressed(_)));
    let mut inputs: Vec<HashedInput<'_>> = Vec::with_capacity(drv.input_drvs.len());
    for input_drv in &drv.input_drvs {
        let render = || input_drv.path.to_absolute_path_in(store_dir);
        if !input_drv.node.dynamic.is_empty() {
            if !written_by_2_34 {
                return Ok(None);
            }
            if input_drv.node.outputs.is_empty() {
                continue;
            }
        }
        let (hash, fixed) =
            match input(&input_drv.path).ok_or_else(|| HashError::InputInvalid(render()))? {
                InputHash::Regular(hash) => (hash, false),
                InputHash::Fixed(hash) => (hash, true),
                InputHash::Deferred => return Ok(None),
            };
        let outputs = if fixed {
            // A fixed-output input stands for its content: one "out".
            if let Some(other) = input_drv.node.outputs.iter().find(|o| *o != "out") {
                return Err(HashError::NoSuchOutput {
                    input: render(),
                    output: other.clone(),
                });
            }
            HashedOutputs::Out
        } else {
            HashedOutputs::Node(&input_drv.node.outputs)
        };
        match inputs.iter_mut().find(|existing| existing.hash == hash) {
            Some(existing) => {
                let mut union = existing.outputs.to_vec();
                union.extend(outputs.to_vec());
                union.sort_unstable();
                union.dedup();
                existing.outputs = HashedOutputs::Union(union);
            }
            None => inputs.push(HashedInput { hash, outputs }),
        }
    }
    inputs.sort_unstable_by_key(|input| input.hash);
    Ok(Some(inputs))
}

/// Hash `drv`, given the input-form hashes of its input derivations
/// (`input` answers `None` for an input that is invalid).
///
/// # Errors
/// An invalid mix of outputs, an invalid input, a requested output an input
/// does not have, or a name that makes no valid store path.
pub fn hash_derivation(
    drv: &Derivation,
    options: HashOptions<'_>,
    input: impl Fn(&StorePath) -> Option<InputHash>,
) -> Result<Hashes, HashError> {
    let store_dir = drv.store_dir();
    let none = || -> OutputPaths { drv.outputs().map(|o| (o.name.to_owned(), None)).collect() };
    match kind(drv)? {
        Kind::Fixed => {
            let out = drv.output("out").expect("checked by kind()");
            let path = out.path().expect("fixed outputs record their path");
            let clear = format!(
                "fixed:out:{}:{}:{}",
                out.hash_algo,
                out.hash,
                path.to_absolute_path_in(store_dir)
            );
            return Ok(Hashes {
                output_hash: None,
                input_hash: InputHash::Fixed(Sha256::digest(clear.as_bytes()).into()),
                outputs: vec![("out".to_owned(), Some(path.clone()))],
            });
        }
        Kind::Floating | Kind::Impure => {
            return Ok(Hashes {
                output_hash: None,
                input_hash: InputHash::Deferred,
                outputs: none(),
            });
        }
        Kind::InputAddressed => {}
    }

    let Some(inputs) = hashed_inputs(drv, &input)? else {
        return Ok(Hashes {
            output_hash: None,
            input_hash: InputHash::Deferred,
            outputs: none(),
        });
    };

    let masked = hash_form(
        drv,
        &Form {
            mask_outputs: true,
            inputs: Some(&inputs),
            json: options.json,
            outputs: None,
        },
    );
    let outputs: OutputPaths = drv
        .outputs()
        .map(|o| {
            store_dir
                .make_output_path(&masked, o.name, drv.name())
                .map(|path| (o.name.to_owned(), Some(path)))
        })
        .collect::<Result<_, _>>()?;
    let all_recorded = drv
        .outputs
        .iter()
        .all(|o| matches!(o.kind, OutputKind::InputAddressed(_)));
    let input_hash = if options.set_outputs || all_recorded {
        InputHash::Regular(hash_form(
            drv,
            &Form {
                mask_outputs: false,
                inputs: Some(&inputs),
                json: options.json,
                outputs: options.set_outputs.then_some(outputs.as_slice()),
            },
        ))
    } else {
        InputHash::Deferred
    };
    Ok(Hashes {
        output_hash: Some(masked),
        input_hash,
        outputs,
    })
}

/// The masked intermediate ATerm Nix hashes for output paths (what Nix's
/// `*-modulo.drv` test vectors hold), given the inputs' hashes; `None` when
/// an input is deferred.
///
/// # Errors
/// As [`hash_derivation`].
pub fn masked_aterm(
    drv: &Derivation,
    input: impl Fn(&StorePath) -> Option<InputHash>,
) -> Result<Option<Vec<u8>>, HashError> {
    let Some(inputs) = hashed_inputs(drv, input)? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    write_aterm(
        drv,
        &mut out,
        &Form {
            mask_outputs: true,
            inputs: Some(&inputs),
            ..Form::default()
        },
    )
    .expect("writing to memory cannot fail");
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use super::*;

    /// Hash every `.drv` below `dir` classically (inputs first) and check
    /// what Nix recorded: outputs and the file's own path.
    fn check_dir(dir: &Path) -> usize {
        let store_dir = StoreDir::default();
        let mut drvs: HashMap<StorePath, Derivation> = HashMap::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let file = entry.unwrap().path();
            let base = file.file_name().unwrap().to_str().unwrap().to_owned();
            if !base.ends_with(".drv") {
                continue;
            }
            let path = StorePath::from_basename(base.as_bytes()).unwrap();
            let name = path.name().strip_suffix(".drv").unwrap().to_owned();
            let drv = Derivation::parse(std::fs::read(&file).unwrap(), &name, &store_dir).unwrap();
            assert!(drv.is_canonical());
            assert_eq!(drv.to_aterm_bytes(), drv.bytes());
            assert!(drv.bytes_match_path(&path), "{base}");
            drvs.insert(path, drv);
        }
        fn hash(
            path: &StorePath,
            drvs: &HashMap<StorePath, Derivation>,
            memo: &mut HashMap<StorePath, InputHash>,
        ) -> InputHash {
            if let Some(h) = memo.get(path) {
                return *h;
            }
            let drv = &drvs[path];
            for input in drv.input_derivations() {
                hash(&input.path, drvs, memo);
            }
            let hashes =
                hash_derivation(drv, HashOptions::default(), |p| memo.get(p).copied()).unwrap();
            let recorded: OutputPaths = drv
                .outputs()
                .map(|o| (o.name.to_owned(), o.path().cloned()))
                .collect();
            assert_eq!(hashes.outputs, recorded, "{path:?}");
            memo.insert(path.clone(), hashes.input_hash);
            hashes.input_hash
        }
        let mut memo = HashMap::new();
        for path in drvs.keys() {
            hash(path, &drvs, &mut memo);
        }
        drvs.len()
    }

    #[test]
    fn fixtures_hash_to_what_nix_recorded() {
        assert_eq!(check_dir(Path::new("fixtures/kernel/drvs")), 5);
        assert_eq!(check_dir(Path::new("fixtures/kernel/drvs-nometa")), 5);
        // Nix 2.34.8: a `builtins.outputOf` input, the dependent written
        // input-addressed (fixtures/dynamic/outputof.nix).
        assert_eq!(check_dir(Path::new("fixtures/dynamic")), 2);
    }
}
