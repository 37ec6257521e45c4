#!/usr/bin/env bash
# The host app's page driven in headless Chromium (Debian's chromium and chromium-driver,
# installed when missing; selenium drives them, no browser download). Screenshots of the
# finished page go to target/page/.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
# A CJK font, so the screenshots show the page's Chinese.
if ! fc-list 2>/dev/null | grep -qi -e wqy -e noto.*cjk; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-zenhei >/dev/null || true
fi
python3 -c "import selenium" 2>/dev/null || python3 -m pip install --quiet selenium

cargo build --quiet -p jilo-server
python3 examples/server/tests/page_test.py
