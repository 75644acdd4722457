//! Counting the elements of a JSON array without parsing them, for the benchmark's receiver.
//!
//! The benchmark's receiver shares two cores with the sink it measures, so what it spends per
//! envelope is taken from the sink. Splitting each JSON-array body with serde_json kept the
//! receiver at about 0.43 of a core while a sink drained 230,000–260,000 envelopes/s, 1.8 µs per
//! envelope; gateway envelopes carry JSON bodies as escaped text, with an escaped quote every few
//! bytes, which a byte-by-byte walk pays for too. This scanner reads 64 bytes at a time as bit
//! masks (one bit per byte), finds the quotes that are not escaped without a loop, marks what
//! lies inside strings with a prefix XOR, and visits only the brackets and commas outside
//! strings, one by one, to track the depth: the receiver then used 0.8 µs per envelope, and
//! counting is about 0.35 µs of it (docs/PERFORMANCE.md).

/// Where the bytes that matter to the scanner are in a 64-byte block, one bit per byte (bit `i`
/// for `block[i]`).
#[derive(Debug, Default, PartialEq, Eq)]
struct Masks {
    backslashes: u64,
    quotes: u64,
    /// `[` and `{`.
    opening: u64,
    /// `]` and `}`.
    closing: u64,
    commas: u64,
}

impl Masks {
    /// Sixteen bytes at a time with SSE2, which every x86_64 processor has.
    #[cfg(target_arch = "x86_64")]
    fn of(block: &[u8; 64]) -> Masks {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
            _mm_set1_epi8,
        };
        let mut masks = Masks::default();
        // SAFETY: SSE2 is part of every x86_64 target, and each load reads 16 bytes within
        // `block`.
        unsafe {
            let lane_mask = |bytes: __m128i, byte: u8| {
                u64::from(
                    _mm_movemask_epi8(_mm_cmpeq_epi8(bytes, _mm_set1_epi8(byte as i8))) as u16,
                )
            };
            for lane in 0..4 {
                let bytes = _mm_loadu_si128(block.as_ptr().add(lane * 16).cast::<__m128i>());
                // `[` and `{` (0x5b, 0x7b) differ only in bit 0x20, as do `]` and `}`.
                let folded = _mm_or_si128(bytes, _mm_set1_epi8(0x20));
                let shift = lane * 16;
                masks.backslashes |= lane_mask(bytes, b'\\') << shift;
                masks.quotes |= lane_mask(bytes, b'"') << shift;
                masks.opening |= lane_mask(folded, b'{') << shift;
                masks.closing |= lane_mask(folded, b'}') << shift;
                masks.commas |= lane_mask(bytes, b',') << shift;
            }
        }
        masks
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn of(block: &[u8; 64]) -> Masks {
        Masks::one_byte_at_a_time(block)
    }

    /// The portable version, and the reference of the SSE2 one's test.
    #[cfg_attr(target_arch = "x86_64", allow(dead_code))]
    fn one_byte_at_a_time(block: &[u8; 64]) -> Masks {
        let mut masks = Masks::default();
        for (at, &byte) in block.iter().enumerate() {
            let mask = match byte {
                b'\\' => &mut masks.backslashes,
                b'"' => &mut masks.quotes,
                b'[' | b'{' => &mut masks.opening,
                b']' | b'}' => &mut masks.closing,
                b',' => &mut masks.commas,
                _ => continue,
            };
            *mask |= 1 << at;
        }
        masks
    }
}

/// Bits at even positions (0, 2, ...); their complement is the odd ones.
const EVEN_BITS: u64 = 0x5555_5555_5555_5555;

/// The bytes escaped by a backslash in a block whose backslashes are `backslashes`, except
/// backslashes escaped by a backslash (only escaped quotes matter here).
/// `escape_next` says whether the block's first byte is escaped by the previous block's last
/// backslash, and is set for the next block.
///
/// Without a loop over the backslashes (they come every few bytes in escaped JSON bodies): the
/// byte after a run of backslashes is escaped when the run is odd, that is when the run's start
/// and the byte after it differ in parity. Adding a run's lowest bit to the mask carries through
/// the run to the byte after it, so runs are added by the parity of their start and the carries
/// kept where the parity changed. A carry out of the block is the next block's first byte.
fn escaped_bytes(backslashes: u64, escape_next: &mut bool) -> u64 {
    // An escaped first byte is not an escape even when it is a backslash.
    let first = u64::from(std::mem::take(escape_next));
    let backslashes = backslashes & !first;
    let starts = backslashes & !(backslashes << 1);
    let after_even_runs = backslashes.wrapping_add(starts & EVEN_BITS) & !backslashes;
    let (sum, carry) = backslashes.overflowing_add(starts & !EVEN_BITS);
    let after_odd_runs = sum & !backslashes;
    // A run from an odd position to the end of the block is odd: it escapes what follows.
    *escape_next = carry;
    first | (after_even_runs & !EVEN_BITS) | (after_odd_runs & EVEN_BITS)
}

/// With bit `i` set for each quote that opens or closes a string, the bytes from an opening
/// quote up to (not including) its closing quote. `in_string` carries whether the block starts
/// inside a string, and is set for the next block.
fn inside_strings(quotes: u64, in_string: &mut bool) -> u64 {
    // Prefix XOR: bit i becomes the parity of the quotes at or below i.
    let mut inside = quotes;
    for shift in [1, 2, 4, 8, 16, 32] {
        inside ^= inside << shift;
    }
    if *in_string {
        inside = !inside;
    }
    *in_string = inside >> 63 == 1;
    inside
}

/// The elements of a JSON array, counted by the commas at its top level, or `None` when `body`
/// (trimmed of whitespace) is not an array that ends where the body ends. The elements
/// themselves are not validated: this is for counting what a sink sent, not for checking it.
pub(crate) fn count_array_elements(body: &[u8]) -> Option<usize> {
    let body = body.trim_ascii();
    if body.first() != Some(&b'[') {
        return None;
    }
    let (mut depth, mut commas) = (0usize, 0usize);
    let (mut escape_next, mut in_string) = (false, false);
    for (index, chunk) in body.chunks(64).enumerate() {
        // The last chunk is padded with spaces, which are neither structure nor escapes.
        let padded;
        let block: &[u8; 64] = match chunk.try_into() {
            Ok(block) => block,
            Err(_) => {
                let mut last = [b' '; 64];
                last[..chunk.len()].copy_from_slice(chunk);
                padded = last;
                &padded
            }
        };
        let masks = Masks::of(block);
        let escaped = escaped_bytes(masks.backslashes, &mut escape_next);
        let outside = !inside_strings(masks.quotes & !escaped, &mut in_string);
        let mut structure = (masks.opening | masks.closing | masks.commas) & outside;
        while structure != 0 {
            let at = structure.trailing_zeros() as usize;
            structure &= structure - 1;
            match block[at] {
                b'[' | b'{' => depth += 1,
                b',' => commas += usize::from(depth == 1),
                _ => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        // The outer array closed: it must be the end of the body.
                        if index * 64 + at + 1 != body.len() {
                            return None;
                        }
                        let empty = body[1..body.len() - 1].trim_ascii().is_empty();
                        return Some(if empty { 0 } else { commas + 1 });
                    }
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The elements as serde_json splits them, for comparison.
    fn split(body: &[u8]) -> Option<usize> {
        serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(body.trim_ascii())
            .ok()
            .map(|items| items.len())
    }

    #[test]
    fn counts_what_serde_json_splits() {
        let bodies: [&[u8]; 8] = [
            br#"[{"a":1},{"b":[1,2,{"c":"],[{,"}]},{"d":"x\"],\\"}]"#,
            br#" [ {"a":"\\"} , {"b":"}"} ] "#,
            b"[]",
            b"[ ]",
            br#"[{"only":true}]"#,
            br#"[1,"two",[3,4],{"five":5},null]"#,
            br#"["\\\\\"","\\",",\\\",\\\\"]"#,
            br#"[{"body":"{\"items\":[{\"a\":\"b,c\"},{\"d\":\"\\\\\"}]}"}]"#,
        ];
        for body in bodies {
            assert_eq!(
                count_array_elements(body),
                split(body),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(count_array_elements(bodies[0]), Some(3));
    }

    #[test]
    fn refuses_what_is_not_one_whole_array() {
        for body in [
            &br#"[{"a":1},{"b":"#[..],
            br#"[{"a":1}],[2]"#,
            br#"{"a":[1,2]}"#,
            br#"[{"a":"]"}"#,
            b"[1,2]]",
            b"",
        ] {
            assert_eq!(
                count_array_elements(body),
                None,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// Strings, escapes and brackets that cross the 64-byte blocks at every offset.
    #[test]
    fn counts_across_block_boundaries() {
        let element = r#"{"k":"a\\\"b\\","l":["],[{,",{"m":"\\\\"}],"n":"\"}"}"#;
        for padding in 0..130 {
            for elements in 1..4 {
                let body = format!(
                    "[{}{}]",
                    " ".repeat(padding),
                    vec![element; elements].join(" ,")
                );
                assert_eq!(
                    count_array_elements(body.as_bytes()),
                    Some(elements),
                    "padding {padding}: {body}"
                );
                assert_eq!(split(body.as_bytes()), Some(elements));
            }
        }
    }

    /// JSON values whose strings are made of the bytes the scanner cares about.
    fn values() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<i32>().prop_map(serde_json::Value::from),
            "[\\\\\"\\[\\]{},: a\\n]{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::vec(("[\\\\\"{},a]{0,4}", inner), 0..4)
                    .prop_map(|fields| serde_json::Value::Object(fields.into_iter().collect())),
            ]
        })
    }

    /// [`escaped_bytes`] one backslash at a time: each backslash that is not itself escaped
    /// escapes the byte after it.
    fn escaped_one_at_a_time(backslashes: u64, escape_first: bool) -> (u64, bool) {
        let (mut escaped, mut escape_next) = (0u64, escape_first);
        for at in 0..64 {
            if std::mem::take(&mut escape_next) {
                escaped |= 1 << at;
            } else if backslashes & (1 << at) != 0 {
                escape_next = true;
            }
        }
        (escaped, escape_next)
    }

    proptest! {
        #[test]
        fn escapes_are_found_as_one_at_a_time(
            // Dense and sparse masks, and long runs.
            backslashes in prop_oneof![any::<u64>(), any::<u64>().prop_map(|m| m | (m << 1) | (m >> 1))],
            escape_first in any::<bool>(),
        ) {
            let mut escape_next = escape_first;
            let escaped = escaped_bytes(backslashes, &mut escape_next) & !backslashes;
            let (expected, expected_next) = escaped_one_at_a_time(backslashes, escape_first);
            prop_assert_eq!((escaped, escape_next), (expected & !backslashes, expected_next));
        }

        #[test]
        fn counts_any_array_as_serde_json_writes_it(
            elements in prop::collection::vec(values(), 0..12),
            pretty in any::<bool>(),
        ) {
            let array = serde_json::Value::from(elements.clone());
            let body = if pretty {
                serde_json::to_vec_pretty(&array)
            } else {
                serde_json::to_vec(&array)
            }
            .unwrap();
            prop_assert_eq!(count_array_elements(&body), Some(elements.len()));
        }
    }

    #[test]
    fn masks_match_the_portable_reference() {
        let mut block = [0u8; 64];
        for (at, byte) in block.iter_mut().enumerate() {
            // Every byte of the scanner, its neighbours in ASCII, and bytes over 0x7f.
            *byte = b"\"\\,[]{} ax;=|~Z^\xdb\xfb\xdd\xfd"[at * 7 % 20];
        }
        assert_eq!(Masks::of(&block), Masks::one_byte_at_a_time(&block));
        assert_ne!(Masks::of(&block), Masks::default());
    }
}
