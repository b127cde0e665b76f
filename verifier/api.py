"""The Python API: load a model and a spec, compute bounds, verify.

Loading and parsing run without torch (its import alone takes about 2 s), so a bad model or
spec is reported at once; torch is imported when bounds or verification begin."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from verifier.graph.ir import Graph
from verifier.options import Options
from verifier.result import Result
from verifier.spec.region import Region


def load_model(path: str | Path) -> Graph:
    from verifier.graph.onnx_loader import load_onnx

    return load_onnx(path)


def load_spec(path: str | Path, graph: Graph | None = None) -> list[Region]:
    from verifier.spec.vnnlib import parse_vnnlib

    if graph is None:
        return parse_vnnlib(path)
    return parse_vnnlib(path, n_inputs=graph.input_size, n_outputs=graph.output_size)


def bounds(model, box, method: str = "crown", device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of every model output over an input box.

    model: a Graph or an ONNX path; box: a Region or a pair (lo, hi) of flat arrays.
    method: "ibp", "crown" or "sdp" (low-rank SDP over alpha-CROWN, ReLU chains only). Bounds
    are computed in float64.
    """
    import torch

    from verifier.boundprop.engine import bound_rows, crown, ibp

    graph = load_model(model) if not isinstance(model, Graph) else model
    graph = graph.to(torch.float64, device)
    lo, hi = (box.lo, box.hi) if isinstance(box, Region) else box
    lo = torch.as_tensor(np.asarray(lo, dtype=np.float64), device=device).reshape(1, -1)
    hi = torch.as_tensor(np.asarray(hi, dtype=np.float64), device=device).reshape(1, -1)
    if method == "ibp":
        l, u = ibp(graph, lo, hi).bounds[graph.output_name]
        return l.flatten().cpu().numpy(), u.flatten().cpu().numpy()
    if method not in ("crown", "sdp"):
        raise ValueError(f"unknown bound method '{method}' (ibp, crown, sdp)")
    n = graph.output_size
    if method == "sdp":
        from verifier.sdp import sdp_lower_bounds

        eye = torch.eye(n, dtype=torch.float64, device=device)
        lower = sdp_lower_bounds(graph, lo, hi, torch.cat([eye, -eye])).lower
        return lower[:n].cpu().numpy(), (-lower[n:]).cpu().numpy()
    state = crown(graph, lo, hi)
    lower, upper = bound_rows(state, graph.output_name, torch.arange(n, device=device))  # in chunks: TinyYOLO has 21,125
    return lower[0].cpu().numpy(), upper[0].cpu().numpy()


def verify(model_path: str | Path, spec_path: str | Path, timeout: float = 300.0,
           started: float | None = None, certificate: str | Path | None = None, **options) -> Result:
    """Decide whether the ONNX model violates the VNN-LIB property: sat, unsat, unknown or timeout.

    certificate: for unsat, write a certificate there that `verifier.certcheck` re-checks
    independently (the SDP stage is skipped then: its bounds are not part of certificates)."""
    started = time.monotonic() if started is None else started
    opts = Options(timeout=timeout, **options)
    if certificate is not None and opts.method == "smt":
        from verifier.errors import UserError

        raise UserError("--certificate is not available with --method smt (z3's answers cannot be re-checked)")
    graph = load_model(model_path)
    regions = load_spec(spec_path, graph)
    from verifier.attack.replay import OnnxRunner  # the heavy imports (torch) after the checks
    from verifier.pipeline import Query, run

    query = Query(graph, regions, OnnxRunner(str(model_path)), opts, started)
    if certificate is not None:
        from verifier.certify.recorder import Recorder

        query.recorder = Recorder(graph)
    result = run(query)
    if certificate is not None:
        _write_certificate(query.recorder, result, certificate, model_path, spec_path)
    return result


def _write_certificate(recorder, result: Result, path, model_path, spec_path) -> None:
    if result.verdict != "unsat":
        result.stage += f"; no certificate ({result.verdict})"
        return
    size = recorder.write(str(path), str(model_path), str(spec_path))
    result.stage += f"; certificate {path} ({size / 1024:.0f} KiB)"
