//! Every parser of untrusted input returns an error instead of panicking, whatever the bytes.

use fle_shared::{Envelope, KeyId, KeyKind, Keyring, Marker, RsaPublicKey};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn public_key_parsing(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = RsaPublicKey::from_pem_or_der(&bytes);
        let mut pem = b"-----BEGIN PUBLIC KEY-----\n".to_vec();
        pem.extend_from_slice(&bytes);
        let _ = RsaPublicKey::from_pem_or_der(&pem);
    }

    #[test]
    fn public_key_parsing_of_mutated_der(pos in 0usize..294, value in any::<u8>(), cut in 0usize..295) {
        let pem = fle_shared::demo::DEMO_PUBLIC_KEY_PEM;
        let good = RsaPublicKey::from_pem(pem).unwrap();
        let mut der = good.spki_der().to_vec();
        der[pos] = value;
        der.truncate(cut.max(1));
        let _ = RsaPublicKey::from_spki_der(&der);
    }

    #[test]
    fn envelope_payloads(payload in prop::collection::vec(
        prop_oneof![any::<u8>(), Just(b'A'), Just(b'='), Just(b'/')], 0..700), k in 0usize..600) {
        let kind = if k % 5 == 0 { KeyKind::P256 } else { KeyKind::Rsa { modulus_len: k } };
        let _ = Envelope::decode_payload(&payload, kind);
    }

    #[test]
    fn ids_markers_and_keyrings(text in ".{0,80}") {
        let _ = text.parse::<KeyId>();
        let _ = Marker::new(&text);
        let _ = Keyring::from_toml_str(&text, std::path::Path::new("."));
        let _ = Keyring::from_toml_str(&format!("[[keys]]\nid = {text:?}\npublic_key_pem = {text:?}\nprefix = {text:?}\n"), std::path::Path::new("."));
    }
}
