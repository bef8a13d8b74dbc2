//! Just enough JSON to find spans in text Nix wrote, without parsing it
//! into values: top-level object members and array elements.

use std::borrow::Cow;
use std::ops::Range;

/// One member of an object: the key with its quotes, and the value.
#[derive(Debug, Clone)]
pub struct Member {
    /// The key, quotes included.
    pub key: Range<usize>,
    /// The value.
    pub value: Range<usize>,
}

impl Member {
    /// From the key's opening quote to the value's end.
    #[must_use]
    pub fn span(&self) -> Range<usize> {
        self.key.start..self.value.end
    }
}

fn skip_ws(text: &[u8], mut pos: usize) -> usize {
    while pos < text.len() && matches!(text[pos], b' ' | b'\t' | b'\n' | b'\r') {
        pos += 1;
    }
    pos
}

/// End of the string starting at `pos` (just after its closing quote).
fn skip_string(text: &[u8], pos: usize) -> Result<usize, usize> {
    let mut i = pos + 1;
    while i < text.len() {
        match text[i] {
            b'"' => return Ok(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    Err(pos)
}

/// End of the value starting at `pos`. Containers are skipped by counting
/// brackets (no recursion, so hostile nesting cannot overflow the stack).
fn skip_value(text: &[u8], pos: usize) -> Result<usize, usize> {
    match text.get(pos) {
        None => Err(pos),
        Some(b'"') => skip_string(text, pos),
        Some(b'[' | b'{') => {
            let mut depth = 0usize;
            let mut i = pos;
            while i < text.len() {
                match text[i] {
                    b'"' => {
                        i = skip_string(text, i)?;
                        continue;
                    }
                    b'[' | b'{' => depth += 1,
                    b']' | b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            Err(pos)
        }
        Some(_) => {
            let end = text[pos..]
                .iter()
                .position(|c| matches!(c, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r'))
                .map_or(text.len(), |e| pos + e);
            if end == pos { Err(pos) } else { Ok(end) }
        }
    }
}

/// The members of the object that is `text` (whole), or the offset of the
/// first thing that is not one.
pub fn object_members(text: &[u8]) -> Result<Vec<Member>, usize> {
    let mut pos = skip_ws(text, 0);
    if text.get(pos) != Some(&b'{') {
        return Err(pos);
    }
    pos = skip_ws(text, pos + 1);
    let mut members = Vec::new();
    if text.get(pos) == Some(&b'}') {
        return Ok(members);
    }
    loop {
        if text.get(pos) != Some(&b'"') {
            return Err(pos);
        }
        let key_end = skip_string(text, pos)?;
        let colon = skip_ws(text, key_end);
        if text.get(colon) != Some(&b':') {
            return Err(colon);
        }
        let value_start = skip_ws(text, colon + 1);
        let value_end = skip_value(text, value_start)?;
        members.push(Member {
            key: pos..key_end,
            value: value_start..value_end,
        });
        pos = skip_ws(text, value_end);
        match text.get(pos) {
            Some(b',') => pos = skip_ws(text, pos + 1),
            Some(b'}') => return Ok(members),
            _ => return Err(pos),
        }
    }
}

/// The elements of the array at `range` of `text`, or `None` when it is not
/// an array.
pub fn array_elements(text: &[u8], range: Range<usize>) -> Option<Vec<Range<usize>>> {
    let text = &text[..range.end];
    let mut pos = range.start;
    if text.get(pos) != Some(&b'[') {
        return None;
    }
    pos = skip_ws(text, pos + 1);
    let mut elements = Vec::new();
    if text.get(pos) == Some(&b']') {
        return Some(elements);
    }
    loop {
        let end = skip_value(text, pos).ok()?;
        elements.push(pos..end);
        pos = skip_ws(text, end);
        match text.get(pos) {
            Some(b',') => pos = skip_ws(text, pos + 1),
            Some(b']') => return Some(elements),
            _ => return None,
        }
    }
}

/// The string a JSON string literal (with quotes) stands for.
pub fn decode_string(literal: &[u8]) -> Option<Cow<'_, str>> {
    let inner = literal.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if inner.contains(&b'\\') {
        serde_json::from_slice::<String>(literal)
            .ok()
            .map(Cow::Owned)
    } else {
        std::str::from_utf8(inner).ok().map(Cow::Borrowed)
    }
}

/// `text` with the items at `items` (in order, non-overlapping) whose index
/// `keep` rejects removed, and others replaced where `replace` says; every
/// other byte, separators included, stays as written.
pub fn splice(
    text: &[u8],
    items: &[Range<usize>],
    keep: impl Fn(usize) -> bool,
    replace: impl Fn(usize) -> Option<Vec<u8>>,
) -> Vec<u8> {
    let (Some(first), Some(last)) = (items.first(), items.last()) else {
        return text.to_vec();
    };
    let mut out = Vec::with_capacity(text.len());
    out.extend_from_slice(&text[..first.start]);
    let mut wrote = false;
    for (i, item) in items.iter().enumerate() {
        if !keep(i) {
            continue;
        }
        if wrote {
            out.extend_from_slice(&text[items[i - 1].end..item.start]);
        }
        match replace(i) {
            Some(bytes) => out.extend_from_slice(&bytes),
            None => out.extend_from_slice(&text[item.clone()]),
        }
        wrote = true;
    }
    out.extend_from_slice(&text[last.end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_and_elements() {
        let text = br#"{"a":[1,"x]",{"b":"}"}],"c" : 1e+06 ,"d":{}}"#;
        let members = object_members(text).unwrap();
        let keys: Vec<&[u8]> = members.iter().map(|m| &text[m.key.clone()]).collect();
        assert_eq!(keys, [&b"\"a\""[..], b"\"c\"", b"\"d\""]);
        assert_eq!(&text[members[1].value.clone()], b"1e+06");
        let elements = array_elements(text, members[0].value.clone()).unwrap();
        assert_eq!(elements.len(), 3);
        assert_eq!(&text[elements[1].clone()], br#""x]""#);
        assert!(object_members(b"[1]").is_err());
        assert!(object_members(br#"{"a":"#).is_err());
        assert!(object_members(br#"{"a":1,}"#).is_err());
    }

    #[test]
    fn splice_keeps_separators() {
        let text = br#"["a","b","c"]"#;
        let items = array_elements(text, 0..text.len()).unwrap();
        assert_eq!(splice(text, &items, |i| i != 1, |_| None), br#"["a","c"]"#);
        assert_eq!(splice(text, &items, |i| i != 0, |_| None), br#"["b","c"]"#);
        assert_eq!(splice(text, &items, |i| i != 2, |_| None), br#"["a","b"]"#);
        assert_eq!(splice(text, &items, |_| false, |_| None), b"[]");
    }
}

/// Re-indent compact JSON as `serde_json`'s pretty printer does (two
/// spaces, `": "`, empty containers as `{}`/`[]`), copying every string and
/// number as written.
#[must_use]
pub fn pretty(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let newline = |out: &mut Vec<u8>, depth: usize| {
        out.push(b'\n');
        out.resize(out.len() + depth * 2, b' ');
    };
    let mut i = 0;
    while i < text.len() {
        let c = text[i];
        match c {
            b'"' => {
                let end = skip_string(text, i).unwrap_or(text.len());
                out.extend_from_slice(&text[i..end]);
                i = end;
                continue;
            }
            b'{' | b'[' => {
                let close = if c == b'{' { b'}' } else { b']' };
                let next = skip_ws(text, i + 1);
                if text.get(next) == Some(&close) {
                    out.extend_from_slice(&[c, close]);
                    i = next + 1;
                    continue;
                }
                out.push(c);
                depth += 1;
                newline(&mut out, depth);
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            b',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            b':' => out.extend_from_slice(b": "),
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => out.push(c),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod pretty_tests {
    #[test]
    fn pretty_matches_serde_json_but_keeps_numbers() {
        let text = r#"{"a":[1,{"b":"x,y:{"}],"c":{},"d":[],"e":{"f":null}}"#;
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            String::from_utf8(super::pretty(text.as_bytes())).unwrap(),
            serde_json::to_string_pretty(&value).unwrap()
        );
        assert_eq!(super::pretty(b"[1e+06,-0]"), b"[\n  1e+06,\n  -0\n]");
    }
}
