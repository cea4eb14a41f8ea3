#!/usr/bin/env bash
# Create (or reuse) the Python venv for the interop client and print its python path.
#   tests/interop/setup-venv.sh [VENV_DIR]      (default: target/interop-venv)
# Idempotent: skips the install when the venv already holds this exact requirements.txt
# (its sha256 is stored in VENV_DIR/.requirements.sha256 after a successful install).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
req="$here/requirements.txt"
venv="${1:-target/interop-venv}"
python="${PYTHON:-python3}"

want="$(sha256sum "$req" | cut -d' ' -f1)"
stamp="$venv/.requirements.sha256"

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "$(cd "$venv" && pwd)/bin/python"
    exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv" >&2
fi
rm -f "$stamp"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$req" >&2
# Fail here, not in a test, when the wheels do not fit together (e.g. a libxml2 mismatch).
"$venv/bin/python" -c 'import zeep, requests, lxml.etree, xmlsec, cryptography.x509' >&2
echo "$want" > "$stamp"
echo "$(cd "$venv" && pwd)/bin/python"
