#!/usr/bin/env python3
"""Entry point: python cli.py verify MODEL.onnx SPEC.vnnlib [--timeout S] [--out RESULT]."""
import sys
import time

STARTED = time.monotonic()

if __name__ == "__main__":
    from verifier.cli import main_and_exit

    main_and_exit(sys.argv[1:], started=STARTED)
