//! Hex text: the one encoder and the one decoder of the workspace.

/// Lower-case hex of `bytes`.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    s
}

/// Appends the lower-case hex of `bytes` to `out`.
///
/// By table rather than through `fmt` (`{:02x}` per byte), which showed
/// in the server's profile: stream names and pseudonyms are written on
/// every event.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        let [hi, lo] = hex_pair(b);
        out.push(char::from(hi));
        out.push(char::from(lo));
    }
}

/// [`push_hex`] into bytes being written (a JSON line).
pub fn push_hex_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        out.extend_from_slice(&hex_pair(b));
    }
}

/// Whether `text` is exactly the lower-case hex of `bytes`, as
/// [`push_hex`] writes it (compared in place, without encoding).
#[must_use]
pub fn is_hex_of(text: &[u8], bytes: &[u8]) -> bool {
    text.len() == bytes.len() * 2
        && bytes
            .iter()
            .zip(text.chunks_exact(2))
            .all(|(&b, pair)| pair == hex_pair(b))
}

/// The two lower-case hex digits of `b`.
fn hex_pair(b: u8) -> [u8; 2] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0x0f)]]
}

/// The value of one hex digit, either case.
const fn digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes hex digits of either case into `out`, which `text` must fill
/// exactly (two digits a byte). On `false` `out` may hold part of the
/// value: a caller decoding a secret clears it.
#[must_use]
pub fn unhex_into(text: &[u8], out: &mut [u8]) -> bool {
    if text.len() != out.len() * 2 {
        return false;
    }
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        match (digit(pair[0]), digit(pair[1])) {
            (Some(hi), Some(lo)) => *byte = (hi << 4) | lo,
            _ => return false,
        }
    }
    true
}

/// Decodes hex digits of either case; `None` unless `text` is an even
/// number of them (no sign, no spaces, no prefix).
#[must_use]
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let mut out = vec![0; text.len() / 2];
    unhex_into(text, &mut out).then_some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_two_lower_case_digits_per_byte_in_order() {
        let bytes: Vec<u8> = (0..=255).collect();
        let by_fmt: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(super::hex(&bytes), by_fmt);
        let mut s = String::from("contact-");
        super::push_hex(&mut s, &[0x0f, 0xa0]);
        assert_eq!(s, "contact-0fa0");
    }

    #[test]
    fn is_hex_of_accepts_exactly_what_push_hex_writes() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert!(super::is_hex_of(super::hex(&bytes).as_bytes(), &bytes));
        assert!(!super::is_hex_of(b"0FA0", &[0x0f, 0xa0]), "upper case");
        assert!(!super::is_hex_of(b"0fa", &[0x0f, 0xa0]), "short");
        assert!(!super::is_hex_of(b"0fa00", &[0x0f, 0xa0]), "long");
        assert!(!super::is_hex_of(b"0fa1", &[0x0f, 0xa0]), "another value");
    }

    #[test]
    fn unhex_reads_what_hex_writes_in_either_case_and_nothing_else() {
        let bytes: Vec<u8> = (0..=255).collect();
        let text = super::hex(&bytes);
        assert_eq!(super::unhex(&text).unwrap(), bytes);
        assert_eq!(super::unhex(&text.to_uppercase()).unwrap(), bytes);
        assert_eq!(super::unhex("").unwrap(), Vec::<u8>::new());
        for bad in ["0", "0g", "+f", "-1", " 0f", "0f ", "0x0f", "éé"] {
            assert_eq!(super::unhex(bad), None, "{bad:?} decoded");
        }
        let mut two = [0u8; 2];
        assert!(super::unhex_into(b"0fA0", &mut two));
        assert_eq!(two, [0x0f, 0xa0]);
        assert!(!super::unhex_into(b"0fa", &mut two), "short");
        assert!(!super::unhex_into(b"0fa000", &mut two), "long");
    }
}
