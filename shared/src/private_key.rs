//! Decryption with a local private key, RSA or P-256 (aws-lc-rs only).
//!
//! For the demo, tests, and the reference design's "external key pair" mode, where the private
//! key lives outside KMS. The `rsa` crate is never used for private-key operations (Marvin
//! timing advisory, RUSTSEC-2023-0071).

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{OaepPrivateDecryptingKey, PrivateDecryptingKey, OAEP_SHA256_MGF1SHA256};
use zeroize::Zeroizing;

use aws_lc_rs::agreement::{self, UnparsedPublicKey, ECDH_P256};

use crate::envelope::Envelope;
use crate::key::{KeyId, P256PublicKey, PublicKey, PublicKeyError, RsaPublicKey};
use crate::secret::Plaintext;
use crate::v2::{EnvelopeV2, KeyKind, OpenError, V2Secret};

/// An RSA private key (2048, 3072 or 4096 bits) for RSA-OAEP-SHA256 decryption.
pub struct OaepPrivateKey {
    key: OaepPrivateDecryptingKey,
    public: RsaPublicKey,
}

impl OaepPrivateKey {
    /// Parses a PKCS#8 DER private key (`PrivateKeyInfo`, unencrypted).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, PrivateKeyError> {
        let private = PrivateDecryptingKey::from_pkcs8(der)
            .map_err(|e| PrivateKeyError::Rejected(e.to_string()))?;
        let spki = private
            .public_key()
            .as_der()
            .map_err(|e| PrivateKeyError::Rejected(e.to_string()))?;
        let public = RsaPublicKey::from_spki_der(spki.as_ref())?;
        let key = OaepPrivateDecryptingKey::new(private)
            .map_err(|e| PrivateKeyError::Rejected(e.to_string()))?;
        Ok(OaepPrivateKey { key, public })
    }

    /// Parses a PEM `PRIVATE KEY` block (unencrypted PKCS#8, what `openssl genpkey` writes).
    pub fn from_pem(pem: &str) -> Result<Self, PrivateKeyError> {
        let (label, der) = pem_rfc7468::decode_vec(pem.trim().as_bytes())
            .map_err(|e| PrivateKeyError::Rejected(format!("PEM: {e}")))?;
        let der = Zeroizing::new(der);
        if label != "PRIVATE KEY" {
            return Err(PrivateKeyError::WrongPemLabel(label.to_owned()));
        }
        Self::from_pkcs8_der(&der)
    }

    /// Generates a new key pair of `bits` (2048, 3072 or 4096) with aws-lc-rs, returning the
    /// key and its unencrypted PKCS#8 PEM (`PRIVATE KEY`, zeroized on drop) to store.
    ///
    /// ```
    /// use fle_shared::OaepPrivateKey;
    /// let (key, pem) = OaepPrivateKey::generate(2048)?;
    /// assert_eq!(key.public_key().modulus_bits(), 2048);
    /// assert_eq!(OaepPrivateKey::from_pem(&pem)?.public_key(), key.public_key());
    /// # Ok::<(), fle_shared::PrivateKeyError>(())
    /// ```
    pub fn generate(bits: usize) -> Result<(Self, Zeroizing<String>), PrivateKeyError> {
        use aws_lc_rs::rsa::{KeyPair, KeySize};
        let size = match bits {
            2048 => KeySize::Rsa2048,
            3072 => KeySize::Rsa3072,
            4096 => KeySize::Rsa4096,
            _ => {
                return Err(PrivateKeyError::Rejected(format!(
                    "{bits}-bit keys are not supported: use 2048, 3072 or 4096"
                )))
            }
        };
        let pair = KeyPair::generate(size).map_err(|e| PrivateKeyError::Rejected(e.to_string()))?;
        let (der, pem) = pkcs8_der_and_pem(pair.as_der())?;
        Ok((Self::from_pkcs8_der(&der)?, pem))
    }

    /// The matching public key.
    pub fn public_key(&self) -> &RsaPublicKey {
        &self.public
    }

    /// Decrypts one RSA-OAEP-SHA256 ciphertext (exactly modulus-length bytes).
    pub fn decrypt(&self, rsa_ciphertext: &[u8]) -> Result<Plaintext, DecryptError> {
        if rsa_ciphertext.len() != self.key.key_size_bytes() {
            return Err(DecryptError::CiphertextLength {
                found: rsa_ciphertext.len(),
                expected: self.key.key_size_bytes(),
            });
        }
        let mut out = Zeroizing::new(vec![0u8; self.key.min_output_size()]);
        let n = self
            .key
            .decrypt(&OAEP_SHA256_MGF1SHA256, rsa_ciphertext, &mut out, None)
            .map_err(|_| DecryptError::Rejected)?
            .len();
        out.truncate(n);
        Ok(Plaintext::from(std::mem::take(&mut *out)))
    }

    /// Unwraps the data key of a version-2 `rsa-oaep` encapsulation: the secret that opens every
    /// value sealed under it.
    pub fn unwrap_v2(&self, token: &EnvelopeV2) -> Result<V2Secret, DecryptError> {
        if !matches!(token.kind(), KeyKind::Rsa { .. }) {
            return Err(DecryptError::V2(OpenError::WrongSecret));
        }
        let data_key = self.decrypt(token.encapsulation())?;
        Ok(V2Secret::from_unwrapped(data_key.as_bytes())?)
    }

    /// Decrypts an envelope found under the markers of key `id` (version 1, or version 2 without
    /// path binding; [`V2Secret::open`] takes a path).
    pub fn decrypt_envelope(
        &self,
        id: &KeyId,
        envelope: &Envelope,
    ) -> Result<Plaintext, DecryptError> {
        match envelope {
            Envelope::V1 { rsa_ciphertext } => {
                let plaintext = self.decrypt(rsa_ciphertext)?;
                if crate::v2::is_v2_data_key(plaintext.as_bytes()) {
                    return Err(DecryptError::DataKeyAsValue);
                }
                Ok(plaintext)
            }
            Envelope::V2(token) => Ok(self.unwrap_v2(token)?.open(id, token, None)?),
        }
    }
}

/// A freshly generated key's PKCS#8 DER (from aws-lc-rs) and its PEM, both zeroized on drop.
fn pkcs8_der_and_pem(
    der: Result<aws_lc_rs::encoding::Pkcs8V1Der<'static>, aws_lc_rs::error::Unspecified>,
) -> Result<(Zeroizing<Vec<u8>>, Zeroizing<String>), PrivateKeyError> {
    let der = der.map_err(|e| PrivateKeyError::Rejected(e.to_string()))?;
    let der = Zeroizing::new(der.as_ref().to_vec());
    let pem = pem_rfc7468::encode_string("PRIVATE KEY", pem_rfc7468::LineEnding::LF, &der)
        .map_err(|e| PrivateKeyError::Rejected(format!("PEM: {e}")))?;
    Ok((der, Zeroizing::new(pem)))
}

impl fmt::Debug for OaepPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OaepPrivateKey")
            .field("modulus_bits", &self.public.modulus_bits())
            .finish_non_exhaustive()
    }
}

/// Why a private key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrivateKeyError {
    /// Not an acceptable unencrypted PKCS#8 RSA key.
    #[error("not a usable RSA private key (unencrypted PKCS#8, 2048 to 4096 bits): {0}")]
    Rejected(String),
    /// A PEM block other than `PRIVATE KEY`.
    #[error(
        "expected a PEM \"PRIVATE KEY\" block (unencrypted PKCS#8), found \"{0}\"; \
         convert with `openssl pkcs8 -topk8 -nocrypt -in KEY`"
    )]
    WrongPemLabel(String),
    /// Its public half is not a key fle accepts.
    #[error(transparent)]
    PublicKey(#[from] PublicKeyError),
}

/// Why a ciphertext could not be decrypted. Never contains plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecryptError {
    /// Ciphertext of the wrong length for this key.
    #[error("ciphertext is {found} bytes; this key's are {expected}")]
    CiphertextLength {
        /// Length given.
        found: usize,
        /// Modulus length.
        expected: usize,
    },
    /// OAEP decoding failed: wrong key, corrupted or forged ciphertext.
    #[error("decryption failed: wrong key or corrupted ciphertext")]
    Rejected,
    /// A version-2 envelope did not open.
    #[error(transparent)]
    V2(#[from] OpenError),
    /// A version-1 envelope whose plaintext is a version-2 data key (an encapsulation
    /// re-labelled as a value): refused, never released.
    #[error("envelope is a version-2 data key presented as a version-1 value: refused")]
    DataKeyAsValue,
    /// An envelope of a kind this key cannot open (a version-1 envelope for a P-256 key).
    #[error("this key cannot open envelope version {version}")]
    WrongKind {
        /// The envelope's version.
        version: u8,
    },
}

/// A P-256 private key for envelope version 2's `hpke-p256` (aws-lc-rs ECDH): the local
/// counterpart of a KMS `KEY_AGREEMENT` key.
pub struct P256PrivateKey {
    key: agreement::PrivateKey,
    public: P256PublicKey,
}

impl P256PrivateKey {
    /// Parses a DER private key: PKCS#8 (`PrivateKeyInfo`, unencrypted) or SEC 1
    /// (`ECPrivateKey`, RFC 5915).
    pub fn from_der(der: &[u8]) -> Result<Self, PrivateKeyError> {
        let key = agreement::PrivateKey::from_private_key_der(&ECDH_P256, der)
            .map_err(|e| PrivateKeyError::Rejected(format!("not a P-256 private key: {e}")))?;
        let point = key
            .compute_public_key()
            .map_err(|e| PrivateKeyError::Rejected(e.to_string()))?;
        let public = P256PublicKey::from_sec1_point(point.as_ref())?;
        Ok(P256PrivateKey { key, public })
    }

    /// Parses a PEM `PRIVATE KEY` (PKCS#8, what `openssl genpkey` writes) or `EC PRIVATE KEY`
    /// (SEC 1, what `openssl ecparam -genkey` writes) block.
    pub fn from_pem(pem: &str) -> Result<Self, PrivateKeyError> {
        let (label, der) = pem_rfc7468::decode_vec(pem.trim().as_bytes())
            .map_err(|e| PrivateKeyError::Rejected(format!("PEM: {e}")))?;
        let der = Zeroizing::new(der);
        if label != "PRIVATE KEY" && label != "EC PRIVATE KEY" {
            return Err(PrivateKeyError::WrongPemLabel(label.to_owned()));
        }
        Self::from_der(&der)
    }

    /// Generates a new P-256 key pair with aws-lc-rs, returning the key and its unencrypted
    /// PKCS#8 PEM (`PRIVATE KEY`, zeroized on drop) to store.
    pub fn generate() -> Result<(Self, Zeroizing<String>), PrivateKeyError> {
        let key = agreement::PrivateKey::generate(&ECDH_P256)
            .map_err(|e| PrivateKeyError::Rejected(e.to_string()))?;
        let (der, pem) = pkcs8_der_and_pem(key.as_der())?;
        Ok((Self::from_der(&der)?, pem))
    }

    /// The matching public key.
    pub fn public_key(&self) -> &P256PublicKey {
        &self.public
    }

    /// `DH(skR, pkE)` with the ephemeral key of a version-2 `hpke-p256` token, then the
    /// request-wide key schedule: the secret that opens every value sealed under it.
    pub fn decapsulate(&self, token: &EnvelopeV2) -> Result<V2Secret, DecryptError> {
        let enc = token.p256_enc().ok_or(OpenError::InvalidPoint)?;
        let dh = self.diffie_hellman(&enc)?;
        Ok(V2Secret::from_p256_dh(&dh[..], &enc, &self.public)?)
    }

    /// Raw ECDH with a peer's SEC 1 point (compressed or not): the 32-byte x-coordinate of
    /// `sk · P`, what KMS `DeriveSharedSecret` returns for a `KEY_AGREEMENT` key.
    pub fn diffie_hellman(&self, point: &[u8]) -> Result<Zeroizing<[u8; 32]>, DecryptError> {
        let dh = agreement::agree(
            &self.key,
            UnparsedPublicKey::new(&ECDH_P256, point),
            OpenError::InvalidPoint,
            |secret| {
                let mut out = Zeroizing::new([0u8; 32]);
                if secret.len() != 32 {
                    return Err(OpenError::SharedSecretLength { len: secret.len() });
                }
                out.copy_from_slice(secret);
                Ok(out)
            },
        )?;
        Ok(dh)
    }

    /// Decrypts a version-2 envelope found under the markers of key `id` (without path binding;
    /// [`V2Secret::open`] takes a path).
    pub fn decrypt_envelope(
        &self,
        id: &KeyId,
        envelope: &Envelope,
    ) -> Result<Plaintext, DecryptError> {
        match envelope {
            Envelope::V2(token) => Ok(self.decapsulate(token)?.open(id, token, None)?),
            other => Err(DecryptError::WrongKind {
                version: other.version(),
            }),
        }
    }
}

impl fmt::Debug for P256PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("P256PrivateKey").finish_non_exhaustive()
    }
}

/// A local private key of either kind: what `--private-key` and the decrypt Lambda's
/// `FLE_PRIVATE_KEY` load.
#[derive(Debug)]
#[non_exhaustive]
pub enum PrivateKey {
    /// RSA: opens version-1 envelopes and version-2 `rsa-oaep` envelopes.
    Rsa(OaepPrivateKey),
    /// P-256: opens version-2 `hpke-p256` envelopes.
    P256(P256PrivateKey),
}

impl PrivateKey {
    /// Parses a PEM private key: `PRIVATE KEY` (PKCS#8, RSA or P-256) or `EC PRIVATE KEY`
    /// (SEC 1, P-256).
    pub fn from_pem(pem: &str) -> Result<Self, PrivateKeyError> {
        let (label, der) = pem_rfc7468::decode_vec(pem.trim().as_bytes())
            .map_err(|e| PrivateKeyError::Rejected(format!("PEM: {e}")))?;
        let der = Zeroizing::new(der);
        match label {
            "EC PRIVATE KEY" => P256PrivateKey::from_der(&der).map(PrivateKey::P256),
            "PRIVATE KEY" => match OaepPrivateKey::from_pkcs8_der(&der) {
                Ok(rsa) => Ok(PrivateKey::Rsa(rsa)),
                Err(rsa_error) => P256PrivateKey::from_der(&der)
                    .map(PrivateKey::P256)
                    .map_err(|_| match rsa_error {
                        PrivateKeyError::Rejected(reason) => PrivateKeyError::Rejected(format!(
                            "neither an RSA key ({reason}) nor a P-256 key"
                        )),
                        other => other,
                    }),
            },
            other => Err(PrivateKeyError::WrongPemLabel(other.to_owned())),
        }
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        match self {
            PrivateKey::Rsa(k) => PublicKey::Rsa(k.public_key().clone()),
            PrivateKey::P256(k) => PublicKey::P256(k.public_key().clone()),
        }
    }

    /// The secret of a version-2 envelope's encapsulation (one private-key operation), which
    /// then opens every value sealed under it.
    pub fn v2_secret(&self, token: &EnvelopeV2) -> Result<V2Secret, DecryptError> {
        match self {
            PrivateKey::Rsa(k) => k.unwrap_v2(token),
            PrivateKey::P256(k) => k.decapsulate(token),
        }
    }

    /// Decrypts an envelope found under the markers of key `id` (version 1, or version 2
    /// without path binding).
    pub fn decrypt_envelope(
        &self,
        id: &KeyId,
        envelope: &Envelope,
    ) -> Result<Plaintext, DecryptError> {
        match self {
            PrivateKey::Rsa(k) => k.decrypt_envelope(id, envelope),
            PrivateKey::P256(k) => k.decrypt_envelope(id, envelope),
        }
    }
}

impl From<OaepPrivateKey> for PrivateKey {
    fn from(key: OaepPrivateKey) -> Self {
        PrivateKey::Rsa(key)
    }
}

impl From<P256PrivateKey> for PrivateKey {
    fn from(key: P256PrivateKey) -> Self {
        PrivateKey::P256(key)
    }
}
