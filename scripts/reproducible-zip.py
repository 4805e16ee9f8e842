#!/usr/bin/env python3
"""Writes a reproducible zip of files in DIR: fixed dates, deflated, mode 0644, or 0755 for the
names given with --executable; the same inputs always give the same bytes.

    scripts/reproducible-zip.py DIR OUT.zip NAME... [--executable NAME]...

Used by edge-encryptor/build-lambda-edge.sh (the Lambda@Edge package) and deploy/deploy.sh (the
decrypt Lambda package, whose `bootstrap` is executable).
"""
import os
import sys
import zipfile

src, out, *rest = sys.argv[1:]
names, executable = [], set()
while rest:
    arg = rest.pop(0)
    if arg == "--executable":
        executable.add(rest.pop(0))
    else:
        names.append(arg)
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    for name in names:
        info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
        info.external_attr = (0o755 if name in executable else 0o644) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(os.path.join(src, name), "rb") as f:
            z.writestr(info, f.read())
