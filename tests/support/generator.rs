//! A seeded generator of network-free Nix expressions for the twin method.
//!
//! `generate(seed, options)` writes one expression `{ withMeta ? true }: [ d0
//! d1 … ]`. Instantiated with `withMeta = true` some structured derivations
//! carry `__meta` and `"derivation-meta"` (closure **A**); with `false` they
//! do not (closure **B**). Everything else is the same in both twins,
//! including `__meta` attributes that are *not* opted in (they are ordinary,
//! hashed attributes). Shapes: plain and structured attrs, multi-output,
//! fixed-output (flat/recursive × sha1/sha256/sha512, some structured and
//! opted in), floating content-addressed with dependents, other system
//! features, input sources from `builtins.toFile`, unicode, escapes,
//! integers and floats.

use std::fmt::Write as _;

/// A small deterministic PRNG (`SplitMix64`): the same seed gives the same
/// expression on every machine and every version of the tests.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn hex(&mut self, chars: usize) -> String {
        (0..chars)
            .map(|_| char::from_digit(self.below(16) as u32, 16).unwrap())
            .collect()
    }
}

/// How a generated derivation's outputs are addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    InputAddressed,
    FixedOutput,
    FloatingCa,
}

/// What the generator decided for one derivation.
#[derive(Debug, Clone)]
pub struct DrvSpec {
    pub name: String,
    pub kind: Kind,
    pub structured: bool,
    pub outputs: Vec<String>,
    /// Carries `__meta` + `derivation-meta` in the `withMeta = true` twin.
    pub opted_in: bool,
    /// Indices of the derivations it depends on.
    pub deps: Vec<usize>,
}

/// Tunables of the generator.
#[derive(Debug, Clone)]
pub struct Options {
    pub count: usize,
    /// Percent of structured derivations that opt in.
    pub opt_in_percent: u64,
    /// Maximum number of direct dependencies.
    pub max_deps: usize,
    /// Odd systems, builders, output names and environment keys (unicode,
    /// quotes, backslashes, control characters): for instantiating only,
    /// since such derivations cannot build.
    pub exotic: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            count: 60,
            opt_in_percent: 45,
            max_deps: 3,
            exotic: false,
        }
    }
}

impl Options {
    /// Dense meta: most structured derivations opt in, many inputs each.
    pub fn dense_meta() -> Self {
        Self {
            count: 40,
            opt_in_percent: 90,
            max_deps: 5,
            exotic: false,
        }
    }
}

/// A generated expression and what it holds.
#[derive(Debug, Clone)]
pub struct Generated {
    pub seed: u64,
    pub expr: String,
    pub specs: Vec<DrvSpec>,
    /// The derivation that carries `tweak` (the expression's second
    /// argument, `"0"` by default): instantiating with another value is a
    /// real change to it and everything that depends on it.
    pub tweaked: usize,
}

/// A Nix string literal for `s`.
pub fn nix_string(s: &str) -> String {
    let mut out = String::from("\"");
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' if chars.peek() == Some(&'{') => out.push_str("\\$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

const FRAGMENTS: &[&str] = &[
    "hello",
    "with space",
    "quote\"d",
    "back\\slash",
    "dollar $HOME and ${not} interpolated",
    "tab\there",
    "line\nbreak",
    "cr\rlf",
    "é ü ß",
    "日本語",
    "emoji 😀",
    "",
    "a=b;c",
    "ctrl\u{1}char",
    "del\u{7f}",
    "''quotes''",
];

/// Floats of every kind, including what Nix 2.8 writes with six
/// significant digits (`1e+06`, `1.23457e+07`, `-0`, `4.94066e-324`) and
/// modern Nix in full.
const FLOATS: &[&str] = &[
    "1.5",
    "0.1",
    "100.0",
    "1.0e20",
    "2.5e-7",
    "123.456",
    "0.0",
    "(-3.25)",
    "1.0e15",
    "1.0e16",
    "0.0001",
    "0.00001",
    "1000000.0",
    "12345678.9",
    "(-0.0)",
    "(4.94066e-300 / 1.0e24)",
    "(1.0e-300 / 1.0e20)",
    "123456789012.0",
    "0.000123456789",
    "1.0e100",
    "(-1.5e300)",
    "3.0",
    "0.3333333333333333",
    "2.2250738585072014e-308",
    "1.7976931348623157e308",
];

/// Systems Nix writes unescaped (a quote or a backslash there breaks Nix's
/// own parser, so none holds one): unicode, tabs, newlines, control bytes.
const SYSTEMS: &[&str] = &[
    "x86_64-linux",
    "aarch64-darwin",
    "é-ü-linux",
    "日本語",
    "tab\there",
    "line\nbreak",
    "ctrl\u{1}x",
    "with space",
];

/// Output names beyond `out`: every character a store path name allows.
const OUTPUT_NAMES: &[&str] = &["dev", "a.b_c", "x+y=z?", "man-1", "_private", "bin"];

const INTS: &[&str] = &[
    "0",
    "1",
    "(-1)",
    "42",
    "9007199254740993",
    "(-4611686018427387904)",
    "1000000",
];

const FEATURES: &[&str] = &["benchmark", "big-parallel", "kvm", "nixos-test"];

struct Gen<'a> {
    rng: Rng,
    specs: &'a [DrvSpec],
}

impl Gen<'_> {
    fn text(&mut self) -> String {
        let parts = 1 + self.rng.below(3);
        (0..parts)
            .map(|_| *self.rng.pick(FRAGMENTS))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A Nix string interpolating dependency `dep` (a specific output).
    fn dep_ref(&mut self, dep: usize) -> String {
        let spec = &self.specs[dep];
        let output = self.rng.pick(&spec.outputs).clone();
        format!("\"${{d{dep}.\"{output}\"}}\"")
    }

    fn scalar(&mut self) -> String {
        match self.rng.below(6) {
            0 => self.rng.pick(INTS).to_string(),
            1 => self.rng.pick(FLOATS).to_string(),
            2 => self.rng.pick(&["true", "false", "null"]).to_string(),
            _ => nix_string(&self.text()),
        }
    }

    /// A structured (JSON-able) value, nesting at most `depth` levels.
    fn value(&mut self, depth: usize) -> String {
        if depth == 0 {
            return self.scalar();
        }
        match self.rng.below(5) {
            0 => {
                let items: Vec<String> = (0..self.rng.below(4))
                    .map(|_| self.value(depth - 1))
                    .collect();
                format!("[ {} ]", items.join(" "))
            }
            1 => {
                let mut out = String::from("{ ");
                for i in 0..self.rng.below(4) {
                    let key = if self.rng.chance(30) {
                        nix_string(&format!("{} k{i}", self.rng.pick(FRAGMENTS)))
                    } else {
                        format!("k{i}")
                    };
                    let _ = write!(out, "{key} = {}; ", self.value(depth - 1));
                }
                out.push('}');
                out
            }
            _ => self.scalar(),
        }
    }

    /// A value for a plain (non-structured) derivation attribute.
    fn plain_value(&mut self) -> String {
        match self.rng.below(7) {
            0 => self.rng.pick(INTS).to_string(),
            1 => self.rng.pick(&["true", "false", "null"]).to_string(),
            2 => self.rng.pick(FLOATS).to_string(),
            3 => format!("[ {} {} ]", nix_string(&self.text()), self.rng.pick(INTS)),
            _ => nix_string(&self.text()),
        }
    }

    fn meta(&mut self, index: usize) -> String {
        let mut out = String::from("{ ");
        let _ = write!(
            out,
            "license = {}; description = {}; homepage = \"https://example.org/d{index}\"; ",
            self.rng.pick(&[
                "\"mit\"",
                "\"asl20\"",
                "[ \"mit\" \"bsd3\" ]",
                "{ spdxId = \"GPL-3.0-only\"; free = true; }",
                "\"unfree\""
            ]),
            nix_string(&self.text()),
        );
        if self.rng.chance(70) {
            let kernel_dirty = self.rng.chance(30);
            let kernel_len = if self.rng.chance(20) { 64 } else { 40 };
            let _ = write!(
                out,
                "provenance = {{ kernel-builder = {{ version = \"0.{}.0\"; commit = \"{}\"; dirty = false; }}; kernel = {{ commit = \"{}\"; dirty = {kernel_dirty}; source = \"git+https://example.org/k{index}\"; }}; }}; ",
                self.rng.below(20),
                self.rng.hex(40),
                self.rng.hex(kernel_len),
            );
        }
        if self.rng.chance(50) {
            let _ = write!(out, "extra = {}; ", self.value(2));
        }
        out.push('}');
        out
    }
}

/// Generate one expression from `seed`.
pub fn generate(seed: u64, options: &Options) -> Generated {
    let mut rng = Rng::new(seed);
    let mut specs: Vec<DrvSpec> = Vec::with_capacity(options.count);
    for index in 0..options.count {
        let kind = match rng.below(10) {
            0 => Kind::FixedOutput,
            1 => Kind::FloatingCa,
            _ => Kind::InputAddressed,
        };
        let structured = rng.chance(55);
        let outputs: Vec<String> = if kind == Kind::FixedOutput || rng.chance(70) {
            vec!["out".to_owned()]
        } else if options.exotic && rng.chance(50) {
            let mut names = vec!["out".to_owned()];
            for _ in 0..1 + rng.below(3) {
                let name = (*rng.pick(OUTPUT_NAMES)).to_owned();
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            names
        } else {
            rng.pick(&[
                &["out", "dev"][..],
                &["bin", "out", "lib"][..],
                &["doc", "out"][..],
            ])
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
        };
        let mut deps = Vec::new();
        if index > 0 {
            for _ in 0..rng.below(options.max_deps + 1) {
                // Prefer recent derivations so that closures are deep.
                let dep = if rng.chance(60) {
                    index - 1 - rng.below(index.min(4))
                } else {
                    rng.below(index)
                };
                if !deps.contains(&dep) {
                    deps.push(dep);
                }
            }
        }
        let opted_in = structured && rng.chance(options.opt_in_percent);
        specs.push(DrvSpec {
            name: format!(
                "d{index}-{}",
                rng.pick(&["lib", "tool", "kernel", "src", "app-1.2.3", "x"])
            ),
            kind,
            structured,
            outputs,
            opted_in,
            deps,
        });
    }

    let tweaked = rng.below(options.count);
    let mut g = Gen { rng, specs: &specs };
    let mut expr = String::new();
    let _ = writeln!(expr, "# drvmeta twin-method expression, seed {seed}");
    let _ = writeln!(expr, "{{ withMeta ? true, tweak ? \"0\" }}:\nlet");
    let _ = writeln!(
        expr,
        "  optMeta = meta: with_: without:\n    if withMeta then {{ __meta = meta; requiredSystemFeatures = with_; }}\n    else if without == [ ] then {{ }} else {{ requiredSystemFeatures = without; }};"
    );
    for (index, spec) in specs.iter().enumerate() {
        let mut attrs = String::new();
        let (system, builder) = if options.exotic && g.rng.chance(40) {
            (
                format!("\"{}\"", g.rng.pick(SYSTEMS)),
                nix_string(&format!("/bin/{}", g.text())),
            )
        } else {
            ("\"x86_64-linux\"".to_owned(), "\"/bin/sh\"".to_owned())
        };
        let _ = write!(
            attrs,
            "name = {}; system = {system}; builder = {builder}; ",
            nix_string(&spec.name)
        );
        if spec.outputs.len() > 1 {
            let list: Vec<String> = spec.outputs.iter().map(|o| nix_string(o)).collect();
            let _ = write!(attrs, "outputs = [ {} ]; ", list.join(" "));
        }
        // The builder writes every output, so that realising works.
        let mut script = String::new();
        for output in &spec.outputs {
            let _ = write!(script, "echo d{index} > ${output}; ");
        }
        let mut args = vec![nix_string("-c"), nix_string(&script)];
        if spec.structured {
            attrs.push_str("__structuredAttrs = true; ");
        }
        if index == tweaked {
            attrs.push_str("inherit tweak; ");
        }
        for (n, &dep) in spec.deps.iter().enumerate() {
            let reference = g.dep_ref(dep);
            match g.rng.below(3) {
                0 => args.push(reference),
                1 if spec.structured => {
                    let _ = write!(
                        attrs,
                        "nested{n} = {{ inner = [ {reference} {} ]; }}; ",
                        g.scalar()
                    );
                }
                _ => {
                    let _ = write!(attrs, "dep{n} = {reference}; ");
                }
            }
        }
        let _ = write!(attrs, "args = [ {} ]; ", args.join(" "));
        if g.rng.chance(25) {
            let _ = write!(
                attrs,
                "src{index} = builtins.toFile \"src-{index}.txt\" {}; ",
                nix_string(&g.text())
            );
        }
        for n in 0..g.rng.below(4) {
            let value = if spec.structured {
                g.value(3)
            } else {
                g.plain_value()
            };
            let key = if options.exotic && g.rng.chance(30) {
                nix_string(&format!("{} {n}", g.text()))
            } else if g.rng.chance(20) {
                format!("\"attr {n}\"")
            } else {
                format!("attr{n}")
            };
            let _ = write!(attrs, "{key} = {value}; ");
        }
        match spec.kind {
            Kind::FixedOutput => {
                let algo = *g.rng.pick(&["sha1", "sha256", "sha512"]);
                let mode = *g.rng.pick(&["flat", "recursive"]);
                let _ = write!(
                    attrs,
                    "outputHashMode = \"{mode}\"; outputHashAlgo = \"{algo}\"; outputHash = builtins.hashString \"{algo}\" \"{seed}-{index}\"; "
                );
            }
            Kind::FloatingCa => {
                attrs.push_str(
                    "__contentAddressed = true; outputHashMode = \"recursive\"; outputHashAlgo = \"sha256\"; ",
                );
            }
            Kind::InputAddressed => {}
        }
        // Other system features (identical in both twins).
        let mut features: Vec<&str> = FEATURES
            .iter()
            .copied()
            .filter(|_| g.rng.chance(15))
            .collect();
        let mut tail = String::new();
        if spec.opted_in {
            let meta = g.meta(index);
            let mut with_meta = features.clone();
            with_meta.push("derivation-meta");
            with_meta.sort_unstable();
            let list = |items: &[&str]| {
                items
                    .iter()
                    .map(|f| nix_string(f))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let _ = write!(
                tail,
                " // optMeta {meta} [ {} ] [ {} ]",
                list(&with_meta),
                list(&features)
            );
        } else {
            if !features.is_empty() {
                features.sort_unstable();
                let list: Vec<String> = features.iter().map(|f| nix_string(f)).collect();
                let _ = write!(attrs, "requiredSystemFeatures = [ {} ]; ", list.join(" "));
            }
            // __meta that is not opted in: an ordinary attribute in both twins.
            if g.rng.chance(10) {
                if spec.structured {
                    let _ = write!(attrs, "__meta = {}; ", g.meta(index));
                } else {
                    let _ = write!(attrs, "__meta = {}; ", nix_string(&g.text()));
                }
            }
        }
        let _ = writeln!(expr, "  d{index} = derivation ({{ {attrs}}}{tail});");
    }
    let all: Vec<String> = (0..specs.len()).map(|i| format!("d{i}")).collect();
    let _ = writeln!(expr, "in [ {} ]", all.join(" "));
    Generated {
        seed,
        expr,
        specs,
        tweaked,
    }
}
