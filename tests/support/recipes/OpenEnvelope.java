// OpenEnvelope.java: opens fle envelopes (versions 1 and 2) with your own private key.
// Java 17, JDK only, no dependencies. Run it with the single-file source launcher:
//
//     java OpenEnvelope.java KEY_ID PRIVATE_KEY_PEM < envelopes.txt
//
// KEY_ID is the key's id in fle's keyring ("01"); PRIVATE_KEY_PEM a PKCS#8 PEM file
// ("-----BEGIN PRIVATE KEY-----"), RSA 2048/3072/4096 or EC P-256. Each stdin line is one whole
// envelope with the default markers (#01#...#10#), optionally followed by a space and the hex of
// the path it is bound to (version 2 path binding; "-" for the empty path). Prints one line per
// input line: the hex of the opened message ("-" if empty) or "error: <reason>".
// The format is docs/ENVELOPE.md; section numbers below refer to it.

import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.interfaces.ECPrivateKey;
import java.security.interfaces.RSAPrivateKey;
import java.security.spec.ECParameterSpec;
import java.security.spec.ECPoint;
import java.security.spec.ECPublicKeySpec;
import java.security.spec.MGF1ParameterSpec;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.Arrays;
import java.util.Base64;
import java.util.HexFormat;
import javax.crypto.Cipher;
import javax.crypto.KeyAgreement;
import javax.crypto.Mac;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.OAEPParameterSpec;
import javax.crypto.spec.PSource;
import javax.crypto.spec.SecretKeySpec;

public class OpenEnvelope {
    static final int MAX_MESSAGE = 1 << 20; // 5.5
    static final int TAG_LEN = 16;
    static final byte[] RSA_OAEP_INFO = "fle v2 rsa-oaep".getBytes(StandardCharsets.US_ASCII); // 5.4
    static final byte[] DATA_KEY_PREFIX = concat(new byte[] {0x00, (byte) 0xff},
            "fle-v2-dk".getBytes(StandardCharsets.US_ASCII)); // 5.4
    static final int MAX_PATH = 65535; // 5.3

    // P-256 (SEC 2 secp256r1): y^2 = x^3 - 3x + b over GF(p).
    static final BigInteger P = new BigInteger(
            "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff", 16);
    static final BigInteger B = new BigInteger(
            "5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b", 16);
    static final BigInteger N = new BigInteger(
            "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551", 16);
    static final BigInteger GX = new BigInteger(
            "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296", 16);
    static final BigInteger GY = new BigInteger(
            "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5", 16);
    static final BigInteger THREE = BigInteger.valueOf(3);

    static class EnvelopeException extends Exception {
        EnvelopeException(String reason) {
            super(reason);
        }
    }

    final String keyId;
    final PrivateKey key;
    final int k; // RSA modulus length in bytes; 0 for P-256
    final byte[] kctx; // 5.2
    final byte[] pkRm; // P-256: the recipient's public key, uncompressed (HPKE's pkRm)

    OpenEnvelope(String keyId, PrivateKey key) throws Exception {
        if (!keyId.matches("[A-Za-z0-9_-]{1,32}")) {
            throw new EnvelopeException("key id must be 1-32 of A-Z a-z 0-9 - _");
        }
        this.keyId = keyId;
        this.key = key;
        byte[] id = keyId.getBytes(StandardCharsets.US_ASCII);
        this.kctx = concat("fle v2".getBytes(StandardCharsets.US_ASCII), new byte[] {0, (byte) id.length}, id);
        if (key instanceof RSAPrivateKey rsa) {
            int bits = rsa.getModulus().bitLength();
            if (bits != 2048 && bits != 3072 && bits != 4096) {
                throw new EnvelopeException("RSA key must be 2048, 3072 or 4096 bits");
            }
            this.k = (bits + 7) / 8;
            this.pkRm = null;
        } else if (key instanceof ECPrivateKey ec) {
            ECParameterSpec params = ec.getParams();
            if (params.getCurve().getField().getFieldSize() != 256 || !params.getOrder().equals(N)
                    || !params.getGenerator().getAffineX().equals(GX)) {
                throw new EnvelopeException("EC key must be P-256");
            }
            this.k = 0;
            // JDK 17 cannot give the public key of a private key: compute pkR = d*G. BigInteger
            // arithmetic is not constant-time; it runs once, at start-up.
            BigInteger[] pk = multiplyG(ec.getS());
            this.pkRm = concat(new byte[] {4}, be32(pk[0]), be32(pk[1]));
        } else {
            throw new EnvelopeException("private key must be RSA or EC P-256");
        }
    }

    // --- Reading one envelope (sections 3 and 4) ---------------------------------------------

    byte[] open(String envelope, byte[] path) throws Exception {
        String prefix = "#" + keyId + "#";
        String suffix = "#" + new StringBuilder(keyId).reverse() + "#";
        if (envelope.length() < prefix.length() + suffix.length() || !envelope.startsWith(prefix)
                || !envelope.endsWith(suffix)) {
            throw new EnvelopeException("not an envelope of key " + keyId + " (markers " + prefix + " " + suffix + ")");
        }
        String payload = envelope.substring(prefix.length(), envelope.length() - suffix.length());
        if (k > 0 && payload.length() == 4 * ((k + 2) / 3)) {
            // Section 4: under an RSA key, exactly the version-1 length is version 1.
            byte[] ciphertext = base64Canonical(payload);
            if (ciphertext.length != k) {
                throw new EnvelopeException("version 1 payload does not decode to " + k + " bytes");
            }
            byte[] message = rsaOaepSha256(ciphertext);
            if (startsWith(message, DATA_KEY_PREFIX)) {
                // A version-2 encapsulation re-labelled as a value: never release a data key.
                throw new EnvelopeException("a version-2 data key presented as a version-1 value");
            }
            return message;
        }
        byte[] token = base64Canonical(payload);
        if (token[0] != 0x02) {
            throw new EnvelopeException(String.format("unsupported version 0x%02x", token[0] & 0xff));
        }
        return openV2(token, path);
    }

    // --- Version 2 (section 5) ---------------------------------------------------------------

    byte[] openV2(byte[] token, byte[] path) throws Exception {
        if (token.length < 2) {
            throw new EnvelopeException("token truncated");
        }
        int flags = token[1] & 0xff;
        if ((flags & ~0x01) != 0) {
            throw new EnvelopeException(String.format("unknown flag bits 0x%02x", flags));
        }
        int encapLen = k > 0 ? k : 33;
        int headerLen = 2 + encapLen + 4;
        long sealedLen = (long) token.length - headerLen;
        if (sealedLen < TAG_LEN) {
            throw new EnvelopeException("token too short");
        }
        if (sealedLen > MAX_MESSAGE + TAG_LEN) {
            throw new EnvelopeException("token too long");
        }
        byte[] encap = Arrays.copyOfRange(token, 2, 2 + encapLen);
        byte[] index = Arrays.copyOfRange(token, 2 + encapLen, headerLen);
        byte[] sealed = Arrays.copyOfRange(token, headerLen, token.length);

        byte[] info = concat(kctx, index); // info_i = kctx || u32be(i) (hpke-p256)
        byte[] bound = concat(kctx, Arrays.copyOfRange(token, 0, 2), index); // kctx || version || flags || u32be(i)
        byte[] aad; // aad_i = that [ || u32be(len(path)) || path ]
        if ((flags & 0x01) != 0) {
            if (path == null) {
                throw new EnvelopeException("token is path-bound: a path is required");
            }
            if (path.length > MAX_PATH) {
                throw new EnvelopeException("path longer than 65535 bytes");
            }
            aad = concat(bound, ByteBuffer.allocate(4).putInt(path.length).array(), path);
        } else {
            aad = bound; // a token without the flag opens wherever it is found
        }

        byte[] aeadKey;
        byte[] nonce;
        if (k > 0) {
            // rsa-oaep (5.4): unwrap 0x00 0xFF "fle-v2-dk" + the 32-byte data key,
            // HKDF-SHA256(salt "", info "fle v2 rsa-oaep", L = 44) gives key and base_nonce;
            // the nonce is base_nonce XOR the index (in its last four bytes).
            byte[] unwrapped = rsaOaepSha256(encap);
            if (unwrapped.length != DATA_KEY_PREFIX.length + 32 || !startsWith(unwrapped, DATA_KEY_PREFIX)) {
                throw new EnvelopeException("unwrapped data key is not the prefix and 32 bytes");
            }
            byte[] dataKey = Arrays.copyOfRange(unwrapped, DATA_KEY_PREFIX.length, unwrapped.length);
            byte[] okm = hkdfExpand(hmac(new byte[32], dataKey), RSA_OAEP_INFO, 44);
            aeadKey = Arrays.copyOfRange(okm, 0, 32);
            nonce = Arrays.copyOfRange(okm, 32, 44);
            for (int i = 0; i < 4; i++) {
                nonce[8 + i] ^= index[i];
            }
        } else {
            // hpke-p256 (5.4): RFC 9180 base mode, SetupBaseR(enc, skR, info_i).Open(aad_i, sealed).
            byte[] enc = decompress(encap); // 33 bytes compressed -> 65 bytes uncompressed `enc`
            byte[] sharedSecret = decap(enc);
            byte[][] keyAndNonce = keySchedule(sharedSecret, info);
            aeadKey = keyAndNonce[0];
            nonce = keyAndNonce[1]; // sequence number 0: the nonce is base_nonce
        }
        Cipher gcm = Cipher.getInstance("AES/GCM/NoPadding");
        gcm.init(Cipher.DECRYPT_MODE, new SecretKeySpec(aeadKey, "AES"), new GCMParameterSpec(128, nonce));
        gcm.updateAAD(aad);
        try {
            return gcm.doFinal(sealed); // Java's GCM releases nothing unless the tag verifies
        } catch (GeneralSecurityException e) {
            throw new EnvelopeException("AES-GCM open failed");
        }
    }

    // RSAES-OAEP with SHA-256 AND MGF1-SHA-256, empty label (section 2). The transformation
    // "RSA/ECB/OAEPWithSHA-256AndMGF1Padding" alone would use MGF1-SHA-1 and fail.
    byte[] rsaOaepSha256(byte[] ciphertext) throws Exception {
        Cipher rsa = Cipher.getInstance("RSA/ECB/OAEPPadding");
        rsa.init(Cipher.DECRYPT_MODE, key,
                new OAEPParameterSpec("SHA-256", "MGF1", MGF1ParameterSpec.SHA256, PSource.PSpecified.DEFAULT));
        try {
            return rsa.doFinal(ciphertext);
        } catch (GeneralSecurityException e) {
            throw new EnvelopeException("RSA-OAEP decryption failed");
        }
    }

    // --- HPKE receiver: DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-256-GCM (RFC 9180) --------

    static final byte[] KEM_SUITE = {'K', 'E', 'M', 0x00, 0x10};
    static final byte[] HPKE_SUITE = {'H', 'P', 'K', 'E', 0x00, 0x10, 0x00, 0x01, 0x00, 0x02};

    // Decap(enc, skR): dh = DH(skR, pkE); shared_secret = ExtractAndExpand(dh, enc || pkRm).
    byte[] decap(byte[] enc) throws Exception {
        BigInteger x = new BigInteger(1, Arrays.copyOfRange(enc, 1, 33));
        BigInteger y = new BigInteger(1, Arrays.copyOfRange(enc, 33, 65));
        ECParameterSpec params = ((ECPrivateKey) key).getParams();
        PublicKey pkE = KeyFactory.getInstance("EC").generatePublic(new ECPublicKeySpec(new ECPoint(x, y), params));
        KeyAgreement ecdh = KeyAgreement.getInstance("ECDH");
        ecdh.init(key);
        ecdh.doPhase(pkE, true);
        byte[] dh = ecdh.generateSecret(); // the 32-byte x-coordinate
        byte[] eaePrk = labeledExtract(KEM_SUITE, new byte[0], "eae_prk", dh);
        return labeledExpand(KEM_SUITE, eaePrk, "shared_secret", concat(enc, pkRm), 32);
    }

    // KeySchedule(mode_base, shared_secret, info, psk = "", psk_id = ""): key and base_nonce.
    static byte[][] keySchedule(byte[] sharedSecret, byte[] info) throws Exception {
        byte[] pskIdHash = labeledExtract(HPKE_SUITE, new byte[0], "psk_id_hash", new byte[0]);
        byte[] infoHash = labeledExtract(HPKE_SUITE, new byte[0], "info_hash", info);
        byte[] context = concat(new byte[] {0x00}, pskIdHash, infoHash);
        byte[] secret = labeledExtract(HPKE_SUITE, sharedSecret, "secret", new byte[0]);
        return new byte[][] {
            labeledExpand(HPKE_SUITE, secret, "key", context, 32),
            labeledExpand(HPKE_SUITE, secret, "base_nonce", context, 12),
        };
    }

    static byte[] labeledExtract(byte[] suite, byte[] salt, String label, byte[] ikm) throws Exception {
        byte[] labeledIkm = concat("HPKE-v1".getBytes(StandardCharsets.US_ASCII), suite,
                label.getBytes(StandardCharsets.US_ASCII), ikm);
        // HKDF-Extract(salt, ikm) = HMAC(salt, ikm); an empty salt is HashLen zero bytes.
        return hmac(salt.length == 0 ? new byte[32] : salt, labeledIkm);
    }

    static byte[] labeledExpand(byte[] suite, byte[] prk, String label, byte[] info, int length)
            throws Exception {
        byte[] labeledInfo = concat(new byte[] {(byte) (length >> 8), (byte) length},
                "HPKE-v1".getBytes(StandardCharsets.US_ASCII), suite, label.getBytes(StandardCharsets.US_ASCII), info);
        return hkdfExpand(prk, labeledInfo, length);
    }

    // --- HKDF-SHA256 (RFC 5869) ----------------------------------------------------------------

    static byte[] hmac(byte[] key, byte[] data) throws Exception {
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(key, "HmacSHA256"));
        return mac.doFinal(data);
    }

    static byte[] hkdfExpand(byte[] prk, byte[] info, int length) throws Exception {
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(prk, "HmacSHA256"));
        ByteArrayOutputStream okm = new ByteArrayOutputStream();
        byte[] t = new byte[0];
        for (int i = 1; okm.size() < length; i++) {
            mac.update(t);
            mac.update(info);
            mac.update((byte) i);
            t = mac.doFinal();
            okm.write(t);
        }
        return Arrays.copyOf(okm.toByteArray(), length);
    }

    // --- P-256 points ----------------------------------------------------------------------

    // SEC 1 compressed point (0x02/0x03 || x) -> uncompressed (0x04 || x || y), validated.
    static byte[] decompress(byte[] compressed) throws EnvelopeException {
        if (compressed.length != 33 || (compressed[0] != 0x02 && compressed[0] != 0x03)) {
            throw new EnvelopeException("encapsulation is not a compressed point");
        }
        BigInteger x = new BigInteger(1, Arrays.copyOfRange(compressed, 1, 33));
        if (x.compareTo(P) >= 0) {
            throw new EnvelopeException("encapsulation is not a point on P-256");
        }
        BigInteger rhs = x.pow(3).subtract(x.multiply(THREE)).add(B).mod(P);
        // p = 3 (mod 4), so a square root of rhs, if there is one, is rhs^((p+1)/4).
        BigInteger y = rhs.modPow(P.add(BigInteger.ONE).shiftRight(2), P);
        if (!y.multiply(y).mod(P).equals(rhs)) {
            throw new EnvelopeException("encapsulation is not a point on P-256");
        }
        if (y.testBit(0) != (compressed[0] == 0x03)) {
            y = P.subtract(y);
        }
        return concat(new byte[] {4}, be32(x), be32(y));
    }

    // d*G in affine coordinates (Montgomery ladder); null is the point at infinity.
    static BigInteger[] multiplyG(BigInteger d) {
        BigInteger[] r0 = null;
        BigInteger[] r1 = {GX, GY};
        for (int i = 255; i >= 0; i--) {
            if (d.testBit(i)) {
                r0 = add(r0, r1);
                r1 = add(r1, r1);
            } else {
                r1 = add(r0, r1);
                r0 = add(r0, r0);
            }
        }
        return r0;
    }

    static BigInteger[] add(BigInteger[] a, BigInteger[] b) {
        if (a == null) {
            return b;
        }
        if (b == null) {
            return a;
        }
        BigInteger lambda;
        if (a[0].equals(b[0])) {
            if (!a[1].equals(b[1]) || a[1].signum() == 0) {
                return null; // a = -b
            }
            lambda = a[0].pow(2).multiply(THREE).subtract(THREE).multiply(a[1].shiftLeft(1).modInverse(P)).mod(P);
        } else {
            lambda = b[1].subtract(a[1]).multiply(b[0].subtract(a[0]).modInverse(P)).mod(P);
        }
        BigInteger x = lambda.pow(2).subtract(a[0]).subtract(b[0]).mod(P);
        BigInteger y = lambda.multiply(a[0].subtract(x)).subtract(a[1]).mod(P);
        return new BigInteger[] {x, y};
    }

    static byte[] be32(BigInteger v) {
        byte[] raw = v.toByteArray(); // big-endian, maybe with a leading sign byte
        byte[] out = new byte[32];
        int n = Math.min(raw.length, 32);
        System.arraycopy(raw, raw.length - n, out, 32 - n, n);
        return out;
    }

    // --- Helpers ---------------------------------------------------------------------------

    // Standard padded base64, canonical (section 2): Java's decoder alone accepts missing padding
    // and non-zero padding bits, so re-encode and compare.
    static byte[] base64Canonical(String text) throws EnvelopeException {
        if (text.isEmpty() || text.length() % 4 != 0 || !text.matches("[A-Za-z0-9+/]*={0,2}")) {
            throw new EnvelopeException("payload is not standard padded base64");
        }
        byte[] raw = Base64.getDecoder().decode(text);
        if (!Base64.getEncoder().encodeToString(raw).equals(text)) {
            throw new EnvelopeException("payload is not canonical base64");
        }
        return raw;
    }

    static boolean startsWith(byte[] bytes, byte[] prefix) {
        return bytes.length >= prefix.length
                && Arrays.equals(Arrays.copyOfRange(bytes, 0, prefix.length), prefix);
    }

    static byte[] concat(byte[]... parts) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (byte[] part : parts) {
            out.writeBytes(part);
        }
        return out.toByteArray();
    }

    static PrivateKey loadPrivateKey(Path pemFile) throws Exception {
        String pem = Files.readString(pemFile, StandardCharsets.US_ASCII);
        int begin = pem.indexOf("-----BEGIN PRIVATE KEY-----");
        int end = pem.indexOf("-----END PRIVATE KEY-----");
        if (begin < 0 || end < begin) {
            throw new EnvelopeException("expected a PKCS#8 PEM file (-----BEGIN PRIVATE KEY-----)");
        }
        String body = pem.substring(begin + "-----BEGIN PRIVATE KEY-----".length(), end);
        PKCS8EncodedKeySpec spec = new PKCS8EncodedKeySpec(Base64.getMimeDecoder().decode(body));
        for (String algorithm : new String[] {"RSA", "EC"}) {
            try {
                return KeyFactory.getInstance(algorithm).generatePrivate(spec);
            } catch (GeneralSecurityException e) {
                // try the next algorithm
            }
        }
        throw new EnvelopeException("private key must be RSA or EC P-256");
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: java OpenEnvelope.java KEY_ID PRIVATE_KEY_PEM < envelopes");
            System.exit(2);
        }
        OpenEnvelope opener;
        try {
            opener = new OpenEnvelope(args[0], loadPrivateKey(Path.of(args[1])));
        } catch (EnvelopeException e) {
            System.err.println("OpenEnvelope: " + e.getMessage());
            System.exit(2);
            return;
        }
        PrintStream out = new PrintStream(System.out, false, StandardCharsets.US_ASCII);
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.ISO_8859_1));
        for (String line; (line = in.readLine()) != null; ) {
            String result;
            try {
                String[] fields = line.strip().split(" ");
                if (fields.length > 2 || fields[0].isEmpty()) {
                    throw new EnvelopeException("expected `ENVELOPE [PATH_HEX]`");
                }
                byte[] path = null;
                if (fields.length == 2) {
                    try {
                        path = fields[1].equals("-") ? new byte[0] : HexFormat.of().parseHex(fields[1]);
                    } catch (IllegalArgumentException e) {
                        throw new EnvelopeException("path is not hex");
                    }
                }
                byte[] message = opener.open(fields[0], path);
                result = message.length == 0 ? "-" : HexFormat.of().formatHex(message);
            } catch (EnvelopeException e) {
                result = "error: " + e.getMessage();
            } catch (Exception e) { // never crash on a bad line
                result = "error: " + e.getClass().getSimpleName();
            }
            out.println(result);
            out.flush();
        }
    }
}
