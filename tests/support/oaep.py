"""RSA-OAEP (SHA-256, MGF1-SHA-256, no label) with pyca/cryptography, for fle's interop tests.

    python3 oaep.py encrypt PUBLIC.pem   < hex plaintext lines  > hex ciphertext lines
    python3 oaep.py decrypt PRIVATE.pem  < hex ciphertext lines > hex plaintext lines

`python3 oaep.py check` exits 0 when pyca/cryptography is importable.
"""
import sys


def main():
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    if sys.argv[1] == "check":
        return
    pad = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    mode, key_path = sys.argv[1], sys.argv[2]
    data = open(key_path, "rb").read()
    if mode == "encrypt":
        key = serialization.load_pem_public_key(data)
        op = lambda b: key.encrypt(b, pad)
    else:
        key = serialization.load_pem_private_key(data, password=None)
        op = lambda b: key.decrypt(b, pad)
    for line in sys.stdin:
        line = line.strip()
        if line == "-":
            line = ""
        sys.stdout.write(op(bytes.fromhex(line)).hex() + "\n")


if __name__ == "__main__":
    main()
