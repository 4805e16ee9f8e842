"""The reference design's decrypt handler, rebuilt as a benchmark peer (../shared/FACTS.md):
regex `#01#(.*?)#10#` over the whole text; for each match, in order, base64-decode and call
KMS Decrypt (RSAES_OAEP_SHA_256, explicit KeyId), one call after another; splice the UTF-8
plaintext in place of the whole match; on any error print nothing at all.

One process per document, stdin to stdout, like `fle decrypt`. Environment: FLE_KMS_KEY_ID,
FLE_KMS_ENDPOINT (optional), AWS_REGION and credentials as for any boto3 client.
"""

import base64
import os
import re
import sys

import boto3


def main() -> int:
    text = sys.stdin.read()
    kms = boto3.client(
        "kms",
        endpoint_url=os.environ.get("FLE_KMS_ENDPOINT"),
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
    )
    key_id = os.environ["FLE_KMS_KEY_ID"]
    try:
        parts, last = [], 0
        for match in re.finditer(r"#01#(.*?)#10#", text):
            plaintext = kms.decrypt(
                CiphertextBlob=base64.b64decode(match.group(1)),
                KeyId=key_id,
                EncryptionAlgorithm="RSAES_OAEP_SHA_256",
            )["Plaintext"]
            parts.append(text[last : match.start()])
            parts.append(plaintext.decode("utf-8"))
            last = match.end()
        parts.append(text[last:])
    except Exception:  # the reference returns nothing at all on any error
        return 1
    sys.stdout.write("".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
