//! JSON string literals written straight into a byte buffer, with serde_json's escapes: `\"`,
//! `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, and `\u00xx` (lower-case hex) for the other control
//! characters; everything else, DEL and non-ASCII included, as it is.
//!
//! Both hot writers use it: the router's envelope writer ([`crate::envelope::write_gateway_json`])
//! for bodies and header values, and the sink's formats for metadata and, for Datadog, the whole
//! envelope as a string.

/// `value` as a JSON string literal, quotes included. `value` must be UTF-8: bytes from 0x80 up
/// are copied as they are, which JSON allows.
pub fn push_string(out: &mut Vec<u8>, value: &[u8]) {
    out.push(b'"');
    push_escaped(out, value);
    out.push(b'"');
}

/// What follows the backslash for each byte that JSON requires escaped (`"`, `\` and control
/// characters); 0 for bytes copied as they are.
static ESCAPES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// The content of a JSON string literal for `value`, without the quotes. Runs of bytes that need
/// no escape are found eight bytes at a time and copied in one go: a byte-at-a-time scan took
/// twice as long in the sink's Datadog format, and bodies, mostly JSON text with a quote every
/// few bytes, need the jump to the next escape as much as the skip.
pub fn push_escaped(out: &mut Vec<u8>, value: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut run_start = 0;
    while let Some(i) = next_escape(value, run_start) {
        out.extend_from_slice(&value[run_start..i]);
        let byte = value[i];
        match ESCAPES[usize::from(byte)] {
            b'u' => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]),
            escape => out.extend_from_slice(&[b'\\', escape]),
        }
        run_start = i + 1;
    }
    out.extend_from_slice(&value[run_start..]);
}

/// Position of the first byte at or after `from` that JSON requires escaped.
fn next_escape(value: &[u8], from: usize) -> Option<usize> {
    let rest = &value[from..];
    let mut chunks = rest.chunks_exact(8);
    for (n, chunk) in chunks.by_ref().enumerate() {
        let flags = escape_flags(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        if flags != 0 {
            // Little-endian: the lowest flag is the first byte in the text.
            return Some(from + n * 8 + (flags.trailing_zeros() / 8) as usize);
        }
    }
    let tail = chunks.remainder();
    let tail_start = from + rest.len() - tail.len();
    tail.iter()
        .position(|&byte| ESCAPES[usize::from(byte)] != 0)
        .map(|position| tail_start + position)
}

/// Sets the high bit of each byte of `word` that is a control character, `"` or `\\` (the
/// zero-byte tests of "Bit Twiddling Hacks"). A borrow may also flag bytes above a flagged one,
/// never below: the lowest flag is exact, and it is the only one read.
fn escape_flags(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let zero_bytes = |x: u64| x.wrapping_sub(ONES) & !x & HIGH_BITS;
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH_BITS;
    control
        | zero_bytes(word ^ (ONES * u64::from(b'"')))
        | zero_bytes(word ^ (ONES * u64::from(b'\\')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        let cases: [(&str, &[u8]); 8] = [
            ("plain", br#""plain""#),
            ("", br#""""#),
            (r#"say "hi""#, br#""say \"hi\"""#),
            (r"C:\dir\", br#""C:\\dir\\""#),
            (
                "\u{0}\u{8}\t\n\u{b}\u{c}\r\u{1f} ",
                br#""\u0000\b\t\n\u000b\f\r\u001f ""#,
            ),
            // JSON requires no escape for DEL, nor for anything beyond ASCII.
            ("\u{7f}", b"\"\x7f\""),
            ("été ✓ 😀", "\"été ✓ 😀\"".as_bytes()),
            ("/<script>", br#""/<script>""#),
        ];
        for (input, expected) in cases {
            let mut out = Vec::new();
            push_string(&mut out, input.as_bytes());
            assert_eq!(out, expected, "escaping {input:?}");
            let decoded: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(decoded, input);
        }
    }

    /// Every ASCII character at every offset around the eight-byte chunks, escaped as serde_json
    /// escapes it.
    #[test]
    fn escaping_agrees_with_serde_json_at_every_offset() {
        for special in (0u8..0x80).map(char::from).chain(['é', '✓']) {
            for offset in 0..20 {
                for length in [offset + 1, offset + 9, 24] {
                    let mut text: String = "x".repeat(offset);
                    text.push(special);
                    while text.len() < length {
                        text.push('y');
                    }
                    let mut out = Vec::new();
                    push_string(&mut out, text.as_bytes());
                    assert_eq!(
                        String::from_utf8(out).unwrap(),
                        serde_json::to_string(&text).unwrap(),
                        "{text:?}"
                    );
                }
            }
        }
    }
}
