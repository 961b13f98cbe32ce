#!/usr/bin/env bash
# examples/apps/jar/build.sh OUT.jar: compile Main.java with the host's JDK (for Java 17, the
# stack's runtime) into an executable jar (Main-Class: Main).
set -euo pipefail
OUT=${1:?usage: build.sh OUT.jar}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
case "$OUT" in /*) ;; *) OUT=$PWD/$OUT ;; esac
command -v javac >/dev/null 2>&1 || { echo "build.sh: javac is missing (a JDK 17+ is needed)" >&2; exit 1; }
command -v jar >/dev/null 2>&1 || { echo "build.sh: jar is missing (a JDK 17+ is needed)" >&2; exit 1; }
CLASSES=$(mktemp -d)
trap 'rm -rf "$CLASSES"' EXIT
javac --release 17 -d "$CLASSES" "$HERE/Main.java"
rm -f "$OUT"
jar --create --file "$OUT" --main-class Main -C "$CLASSES" .
echo "$OUT"
