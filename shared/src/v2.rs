//! Envelope version 2: one key encapsulation per request, AES-256-GCM per value
//! (`docs/ENVELOPE.md`, section 5, is the normative text).
//!
//! ```text
//! T = 0x02 ‖ flags ‖ encap ‖ u32be(index) ‖ AES-256-GCM(key_i, nonce_i, aad_i, M) ‖ tag
//! ```
//!
//! - `hpke-p256` (P-256 keys): `encap` is the compressed ephemeral point of one RFC 9180 `Encap`
//!   (DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, base mode); value `i` has its own key
//!   schedule with `info_i = kctx ‖ u32be(i)`, so any standard HPKE receiver opens any one value
//!   with `SetupBaseR(enc, skR, info_i).Open(aad_i, sealed)`.
//! - `rsa-oaep` (RSA keys): `encap` is a 32-byte data key wrapped with RSA-OAEP-SHA256; one
//!   AES-256-GCM key and base nonce per encapsulation from `HKDF-SHA256(DK)`, value `i` sealed
//!   with `base_nonce XOR i` (RFC 9180's `ComputeNonce`), so a value costs one AES-GCM call and
//!   no key derivation.
//!
//! The writer's side is [`V2Sealer`] (one per request); the reader's side is a [`V2Secret`],
//! derived once per encapsulation (from a KMS call or a private key) and then opening every
//! [`EnvelopeV2`] under that encapsulation locally.

use std::fmt;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hkdf::{Hkdf, HkdfExtract};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::backend::{Backend, BackendError, EncryptionKey, P256Recipient};
use crate::envelope::EnvelopeError;
use crate::key::{uncompressed_p256_point, KeyId, MarkerPair, P256PublicKey};
use crate::secret::Plaintext;

/// The version byte of envelope version 2.
pub const V2_VERSION: u8 = 0x02;

/// The flag bit of a path-bound token (docs/ENVELOPE.md section 5.3).
pub const V2_FLAG_PATH: u8 = 0x01;

/// Largest message (value bytes) a version-2 token carries: 1 MiB, the largest request body
/// CloudFront hands to Lambda@Edge.
pub const V2_MAX_MESSAGE_LEN: usize = 1 << 20;

/// Longest path bound into a token.
pub const V2_MAX_PATH_LEN: usize = u16::MAX as usize;

const TAG_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const INDEX_LEN: usize = 4;
/// Length of a P-256 `encap`: the SEC 1 compressed point.
const P256_ENCAP_LEN: usize = 33;
/// Length of the data key wrapped by `rsa-oaep`.
const DATA_KEY_LEN: usize = 32;

/// What `rsa-oaep` wraps before the data key (docs/ENVELOPE.md section 5.4). No version-1
/// message starts with `0x00 0xFF` (a writer's `0x00` is the JSON-value tag, followed by JSON
/// text), so an encapsulation re-labelled as a version-1 envelope is recognised and refused
/// instead of handing out the request's data key as a value.
pub const V2_DATA_KEY_PREFIX: &[u8] = b"\x00\xfffle-v2-dk";

/// Whether a version-1 plaintext is in fact a version-2 `rsa-oaep` data key: readers refuse
/// to release it as a value.
pub fn is_v2_data_key(plaintext: &[u8]) -> bool {
    plaintext.starts_with(V2_DATA_KEY_PREFIX)
}

/// RFC 9180 suite ids: DHKEM(P-256, HKDF-SHA256) = 0x0010, HKDF-SHA256 = 0x0001,
/// AES-256-GCM = 0x0002.
const KEM_SUITE_ID: &[u8] = b"KEM\x00\x10";
const HPKE_SUITE_ID: &[u8] = b"HPKE\x00\x10\x00\x01\x00\x02";
const HPKE_V1: &[u8] = b"HPKE-v1";

/// The kind of key a token is read under: it fixes the encapsulation and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyKind {
    /// RSA with a modulus of this many bytes (256, 384 or 512): `rsa-oaep`, and version 1.
    Rsa {
        /// Modulus length in bytes.
        modulus_len: usize,
    },
    /// EC P-256: `hpke-p256`, version 2 only.
    P256,
}

impl KeyKind {
    /// Length of this kind's `encap` field in a version-2 token.
    pub fn encap_len(self) -> usize {
        match self {
            KeyKind::Rsa { modulus_len } => modulus_len,
            KeyKind::P256 => P256_ENCAP_LEN,
        }
    }

    /// Length of a version-2 header (version, flags, encap, index) under this kind.
    pub fn v2_header_len(self) -> usize {
        2 + self.encap_len() + INDEX_LEN
    }

    /// Shortest version-2 payload (base64 characters) under this kind: an empty message.
    pub fn v2_min_payload_len(self) -> usize {
        (self.v2_header_len() + TAG_LEN).div_ceil(3) * 4
    }

    /// Longest version-2 payload (base64 characters) under this kind: a 1 MiB message.
    pub fn v2_max_payload_len(self) -> usize {
        (self.v2_header_len() + V2_MAX_MESSAGE_LEN + TAG_LEN).div_ceil(3) * 4
    }
}

/// Length of a whole version-2 envelope (markers included) for a `message_len`-byte value.
pub fn v2_envelope_len(markers: &MarkerPair, kind: KeyKind, message_len: usize) -> usize {
    markers.prefix.as_str().len()
        + (kind.v2_header_len() + message_len + TAG_LEN).div_ceil(3) * 4
        + markers.suffix.as_str().len()
}

/// A decoded version-2 token: its bytes, checked for shape (version, flags, lengths) but not
/// yet authenticated.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EnvelopeV2 {
    bytes: Vec<u8>,
    kind: KeyKind,
}

impl EnvelopeV2 {
    /// Decodes a base64 payload found under a key of `kind`. The caller has already ruled out
    /// version 1 (for RSA keys, by the payload's length).
    pub fn decode_payload(payload: &[u8], kind: KeyKind) -> Result<Self, EnvelopeError> {
        if payload.len() < kind.v2_min_payload_len() {
            return Err(EnvelopeError::TooShort {
                len: payload.len(),
                min: kind.v2_min_payload_len(),
            });
        }
        if payload.len() > kind.v2_max_payload_len() {
            return Err(EnvelopeError::TooLong {
                len: payload.len(),
                max: kind.v2_max_payload_len(),
            });
        }
        let bytes = STANDARD
            .decode(payload)
            .map_err(|_| EnvelopeError::InvalidBase64)?;
        Self::from_bytes(bytes, kind)
    }

    /// Checks the shape of token bytes `T` under a key of `kind`.
    pub fn from_bytes(bytes: Vec<u8>, kind: KeyKind) -> Result<Self, EnvelopeError> {
        let min = kind.v2_header_len() + TAG_LEN;
        match bytes.first() {
            Some(&V2_VERSION) => {}
            Some(&version) => return Err(EnvelopeError::UnsupportedVersion { version }),
            None => return Err(EnvelopeError::InvalidBase64),
        }
        if bytes.len() < min {
            return Err(EnvelopeError::TooShort {
                len: bytes.len().div_ceil(3) * 4,
                min: kind.v2_min_payload_len(),
            });
        }
        if bytes.len() > min + V2_MAX_MESSAGE_LEN {
            return Err(EnvelopeError::TooLong {
                len: bytes.len().div_ceil(3) * 4,
                max: kind.v2_max_payload_len(),
            });
        }
        let flags = bytes[1];
        if flags & !V2_FLAG_PATH != 0 {
            return Err(EnvelopeError::UnknownFlags { flags });
        }
        Ok(EnvelopeV2 { bytes, kind })
    }

    /// The token bytes `T`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The kind of key it was read under.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// Whether the token is bound to the path of its field (flag `0x01`).
    pub fn path_bound(&self) -> bool {
        self.bytes[1] & V2_FLAG_PATH != 0
    }

    /// The encapsulation: 33 bytes of compressed ephemeral point (`hpke-p256`) or the RSA-OAEP
    /// ciphertext of the data key (`rsa-oaep`). Tokens of one request share it; it is the key of
    /// a decryptor's cache.
    pub fn encapsulation(&self) -> &[u8] {
        &self.bytes[2..2 + self.kind.encap_len()]
    }

    /// The value's number under its encapsulation.
    pub fn index(&self) -> u32 {
        let at = 2 + self.kind.encap_len();
        let mut index = [0u8; INDEX_LEN];
        index.copy_from_slice(&self.bytes[at..at + INDEX_LEN]);
        u32::from_be_bytes(index)
    }

    /// Length of the message the token carries, in bytes.
    pub fn message_len(&self) -> usize {
        self.bytes.len() - self.kind.v2_header_len() - TAG_LEN
    }

    /// For `hpke-p256`: HPKE's `enc`, the ephemeral point uncompressed (65 bytes); `None` under
    /// an RSA key or if the point is not on the curve.
    pub fn p256_enc(&self) -> Option<[u8; 65]> {
        match self.kind {
            KeyKind::P256 => uncompressed_p256_point(self.encapsulation()),
            KeyKind::Rsa { .. } => None,
        }
    }

    fn sealed(&self) -> &[u8] {
        &self.bytes[self.kind.v2_header_len()..]
    }
}

impl fmt::Debug for EnvelopeV2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvelopeV2")
            .field("kind", &self.kind)
            .field("path_bound", &self.path_bound())
            .field("index", &self.index())
            .field("message_len", &self.message_len())
            .finish()
    }
}

/// `kctx = "fle v2" ‖ 0x00 ‖ u8(len(id)) ‖ id` (section 5.2).
fn kctx(id: &KeyId, out: &mut Vec<u8>) {
    out.extend_from_slice(b"fle v2\x00");
    // A KeyId is at most 32 bytes.
    out.push(id.as_str().len() as u8);
    out.extend_from_slice(id.as_str().as_bytes());
}

/// `aad_i = kctx ‖ version ‖ flags ‖ u32be(i) ‖ [u32be(len(path)) ‖ path]`. The encapsulation is
/// not in it: both encapsulations bind it through the key (HPKE's `kem_context`; the data key
/// that only this encapsulation unwraps to), and it would cost the GHASH of up to 512 bytes per
/// value.
fn aad(id: &KeyId, flags: u8, index: u32, path: Option<&[u8]>, out: &mut Vec<u8>) {
    out.clear();
    kctx(id, out);
    out.extend_from_slice(&[V2_VERSION, flags]);
    out.extend_from_slice(&index.to_be_bytes());
    if let Some(path) = path {
        out.extend_from_slice(&(path.len() as u32).to_be_bytes());
        out.extend_from_slice(path);
    }
}

/// HPKE's `LabeledExtract(salt, label, ikm)` with HKDF-SHA256.
fn labeled_extract(suite: &[u8], salt: &[u8], label: &[u8], ikm: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut extract = HkdfExtract::<Sha256>::new(Some(salt));
    for part in [HPKE_V1, suite, label, ikm] {
        extract.input_ikm(part);
    }
    let (mut prk, _) = extract.finalize();
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&prk);
    prk.zeroize();
    out
}

/// HPKE's `LabeledExpand(prk, label, info, L)` with HKDF-SHA256 (`L = out.len()`, at most 255·32).
/// `info` has at most 3 parts.
fn labeled_expand(suite: &[u8], prk: &Hkdf<Sha256>, label: &[u8], info: &[&[u8]], out: &mut [u8]) {
    let len = (out.len() as u16).to_be_bytes();
    let mut parts: [&[u8]; 7] = [&len, HPKE_V1, suite, label, &[], &[], &[]];
    let n = 4 + info.len().min(3);
    parts[4..n].copy_from_slice(&info[..n - 4]);
    // L is at most 65 bytes here, far below HKDF-SHA256's 8,160.
    if prk.expand_multi_info(&parts[..n], out).is_err() {
        unreachable!("HKDF-SHA256 expand of at most 65 bytes cannot fail")
    }
}

/// HKDF-SHA256 keyed with a 32-byte PRK (always a valid length).
fn hkdf_from_prk(prk: &[u8; 32]) -> Hkdf<Sha256> {
    match Hkdf::<Sha256>::from_prk(prk) {
        Ok(hkdf) => hkdf,
        Err(_) => unreachable!("a 32-byte PRK is valid for HKDF-SHA256"),
    }
}

/// The secret of one encapsulation: everything needed to seal or open the values under it.
/// Zeroized on drop; `Debug` shows only its kind.
pub struct V2Secret {
    schedule: Schedule,
}

enum Schedule {
    /// HPKE: the key schedule's `secret` (psk empty) and `psk_id_hash`.
    Hpke {
        secret: Zeroizing<[u8; 32]>,
        psk_id_hash: Zeroizing<[u8; 32]>,
    },
    /// rsa-oaep: the encapsulation's AES-256-GCM key, expanded once (its round keys and GHASH
    /// key are zeroized on drop), and its base nonce.
    Rsa {
        cipher: Box<Aes256Gcm>,
        base_nonce: Zeroizing<[u8; NONCE_LEN]>,
    },
}

/// The HKDF `info` of `rsa-oaep`'s key derivation (docs/ENVELOPE.md section 5.4).
const RSA_OAEP_INFO: &[u8] = b"fle v2 rsa-oaep";

/// The cipher and nonce of one value: its own (HPKE) or the encapsulation's (rsa-oaep). It
/// lives on the stack for one seal or open; boxing the large variant would allocate per value.
#[allow(clippy::large_enum_variant)]
enum ValueCipher<'a> {
    Own(Aes256Gcm),
    Shared(&'a Aes256Gcm),
}

impl ValueCipher<'_> {
    fn get(&self) -> &Aes256Gcm {
        match self {
            ValueCipher::Own(cipher) => cipher,
            ValueCipher::Shared(cipher) => cipher,
        }
    }
}

impl V2Secret {
    /// From a P-256 Diffie-Hellman result (`DH(skR, pkE)`, what KMS `DeriveSharedSecret`
    /// returns, or `DH(skE, pkR)` on the writer's side): DHKEM's `ExtractAndExpand` with
    /// `kem_context = enc ‖ pkRm`, then the key schedule's request-wide part.
    pub fn from_p256_dh(
        dh: &[u8],
        enc: &[u8; 65],
        recipient: &P256PublicKey,
    ) -> Result<Self, OpenError> {
        if dh.len() != 32 {
            return Err(OpenError::SharedSecretLength { len: dh.len() });
        }
        let eae_prk = labeled_extract(KEM_SUITE_ID, b"", b"eae_prk", dh);
        let mut shared_secret = Zeroizing::new([0u8; 32]);
        labeled_expand(
            KEM_SUITE_ID,
            &hkdf_from_prk(&eae_prk),
            b"shared_secret",
            &[enc, recipient.uncompressed_point()],
            &mut shared_secret[..],
        );
        let psk_id_hash = labeled_extract(HPKE_SUITE_ID, b"", b"psk_id_hash", b"");
        let secret = labeled_extract(HPKE_SUITE_ID, &shared_secret[..], b"secret", b"");
        Ok(V2Secret {
            schedule: Schedule::Hpke {
                secret,
                psk_id_hash,
            },
        })
    }

    /// From what RSA-OAEP decryption of an `rsa-oaep` encapsulation returns (KMS `Decrypt`, or
    /// a private key): [`V2_DATA_KEY_PREFIX`] and the 32-byte data key. Refuses anything else.
    pub fn from_unwrapped(unwrapped: &[u8]) -> Result<Self, OpenError> {
        match unwrapped.strip_prefix(V2_DATA_KEY_PREFIX) {
            Some(data_key) => Self::from_data_key(data_key),
            None => Err(OpenError::DataKeyLength {
                len: unwrapped.len(),
            }),
        }
    }

    /// From an `rsa-oaep` data key itself. Refuses a key that is not exactly 32 bytes.
    pub fn from_data_key(data_key: &[u8]) -> Result<Self, OpenError> {
        if data_key.len() != DATA_KEY_LEN {
            return Err(OpenError::DataKeyLength {
                len: data_key.len(),
            });
        }
        let (mut prk, hkdf) = Hkdf::<Sha256>::extract(Some(b""), data_key);
        prk.zeroize();
        let mut okm = Zeroizing::new([0u8; 32 + NONCE_LEN]);
        if hkdf.expand(RSA_OAEP_INFO, &mut okm[..]).is_err() {
            unreachable!("HKDF-SHA256 expand of 44 bytes cannot fail");
        }
        let cipher = match Aes256Gcm::new_from_slice(&okm[..32]) {
            Ok(cipher) => cipher,
            Err(_) => unreachable!("a 32-byte key is valid for AES-256-GCM"),
        };
        let mut base_nonce = Zeroizing::new([0u8; NONCE_LEN]);
        base_nonce.copy_from_slice(&okm[32..]);
        Ok(V2Secret {
            schedule: Schedule::Rsa {
                cipher: Box::new(cipher),
                base_nonce,
            },
        })
    }

    /// Cipher and nonce of value `index` under key `id`: HPKE runs the value's key schedule
    /// (`info_i`); rsa-oaep lends the encapsulation's cipher with `base_nonce XOR u96be(i)`.
    fn value_cipher(&self, id: &KeyId, index: u32) -> (ValueCipher<'_>, [u8; NONCE_LEN]) {
        match &self.schedule {
            Schedule::Hpke {
                secret,
                psk_id_hash,
            } => {
                let mut info = Vec::with_capacity(48);
                kctx(id, &mut info);
                info.extend_from_slice(&index.to_be_bytes());
                let info_hash = labeled_extract(HPKE_SUITE_ID, b"", b"info_hash", &info);
                let context: [&[u8]; 3] = [&[0x00], &psk_id_hash[..], &info_hash[..]];
                // One keyed HMAC for both expansions, dropped with this call.
                let prk = hkdf_from_prk(secret);
                let mut key = Zeroizing::new([0u8; 32]);
                let mut nonce = [0u8; NONCE_LEN];
                labeled_expand(HPKE_SUITE_ID, &prk, b"key", &context, &mut key[..]);
                labeled_expand(HPKE_SUITE_ID, &prk, b"base_nonce", &context, &mut nonce);
                let cipher = match Aes256Gcm::new_from_slice(&key[..]) {
                    Ok(cipher) => cipher,
                    Err(_) => unreachable!("a 32-byte key is valid for AES-256-GCM"),
                };
                (ValueCipher::Own(cipher), nonce)
            }
            Schedule::Rsa { cipher, base_nonce } => {
                let mut nonce = **base_nonce;
                for (n, i) in nonce[NONCE_LEN - INDEX_LEN..]
                    .iter_mut()
                    .zip(index.to_be_bytes())
                {
                    *n ^= i;
                }
                (ValueCipher::Shared(cipher), nonce)
            }
        }
    }

    /// Opens `token`, found under the markers of key `id`. `path` is the field's path, needed
    /// only for a path-bound token (ignored otherwise). Nothing of the message is released
    /// unless the whole token authenticates.
    pub fn open(
        &self,
        id: &KeyId,
        token: &EnvelopeV2,
        path: Option<&[u8]>,
    ) -> Result<Plaintext, OpenError> {
        match (&self.schedule, token.kind) {
            (Schedule::Hpke { .. }, KeyKind::P256)
            | (Schedule::Rsa { .. }, KeyKind::Rsa { .. }) => {}
            _ => return Err(OpenError::WrongSecret),
        }
        let path = if token.path_bound() {
            let path = path.ok_or(OpenError::PathRequired)?;
            if path.len() > V2_MAX_PATH_LEN {
                return Err(OpenError::Rejected);
            }
            Some(path)
        } else {
            None
        };
        let mut aad_bytes = Vec::with_capacity(48 + path.map_or(0, <[u8]>::len));
        aad(id, token.as_bytes()[1], token.index(), path, &mut aad_bytes);
        let (cipher, nonce) = self.value_cipher(id, token.index());
        let sealed = token.sealed();
        let (ciphertext, tag) = sealed.split_at(sealed.len() - TAG_LEN);
        let mut message = Zeroizing::new(ciphertext.to_vec());
        cipher
            .get()
            .decrypt_in_place_detached(
                Nonce::from_slice(&nonce),
                &aad_bytes,
                &mut message[..],
                Tag::from_slice(tag),
            )
            .map_err(|_| {
                // The buffer holds the unauthenticated decryption: wipe before it is freed.
                message.zeroize();
                OpenError::Rejected
            })?;
        Ok(Plaintext::from(std::mem::take(&mut *message)))
    }
}

impl fmt::Debug for V2Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.schedule {
            Schedule::Hpke { .. } => "hpke-p256",
            Schedule::Rsa { .. } => "rsa-oaep",
        };
        f.debug_struct("V2Secret")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

/// The writer's side of one request: one encapsulation, then any number of values, each its
/// own self-contained token. Made by [`V2Sealer::p256`] or [`V2Sealer::rsa`].
pub struct V2Sealer {
    id: KeyId,
    /// `version ‖ flags ‖ encap ‖ index` of the next token; flags and index are rewritten per
    /// value.
    header: Vec<u8>,
    secret: V2Secret,
    next_index: u64,
    /// Scratch buffers reused across values: the token, the AAD.
    token: Vec<u8>,
    aad: Vec<u8>,
    /// The base64 of the header's constant start (version, flags, encapsulation, cut to a
    /// multiple of 3 bytes), per flags value: every token of the request starts with it, so it
    /// is encoded once (the 256-byte wrapped key of RSA-2048 is 344 characters).
    b64_prefix: [Option<String>; 2],
}

impl V2Sealer {
    /// Starts a request under P-256 key `id`: one ephemeral key pair and one ECDH.
    pub fn p256(
        id: &KeyId,
        recipient_key: &P256PublicKey,
        recipient: &dyn P256Recipient,
    ) -> Result<Self, BackendError> {
        let encap = recipient.encap()?;
        let secret = V2Secret::from_p256_dh(&encap.dh[..], &encap.enc, recipient_key)
            .map_err(|_| BackendError::Random("ECDH returned no 32-byte secret".into()))?;
        let mut compressed = [0u8; P256_ENCAP_LEN];
        compressed[0] = 0x02 | (encap.enc[64] & 1);
        compressed[1..].copy_from_slice(&encap.enc[1..33]);
        Ok(Self::with(id, KeyKind::P256, &compressed, secret))
    }

    /// Starts a request under RSA key `id`: one fresh 32-byte data key, wrapped once.
    pub fn rsa(
        id: &KeyId,
        key: &dyn EncryptionKey,
        backend: &dyn Backend,
    ) -> Result<Self, BackendError> {
        let mut message = Zeroizing::new([0u8; V2_DATA_KEY_PREFIX.len() + DATA_KEY_LEN]);
        message[..V2_DATA_KEY_PREFIX.len()].copy_from_slice(V2_DATA_KEY_PREFIX);
        backend.fill_random(&mut message[V2_DATA_KEY_PREFIX.len()..])?;
        let mut wrapped = vec![0u8; key.modulus_len()];
        key.encrypt(&message[..], &mut wrapped)?;
        let secret = V2Secret::from_data_key(&message[V2_DATA_KEY_PREFIX.len()..])
            .map_err(|_| BackendError::Encrypt { backend: "v2" })?;
        Ok(Self::with(
            id,
            KeyKind::Rsa {
                modulus_len: key.modulus_len(),
            },
            &wrapped,
            secret,
        ))
    }

    fn with(id: &KeyId, kind: KeyKind, encap: &[u8], secret: V2Secret) -> Self {
        let mut header = Vec::with_capacity(kind.v2_header_len());
        header.extend_from_slice(&[V2_VERSION, 0]);
        header.extend_from_slice(encap);
        header.extend_from_slice(&[0; INDEX_LEN]);
        V2Sealer {
            id: id.clone(),
            header,
            secret,
            next_index: 0,
            token: Vec::new(),
            aad: Vec::new(),
            b64_prefix: [None, None],
        }
    }

    /// The key it seals under.
    pub fn key_id(&self) -> &KeyId {
        &self.id
    }

    /// How many values have been sealed so far.
    pub fn sealed_count(&self) -> u64 {
        self.next_index
    }

    /// Seals `message` as the next value and appends its envelope (`markers` around the base64
    /// token) to `out`. With `path`, the token is bound to it (flag `0x01`). On error `out` is
    /// unchanged.
    pub fn seal_into(
        &mut self,
        markers: &MarkerPair,
        message: &[u8],
        path: Option<&[u8]>,
        out: &mut String,
    ) -> Result<(), SealError> {
        if message.len() > V2_MAX_MESSAGE_LEN {
            return Err(SealError::MessageTooLong { len: message.len() });
        }
        if path.is_some_and(|p| p.len() > V2_MAX_PATH_LEN) {
            return Err(SealError::PathTooLong);
        }
        let index = u32::try_from(self.next_index).map_err(|_| SealError::Exhausted)?;
        let header_len = self.header.len();
        self.header[1] = if path.is_some() { V2_FLAG_PATH } else { 0 };
        self.header[header_len - INDEX_LEN..].copy_from_slice(&index.to_be_bytes());
        aad(&self.id, self.header[1], index, path, &mut self.aad);
        let (cipher, nonce) = self.secret.value_cipher(&self.id, index);

        self.token.clear();
        self.token.reserve(header_len + message.len() + TAG_LEN);
        self.token.extend_from_slice(&self.header);
        self.token.extend_from_slice(message);
        let sealed = cipher.get().encrypt_in_place_detached(
            Nonce::from_slice(&nonce),
            &self.aad,
            &mut self.token[header_len..],
        );
        let tag = match sealed {
            Ok(tag) => tag,
            Err(_) => {
                self.token.zeroize();
                return Err(SealError::Cipher);
            }
        };
        self.token.extend_from_slice(&tag);
        self.next_index += 1;

        out.reserve(
            markers.prefix.as_str().len()
                + self.token.len().div_ceil(3) * 4
                + markers.suffix.as_str().len(),
        );
        out.push_str(markers.prefix.as_str());
        // Base64 of a concatenation is the concatenation of the parts' when the first is a
        // multiple of 3 bytes long.
        let constant = (header_len - INDEX_LEN) / 3 * 3;
        let prefix = self.b64_prefix[usize::from(path.is_some())]
            .get_or_insert_with(|| STANDARD.encode(&self.token[..constant]));
        out.push_str(prefix);
        STANDARD.encode_string(&self.token[constant..], out);
        out.push_str(markers.suffix.as_str());
        Ok(())
    }
}

impl fmt::Debug for V2Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("V2Sealer")
            .field("id", &self.id)
            .field("sealed", &self.next_index)
            .finish_non_exhaustive()
    }
}

/// Why a value could not be sealed. Never contains the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// More than [`V2_MAX_MESSAGE_LEN`] bytes.
    #[error("value of {len} bytes exceeds envelope version 2's limit of 1 MiB")]
    MessageTooLong {
        /// The value's length.
        len: usize,
    },
    /// A path longer than 65,535 bytes.
    #[error("field path longer than 65,535 bytes")]
    PathTooLong,
    /// 2³² values under one encapsulation: start a new request.
    #[error("2^32 values sealed under one encapsulation; start a new one")]
    Exhausted,
    /// AES-GCM refused (cannot happen for lengths within the limits).
    #[error("AES-256-GCM failed")]
    Cipher,
}

/// Why a version-2 token did not open. Never contains plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Authentication failed: wrong key, tampered or truncated token, token moved under another
    /// key id or (path-bound) into another field.
    #[error(
        "envelope does not authenticate: wrong key, tampered, or moved from another key or field"
    )]
    Rejected,
    /// A path-bound token, opened without a path.
    #[error("envelope is bound to its field's path, and no path was given")]
    PathRequired,
    /// An `rsa-oaep` encapsulation that does not unwrap to the prefix and a 32-byte data key.
    #[error("unwrapped data key ({len} bytes) is not a version-2 data key: wrong key or forged envelope")]
    DataKeyLength {
        /// Its length.
        len: usize,
    },
    /// A Diffie-Hellman result that is not 32 bytes.
    #[error("shared secret is {len} bytes, not 32")]
    SharedSecretLength {
        /// Its length.
        len: usize,
    },
    /// The encapsulation is not a point on P-256.
    #[error("envelope's ephemeral key is not a point on P-256")]
    InvalidPoint,
    /// A secret of one kind used on a token of the other (an RSA data key on a P-256 token).
    #[error("secret and envelope are of different kinds")]
    WrongSecret,
}

#[cfg(all(test, feature = "aws-lc"))]
mod tests {
    use super::*;
    use crate::backend;
    use crate::envelope::Envelope;
    use crate::key::RsaPublicKey;
    use crate::private_key::{OaepPrivateKey, P256PrivateKey};

    const P256_KEY: &str = include_str!("../../keys/demo-02.key.pem");
    const RSA_KEY: &str = include_str!("../../keys/demo-01.key.pem");

    fn id(s: &str) -> KeyId {
        s.parse().unwrap()
    }

    fn payload<'a>(envelope: &'a str, markers: &MarkerPair) -> &'a str {
        &envelope[markers.prefix.as_str().len()..envelope.len() - markers.suffix.as_str().len()]
    }

    fn decode(envelope: &str, markers: &MarkerPair, kind: KeyKind) -> EnvelopeV2 {
        match Envelope::decode_payload(payload(envelope, markers).as_bytes(), kind).unwrap() {
            Envelope::V2(t) => t,
            other => panic!("not v2: {other:?}"),
        }
    }

    #[test]
    fn p256_round_trip_on_every_backend_with_and_without_path() {
        let private = P256PrivateKey::from_pem(P256_KEY).unwrap();
        let k = id("02");
        let markers = MarkerPair::default_for(&k);
        for backend in backend::all_backends() {
            let recipient = backend.p256_recipient(private.public_key()).unwrap();
            let mut sealer = V2Sealer::p256(&k, private.public_key(), &*recipient).unwrap();
            let values: [&[u8]; 4] = [b"", b"123-45-6789", &[0u8; 1000], &[7u8; 65536]];
            let mut out = Vec::new();
            for (i, v) in values.iter().enumerate() {
                let mut s = String::new();
                let path = (i % 2 == 1).then_some(&b"ssn"[..]);
                sealer.seal_into(&markers, v, path, &mut s).unwrap();
                assert_eq!(s.len(), v2_envelope_len(&markers, KeyKind::P256, v.len()));
                out.push((s, path));
            }
            assert_eq!(out[1].0.len(), 96, "a 9-byte value is 96 characters");
            let mut encaps = std::collections::HashSet::new();
            for ((s, path), v) in out.iter().zip(values) {
                let t = decode(s, &markers, KeyKind::P256);
                encaps.insert(t.encapsulation().to_vec());
                let secret = private.decapsulate(&t).unwrap();
                assert_eq!(secret.open(&k, &t, *path).unwrap().as_bytes(), v);
                if path.is_some() {
                    assert_eq!(secret.open(&k, &t, None), Err(OpenError::PathRequired));
                    assert_eq!(secret.open(&k, &t, Some(b"ssm")), Err(OpenError::Rejected));
                }
                assert_eq!(secret.open(&id("03"), &t, *path), Err(OpenError::Rejected));
            }
            assert_eq!(encaps.len(), 1, "one encapsulation per request");
        }
    }

    #[test]
    fn rsa_round_trip_on_every_backend() {
        let private = OaepPrivateKey::from_pem(RSA_KEY).unwrap();
        let public: &RsaPublicKey = private.public_key();
        let k = id("01");
        let markers = MarkerPair::default_for(&k);
        let kind = KeyKind::Rsa { modulus_len: 256 };
        for backend in backend::all_backends() {
            let key = backend.encryption_key(public).unwrap();
            let mut sealer = V2Sealer::rsa(&k, &*key, backend).unwrap();
            for v in [&b""[..], b"123-45-6789", &[1u8; 300]] {
                let mut s = String::new();
                sealer.seal_into(&markers, v, None, &mut s).unwrap();
                assert!(s.len() > 352);
                let t = decode(&s, &markers, kind);
                let env = Envelope::V2(t.clone());
                assert_eq!(private.decrypt_envelope(&k, &env).unwrap().as_bytes(), v);
            }
            assert_eq!(sealer.sealed_count(), 3);
        }
    }

    #[test]
    fn every_flipped_bit_and_every_truncation_fails_whole() {
        let private = P256PrivateKey::from_pem(P256_KEY).unwrap();
        let k = id("02");
        let markers = MarkerPair::default_for(&k);
        let recipient = backend::default_backend()
            .p256_recipient(private.public_key())
            .unwrap();
        let mut sealer = V2Sealer::p256(&k, private.public_key(), &*recipient).unwrap();
        let mut s = String::new();
        sealer
            .seal_into(&markers, b"123-45-6789", None, &mut s)
            .unwrap();
        let token = decode(&s, &markers, KeyKind::P256);
        let bytes = token.as_bytes().to_vec();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                let opened = EnvelopeV2::from_bytes(b, KeyKind::P256)
                    .map_err(|_| ())
                    .and_then(|t| private.decapsulate(&t).map(|s| (s, t)).map_err(|_| ()))
                    .and_then(|(s, t)| s.open(&k, &t, None).map_err(|_| ()));
                assert!(opened.is_err(), "byte {i} bit {bit}");
            }
        }
        for len in 0..bytes.len() {
            let opened = EnvelopeV2::from_bytes(bytes[..len].to_vec(), KeyKind::P256)
                .map_err(|_| ())
                .and_then(|t| private.decapsulate(&t).map(|s| (s, t)).map_err(|_| ()))
                .and_then(|(s, t)| s.open(&k, &t, None).map_err(|_| ()));
            assert!(opened.is_err(), "truncated to {len}");
        }
    }

    #[test]
    fn tokens_are_told_apart_from_v1_and_refused_when_unknown() {
        let rsa = KeyKind::Rsa { modulus_len: 256 };
        // The shortest v2 payload under RSA-2048 is longer than v1's 344 characters.
        assert_eq!(rsa.v2_min_payload_len(), 372);
        assert_eq!(KeyKind::P256.v2_min_payload_len(), 76);
        let b64 = |b: &[u8]| STANDARD.encode(b);
        let mut t = vec![0x03, 0];
        t.resize(80, 0);
        assert_eq!(
            Envelope::decode_payload(b64(&t).as_bytes(), KeyKind::P256),
            Err(EnvelopeError::UnsupportedVersion { version: 3 })
        );
        t[0] = 0x02;
        t[1] = 0x02;
        assert_eq!(
            Envelope::decode_payload(b64(&t).as_bytes(), KeyKind::P256),
            Err(EnvelopeError::UnknownFlags { flags: 2 })
        );
        assert!(matches!(
            Envelope::decode_payload(b64(&t[..50]).as_bytes(), KeyKind::P256),
            Err(EnvelopeError::TooShort { .. })
        ));
        // Between v1's length and v2's shortest under RSA: refused as a bad v1 length.
        assert!(matches!(
            Envelope::decode_payload(&[b'A'; 348], rsa),
            Err(EnvelopeError::UnsupportedLength { .. })
        ));
        let huge = vec![b'A'; KeyKind::P256.v2_max_payload_len() + 4];
        assert!(matches!(
            Envelope::decode_payload(&huge, KeyKind::P256),
            Err(EnvelopeError::TooLong { .. })
        ));
    }

    #[test]
    fn secrets_of_the_wrong_kind_or_length_are_refused() {
        assert_eq!(
            V2Secret::from_data_key(&[0; 31]).unwrap_err(),
            OpenError::DataKeyLength { len: 31 }
        );
        let secret = V2Secret::from_data_key(&[0; 32]).unwrap();
        assert!(!format!("{secret:?}").contains('0'));
        let mut t = vec![0x02, 0];
        t.extend_from_slice(&[0x02; 33]);
        t.resize(2 + 33 + 4 + 16, 0);
        let p256_token = EnvelopeV2::from_bytes(t, KeyKind::P256).unwrap();
        assert_eq!(
            secret.open(&id("01"), &p256_token, None),
            Err(OpenError::WrongSecret)
        );
    }

    #[test]
    fn messages_over_one_mebibyte_are_refused_before_any_work() {
        let private = P256PrivateKey::from_pem(P256_KEY).unwrap();
        let k = id("02");
        let recipient = backend::default_backend()
            .p256_recipient(private.public_key())
            .unwrap();
        let mut sealer = V2Sealer::p256(&k, private.public_key(), &*recipient).unwrap();
        let mut s = String::from("x");
        let big = vec![0u8; V2_MAX_MESSAGE_LEN + 1];
        assert_eq!(
            sealer.seal_into(&MarkerPair::default_for(&k), &big, None, &mut s),
            Err(SealError::MessageTooLong { len: big.len() })
        );
        assert_eq!(s, "x");
        assert_eq!(sealer.sealed_count(), 0);
    }
}
