"""Unsat certificates: recorded while the verifier runs, checked by verifier.certcheck."""
