//! Key identifiers, envelope markers and RSA public keys.
//!
//! These are the validated building blocks of a [`Keyring`](crate::Keyring): once a value of
//! one of these types exists, it is known to be well formed, so nothing downstream re-checks it.

use std::fmt;

use der::Decode;

use crate::alphabet::is_payload_byte;

/// RSA modulus sizes fle accepts, in bits. KMS offers exactly these for `ENCRYPT_DECRYPT` keys.
pub const SUPPORTED_MODULUS_BITS: [usize; 3] = [2048, 3072, 4096];

/// OID of `rsaEncryption` (PKCS #1), the algorithm of every RSA SubjectPublicKeyInfo.
const RSA_ENCRYPTION: spki::ObjectIdentifier =
    spki::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Longest key id, in bytes.
pub const MAX_KEY_ID_LEN: usize = 32;

/// Longest marker, in bytes.
pub const MAX_MARKER_LEN: usize = 32;

/// The name of a key as it appears in markers and configuration: 1 to 32 ASCII letters,
/// digits, `-` or `_` (for example `01`).
///
/// ```
/// use fle_shared::KeyId;
/// let id: KeyId = "01".parse().unwrap();
/// assert_eq!(id.as_str(), "01");
/// assert!("0#1".parse::<KeyId>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for KeyId {
    type Err = KeyIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok_len = !s.is_empty() && s.len() <= MAX_KEY_ID_LEN;
        let ok_chars = s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok_len && ok_chars {
            Ok(KeyId(s.to_owned()))
        } else {
            Err(KeyIdError {
                id: s.chars().take(MAX_KEY_ID_LEN + 8).collect(),
            })
        }
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({:?})", self.0)
    }
}

/// A key id that is empty, too long or has characters outside `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid key id {id:?}: use 1 to {MAX_KEY_ID_LEN} ASCII letters, digits, '-' or '_'")]
pub struct KeyIdError {
    /// The rejected id (configuration text, not secret), shortened if very long.
    pub id: String,
}

/// One end of an envelope: the text before (prefix) or after (suffix) the base64 payload.
///
/// A marker is 1 to 32 printable ASCII characters, **starts with a character that cannot occur
/// in standard base64** (so no marker can begin inside a ciphertext, and the scanner never has to
/// guess where a payload ends), and contains neither `"` nor `\` (which JSON would escape, hiding
/// the marker from the scanner).
///
/// ```
/// use fle_shared::Marker;
/// assert!(Marker::new("#01#").is_ok());
/// assert!(Marker::new("01#").is_err()); // starts with a base64 character
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Marker(String);

impl Marker {
    /// Validates `text` as a marker.
    pub fn new(text: &str) -> Result<Self, MarkerError> {
        let reason = if text.is_empty() || text.len() > MAX_MARKER_LEN {
            Some("must be 1 to 32 characters long")
        } else if !text.bytes().all(|b| b.is_ascii_graphic()) {
            Some("must be printable ASCII without spaces")
        } else if text.bytes().any(|b| b == b'"' || b == b'\\') {
            Some("must not contain '\"' or '\\' (JSON would escape them)")
        } else if is_payload_byte(text.as_bytes()[0]) {
            Some("must start with a character that cannot occur in base64 (not A-Z a-z 0-9 + / =)")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(MarkerError {
                marker: text.chars().take(MAX_MARKER_LEN + 8).collect(),
                reason,
            }),
            None => Ok(Marker(text.to_owned())),
        }
    }

    /// The marker text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The marker bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Display for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Marker({:?})", self.0)
    }
}

/// A marker that breaks one of the rules of [`Marker`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid marker {marker:?}: {reason}")]
pub struct MarkerError {
    /// The rejected marker (configuration text, not secret).
    pub marker: String,
    /// Which rule it breaks.
    pub reason: &'static str,
}

/// The prefix and suffix that surround a key's envelopes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MarkerPair {
    /// Text before the payload (`#01#` for key `01`).
    pub prefix: Marker,
    /// Text after the payload (`#10#` for key `01`).
    pub suffix: Marker,
}

impl MarkerPair {
    /// The reference design's markers for `id`: `#<id>#` and `#<id reversed>#`.
    ///
    /// ```
    /// use fle_shared::{KeyId, MarkerPair};
    /// let pair = MarkerPair::default_for(&"01".parse::<KeyId>().unwrap());
    /// assert_eq!((pair.prefix.as_str(), pair.suffix.as_str()), ("#01#", "#10#"));
    /// ```
    pub fn default_for(id: &KeyId) -> Self {
        let reversed: String = id.as_str().chars().rev().collect();
        // A valid KeyId has no '#', '"' or '\', and "#" starts no base64 text, so both are valid.
        MarkerPair {
            prefix: Marker(format!("#{id}#")),
            suffix: Marker(format!("#{reversed}#")),
        }
    }
}

/// A validated RSA public key (DER SubjectPublicKeyInfo, as KMS `GetPublicKey` returns it) of
/// 2048, 3072 or 4096 bits.
///
/// Parsing is pure Rust and independent of the crypto backend, so the same checks apply on
/// every platform, wasm32 included.
#[derive(Clone, PartialEq, Eq)]
pub struct RsaPublicKey {
    spki_der: Vec<u8>,
    modulus_bits: usize,
}

impl RsaPublicKey {
    /// Parses a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, PublicKeyError> {
        let spki = spki::SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| PublicKeyError::Malformed(e.to_string()))?;
        if spki.algorithm.oid != RSA_ENCRYPTION {
            return Err(PublicKeyError::NotRsa(spki.algorithm.oid.to_string()));
        }
        let key_bytes = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| PublicKeyError::Malformed("unaligned public key bit string".into()))?;
        let key = pkcs1::RsaPublicKey::from_der(key_bytes)
            .map_err(|e| PublicKeyError::Malformed(e.to_string()))?;
        let modulus_bits = bit_length(key.modulus.as_bytes());
        if !SUPPORTED_MODULUS_BITS.contains(&modulus_bits) {
            return Err(PublicKeyError::UnsupportedSize { bits: modulus_bits });
        }
        let e = key.public_exponent.as_bytes();
        let e_odd = e.last().is_some_and(|b| b & 1 == 1);
        if !e_odd || bit_length(e) < 2 || e.len() > 8 {
            return Err(PublicKeyError::BadExponent);
        }
        Ok(RsaPublicKey {
            spki_der: der.to_vec(),
            modulus_bits,
        })
    }

    /// Parses a PEM `PUBLIC KEY` block (SubjectPublicKeyInfo).
    pub fn from_pem(pem: &str) -> Result<Self, PublicKeyError> {
        Self::from_spki_der(&public_pem_der(pem)?)
    }

    /// Parses either PEM (text starting with `-----BEGIN`) or DER.
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<Self, PublicKeyError> {
        Self::from_spki_der(&spki_bytes(bytes)?)
    }

    /// The key as a PEM `PUBLIC KEY` block (LF line endings).
    pub fn to_pem(&self) -> String {
        // Encoding a DER we parsed ourselves cannot fail; an empty string would fail to load.
        pem_rfc7468::encode_string("PUBLIC KEY", pem_rfc7468::LineEnding::LF, &self.spki_der)
            .unwrap_or_default()
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// Modulus size in bits (2048, 3072 or 4096).
    pub fn modulus_bits(&self) -> usize {
        self.modulus_bits
    }

    /// Modulus size in bytes: the length of every RSA ciphertext under this key.
    pub fn modulus_len(&self) -> usize {
        self.modulus_bits / 8
    }

    /// Largest plaintext RSA-OAEP-SHA256 can carry under this key: modulus bytes − 66
    /// (190 for RSA-2048, 318 for 3072, 446 for 4096).
    pub fn max_plaintext_len(&self) -> usize {
        self.modulus_len() - 2 * 32 - 2
    }
}

impl fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RsaPublicKey")
            .field("modulus_bits", &self.modulus_bits)
            .finish_non_exhaustive()
    }
}

/// The DER inside a PEM `PUBLIC KEY` block.
fn public_pem_der(pem: &str) -> Result<Vec<u8>, PublicKeyError> {
    let (label, der) = pem_rfc7468::decode_vec(pem.trim().as_bytes())
        .map_err(|e| PublicKeyError::Malformed(format!("PEM: {e}")))?;
    if label != "PUBLIC KEY" {
        return Err(PublicKeyError::WrongPemLabel(label.to_owned()));
    }
    Ok(der)
}

/// The DER of a public key given as PEM (text starting with `-----BEGIN`) or DER.
fn spki_bytes(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, PublicKeyError> {
    let trimmed = bytes.trim_ascii_start();
    if trimmed.starts_with(b"-----BEGIN") {
        let text = std::str::from_utf8(trimmed)
            .map_err(|_| PublicKeyError::Malformed("PEM is not UTF-8".into()))?;
        Ok(std::borrow::Cow::Owned(public_pem_der(text)?))
    } else {
        Ok(std::borrow::Cow::Borrowed(bytes))
    }
}

fn bit_length(big_endian: &[u8]) -> usize {
    match big_endian.iter().position(|&b| b != 0) {
        None => 0,
        Some(i) => (big_endian.len() - i) * 8 - big_endian[i].leading_zeros() as usize,
    }
}

/// Why a public key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublicKeyError {
    /// Not parseable as PEM or DER SubjectPublicKeyInfo.
    #[error("not a valid DER SubjectPublicKeyInfo: {0}")]
    Malformed(String),
    /// A PEM block other than `PUBLIC KEY`.
    #[error(
        "expected a PEM \"PUBLIC KEY\" block (SubjectPublicKeyInfo), found \"{0}\"; \
         convert with `openssl pkey -pubin -in KEY -pubout` (or `openssl rsa -RSAPublicKey_in -pubout` for PKCS#1)"
    )]
    WrongPemLabel(String),
    /// A key of another algorithm.
    #[error("not an RSA key (algorithm {0})")]
    NotRsa(String),
    /// Not an EC key on P-256.
    #[error("not an EC P-256 key ({0})")]
    NotP256(String),
    /// Neither an RSA nor an EC P-256 key.
    #[error("algorithm {0} is neither RSA nor EC P-256")]
    UnsupportedAlgorithm(String),
    /// Modulus other than 2048, 3072 or 4096 bits.
    #[error("RSA key of {bits} bits: only 2048, 3072 and 4096 are supported")]
    UnsupportedSize {
        /// The key's modulus size.
        bits: usize,
    },
    /// Even, tiny or huge public exponent.
    #[error("RSA public exponent is not an odd number between 3 and 2^64")]
    BadExponent,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids() {
        for ok in ["01", "a", "key_2024-01", &"x".repeat(32)] {
            assert!(ok.parse::<KeyId>().is_ok(), "{ok}");
        }
        for bad in ["", "0 1", "#01", "é", &"x".repeat(33), "a/b"] {
            assert!(bad.parse::<KeyId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn markers() {
        for ok in ["#01#", "#", "~k1~", "<enc>", "!a+/="] {
            assert!(Marker::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "01#",
            "A#",
            "+#",
            "/#",
            "=#",
            "# 1",
            "#\"#",
            "#\\#",
            "#é#",
            &"#".repeat(33),
        ] {
            assert!(Marker::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_markers_reverse_the_id() {
        let pair = MarkerPair::default_for(&"abc".parse().unwrap());
        assert_eq!(pair.prefix.as_str(), "#abc#");
        assert_eq!(pair.suffix.as_str(), "#cba#");
    }

    #[test]
    fn bit_lengths() {
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[0, 0]), 0);
        assert_eq!(bit_length(&[1]), 1);
        assert_eq!(bit_length(&[0, 0x80, 0]), 16);
        assert_eq!(bit_length(&[0x01, 0x00, 0x01]), 17);
    }

    #[test]
    fn garbage_keys_are_errors_not_panics() {
        for input in [
            &b""[..],
            b"\x30",
            b"-----BEGIN PUBLIC KEY-----\n",
            b"\x30\x03\x02\x01\x00",
        ] {
            assert!(RsaPublicKey::from_pem_or_der(input).is_err());
        }
    }
}

/// A marker of one key equals or starts another key's marker: an envelope could then belong to
/// two keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "markers overlap: {:?} of key {} and {:?} of key {}; give one of them other markers (prefix = ..., suffix = ...)",
    first.1, first.0, second.1, second.0
)]
pub struct MarkerOverlap {
    /// One key and its marker.
    pub first: (KeyId, String),
    /// The other key and its marker.
    pub second: (KeyId, String),
}

/// Checks that no marker of one key equals or is a prefix of a marker of another key.
pub(crate) fn check_marker_overlap(keys: &[(&KeyId, &MarkerPair)]) -> Result<(), MarkerOverlap> {
    for (i, (id_a, a)) in keys.iter().enumerate() {
        for (id_b, b) in &keys[..i] {
            for ma in [&a.prefix, &a.suffix] {
                for mb in [&b.prefix, &b.suffix] {
                    let (x, y) = (ma.as_str(), mb.as_str());
                    if x.starts_with(y) || y.starts_with(x) {
                        return Err(MarkerOverlap {
                            first: ((*id_b).clone(), mb.as_str().to_owned()),
                            second: ((*id_a).clone(), ma.as_str().to_owned()),
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

/// OID of `id-ecPublicKey` (RFC 5480).
const ID_EC_PUBLIC_KEY: spki::ObjectIdentifier =
    spki::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

/// OID of the named curve `prime256v1` (P-256, secp256r1).
const PRIME256V1: spki::ObjectIdentifier =
    spki::ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// A validated EC P-256 public key (DER SubjectPublicKeyInfo, as KMS `GetPublicKey` returns it
/// for `KEY_AGREEMENT` keys of spec `ECC_NIST_P256`): the recipient key of envelope version 2's
/// `hpke-p256` encapsulation.
///
/// The point is checked to be on the curve and not the identity; parsing is pure Rust, the same
/// on every platform.
#[derive(Clone, PartialEq, Eq)]
pub struct P256PublicKey {
    spki_der: Vec<u8>,
    point: [u8; 65],
}

impl P256PublicKey {
    /// Parses a DER SubjectPublicKeyInfo (`id-ecPublicKey` with the named curve `prime256v1`;
    /// the point compressed or not).
    pub fn from_spki_der(der: &[u8]) -> Result<Self, PublicKeyError> {
        let spki = spki::SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| PublicKeyError::Malformed(e.to_string()))?;
        if spki.algorithm.oid != ID_EC_PUBLIC_KEY {
            return Err(PublicKeyError::NotP256(spki.algorithm.oid.to_string()));
        }
        let curve = spki
            .algorithm
            .parameters_oid()
            .map_err(|_| PublicKeyError::NotP256("an EC key without a named curve".into()))?;
        if curve != PRIME256V1 {
            return Err(PublicKeyError::NotP256(format!("EC curve {curve}")));
        }
        let bytes = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| PublicKeyError::Malformed("unaligned public key bit string".into()))?;
        let point = uncompressed_p256_point(bytes)
            .ok_or_else(|| PublicKeyError::Malformed("not a point on P-256".into()))?;
        Ok(P256PublicKey {
            spki_der: der.to_vec(),
            point,
        })
    }

    /// Parses a PEM `PUBLIC KEY` block (SubjectPublicKeyInfo).
    pub fn from_pem(pem: &str) -> Result<Self, PublicKeyError> {
        Self::from_spki_der(&public_pem_der(pem)?)
    }

    /// The public key with this SEC 1 point (compressed or uncompressed).
    pub fn from_sec1_point(point: &[u8]) -> Result<Self, PublicKeyError> {
        let point = uncompressed_p256_point(point)
            .ok_or_else(|| PublicKeyError::Malformed("not a point on P-256".into()))?;
        Ok(P256PublicKey {
            spki_der: p256_spki_der(&point),
            point,
        })
    }

    /// The SubjectPublicKeyInfo, DER.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The point, SEC 1 uncompressed (`0x04 ‖ x ‖ y`, 65 bytes): HPKE's `pkRm`.
    pub fn uncompressed_point(&self) -> &[u8; 65] {
        &self.point
    }

    /// The key as a PEM `PUBLIC KEY` block (LF line endings).
    pub fn to_pem(&self) -> String {
        pem_rfc7468::encode_string("PUBLIC KEY", pem_rfc7468::LineEnding::LF, &self.spki_der)
            .unwrap_or_default()
    }
}

impl fmt::Debug for P256PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("P256PublicKey").finish_non_exhaustive()
    }
}

/// The DER prefix of a P-256 SubjectPublicKeyInfo with an uncompressed point: what precedes the
/// 65 point bytes (docs/ENVELOPE.md section 5.4).
pub const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The DER SubjectPublicKeyInfo of an uncompressed P-256 point (what KMS `DeriveSharedSecret`
/// takes as `PublicKey`).
pub fn p256_spki_der(uncompressed: &[u8; 65]) -> Vec<u8> {
    let mut der = Vec::with_capacity(91);
    der.extend_from_slice(&P256_SPKI_PREFIX);
    der.extend_from_slice(uncompressed);
    der
}

/// Validates a SEC 1 P-256 point (compressed or uncompressed; not the identity) and returns it
/// uncompressed.
pub(crate) fn uncompressed_p256_point(sec1: &[u8]) -> Option<[u8; 65]> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let key = p256::PublicKey::from_sec1_bytes(sec1).ok()?;
    key.to_encoded_point(false).as_bytes().try_into().ok()
}

/// A keyring's public key: RSA (envelope versions 1 and 2) or EC P-256 (version 2 only).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublicKey {
    /// An RSA key (KMS `ENCRYPT_DECRYPT`).
    Rsa(RsaPublicKey),
    /// An EC P-256 key (KMS `KEY_AGREEMENT`, `ECC_NIST_P256`).
    P256(P256PublicKey),
}

impl PublicKey {
    /// Parses a DER SubjectPublicKeyInfo of either kind.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, PublicKeyError> {
        let spki = spki::SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| PublicKeyError::Malformed(e.to_string()))?;
        match spki.algorithm.oid {
            RSA_ENCRYPTION => RsaPublicKey::from_spki_der(der).map(PublicKey::Rsa),
            ID_EC_PUBLIC_KEY => P256PublicKey::from_spki_der(der).map(PublicKey::P256),
            other => Err(PublicKeyError::UnsupportedAlgorithm(other.to_string())),
        }
    }

    /// Parses a PEM `PUBLIC KEY` block of either kind.
    pub fn from_pem(pem: &str) -> Result<Self, PublicKeyError> {
        Self::from_spki_der(&public_pem_der(pem)?)
    }

    /// Parses either PEM (text starting with `-----BEGIN`) or DER.
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<Self, PublicKeyError> {
        Self::from_spki_der(&spki_bytes(bytes)?)
    }

    /// The kind of key, which fixes how its envelopes are read.
    pub fn kind(&self) -> crate::KeyKind {
        match self {
            PublicKey::Rsa(k) => crate::KeyKind::Rsa {
                modulus_len: k.modulus_len(),
            },
            PublicKey::P256(_) => crate::KeyKind::P256,
        }
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        match self {
            PublicKey::Rsa(k) => k.spki_der(),
            PublicKey::P256(k) => k.spki_der(),
        }
    }

    /// The key as a PEM `PUBLIC KEY` block (LF line endings).
    pub fn to_pem(&self) -> String {
        match self {
            PublicKey::Rsa(k) => k.to_pem(),
            PublicKey::P256(k) => k.to_pem(),
        }
    }

    /// The RSA key, if it is one.
    pub fn as_rsa(&self) -> Option<&RsaPublicKey> {
        match self {
            PublicKey::Rsa(k) => Some(k),
            PublicKey::P256(_) => None,
        }
    }

    /// The P-256 key, if it is one.
    pub fn as_p256(&self) -> Option<&P256PublicKey> {
        match self {
            PublicKey::P256(k) => Some(k),
            PublicKey::Rsa(_) => None,
        }
    }

    /// A short description for listings: `RSA-2048`, `P-256`.
    pub fn describe(&self) -> String {
        match self {
            PublicKey::Rsa(k) => format!("RSA-{}", k.modulus_bits()),
            PublicKey::P256(_) => "P-256".into(),
        }
    }
}

impl From<RsaPublicKey> for PublicKey {
    fn from(key: RsaPublicKey) -> Self {
        PublicKey::Rsa(key)
    }
}

impl From<P256PublicKey> for PublicKey {
    fn from(key: P256PublicKey) -> Self {
        PublicKey::P256(key)
    }
}

impl PartialEq<RsaPublicKey> for PublicKey {
    fn eq(&self, other: &RsaPublicKey) -> bool {
        self.as_rsa() == Some(other)
    }
}

impl PartialEq<PublicKey> for RsaPublicKey {
    fn eq(&self, other: &PublicKey) -> bool {
        other == self
    }
}

impl PartialEq<PublicKey> for P256PublicKey {
    fn eq(&self, other: &PublicKey) -> bool {
        other == self
    }
}

impl PartialEq<P256PublicKey> for PublicKey {
    fn eq(&self, other: &P256PublicKey) -> bool {
        self.as_p256() == Some(other)
    }
}
