//! Plaintext held in memory: zeroized on drop, never printed.

use std::fmt;

use zeroize::Zeroizing;

/// A decrypted value. Its buffer is zeroized when dropped, and `Debug` shows only its length.
///
/// ```
/// use fle_shared::Plaintext;
/// let p = Plaintext::from(b"123-45-6789".to_vec());
/// assert_eq!(format!("{p:?}"), "Plaintext(11 bytes)");
/// ```
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Plaintext(Zeroizing<Vec<u8>>);

impl Plaintext {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes as UTF-8 text, if they are.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for Plaintext {
    fn from(bytes: Vec<u8>) -> Self {
        Plaintext(Zeroizing::new(bytes))
    }
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plaintext({} bytes)", self.0.len())
    }
}
