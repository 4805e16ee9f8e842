"""The reference design's edge handler (AWS Security Blog, "How to protect sensitive data for its
entire lifecycle in AWS"), rebuilt from its description as a benchmark peer: Python 3 and
PyCryptodome, the PEM parsed and one PKCS1_OAEP(SHA-256) cipher built at import.

Loop protocol (shared by every peer): prints "ready"; then for each stdin line "N" runs N
invocations and prints the elapsed nanoseconds; for "check" prints one result as JSON. An
invocation is what Lambda does per event: parse the event JSON, call the handler, serialise
the result.

    python3 reference_edge.py PUBLIC_KEY.pem EVENT.json
"""
import base64
import json
import sys
import time

from Crypto.Cipher import PKCS1_OAEP
from Crypto.Hash import SHA256
from Crypto.PublicKey import RSA

FIELDS = ["fname", "lname", "email", "ssn", "dob", "phone"]

cipher = PKCS1_OAEP.new(RSA.import_key(open(sys.argv[1]).read()), hashAlgo=SHA256)


def handler(event, context=None):
    request = event["Records"][0]["cf"]["request"]
    people = json.loads(base64.b64decode(request["body"]["data"]))
    for person in people:
        for name in FIELDS:
            if name in person:
                ciphertext = cipher.encrypt(person[name].encode("utf-8"))
                person[name] = "#01#" + base64.b64encode(ciphertext).decode("ascii") + "#10#"
    request["body"]["action"] = "replace"
    request["body"]["encoding"] = "text"
    request["body"]["data"] = json.dumps(people)
    return request


def main():
    event_text = open(sys.argv[2]).read()
    print("ready", flush=True)
    for line in sys.stdin:
        line = line.strip()
        if line == "check":
            print(json.dumps(handler(json.loads(event_text))), flush=True)
            continue
        n = int(line)
        start = time.perf_counter_ns()
        for _ in range(n):
            json.dumps(handler(json.loads(event_text)))
        print(time.perf_counter_ns() - start, flush=True)


if __name__ == "__main__":
    main()
