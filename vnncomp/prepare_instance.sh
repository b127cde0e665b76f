#!/usr/bin/env bash
# VNN-COMP: prepare_instance.sh v1 CATEGORY ONNX VNNLIB
# Nothing to convert; check that the model loads and the spec parses, so broken inputs are
# reported here rather than at run time. Kills leftover runs of this tool.
set -u
[ "$#" -eq 4 ] || { echo "usage: $0 v1 CATEGORY ONNX VNNLIB" >&2; exit 1; }
here="$(cd "$(dirname "$0")/.." && pwd)"
py="$here/.venv/bin/python"; [ -x "$py" ] || py=python3
pkill -f "$here/cli.py verify" 2>/dev/null || true
"$py" -c "import sys; from verifier import api; g = api.load_model(sys.argv[1]); api.load_spec(sys.argv[2], g)" "$3" "$4"
