//! The ATerm parser: one pass over the bytes, strings kept as raw spans.

use super::error::{ParseError, ParseErrorKind as Kind};
use super::hash::fixed_output_path;
use super::store_path::{StoreDir, StorePath, validate_name};
use super::{Derivation, InputDerivation, InputNode, OutputEntry, OutputKind, Span, write};

/// Dynamic-derivation nesting Nix could write is a handful of levels; more
/// is hostile input.
const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

type Result<T> = std::result::Result<T, ParseError>;

impl<'a> Parser<'a> {
    fn error(&self, offset: usize, kind: Kind) -> ParseError {
        ParseError { offset, kind }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn expect(&mut self, literal: &[u8], what: &'static str) -> Result<()> {
        if self.bytes[self.pos..].starts_with(literal) {
            self.pos += literal.len();
            Ok(())
        } else if self.pos + literal.len() > self.bytes.len()
            && literal.starts_with(&self.bytes[self.pos..])
        {
            Err(self.error(self.bytes.len(), Kind::Eof(what)))
        } else {
            Err(self.error(self.pos, Kind::Expected(what)))
        }
    }

    /// `true` and consume `]` at the end of a list, consume `,` between
    /// items, or fail.
    fn list_end(&mut self, first: bool) -> Result<bool> {
        match self.peek() {
            Some(b']') => {
                self.pos += 1;
                Ok(true)
            }
            Some(b',') if !first => {
                self.pos += 1;
                Ok(false)
            }
            _ if first => Ok(false),
            None => Err(self.error(self.pos, Kind::Eof("',' or ']'"))),
            Some(_) => Err(self.error(self.pos, Kind::Expected("',' or ']'"))),
        }
    }

    /// A quoted string; escapes must be ones Nix writes.
    fn string(&mut self) -> Result<Span> {
        self.expect(b"\"", "'\"'")?;
        let start = self.pos;
        loop {
            let Some(i) = memchr::memchr2(b'"', b'\\', &self.bytes[self.pos..]) else {
                return Err(self.error(start - 1, Kind::Unterminated));
            };
            self.pos += i;
            if self.bytes[self.pos] == b'"' {
                let span = Span {
                    start: start as u32,
                    end: self.pos as u32,
                };
                self.pos += 1;
                return Ok(span);
            }
            match self.bytes.get(self.pos + 1) {
                Some(b'"' | b'\\' | b'n' | b'r' | b't') => self.pos += 2,
                Some(&other) => {
                    return Err(self.error(self.pos, Kind::BadEscape(char::from(other))));
                }
                None => return Err(self.error(start - 1, Kind::Unterminated)),
            }
        }
    }

    /// A string Nix prints without escaping: no backslash allowed.
    fn unquoted(&mut self, field: &'static str) -> Result<Span> {
        let at = self.pos;
        let span = self.string()?;
        if span.get(self.bytes).contains(&b'\\') {
            return Err(self.error(at, Kind::EscapeInUnquoted(field)));
        }
        Ok(span)
    }

    fn store_path(&mut self, store_dir: &StoreDir, field: &'static str) -> Result<StorePath> {
        let at = self.pos;
        let span = self.unquoted(field)?;
        store_dir
            .parse_path(span.get(self.bytes))
            .map_err(|source| self.error(at + 1, Kind::StorePath { field, source }))
    }

    fn output_name(&mut self) -> Result<Span> {
        let at = self.pos;
        let span = self.unquoted("an output name")?;
        let name = span.get(self.bytes);
        validate_name(name).map_err(|error| {
            let reason = match error {
                super::StorePathError::BadName { reason, .. } => reason,
                other => other.to_string(),
            };
            self.error(
                at + 1,
                Kind::BadOutputName {
                    name: String::from_utf8_lossy(name).into_owned(),
                    reason,
                },
            )
        })?;
        Ok(span)
    }

    fn string_list(&mut self, mut item: impl FnMut(&mut Self) -> Result<()>) -> Result<()> {
        self.expect(b"[", "'['")?;
        let mut first = true;
        while !self.list_end(first)? {
            item(self)?;
            first = false;
        }
        Ok(())
    }

    fn output_names(&mut self, canonical: &mut bool) -> Result<Vec<String>> {
        let mut names: Vec<String> = Vec::new();
        self.string_list(|p| {
            let span = p.output_name()?;
            names.push(
                std::str::from_utf8(span.get(p.bytes))
                    .expect("validated names are ASCII")
                    .to_owned(),
            );
            Ok(())
        })?;
        if !names.windows(2).all(|w| w[0] < w[1]) {
            *canonical = false;
            names.sort();
            names.dedup();
        }
        Ok(names)
    }

    fn input_node(
        &mut self,
        dynamic: bool,
        depth: usize,
        canonical: &mut bool,
    ) -> Result<InputNode> {
        if depth > MAX_DEPTH {
            return Err(self.error(self.pos, Kind::TooDeep(MAX_DEPTH)));
        }
        if !dynamic || self.peek() == Some(b'[') {
            return Ok(InputNode {
                outputs: self.output_names(canonical)?,
                dynamic: Vec::new(),
            });
        }
        self.expect(b"(", "'[' or '('")?;
        let outputs = self.output_names(canonical)?;
        self.expect(b",", "','")?;
        let mut children: Vec<(String, InputNode)> = Vec::new();
        self.string_list(|p| {
            p.expect(b"(", "'('")?;
            let name = p.output_name()?;
            let name = String::from_utf8_lossy(name.get(p.bytes)).into_owned();
            p.expect(b",", "','")?;
            let node = p.input_node(dynamic, depth + 1, canonical)?;
            p.expect(b")", "')'")?;
            children.push((name, node));
            Ok(())
        })?;
        self.expect(b")", "')'")?;
        if !children.windows(2).all(|w| w[0].0 < w[1].0) {
            *canonical = false;
            // Nix's map keeps the last entry of a repeated key.
            children.reverse();
            children.sort_by(|a, b| a.0.cmp(&b.0));
            children.dedup_by(|a, b| a.0 == b.0);
        }
        Ok(InputNode {
            outputs,
            dynamic: children,
        })
    }
}

/// The lists of a derivation as they are read: kept per thread, so that
/// each finished list is allocated once, at its exact length, instead of
/// growing by doubling and shrinking again.
#[derive(Default)]
struct Scratch {
    outputs: Vec<OutputEntry>,
    input_drvs: Vec<InputDerivation>,
    input_srcs: Vec<StorePath>,
    args: Vec<Span>,
    env: Vec<(Span, Span)>,
    /// The unescaped `__json`, for its check.
    json: Vec<u8>,
}

thread_local! {
    static SCRATCH: std::cell::Cell<Scratch> = std::cell::Cell::new(Scratch::default());
}

/// The items of `scratch`, moved into a vector of their exact length.
fn exact<T>(scratch: &mut Vec<T>) -> Vec<T> {
    let mut out = Vec::with_capacity(scratch.len());
    out.append(scratch);
    out
}

pub(super) fn parse(bytes: Vec<u8>, name: &str, store_dir: &StoreDir) -> Result<Derivation> {
    let mut scratch = SCRATCH.take();
    let parsed = parse_with(bytes, name, store_dir, &mut scratch);
    SCRATCH.set(scratch);
    parsed
}

fn parse_with(
    bytes: Vec<u8>,
    name: &str,
    store_dir: &StoreDir,
    scratch: &mut Scratch,
) -> Result<Derivation> {
    if u32::try_from(bytes.len()).is_err() {
        return Err(ParseError {
            offset: 0,
            kind: Kind::TooLarge,
        });
    }
    let mut canonical = true;
    let mut p = Parser {
        bytes: &bytes,
        pos: 0,
    };
    let version = if p.bytes.starts_with(b"DrvWithVersion(") {
        p.pos = "DrvWithVersion(".len();
        let at = p.pos;
        let span = p.unquoted("the version")?;
        if span.get(p.bytes) != b"xp-dyn-drv" {
            return Err(p.error(
                at,
                Kind::UnknownVersion(String::from_utf8_lossy(span.get(p.bytes)).into_owned()),
            ));
        }
        p.expect(b",", "','")?;
        Some(span)
    } else {
        p.expect(b"Derive(", "'Derive(' or 'DrvWithVersion('")?;
        None
    };

    // Outputs.
    let outputs = &mut scratch.outputs;
    outputs.clear();
    let outputs_start = p.pos;
    p.string_list(|p| {
        p.expect(b"(", "'('")?;
        let at = p.pos + 1;
        let out_name = p.output_name()?;
        p.expect(b",", "','")?;
        let path_at = p.pos + 1;
        let path = p.unquoted("an output path")?;
        p.expect(b",", "','")?;
        let algo = p.unquoted("a hash algorithm")?;
        p.expect(b",", "','")?;
        let hash = p.unquoted("a hash")?;
        p.expect(b")", "')'")?;
        let text = |span: Span| {
            std::str::from_utf8(span.get(p.bytes)).map_err(|_| {
                p.error(
                    span.start as usize,
                    Kind::BadOutput {
                        output: String::from_utf8_lossy(out_name.get(p.bytes)).into_owned(),
                        reason: "a field is not UTF-8".to_owned(),
                    },
                )
            })
        };
        let out = text(out_name)?;
        let kind = output_kind(
            store_dir,
            name,
            out,
            path.get(p.bytes),
            text(algo)?,
            text(hash)?,
        )
        .map_err(|(reason, on_path)| {
            p.error(
                if on_path { path_at } else { at },
                Kind::BadOutput {
                    output: out.to_owned(),
                    reason,
                },
            )
        })?;
        outputs.push(OutputEntry {
            name: out_name,
            path,
            algo,
            hash,
            kind,
        });
        Ok(())
    })?;
    let outputs_list = Span {
        start: outputs_start as u32,
        end: p.pos as u32,
    };
    let output_name = |e: &OutputEntry| e.name.get(&bytes);
    if !outputs
        .windows(2)
        .all(|w| output_name(&w[0]) < output_name(&w[1]))
    {
        canonical = false;
        // Nix's `emplace` keeps the first output of a repeated name.
        outputs.sort_by(|a, b| output_name(a).cmp(output_name(b)));
        outputs.dedup_by(|a, b| output_name(a) == output_name(b));
    }

    // Input derivations.
    p.expect(b",", "','")?;
    let input_drvs = &mut scratch.input_drvs;
    input_drvs.clear();
    let input_drvs_start = p.pos;
    p.string_list(|p| {
        p.expect(b"(", "'('")?;
        let at = p.pos + 1;
        let path = p.store_path(store_dir, "an input derivation")?;
        if !path.is_derivation() {
            return Err(p.error(at, Kind::InputNotDrv(path.to_absolute_path_in(store_dir))));
        }
        p.expect(b",", "','")?;
        let node = p.input_node(version.is_some(), 0, &mut canonical)?;
        if node.outputs.is_empty() && node.dynamic.is_empty() {
            return Err(p.error(
                at,
                Kind::NoOutputsRequested(path.to_absolute_path_in(store_dir)),
            ));
        }
        p.expect(b")", "')'")?;
        input_drvs.push(InputDerivation { path, node });
        Ok(())
    })?;
    let input_drvs_list = Span {
        start: input_drvs_start as u32,
        end: p.pos as u32,
    };
    if !input_drvs.windows(2).all(|w| w[0].path < w[1].path) {
        canonical = false;
        // Nix's `insert_or_assign` keeps the last entry of a repeated path.
        input_drvs.reverse();
        input_drvs.sort_by(|a, b| a.path.cmp(&b.path));
        input_drvs.dedup_by(|a, b| a.path == b.path);
    }

    // Input sources.
    p.expect(b",", "','")?;
    let input_srcs = &mut scratch.input_srcs;
    input_srcs.clear();
    p.string_list(|p| {
        input_srcs.push(p.store_path(store_dir, "an input source")?);
        Ok(())
    })?;
    if !input_srcs.windows(2).all(|w| w[0] < w[1]) {
        canonical = false;
        input_srcs.sort();
        input_srcs.dedup();
    }

    p.expect(b",", "','")?;
    let system = p.string()?;
    p.expect(b",", "','")?;
    let builder = p.string()?;
    p.expect(b",", "','")?;
    let args = &mut scratch.args;
    args.clear();
    p.string_list(|p| {
        args.push(p.string()?);
        Ok(())
    })?;
    p.expect(b",", "','")?;
    let env = &mut scratch.env;
    env.clear();
    let json = &mut scratch.json;
    p.string_list(|p| {
        p.expect(b"(", "'('")?;
        let key = p.string()?;
        p.expect(b",", "','")?;
        let value_at = p.pos + 1;
        let value = p.string()?;
        p.expect(b")", "')'")?;
        if key.get(p.bytes) == super::meta::JSON_KEY {
            json.clear();
            write::unescape_into(value.get(p.bytes), json);
            check_structured_attrs(json)
                .map_err(|reason| p.error(value_at, Kind::BadStructuredAttrs(reason)))?;
        }
        env.push((key, value));
        Ok(())
    })?;
    p.expect(b")", "')'")?;
    if p.pos != bytes.len() {
        return Err(p.error(p.pos, Kind::Trailing));
    }
    let key = |span: &Span| write::unescape(span.get(&bytes));
    // Keys are compared unescaped; without a backslash that is the raw text.
    let plain = !env
        .iter()
        .any(|(k, _)| memchr::memchr(b'\\', k.get(&bytes)).is_some());
    let sorted = if plain {
        env.windows(2)
            .all(|w| w[0].0.get(&bytes) < w[1].0.get(&bytes))
    } else {
        env.windows(2).all(|w| key(&w[0].0) < key(&w[1].0))
    };
    if !sorted {
        canonical = false;
        // Nix's `env[key] = value` keeps the last value of a repeated key.
        env.reverse();
        env.sort_by(|a, b| key(&a.0).cmp(&key(&b.0)));
        env.dedup_by(|a, b| key(&a.0) == key(&b.0));
    }
    if json.capacity() > 1 << 20 {
        // Do not keep a huge buffer for the rest of the run.
        *json = Vec::new();
    }
    // Exact lengths: a closure keeps (or a walk parks) thousands of these.
    Ok(Derivation {
        name: name.to_owned(),
        store_dir: store_dir.clone(),
        version,
        outputs_list,
        input_drvs_list,
        outputs: exact(outputs),
        input_drvs: exact(input_drvs),
        input_srcs: exact(input_srcs),
        system,
        builder,
        args: exact(args),
        env: exact(env),
        plain_env_keys: plain,
        canonical,
        bytes,
    })
}

/// Nix parses `__json` while reading a derivation: it must be a JSON
/// object. Checked without building values (and within `serde_json`'s
/// nesting limit, so hostile depth is an error, not a stack overflow).
fn check_structured_attrs(json: &[u8]) -> std::result::Result<(), String> {
    serde_json::from_slice::<serde::de::IgnoredAny>(json).map_err(|error| error.to_string())?;
    if json.iter().find(|c| !c.is_ascii_whitespace()) != Some(&b'{') {
        return Err("not an object".to_owned());
    }
    Ok(())
}

/// Decide an output's kind as Nix's `parseOutput` does. The error says
/// why, and whether it is about the path field.
fn output_kind(
    store_dir: &StoreDir,
    drv_name: &str,
    output: &str,
    path: &[u8],
    algo: &str,
    hash: &str,
) -> std::result::Result<OutputKind, (String, bool)> {
    let parse_path = || {
        store_dir
            .parse_path(path)
            .map_err(|error| (error.to_string(), true))
    };
    if algo.is_empty() {
        if !hash.is_empty() {
            return Err(("a hash without a hash algorithm".to_owned(), false));
        }
        return if path.is_empty() {
            Ok(OutputKind::Deferred)
        } else {
            Ok(OutputKind::InputAddressed(parse_path()?))
        };
    }
    super::hash::split_method_algo(algo).map_err(|reason| (reason, false))?;
    if hash == "impure" {
        if !path.is_empty() {
            return Err(("an impure output records a path".to_owned(), true));
        }
        return Ok(OutputKind::Impure);
    }
    if hash.is_empty() {
        if !path.is_empty() {
            return Err((
                "a floating content-addressed output records a path".to_owned(),
                true,
            ));
        }
        return Ok(OutputKind::Floating);
    }
    let recorded = parse_path()?;
    let expected = fixed_output_path(store_dir, drv_name, output, algo, hash)
        .map_err(|reason| (reason, false))?;
    if recorded != expected {
        return Err((
            format!(
                "records path {:?}, but its content address gives {:?}",
                String::from_utf8_lossy(path),
                expected.to_absolute_path_in(store_dir)
            ),
            true,
        ));
    }
    Ok(OutputKind::Fixed(recorded))
}
