#!/usr/bin/env bash
# VNN-COMP: run_instance.sh v1 CATEGORY ONNX VNNLIB RESULTS_FILE TIMEOUT
# Writes sat (with the witness), unsat, unknown, timeout or error to RESULTS_FILE.
set -u
[ "$#" -eq 6 ] || { echo "usage: $0 v1 CATEGORY ONNX VNNLIB RESULTS_FILE TIMEOUT" >&2; exit 1; }
here="$(cd "$(dirname "$0")/.." && pwd)"
py="$here/.venv/bin/python"; [ -x "$py" ] || py=python3
"$py" "$here/cli.py" verify "$3" "$4" --out "$5" --timeout "$6"
status=$?
[ -s "$5" ] || echo error > "$5"
exit $(( status == 2 ? 0 : status ))
