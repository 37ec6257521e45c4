#!/usr/bin/env bash
# The studio example end to end on the simulators: once as is, then once per fault scenario,
# each exiting 0 with its documented outcome.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet -p jilo-examples --example studio
bin=target/debug/examples/studio
# Keys in the environment would send the demo to the real services.
unset FAL_KEY SUCHUANG_API_KEY APIFY_TOKEN GEMINI_API_KEY YOUTUBE_CLIENT_ID DATABASE_URL || true

check() {
  local name="$1" expect="$2"; shift 2
  local out
  local code=0
  out="$("$bin" --speed 120 "$@" 2>&1)" || code=$?
  if [ "$code" -ne 0 ]; then
    echo "$out"
    echo "studio $name: exit $code" >&2
    exit 1
  fi
  while IFS= read -r line; do
    if ! grep -qF -- "$line" <<<"$out"; then
      echo "$out"
      echo "studio $name: expected a line with: $line" >&2
      exit 1
    fi
  done <<<"$expect"
  echo "studio $name: ok ($(grep -o 'whole flow in [0-9.]* s' <<<"$out"))"
}

check plain $'published: https://www.youtube.com/watch?v=\nits webhook verified\n-15   spent on job\nmargin ¥'
check suchuang-out-of-funds $'completed on fal\nadmin alerts: 1' --fault suchuang-out-of-funds
check providers-down $'temporarily unavailable\ncredits held were refunded: 100 available' --fault providers-down
check upload-dropped $'published: https://
(the upload was resumed)' --fault upload-dropped
check youtube-quota $'upload quota is used up; it resets at' --fault youtube-quota

# A provider of one's own through the conformance suite and a Studio.
out="$(cargo run --quiet -p jilo-examples --example custom_provider 2>&1)" || { echo "$out"; echo "custom_provider: failed" >&2; exit 1; }
if ! grep -qF "completed at veo-legacy" <<<"$out"; then
  echo "$out"
  echo "custom_provider: the job did not complete" >&2
  exit 1
fi
echo "custom_provider: ok"
