#!/usr/bin/env bash
# Adapter for `cli.py soundness check --command`: the harness's argument order
#   run_instance_wrapper.sh ONNX VNNLIB TIMEOUT RESULT
# turned into VNN-COMP's
#   vnncomp/run_instance.sh v1 soundness ONNX VNNLIB RESULT TIMEOUT
# Use:
#   python cli.py soundness check DIR \
#       --command 'verifier/soundness/run_instance_wrapper.sh {onnx} {vnnlib} {timeout} {result}'
# (equivalently, with no wrapper: --command 'vnncomp/run_instance.sh v1 soundness {onnx} {vnnlib} {result} {timeout}')
set -u
[ "$#" -eq 4 ] || { echo "usage: $0 ONNX VNNLIB TIMEOUT RESULT" >&2; exit 1; }
here="$(cd "$(dirname "$0")/../.." && pwd)"
exec "$here/vnncomp/run_instance.sh" v1 soundness "$1" "$2" "$4" "$3"
