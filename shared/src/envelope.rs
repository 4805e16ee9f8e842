//! The envelope format: how one encrypted value is written as text.
//!
//! # Version 1 (the reference design's format)
//!
//! ```text
//! prefix + base64(RSA-OAEP(SHA-256, MGF1-SHA-256, empty label)(utf8(value))) + suffix
//! ```
//!
//! - `prefix`/`suffix` are the key's [`MarkerPair`] (`#01#` … `#10#` for key `01`).
//! - base64 is the standard alphabet (`A-Z a-z 0-9 + /`) with `=` padding, canonical: exactly
//!   `4 * ceil(k / 3)` characters for a `k`-byte modulus (344 for RSA-2048).
//! - The RSA ciphertext is exactly `k` bytes, so a whole RSA-2048 envelope with the default
//!   markers is 352 characters.
//!
//! # Version 2
//!
//! A hybrid envelope with the same markers and alphabet ([`crate::EnvelopeV2`], section 5 of
//! `docs/ENVELOPE.md`). Under an RSA key a payload of exactly the version-1 length is version 1
//! and any other payload must be version 2 (its first byte is `0x02`, and it is always longer);
//! under a P-256 key every payload is version 2.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::key::MarkerPair;
use crate::v2::{EnvelopeV2, KeyKind};

pub use crate::alphabet::is_payload_byte;

/// Length of a version-1 payload (base64 text) for a `modulus_len`-byte RSA key.
pub const fn v1_payload_len(modulus_len: usize) -> usize {
    modulus_len.div_ceil(3) * 4
}

/// Length of a whole version-1 envelope, markers included.
pub fn v1_envelope_len(markers: &MarkerPair, modulus_len: usize) -> usize {
    markers.prefix.as_str().len() + v1_payload_len(modulus_len) + markers.suffix.as_str().len()
}

/// Appends a version-1 envelope for `ciphertext` to `out`, without intermediate allocation.
///
/// ```
/// use fle_shared::{write_v1, KeyId, MarkerPair};
/// let markers = MarkerPair::default_for(&"01".parse::<KeyId>().unwrap());
/// let mut out = String::from("x=");
/// write_v1(&markers, &[0xfb, 0xff], &mut out);
/// assert_eq!(out, "x=#01#+/8=#10#");
/// ```
pub fn write_v1(markers: &MarkerPair, ciphertext: &[u8], out: &mut String) {
    out.reserve(
        markers.prefix.as_str().len()
            + ciphertext.len().div_ceil(3) * 4
            + markers.suffix.as_str().len(),
    );
    out.push_str(markers.prefix.as_str());
    STANDARD.encode_string(ciphertext, out);
    out.push_str(markers.suffix.as_str());
}

/// One decoded envelope.
#[derive(Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Envelope {
    /// Version 1: the RSA-OAEP-SHA256 ciphertext of the value, exactly modulus-length bytes.
    V1 {
        /// The raw RSA ciphertext (what KMS `Decrypt` takes as `CiphertextBlob`).
        rsa_ciphertext: Vec<u8>,
    },
    /// Version 2: one value's self-contained token of a hybrid envelope.
    V2(EnvelopeV2),
}

impl Envelope {
    /// Decodes the base64 payload found between a key's markers, for a key of `kind`
    /// (docs/ENVELOPE.md section 4 tells versions apart).
    pub fn decode_payload(payload: &[u8], kind: KeyKind) -> Result<Self, EnvelopeError> {
        match kind {
            KeyKind::Rsa { modulus_len } if payload.len() == v1_payload_len(modulus_len) => {
                Self::decode_v1(payload, modulus_len)
            }
            KeyKind::Rsa { modulus_len } if payload.len() < kind.v2_min_payload_len() => {
                Err(EnvelopeError::UnsupportedLength {
                    len: payload.len(),
                    expected: v1_payload_len(modulus_len),
                })
            }
            _ => EnvelopeV2::decode_payload(payload, kind).map(Envelope::V2),
        }
    }

    fn decode_v1(payload: &[u8], modulus_len: usize) -> Result<Self, EnvelopeError> {
        let mut rsa_ciphertext = vec![0u8; modulus_len + 2];
        let n = STANDARD
            .decode_slice(payload, &mut rsa_ciphertext)
            .map_err(|_| EnvelopeError::InvalidBase64)?;
        if n != modulus_len {
            return Err(EnvelopeError::InvalidBase64);
        }
        rsa_ciphertext.truncate(n);
        Ok(Envelope::V1 { rsa_ciphertext })
    }

    /// The format version (1 or 2).
    pub fn version(&self) -> u8 {
        match self {
            Envelope::V1 { .. } => 1,
            Envelope::V2(_) => 2,
        }
    }
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Envelope::V1 { rsa_ciphertext } => f
                .debug_struct("Envelope::V1")
                .field("rsa_ciphertext_len", &rsa_ciphertext.len())
                .finish(),
            Envelope::V2(token) => token.fmt(f),
        }
    }
}

/// Why an envelope payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The payload has a length no known version uses for this key.
    #[error("envelope payload is {len} characters; version 1 under this key needs {expected}")]
    UnsupportedLength {
        /// Payload length found.
        len: usize,
        /// Payload length of a version-1 envelope under this key.
        expected: usize,
    },
    /// Not canonical standard padded base64.
    #[error("envelope payload is not canonical standard base64")]
    InvalidBase64,
    /// A version byte this reader does not know (or 0x00/0x01, which no version uses).
    #[error("envelope version byte {version:#04x} is not supported (this reader opens 1 and 2)")]
    UnsupportedVersion {
        /// The token's first byte.
        version: u8,
    },
    /// A version-2 token with flag bits this reader does not know.
    #[error("envelope version 2 with unknown flags {flags:#04x}")]
    UnknownFlags {
        /// The flags byte.
        flags: u8,
    },
    /// A version-2 payload shorter than an empty value's.
    #[error(
        "envelope version 2 payload of {len} characters; the shortest under this key is {min}"
    )]
    TooShort {
        /// Payload length.
        len: usize,
        /// Shortest payload under this key.
        min: usize,
    },
    /// A version-2 payload longer than a 1 MiB value's.
    #[error("envelope version 2 payload of {len} characters; the longest under this key is {max}")]
    TooLong {
        /// Payload length.
        len: usize,
        /// Longest payload under this key.
        max: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_lengths() {
        assert_eq!(v1_payload_len(256), 344);
        assert_eq!(v1_payload_len(384), 512);
        assert_eq!(v1_payload_len(512), 684);
        let m = MarkerPair::default_for(&"01".parse().unwrap());
        assert_eq!(v1_envelope_len(&m, 256), 352);
    }

    #[test]
    fn round_trip_and_rejections() {
        let m = MarkerPair::default_for(&"01".parse().unwrap());
        let ct: Vec<u8> = (0..=255u8).collect();
        let mut s = String::new();
        write_v1(&m, &ct, &mut s);
        assert_eq!(s.len(), 352);
        let payload = &s.as_bytes()[4..s.len() - 4];
        let env = Envelope::decode_payload(payload, KeyKind::Rsa { modulus_len: 256 }).unwrap();
        assert_eq!(env, Envelope::V1 { rsa_ciphertext: ct });
        assert_eq!(env.version(), 1);
        assert!(!format!("{env:?}").contains("255"));

        assert_eq!(
            Envelope::decode_payload(payload, KeyKind::Rsa { modulus_len: 384 }),
            Err(EnvelopeError::UnsupportedLength {
                len: 344,
                expected: 512
            })
        );
        // Non-canonical: trailing bits set before the padding.
        let mut bad = payload.to_vec();
        let i = bad.len() - 3;
        bad[i] = b'B';
        assert_eq!(
            Envelope::decode_payload(&bad, KeyKind::Rsa { modulus_len: 256 }),
            Err(EnvelopeError::InvalidBase64)
        );
        // Padding in the middle.
        let mut bad = payload.to_vec();
        bad[10] = b'=';
        assert_eq!(
            Envelope::decode_payload(&bad, KeyKind::Rsa { modulus_len: 256 }),
            Err(EnvelopeError::InvalidBase64)
        );
    }

    #[test]
    fn payload_alphabet() {
        let alphabet: Vec<u8> = (0..=255u8).filter(|&b| is_payload_byte(b)).collect();
        assert_eq!(
            alphabet,
            b"+/0123456789=ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".to_vec()
        );
    }
}
