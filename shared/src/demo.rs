//! The demo key's public half, built in so `fle demo` and the examples need no files.
//!
//! **Demo only.** Its private key is published in the repository (`keys/demo-01.key.pem`), so
//! anything encrypted with it is readable by anyone. Never configure it for real data.

/// Id of the demo key.
pub const DEMO_KEY_ID: &str = "01";

/// The demo public key (RSA-2048, PEM SubjectPublicKeyInfo), the same as `keys/demo-01.pub.pem`.
pub const DEMO_PUBLIC_KEY_PEM: &str = include_str!("../../keys/demo-01.pub.pem");
