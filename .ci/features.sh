#!/usr/bin/env bash
# Every crate builds with no features and with each feature alone (a feature that silently
# needs another is found here, not by a user).
set -euo pipefail
cd "$(dirname "$0")/.."

features() {
  cargo metadata --format-version 1 --no-deps | python3 -c '
import json, sys
name = sys.argv[1]
pkg = next(p for p in json.load(sys.stdin)["packages"] if p["name"] == name)
# "http" is internal (the shared layer every client feature turns on).
print(" ".join(f for f in pkg["features"] if f not in ("default", "http")))
' "$1"
}

for crate in jilo-core jilo-providers jilo-store jilo-sim jilo; do
  cargo check --quiet -p "$crate" --no-default-features
  for f in $(features "$crate"); do
    cargo check --quiet -p "$crate" --no-default-features --features "$f"
  done
  echo "features: $crate ok"
done
