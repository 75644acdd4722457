//! A decoder and an encoder written for the one writer schema of raw gateway events
//! (`raw_gateway.avsc`).
//!
//! The single-object header pins the writer schema by fingerprint, so the field order and types
//! are known in advance and the datum can be read straight into [`RawGatewayEvent`]. apache-avro's
//! generic path first builds a `Value` tree and then deserializes it, allocating every string
//! twice; this is the router's hottest path (nine events in ten are gateway events). Encoding is
//! the services' hot path, and apache-avro's costs the same way (a `Value` tree, then the schema
//! resolved again for every datum). Both directions also keep header order and repeated header
//! names, which apache-avro loses by going through a hash map. apache-avro stays the reference:
//! tests encode and decode random events both ways and compare.
//!
//! Lengths and counts are checked against the bytes left before anything is allocated, so a
//! datum announcing a huge string or map fails at once instead of reserving memory for it.

use crate::json_object::JsonObject;
use crate::raw::{RawGatewayEvent, RawHeaders, RawRequest, RawResponse};

/// Why a datum is not a valid raw gateway event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at byte {at}")]
pub struct DatumError {
    what: String,
    at: usize,
}

/// Decodes a binary datum (after the single-object header); returns the event and how many bytes
/// it took.
pub fn decode(datum: &[u8]) -> Result<(RawGatewayEvent, usize), DatumError> {
    let mut reader = Reader {
        bytes: datum,
        at: 0,
    };
    let event = RawGatewayEvent {
        id: reader.string()?,
        trace_id: reader.string()?,
        timestamp: reader.long()?,
        organization_id: reader.string()?,
        stack_id: reader.string()?,
        ip_address: reader.optional_string()?,
        // Checked and compacted from the datum's own bytes, never parsed into a tree.
        claims: match reader.optional_str()? {
            Some(text) => Some(
                JsonObject::parse(text).map_err(|err| reader.error(format!("claims: {err}")))?,
            ),
            None => None,
        },
        token_validation_error: reader.optional_string()?,
        request: RawRequest {
            method: reader.string()?,
            path: reader.string()?,
            host: reader.string()?,
            headers: reader.headers()?,
            body: reader.bytes()?.to_vec(),
        },
        response: RawResponse {
            status_code: reader.int()?,
            headers: reader.headers()?,
            body: reader.bytes()?.to_vec(),
        },
    };
    Ok((event, reader.at))
}

/// Appends the binary datum of `event` (without the single-object header) to `out`.
pub fn encode(event: &RawGatewayEvent, out: &mut Vec<u8>) {
    write_string(out, &event.id);
    write_string(out, &event.trace_id);
    write_long(out, event.timestamp);
    write_string(out, &event.organization_id);
    write_string(out, &event.stack_id);
    write_optional_string(out, event.ip_address.as_deref());
    write_optional_string(out, event.claims.as_ref().map(JsonObject::as_str));
    write_optional_string(out, event.token_validation_error.as_deref());
    write_string(out, &event.request.method);
    write_string(out, &event.request.path);
    write_string(out, &event.request.host);
    write_headers(out, &event.request.headers);
    write_bytes(out, &event.request.body);
    write_long(out, i64::from(event.response.status_code));
    write_headers(out, &event.response.headers);
    write_bytes(out, &event.response.body);
}

/// A zig-zag variable-length long.
fn write_long(out: &mut Vec<u8>, value: i64) {
    // Zig-zag: 0, -1, 1, -2, ... The casts reinterpret bits, as the encoding does.
    #[allow(clippy::cast_sign_loss)]
    let mut n = ((value << 1) ^ (value >> 63)) as u64;
    while n >= 0x80 {
        // Truncation intended: the low seven bits, with the continuation bit set.
        #[allow(clippy::cast_possible_truncation)]
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    #[allow(clippy::cast_possible_truncation)]
    out.push(n as u8);
}

fn write_length(out: &mut Vec<u8>, length: usize) {
    write_long(out, i64::try_from(length).expect("lengths fit in i64"));
}

fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_length(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn write_string(out: &mut Vec<u8>, text: &str) {
    write_bytes(out, text.as_bytes());
}

/// `["null", "string"]`: branch 0 is null, branch 1 a string.
fn write_optional_string(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        None => write_long(out, 0),
        Some(text) => {
            write_long(out, 1);
            write_string(out, text);
        }
    }
}

/// `map<array<string>>` as one block of entries, in order, then the zero count that ends it.
fn write_headers(out: &mut Vec<u8>, headers: &RawHeaders) {
    if !headers.0.is_empty() {
        write_length(out, headers.0.len());
        for (name, values) in &headers.0 {
            write_string(out, name);
            if !values.is_empty() {
                write_length(out, values.len());
                for value in values {
                    write_string(out, value);
                }
            }
            write_long(out, 0);
        }
    }
    write_long(out, 0);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn error(&self, what: impl Into<String>) -> DatumError {
        DatumError {
            what: what.into(),
            at: self.at,
        }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    /// A zig-zag variable-length long: at most 10 bytes.
    fn long(&mut self) -> Result<i64, DatumError> {
        let mut value: u64 = 0;
        for shift in (0..70).step_by(7) {
            let Some(&byte) = self.bytes.get(self.at) else {
                return Err(self.error("datum ends inside a number"));
            };
            self.at += 1;
            if shift == 63 && byte > 1 {
                return Err(self.error("number longer than 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                // Zig-zag: 0, -1, 1, -2, ... The casts reinterpret bits, as the encoding does.
                #[allow(clippy::cast_possible_wrap)]
                let decoded = (value >> 1) as i64 ^ -((value & 1) as i64);
                return Ok(decoded);
            }
        }
        Err(self.error("number longer than 10 bytes"))
    }

    fn int(&mut self) -> Result<i32, DatumError> {
        let value = self.long()?;
        i32::try_from(value).map_err(|_| self.error(format!("{value} does not fit an int")))
    }

    /// A length or count, which must fit in what is left of the datum (each item takes at
    /// least `min_item_size` bytes).
    fn length(&mut self, min_item_size: usize) -> Result<usize, DatumError> {
        let length = self.long()?;
        let fits = usize::try_from(length)
            .ok()
            .filter(|n| n.saturating_mul(min_item_size) <= self.remaining());
        fits.ok_or_else(|| {
            self.error(format!(
                "length {length} exceeds the {} bytes left",
                self.remaining()
            ))
        })
    }

    fn bytes(&mut self) -> Result<&'a [u8], DatumError> {
        let length = self.length(1)?;
        let slice = &self.bytes[self.at..self.at + length];
        self.at += length;
        Ok(slice)
    }

    /// A string, borrowed from the datum.
    fn str(&mut self) -> Result<&'a str, DatumError> {
        let start = self.at;
        let bytes = self.bytes()?;
        std::str::from_utf8(bytes).map_err(|_| DatumError {
            what: "string is not valid UTF-8".to_owned(),
            at: start,
        })
    }

    fn string(&mut self) -> Result<String, DatumError> {
        self.str().map(str::to_owned)
    }

    /// `["null", "string"]`, borrowed from the datum.
    fn optional_str(&mut self) -> Result<Option<&'a str>, DatumError> {
        match self.long()? {
            0 => Ok(None),
            1 => self.str().map(Some),
            branch => Err(self.error(format!("union branch {branch} of [null, string]"))),
        }
    }

    fn optional_string(&mut self) -> Result<Option<String>, DatumError> {
        Ok(self.optional_str()?.map(str::to_owned))
    }

    /// `map<array<string>>`: blocks of entries until a zero count. A negative count is followed
    /// by the block's size in bytes (which we do not need).
    fn headers(&mut self) -> Result<RawHeaders, DatumError> {
        let mut entries = Vec::new();
        loop {
            // An entry is at least a key length and an empty array's end marker: 2 bytes.
            let count = self.block_count(2)?;
            if count == 0 {
                return Ok(RawHeaders(entries));
            }
            entries.reserve(count);
            for _ in 0..count {
                let name = self.string()?;
                let values = self.strings()?;
                entries.push((name, values));
            }
        }
    }

    /// `array<string>`.
    fn strings(&mut self) -> Result<Vec<String>, DatumError> {
        let mut values = Vec::new();
        loop {
            let count = self.block_count(1)?;
            if count == 0 {
                return Ok(values);
            }
            values.reserve(count);
            for _ in 0..count {
                values.push(self.string()?);
            }
        }
    }

    fn block_count(&mut self, min_item_size: usize) -> Result<usize, DatumError> {
        let count = self.long()?;
        if count < 0 {
            let _block_size = self.long()?;
        }
        let count = count.unsigned_abs();
        usize::try_from(count)
            .ok()
            .filter(|n| n.saturating_mul(min_item_size) <= self.remaining())
            .ok_or_else(|| {
                self.error(format!(
                    "block of {count} items exceeds the {} bytes left",
                    self.remaining()
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zigzag(value: i64) -> Vec<u8> {
        #[allow(clippy::cast_sign_loss)]
        let mut n = ((value << 1) ^ (value >> 63)) as u64;
        let mut out = Vec::new();
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    #[test]
    fn longs_decode_across_the_range() {
        for value in [0, -1, 1, -64, 64, i64::from(i32::MAX), i64::MIN, i64::MAX] {
            let bytes = zigzag(value);
            let mut reader = Reader {
                bytes: &bytes,
                at: 0,
            };
            assert_eq!(reader.long().unwrap(), value);
            assert_eq!(reader.at, bytes.len());
        }
        let too_long = [0xff; 11];
        assert!(Reader {
            bytes: &too_long,
            at: 0
        }
        .long()
        .is_err());
    }

    #[test]
    fn announced_lengths_beyond_the_datum_fail_before_allocating() {
        // A string announcing a billion bytes, then a map announcing a billion entries.
        for datum in [zigzag(1_000_000_000), zigzag(-1_000_000_000)] {
            let err = decode(&datum).unwrap_err();
            assert!(err.to_string().contains("exceeds"), "{err}");
        }
        let mut headers = zigzag(1_000_000_000);
        headers.extend(zigzag(3));
        let err = Reader {
            bytes: &headers,
            at: 0,
        }
        .headers()
        .unwrap_err();
        assert!(err.to_string().contains("exceeds"), "{err}");
    }
}
