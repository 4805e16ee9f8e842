//! fle's decryptor: the library backend services link to replace envelopes in text with their
//! plaintext, correctly escaped, through AWS KMS `Decrypt` with an explicit, configured key.
//!
//! Not implemented yet: this crate reserves its place in the workspace. The scanner and
//! envelope types it will use are in [`fle_shared`].

#![forbid(unsafe_code)]
