#!/usr/bin/env bash
# examples/apps/war/build.sh OUT.war: zip this fixture (index.jsp, WEB-INF/) into a .war, with the
# JDK's `jar` when there is one, else python3's zipfile.
set -euo pipefail
OUT=${1:?usage: build.sh OUT.war}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
case "$OUT" in /*) ;; *) OUT=$PWD/$OUT ;; esac
rm -f "$OUT"
if command -v jar >/dev/null 2>&1; then
    jar --create --file "$OUT" -C "$HERE" index.jsp -C "$HERE" WEB-INF
else
    python3 - "$HERE" "$OUT" <<'PY'
import os, sys, zipfile
src, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    for top in ("index.jsp", "WEB-INF"):
        path = os.path.join(src, top)
        if os.path.isfile(path):
            z.write(path, top)
        for root, _dirs, files in os.walk(path):
            for f in sorted(files):
                full = os.path.join(root, f)
                z.write(full, os.path.relpath(full, src))
PY
fi
echo "$OUT"
