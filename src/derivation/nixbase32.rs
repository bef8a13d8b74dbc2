//! Nix's base-32 encoding (`0-9a-z` without `e o u t`, least significant
//! bits first), used in store path hash parts and placeholders.

/// The 32 digits, in value order.
pub const ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// Length of the encoding of `len` bytes.
#[must_use]
pub const fn encoded_len(len: usize) -> usize {
    if len == 0 { 0 } else { (len * 8 - 1) / 5 + 1 }
}

/// Encode `bytes` as Nix writes them.
#[must_use]
pub fn encode(bytes: &[u8]) -> String {
    let mut out = vec![0; encoded_len(bytes.len())];
    encode_into(bytes, &mut out);
    String::from_utf8(out).expect("the alphabet is ASCII")
}

/// [`encode`] into `out`, which must be [`encoded_len`] long.
///
/// # Panics
/// When `out` has another length.
pub fn encode_into(bytes: &[u8], out: &mut [u8]) {
    let len = encoded_len(bytes.len());
    assert_eq!(out.len(), len, "the encoding of {} bytes", bytes.len());
    for (position, n) in (0..len).rev().enumerate() {
        let b = n * 5;
        let i = b / 8;
        let j = b % 8;
        let low = u16::from(bytes[i]) >> j;
        let high = bytes
            .get(i + 1)
            .map_or(0, |&next| u16::from(next) << (8 - j));
        out[position] = ALPHABET[usize::from((low | high) & 0x1f)];
    }
}

/// The value of each byte as a digit, 0xff for bytes outside the alphabet.
const DIGITS: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

fn digit(c: u8) -> Option<u8> {
    let d = DIGITS[usize::from(c)];
    (d != 0xff).then_some(d)
}

/// Whether `c` is a character of the alphabet.
#[must_use]
pub fn is_digit(c: u8) -> bool {
    digit(c).is_some()
}

/// Decode `text` into exactly `N` bytes, `None` when it is not a valid
/// encoding of that length (wrong length, a character outside the
/// alphabet, or bits set past the end).
#[must_use]
pub fn decode<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != encoded_len(N) {
        return None;
    }
    let mut out = [0u8; N];
    for (n, &c) in text.iter().rev().enumerate() {
        let d = u16::from(digit(c)?);
        let b = n * 5;
        let i = b / 8;
        let j = b % 8;
        out[i] |= (d << j) as u8;
        let carry = d >> (8 - j);
        if i + 1 < N {
            out[i + 1] |= carry as u8;
        } else if carry != 0 {
            return None;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // `nix-hash --type sha256 --to-base32` of sha256("").
        let digest = [
            0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f,
            0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b,
            0x78, 0x52, 0xb8, 0x55,
        ];
        let text = encode(&digest);
        assert_eq!(text, "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73");
        assert_eq!(decode::<32>(text.as_bytes()), Some(digest));
        assert_eq!(encode(&[]), "");
        assert_eq!(encoded_len(20), 32);
    }

    #[test]
    fn rejects_bad_text() {
        assert_eq!(decode::<20>(b"e0000000000000000000000000000000"), None);
        assert_eq!(decode::<20>(b"000"), None);
        // 32 digits hold 160 bits exactly; 52 hold 260 bits for 256.
        assert_eq!(decode::<32>(&[b'z'; 52]), None);
        for byte in 0..=255u8 {
            let bytes = [byte; 20];
            assert_eq!(decode::<20>(encode(&bytes).as_bytes()), Some(bytes));
        }
    }
}
