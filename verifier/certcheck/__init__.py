"""An independent checker of the verifier's unsat certificates.

It imports nothing from the rest of `verifier`: only numpy, onnx and the standard library. It
reads the ONNX model and the VNN-LIB spec itself, recomputes every bound of the certificate in
rigorous float64 arithmetic (explicit rounding-error terms), checks that the leaves cover each
region, and derives its own float32 execution margin, so that `valid` means unsat for the
real-valued network and for the float32 one onnxruntime runs.

    check_certificate(model, spec, certificate) -> Outcome(valid, message, stats)
"""
from verifier.certcheck.check import Outcome, check_certificate
from verifier.certcheck.network import CheckerError

__all__ = ["CheckerError", "Outcome", "check_certificate"]
