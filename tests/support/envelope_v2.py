"""Version-2 fle envelopes in Python: an independent implementation of docs/ENVELOPE.md section 5.

Written from the specification alone for fle's test suite, it shows that the specification is
complete and that the P-256 variant is standard RFC 9180 HPKE (tokens open with pyhpke's plain
receiver); it is also the recipe for opening tokens in Python with your own private key (needs
`pyhpke` and pyca `cryptography`). It works on payloads (the base64 between an envelope's markers),
version 2 only. Keys are PEM: PKCS#8 private, SubjectPublicKeyInfo public; RSA 2048/3072/4096 or P-256.

    envelope_v2.py open KEY_ID PRIVATE_KEY_PEM   stdin lines `PAYLOAD [PATH_HEX]`; prints per line the
                                                 hex of M (`-` if empty) or `error: <reason>`; exit 0
    envelope_v2.py seal KEY_ID PUBLIC_KEY_PEM    stdin lines `MHEX [PATH_HEX]` (`-` = empty), all ONE
                                                 request: one encapsulation, indexes 0, 1, 2, ... in
                                                 line order, PATH_HEX binds the path (flags 0x01);
                                                 prints one payload per line (a bad line: nothing
                                                 printed, reason on stderr, exit 1)
    envelope_v2.py selftest                      fresh keys, round trips and failures; "selftest ok"
"""

import base64
import os
import re
import struct
import subprocess
import sys
import tempfile

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKey

# --- Constants (section 5) ---------------------------------------------------------------------

VERSION = 0x02
FLAG_PATH = 0x01                  # the only defined flag bit (5.1, 5.3)
MAX_MESSAGE = 1 << 20             # 1 MiB (5.5)
TAG_LEN = 16                      # AES-256-GCM tag
MAX_PATH = 65535                  # 5.3
MAX_INDEX = 0xFFFFFFFF            # u32 (5.1)
P256_ENCAP_LEN = 33               # SEC 1 compressed point
DATA_KEY_LEN = 32                 # RSA variant's data key
DATA_KEY_PREFIX = b"\x00\xfffle-v2-dk"  # wrapped before the data key (5.4)

# The HPKE suite of 5.4: DHKEM(P-256, HKDF-SHA256) 0x0010, HKDF-SHA256 0x0001, AES-256-GCM 0x0002.
SUITE = CipherSuite.new(KEMId.DHKEM_P256_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.AES256_GCM)

# RSAES-OAEP with SHA-256, MGF1-SHA-256 and an empty label (section 2's parameters).
OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)

KEY_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
B64_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}")


class EnvelopeError(Exception):
    """A token that does not open, or an input that cannot be sealed."""


def u32be(n):
    return struct.pack(">I", n)


# --- Context strings (5.2) ---------------------------------------------------------------------

def key_context(key_id):
    """kctx = "fle v2" || 0x00 || u8(len(id)) || id."""
    if not KEY_ID_RE.fullmatch(key_id):
        raise EnvelopeError("key id must be 1-32 of A-Z a-z 0-9 - _")
    kid = key_id.encode("ascii")
    return b"fle v2" + b"\x00" + bytes([len(kid)]) + kid


def info_for(kctx, index):
    """info_i = kctx || u32be(i)."""
    return kctx + u32be(index)


def aad_for(kctx, flags, index, path):
    """aad_i = kctx || version || flags || u32be(i) [ || u32be(len(path)) || path ]; path is None when not bound."""
    aad = kctx + bytes([VERSION, flags]) + u32be(index)
    if path is None:
        return aad
    return aad + u32be(len(path)) + path


# --- Base64 (section 2's alphabet, canonical) --------------------------------------------------

def b64decode_canonical(text):
    if not text or len(text) % 4 or not B64_RE.fullmatch(text):
        raise EnvelopeError("payload is not standard padded base64")
    raw = base64.b64decode(text, validate=True)
    if base64.b64encode(raw).decode("ascii") != text:   # non-zero padding bits
        raise EnvelopeError("payload is not canonical base64")
    return raw


def b64encode(raw):
    return base64.b64encode(raw).decode("ascii")


# --- Keys (section 1) --------------------------------------------------------------------------

def _check_rsa(public_numbers, key_size):
    if key_size not in (2048, 3072, 4096):
        raise EnvelopeError("RSA key must be 2048, 3072 or 4096 bits")
    e = public_numbers.e
    if e % 2 == 0 or not 3 <= e < 2**64:
        raise EnvelopeError("RSA public exponent must be odd, 3 <= e < 2^64")


def _check_ec(curve):
    if not isinstance(curve, ec.SECP256R1):
        raise EnvelopeError("EC key must be P-256")


def load_private_key(pem):
    key = serialization.load_pem_private_key(pem, password=None)
    if isinstance(key, rsa.RSAPrivateKey):
        _check_rsa(key.public_key().public_numbers(), key.key_size)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        _check_ec(key.curve)
    else:
        raise EnvelopeError("private key must be RSA or EC P-256")
    return key


def load_public_key(pem):
    key = serialization.load_pem_public_key(pem)
    if isinstance(key, rsa.RSAPublicKey):
        _check_rsa(key.public_numbers(), key.key_size)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        _check_ec(key.curve)
    else:
        raise EnvelopeError("public key must be RSA or EC P-256")
    return key


def rsa_k(key):
    """The modulus length in bytes."""
    return (key.key_size + 7) // 8


def encap_len(key):
    return rsa_k(key) if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)) else P256_ENCAP_LEN


# --- Opening (reader) --------------------------------------------------------------------------

def open_payload(key_id, private_key, payload, path=None):
    """Opens one version-2 payload; path is the field name's bytes, or None when none is known.

    Returns M, or raises EnvelopeError without releasing any part of M (5.6).
    """
    kctx = key_context(key_id)
    is_rsa = isinstance(private_key, rsa.RSAPrivateKey)
    if is_rsa and len(payload) == 4 * -(-rsa_k(private_key) // 3):
        raise EnvelopeError("version 1 payload (not handled here)")
    token = b64decode_canonical(payload)

    if token[0] != VERSION:
        raise EnvelopeError("unsupported version 0x%02x" % token[0])
    if len(token) < 2:
        raise EnvelopeError("token truncated")
    flags = token[1]
    if flags & ~FLAG_PATH:
        raise EnvelopeError("unknown flag bits 0x%02x" % flags)
    n_encap = encap_len(private_key)
    header_len = 2 + n_encap + 4
    sealed_len = len(token) - header_len
    if sealed_len < TAG_LEN:
        raise EnvelopeError("token too short")
    if sealed_len > MAX_MESSAGE + TAG_LEN:
        raise EnvelopeError("token too long")
    header, sealed = token[:header_len], token[header_len:]
    encap = header[2:2 + n_encap]
    (index,) = struct.unpack(">I", header[2 + n_encap:])

    if flags & FLAG_PATH:
        if path is None:
            raise EnvelopeError("token is path-bound: a path is required")
        if len(path) > MAX_PATH:
            raise EnvelopeError("path longer than 65535 bytes")
        aad = aad_for(kctx, flags, index, path)
    else:
        aad = aad_for(kctx, flags, index, None)   # an unbound token opens wherever it is found (5.3)

    if is_rsa:
        return _open_rsa(private_key, encap, index, aad, sealed)
    return _open_p256(private_key, encap, info_for(kctx, index), aad, sealed)


def _open_p256(private_key, encap, info, aad, sealed):
    # Decompress the 33-byte SEC 1 point to the 65-byte `enc` of RFC 9180 (refusing points not on
    # the curve), then a plain, standard HPKE receiver: SetupBaseR(enc, skR, info_i).Open(aad_i, ct).
    if encap[0] not in (0x02, 0x03):
        raise EnvelopeError("encapsulation is not a compressed point")
    try:
        point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), encap)
    except ValueError:
        raise EnvelopeError("encapsulation is not a point on P-256") from None
    enc = point.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    skr = KEMKey.from_pyca_cryptography_key(private_key)
    try:
        ctx = SUITE.create_recipient_context(enc, skr, info)
        return ctx.open(sealed, aad)
    except Exception:
        raise EnvelopeError("HPKE open failed") from None


def _open_rsa(private_key, encap, index, aad, sealed):
    try:
        unwrapped = private_key.decrypt(encap, OAEP)
    except ValueError:
        raise EnvelopeError("RSA-OAEP unwrap failed") from None
    if len(unwrapped) != len(DATA_KEY_PREFIX) + DATA_KEY_LEN or not unwrapped.startswith(DATA_KEY_PREFIX):
        raise EnvelopeError("unwrapped data key is not the prefix and 32 bytes")
    data_key = unwrapped[len(DATA_KEY_PREFIX):]
    key, base_nonce = rsa_key_schedule(data_key)
    try:
        return AESGCM(key).decrypt(compute_nonce(base_nonce, index), sealed, aad)
    except InvalidTag:
        raise EnvelopeError("AES-GCM open failed") from None


RSA_OAEP_INFO = b"fle v2 rsa-oaep"


def rsa_key_schedule(data_key):
    """okm = HKDF-SHA256(salt = "", IKM = DK, info = "fle v2 rsa-oaep", L = 44); (key, base_nonce) = okm[:32], okm[32:]."""
    okm = HKDF(algorithm=hashes.SHA256(), length=44, salt=b"", info=RSA_OAEP_INFO).derive(data_key)
    return okm[:32], okm[32:]


def compute_nonce(base_nonce, index):
    """nonce_i = base_nonce XOR I2OSP(i, 12), RFC 9180's ComputeNonce."""
    return (int.from_bytes(base_nonce, "big") ^ index).to_bytes(12, "big")


# --- Sealing (writer) --------------------------------------------------------------------------
#
# The P-256 writer makes ONE encapsulation per request and then one HPKE key schedule per value,
# with info_i differing per index. pyhpke's public sender API (create_sender_context) runs Encap and
# KeySchedule together, one context per Encap, so it has no "one Encap, many KeySchedules". This
# sender therefore implements RFC 9180's Encap (DHKEM P-256, ExtractAndExpand) and KeySchedule (base
# mode) itself with `cryptography` primitives. It is verified by pyhpke: every token it writes in
# the selftest is opened by pyhpke's standard receiver, and, for a fixed ephemeral key, its output is
# compared byte for byte with pyhpke's own sender (create_sender_context(..., eks=...)).

HPKE_V1 = b"HPKE-v1"
KEM_SUITE_ID = b"KEM" + struct.pack(">H", 0x0010)                            # "KEM" || I2OSP(kem_id, 2)
HPKE_SUITE_ID = b"HPKE" + struct.pack(">HHH", 0x0010, 0x0001, 0x0002)        # "HPKE" || kem || kdf || aead
MODE_BASE = 0x00


def labeled_extract(suite_id, salt, label, ikm):
    """RFC 9180: LabeledExtract(salt, label, ikm) = HKDF-Extract(salt, "HPKE-v1" || suite_id || label || ikm)."""
    h = hmac.HMAC(salt, hashes.SHA256())        # HKDF-Extract is HMAC(salt, ikm)
    h.update(HPKE_V1 + suite_id + label + ikm)
    return h.finalize()


def labeled_expand(suite_id, prk, label, info, length):
    """RFC 9180: LabeledExpand(prk, label, info, L) = HKDF-Expand(prk, I2OSP(L, 2) || "HPKE-v1" || suite_id || label || info, L)."""
    labeled_info = struct.pack(">H", length) + HPKE_V1 + suite_id + label + info
    return HKDFExpand(algorithm=hashes.SHA256(), length=length, info=labeled_info).derive(prk)


def _uncompressed(public_key):
    return public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def p256_encap(pk_r, sk_e=None):
    """RFC 9180 DHKEM(P-256, HKDF-SHA256) Encap. Returns (shared_secret, enc (65 bytes))."""
    if sk_e is None:
        sk_e = ec.generate_private_key(ec.SECP256R1())
    enc = _uncompressed(sk_e.public_key())
    dh = sk_e.exchange(ec.ECDH(), pk_r)
    kem_context = enc + _uncompressed(pk_r)
    # ExtractAndExpand(dh, kem_context)
    eae_prk = labeled_extract(KEM_SUITE_ID, b"", b"eae_prk", dh)
    shared_secret = labeled_expand(KEM_SUITE_ID, eae_prk, b"shared_secret", kem_context, 32)
    return shared_secret, enc


def hpke_key_schedule_base(shared_secret, info):
    """RFC 9180 KeySchedule(mode_base, shared_secret, info, psk = "", psk_id = ""): (key, base_nonce)."""
    psk_id_hash = labeled_extract(HPKE_SUITE_ID, b"", b"psk_id_hash", b"")
    info_hash = labeled_extract(HPKE_SUITE_ID, b"", b"info_hash", info)
    context = bytes([MODE_BASE]) + psk_id_hash + info_hash
    secret = labeled_extract(HPKE_SUITE_ID, shared_secret, b"secret", b"")
    key = labeled_expand(HPKE_SUITE_ID, secret, b"key", context, 32)
    base_nonce = labeled_expand(HPKE_SUITE_ID, secret, b"base_nonce", context, 12)
    return key, base_nonce


class Sealer:
    """One request: one encapsulation, values numbered 0, 1, 2, ..."""

    def __init__(self, key_id, public_key, _sk_e=None, _data_key=None):
        self.kctx = key_context(key_id)
        self.is_rsa = isinstance(public_key, rsa.RSAPublicKey)
        if self.is_rsa:
            self.secret = _data_key if _data_key is not None else os.urandom(DATA_KEY_LEN)
            self.encap = public_key.encrypt(DATA_KEY_PREFIX + self.secret, OAEP)
            self.rsa_key, self.rsa_base_nonce = rsa_key_schedule(self.secret)
        else:
            self.secret, enc = p256_encap(public_key, _sk_e)
            point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), enc)
            self.encap = point.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
        self.next_index = 0

    def seal(self, message, path=None, _unchecked=False):
        """Seals the next value; path (bytes) binds the value to its field. Returns the token bytes."""
        if len(message) > MAX_MESSAGE and not _unchecked:
            raise EnvelopeError("message longer than 1 MiB")
        if path is not None and len(path) > MAX_PATH:
            raise EnvelopeError("path longer than 65535 bytes")
        if self.next_index > MAX_INDEX:
            raise EnvelopeError("index space of this encapsulation exhausted")
        index = self.next_index
        self.next_index += 1
        flags = FLAG_PATH if path is not None else 0x00
        header = bytes([VERSION, flags]) + self.encap + u32be(index)
        aad = aad_for(self.kctx, flags, index, path)
        if self.is_rsa:
            # One key and base nonce per encapsulation; value i uses base_nonce XOR i.
            key, nonce = self.rsa_key, compute_nonce(self.rsa_base_nonce, index)
        else:
            # One key schedule per value, info_i; sequence 0: nonce = base_nonce.
            key, nonce = hpke_key_schedule_base(self.secret, info_for(self.kctx, index))
        return header + AESGCM(key).encrypt(nonce, message, aad)


# --- Command line ------------------------------------------------------------------------------

def _hex_arg(field):
    if field == "-":
        return b""
    try:
        return bytes.fromhex(field)
    except ValueError:
        raise EnvelopeError("not hex") from None


def cmd_open(key_id, key_path):
    key_context(key_id)
    with open(key_path, "rb") as f:
        private_key = load_private_key(f.read())
    for raw_line in sys.stdin.buffer:
        try:
            try:
                fields = raw_line.decode("ascii").split()
            except UnicodeDecodeError:
                raise EnvelopeError("not ASCII") from None
            if len(fields) not in (1, 2):
                raise EnvelopeError("expected `PAYLOAD [PATH_HEX]`")
            path = _hex_arg(fields[1]) if len(fields) == 2 else None
            message = open_payload(key_id, private_key, fields[0], path)
            out = message.hex() if message else "-"
        except EnvelopeError as e:
            out = "error: %s" % e
        except Exception as e:   # never crash on a bad line
            out = "error: %s" % (type(e).__name__,)
        sys.stdout.write(out + "\n")
        sys.stdout.flush()
    return 0


def cmd_seal(key_id, key_path):
    key_context(key_id)
    with open(key_path, "rb") as f:
        public_key = load_public_key(f.read())
    values = []
    for n, raw_line in enumerate(sys.stdin.buffer, 1):
        try:
            try:
                fields = raw_line.decode("ascii").split()
            except UnicodeDecodeError:
                raise EnvelopeError("not ASCII") from None
            if len(fields) not in (1, 2):
                raise EnvelopeError("expected `MHEX [PATH_HEX]`")
            message = _hex_arg(fields[0])
            path = _hex_arg(fields[1]) if len(fields) == 2 else None
            if len(message) > MAX_MESSAGE:
                raise EnvelopeError("message longer than 1 MiB")
            if path is not None and len(path) > MAX_PATH:
                raise EnvelopeError("path longer than 65535 bytes")
        except EnvelopeError as e:
            sys.stderr.write("envelope_v2.py seal: line %d: %s\n" % (n, e))
            return 1
        values.append((message, path))
    if not values:
        return 0
    sealer = Sealer(key_id, public_key)
    out = [b64encode(sealer.seal(m, p)) for m, p in values]
    sys.stdout.write("".join(s + "\n" for s in out))
    return 0


# --- Selftest ----------------------------------------------------------------------------------

def _expect_fail(what, key_id, private_key, payload, path=None, reason=""):
    try:
        open_payload(key_id, private_key, payload, path)
    except EnvelopeError as e:
        assert reason in str(e), "%s: failed for another reason: %s" % (what, e)
        return
    raise AssertionError("opened but should not: %s" % what)


def _flip(token, bit):
    b = bytearray(token)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def _selftest_key(name, private_key, other_private_key):
    public_key = private_key.public_key()
    kid = "t-1"
    is_rsa = isinstance(private_key, rsa.RSAPrivateKey)
    n_encap = encap_len(private_key)
    messages = [
        (b"", None),
        (b"123456789", None),
        (b"123456789", b"user.ssn"),
        (b"", b""),                                    # bound to the empty path
        (os.urandom(64 * 1024), None),
        (os.urandom(64 * 1024), "champ/é".encode()),
        (b"\x00" + b"42", b"n"),
        (os.urandom(MAX_MESSAGE), None),
    ]
    sealer = Sealer(kid, public_key)
    tokens = [sealer.seal(m, p) for m, p in messages]
    for i, ((m, p), t) in enumerate(zip(messages, tokens)):
        payload = b64encode(t)
        # shape (5.1, 5.5)
        assert t[0] == VERSION and t[1] == (FLAG_PATH if p is not None else 0)
        assert t[2:2 + n_encap] == sealer.encap and struct.unpack(">I", t[2 + n_encap:6 + n_encap])[0] == i
        assert len(t) == (rsa_k(private_key) + 22 + len(m) if is_rsa else 39 + len(m) + 16)
        assert len(payload) == 4 * -(-len(t) // 3)
        if is_rsa:
            assert len(payload) > 4 * -(-rsa_k(private_key) // 3)
        # opens
        assert open_payload(kid, private_key, payload, p) == m, (name, i)
        if p is None:
            assert open_payload(kid, private_key, payload, b"anywhere") == m   # unbound opens anywhere
        else:
            _expect_fail("no path", kid, private_key, payload, None)
            _expect_fail("wrong path", kid, private_key, payload, p + b"x")
            _expect_fail("wrong path", kid, private_key, payload, b"other")
        _expect_fail("wrong key id", "t-2", private_key, payload, p)
        _expect_fail("wrong key id", "t-12", private_key, payload, p)
        _expect_fail("different key", kid, other_private_key, payload, p)

    # the 9-byte value, bound and unbound: every single-bit flip and every truncation fails
    for t, p in ((tokens[1], None), (tokens[2], b"user.ssn")):
        for bit in range(len(t) * 8):
            _expect_fail("bit flip %d" % bit, kid, private_key, b64encode(_flip(t, bit)), p)
        for n in range(1, len(t)):
            _expect_fail("truncated to %d" % n, kid, private_key, b64encode(t[:n]), p)
        _expect_fail("extended", kid, private_key, b64encode(t + b"\x00"), p)
    # big value: flips in the header, in the middle and in the tag
    big = tokens[4]
    for bit in list(range(0, 16)) + [8 * (n_encap + 5), 8 * (len(big) // 2) + 3, 8 * len(big) - 1]:
        _expect_fail("bit flip %d (64 KiB)" % bit, kid, private_key, b64encode(_flip(big, bit)))

    # wrong index: the same token with another index
    t = tokens[1]
    for j in (0, 2, 0xFFFFFFFF):
        moved = t[:2 + n_encap] + u32be(j) + t[6 + n_encap:]
        _expect_fail("index %d" % j, kid, private_key, b64encode(moved))
    # two values under one encapsulation swap their sealed parts: fail
    swapped = tokens[0][:6 + n_encap] + tokens[3][6 + n_encap:]
    _expect_fail("swapped sealed", kid, private_key, b64encode(swapped))
    # flag bits: set the path flag on an unbound token, clear it on a bound one, unknown bits
    _expect_fail("flag set", kid, private_key, b64encode(t[:1] + b"\x01" + t[2:]), b"")
    _expect_fail("flag cleared", kid, private_key, b64encode(tokens[2][:1] + b"\x00" + tokens[2][2:]))
    for f in (0x02, 0x03, 0x80, 0xFF):
        _expect_fail("flags 0x%02x" % f, kid, private_key, b64encode(t[:1] + bytes([f]) + t[2:]), reason="flag")
    for v in (0x00, 0x01, 0x03, 0xFF):
        _expect_fail("version 0x%02x" % v, kid, private_key, b64encode(bytes([v]) + t[1:]), reason="version")
    # sealed longer than 1 MiB + 16 is refused before anything else
    too_big = Sealer(kid, public_key).seal(b"\x00" * (MAX_MESSAGE + 1), _unchecked=True)
    _expect_fail("1 MiB + 1", kid, private_key, b64encode(too_big), reason="too long")
    # base64: non-canonical padding bits, bad characters, missing padding, empty
    payload = b64encode(t)
    if payload.endswith("="):
        last = payload.rstrip("=")
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        c = alphabet[alphabet.index(last[-1]) ^ 1]
        _expect_fail("non-canonical", kid, private_key, last[:-1] + c + payload[len(last):], reason="canonical")
    _expect_fail("urlsafe alphabet", kid, private_key, "-_" + payload[2:])
    _expect_fail("unpadded", kid, private_key, payload.rstrip("=") or "x")
    _expect_fail("empty", kid, private_key, "")
    _expect_fail("whitespace", kid, private_key, payload[:8] + " " + payload[8:])

    if is_rsa:
        # data keys of the wrong length fail, even with a correct GCM seal for that key
        for n in (0, 16, 31, 33, 64):
            s = Sealer(kid, public_key, _data_key=os.urandom(n))
            _expect_fail("data key of %d bytes" % n, kid, private_key, b64encode(s.seal(b"x")), reason="data key")
        # a version 1 payload (k bytes of OAEP) is not opened here
        _expect_fail("version 1", kid, private_key, b64encode(public_key.encrypt(b"v1", OAEP)), reason="version 1")
        # a version-2 token cut to k bytes is refused (as version 1, by its length)
        _expect_fail("k bytes", kid, private_key, b64encode(t[:rsa_k(private_key)]))
    else:
        # encap not on the curve, or not a compressed point
        p = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
        for bad in (b"\x02" + (1).to_bytes(32, "big"), b"\x03" + p.to_bytes(32, "big"),
                    b"\x04" + t[3:35], b"\x00" * 33):
            _expect_fail("bad point", kid, private_key, b64encode(t[:2] + bad + t[35:]), reason="point")

        # cross-check the self-written sender against pyhpke's sender, for a fixed ephemeral key
        from pyhpke import KEMKeyPair
        sk_e = ec.generate_private_key(ec.SECP256R1())
        eks = KEMKeyPair(KEMKey.from_pyca_cryptography_key(sk_e), KEMKey.from_pyca_cryptography_key(sk_e.public_key()))
        pkr = KEMKey.from_pyca_cryptography_key(public_key)
        mine = Sealer(kid, public_key, _sk_e=sk_e)
        for i, (m, p) in enumerate(messages[:7]):
            token = mine.seal(m, p)
            enc, ctx = SUITE.create_sender_context(pkr, info_for(mine.kctx, i), eks=eks)
            assert _uncompressed(ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), token[2:35])) == enc
            assert ctx.seal(m, aad_for(mine.kctx, token[1], i, p)) == token[39:], "differs from pyhpke's sender"

    # a fresh encapsulation per request
    assert Sealer(kid, public_key).encap != sealer.encap


def _selftest_cli(rsa_key, ec_key):
    with tempfile.TemporaryDirectory() as d:
        for name, key in (("rsa", rsa_key), ("ec", ec_key)):
            priv, pub = os.path.join(d, name + ".key.pem"), os.path.join(d, name + ".pub.pem")
            with open(priv, "wb") as f:
                f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
            with open(pub, "wb") as f:
                f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
            lines = ["-", "313233", "313233 " + b"a.b".hex(), "00 -"]
            run = lambda *a, inp: subprocess.run([sys.executable, __file__, *a], input=inp, text=True,
                                                 capture_output=True, check=True).stdout.split("\n")[:-1]
            payloads = run("seal", "k_9", pub, inp="\n".join(lines) + "\n")
            assert len(payloads) == len(lines)
            fields = [l.split() for l in lines]
            back = "".join(p + (" " + f[1] if len(f) == 2 else "") + "\n" for p, f in zip(payloads, fields))
            back += "garbage\n" + payloads[2] + "\n" + payloads[1] + " zz\n\n"
            out = run("open", "k_9", priv, inp=back)
            assert out[:4] == ["-", "313233", "313233", "00"], out
            assert all(o.startswith("error: ") for o in out[4:]) and len(out) == 8, out


def selftest():
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_other = ec.generate_private_key(ec.SECP256R1())
    _selftest_key("P-256", ec_key, ec_other)
    _selftest_key("RSA-2048", rsa_key, rsa_other)
    # a token under one key type does not open under the other
    for a, b in ((ec_key, rsa_key), (rsa_key, ec_key)):
        t = b64encode(Sealer("x", a.public_key()).seal(b"123456789"))
        _expect_fail("other key type", "x", b, t)
    _selftest_cli(rsa_key, ec_key)
    print("selftest ok")
    return 0


def main(argv):
    try:
        if len(argv) == 2 and argv[1] == "selftest":
            return selftest()
        if len(argv) == 4 and argv[1] == "open":
            return cmd_open(argv[2], argv[3])
        if len(argv) == 4 and argv[1] == "seal":
            return cmd_seal(argv[2], argv[3])
    except (EnvelopeError, OSError, ValueError, TypeError) as e:
        sys.stderr.write("envelope_v2.py: %s\n" % e)
        return 2
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
