"""Cross-check of the SMT path (--method smt) against Marabou, an independent verifier.

30 random small ReLU networks with box specs: wherever both decide, the verdicts agree, and
every sat witness lies in the box and violates the property in onnxruntime. Marabou is a
test-only dependency (maraboupy); the test skips when it cannot be imported.
"""
import numpy as np
import onnxruntime as ort
import pytest

import verifier
from onnx_factory import OnnxBuilder, _dense
from verifier.decide import violates
from verifier.spec.vnnlib import parse_vnnlib

Marabou = pytest.importorskip("maraboupy.Marabou", reason="maraboupy is not installed")

N_NETS = 30


def random_net(tmp_path, seed):
    rng = np.random.default_rng(seed)
    n_in, width, n_out = int(rng.integers(2, 5)), int(rng.integers(4, 8)), int(rng.integers(2, 4))
    b = OnnxBuilder([1, n_in], rng=rng)
    h = _dense(b, b.input, n_in, width, rng, "Relu")
    h = _dense(b, h, width, width, rng, "Relu")
    y = _dense(b, h, width, n_out, rng)
    return b.save(tmp_path / f"net{seed}.onnx", y), n_in, n_out, rng


def f32(v) -> str:
    return repr(float(np.float32(v)))


def random_spec(path, onnx_path, n_in, n_out, rng):
    """A box around a random centre; unsafe: some other output reaches the centre's top output
    (robustness), or output 0 falls below a threshold near the sampled minimum."""
    centre = rng.uniform(-1, 1, n_in)
    radius = rng.uniform(0.02, 0.4)
    lo, hi = centre - radius, centre + radius
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    top = int(np.argmax(session.run(None, {"x": centre.astype(np.float32).reshape(1, -1)})[0]))
    lines = [f"(declare-const X_{i} Real)" for i in range(n_in)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(n_out)]
    for i in range(n_in):
        lines += [f"(assert (>= X_{i} {f32(lo[i])}))", f"(assert (<= X_{i} {f32(hi[i])}))"]
    if rng.random() < 0.5:
        others = [j for j in range(n_out) if j != top]
        lines.append("(assert (or " + " ".join(f"(and (>= Y_{j} Y_{top}))" for j in others) + "))")
    else:
        xs = rng.uniform(lo, hi, (200, n_in)).astype(np.float32)
        ys = np.concatenate([session.run(None, {"x": x.reshape(1, -1)})[0] for x in xs])[:, 0]
        threshold = np.quantile(ys, 0.02) - rng.uniform(-0.05, 0.1) * (ys.max() - ys.min())
        lines.append(f"(assert (<= Y_0 {f32(threshold)}))")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def marabou_verdict(onnx_path, region) -> str:
    """sat if Marabou finds some disjunct satisfiable, unsat if it refutes all, else unknown."""
    options = Marabou.createOptions(verbosity=0, timeoutInSeconds=20)
    answers = []
    for dj in region.disjuncts:
        net = Marabou.read_onnx(onnx_path)
        x, y = net.inputVars[0].flatten(), net.outputVars[0].flatten()
        for i, v in enumerate(x):
            net.setLowerBound(v, region.lo[i])
            net.setUpperBound(v, region.hi[i])
        for row, d in zip(dj.C, dj.d):
            cols = np.nonzero(row)[0]
            net.addInequality([int(y[j]) for j in cols], [float(row[j]) for j in cols], float(d))
        code, _, _ = net.solve(options=options, verbose=False)
        answers.append(code)
        if code == "sat":
            return "sat"
    return "unsat" if all(a == "unsat" for a in answers) else "unknown"


def test_smt_agrees_with_marabou(tmp_path):
    decided, agreements = 0, []
    for seed in range(N_NETS):
        onnx_path, n_in, n_out, rng = random_net(tmp_path, seed)
        vnnlib = random_spec(tmp_path / f"spec{seed}.vnnlib", onnx_path, n_in, n_out, rng)
        ours = verifier.verify(onnx_path, vnnlib, timeout=20, method="smt")
        region = parse_vnnlib(vnnlib)[0]
        theirs = marabou_verdict(onnx_path, region)
        if ours.verdict == "sat":
            x = ours.witness.x
            session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
            y = session.run(None, {"x": x.astype(np.float32).reshape(1, -1)})[0].reshape(-1)
            assert np.all(x >= region.lo) and np.all(x <= region.hi), seed
            assert violates(region, y), seed
        if ours.verdict in ("sat", "unsat") and theirs in ("sat", "unsat"):
            decided += 1
            agreements.append((seed, ours.verdict, theirs))
            assert ours.verdict == theirs, (seed, ours.verdict, ours.stage, theirs)
    verdicts = {v for _, v, _ in agreements}
    assert decided >= 25 and verdicts == {"sat", "unsat"}, agreements
