//! fle's edge encryptor: the CloudFront origin-request hook that encrypts configured fields of
//! request bodies with an embedded RSA public key (no private key, no KMS call at the edge).
//!
//! Not implemented yet: this crate reserves its place in the workspace. The envelope format,
//! keyring and crypto backends it will use are in [`fle_shared`].

#![forbid(unsafe_code)]
