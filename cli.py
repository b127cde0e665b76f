#!/usr/bin/env python3
"""Entry point: python cli.py verify MODEL.onnx SPEC.vnnlib [--timeout S] [--out RESULT]."""
import os
import sys
import time

STARTED = time.monotonic()

if __name__ == "__main__":
    from verifier.cli import main

    code = main(sys.argv[1:], started=STARTED)
    sys.stdout.flush()
    sys.stderr.flush()
    # Every file is written and closed by now; skipping the interpreter's teardown saves about
    # 0.5 s per run once torch is loaded (a tenth of a small benchmark's total).
    os._exit(code)
