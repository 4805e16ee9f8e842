//! The envelope payload alphabet, which markers and the scanner are defined against.

/// Whether `b` can occur in an envelope payload (standard base64 with padding).
#[inline]
pub const fn is_payload_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'='
}
