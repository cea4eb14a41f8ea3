#!/usr/bin/env bash
# Install the node-soap interop client's packages (pinned by package-lock.json) and print the
# node_modules directory to put in NODE_PATH.
#   tests/interop/node/setup.sh [DIR]      (default: target/interop-node)
# Idempotent: skips `npm ci` when DIR already holds this exact package-lock.json (its sha256 is
# stored in DIR/.lock.sha256 after a successful install).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${1:-target/interop-node}"
want="$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)"
stamp="$dir/.lock.sha256"

if [[ -d "$dir/node_modules" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "$(cd "$dir" && pwd)/node_modules"
    exit 0
fi

mkdir -p "$dir"
rm -f "$stamp"
cp "$here/package.json" "$here/package-lock.json" "$dir/"
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
# Fail here, not in a test, when the install is incomplete.
(cd "$dir" && node -e 'require("soap"); require("xml-crypto"); require("@xmldom/xmldom"); require("xpath")' >&2)
echo "$want" > "$stamp"
echo "$(cd "$dir" && pwd)/node_modules"
