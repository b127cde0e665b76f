"""Unsat certificates: written by `verify --certificate`, re-checked by verifier.certcheck.

The checker must accept what the verifier proves and reject every tampered certificate: a
leaf dropped, a split sign flipped, a slope outside [0, 1], a negative split multiplier, a box
past the region, a spec whose threshold no longer holds, and the certificate of an unsound
engine mutant.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import onnx_factory as factory
import verifier
from conftest import ROOT, shipped_instances
from verifier.certcheck import CheckerError, check_certificate
from verifier.certcheck import format as fmt
from verifier.certcheck.bounds import backward_lower, crown_bounds, forward_bounds, root_bounds
from verifier.certcheck.network import read_network


# ------------------------------------------------------------------ instances

def _tiny_net(path: Path, n_inputs: int = 2, width: int = 12, seed: int = 3, output_bias_only: float | None = None) -> str:
    """A small ReLU MLP (Gemm layers); with output_bias_only, the hidden biases are zero and the
    output's is that value."""
    rng = np.random.default_rng(seed)
    b = factory.OnnxBuilder([1, n_inputs], rng=rng)

    def bias(n, last=False):
        if output_bias_only is None:
            return b.weight(n, fan_in=1, scale=0.3)
        return b.const(np.full(n, output_bias_only if last else 0.0))

    y = b.input
    for n_in, n_out in ((n_inputs, width), (width, width)):
        y = b.add("Relu", [b.add("Gemm", [y, b.weight(n_out, n_in), bias(n_out)], transB=1)])
    y = b.add("Gemm", [y, b.weight(1, width), bias(1, last=True)], transB=1)
    return b.save(path, y)


def _spec(path: Path, lo, hi, threshold: float) -> str:
    """Unsafe: Y_0 >= threshold."""
    lines = [f"(declare-const X_{i} Real)" for i in range(len(lo))] + ["(declare-const Y_0 Real)"]
    for i, (a, b) in enumerate(zip(lo, hi)):
        lines += [f"(assert (>= X_{i} {a!r}))", f"(assert (<= X_{i} {b!r}))"]
    lines.append(f"(assert (>= Y_0 {threshold!r}))")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 2-input ReLU net and a property that holds with little room: branch and bound needed."""
    folder = tmp_path_factory.mktemp("tiny")
    model = _tiny_net(folder / "net.onnx")
    net = read_network(model)
    grid = np.stack(np.meshgrid(np.linspace(-1, 1, 201), np.linspace(-1, 1, 201)), -1).reshape(-1, 2)
    top = float(net.evaluate(grid).max())
    spec = _spec(folder / "prop.vnnlib", [-1.0, -1.0], [1.0, 1.0], round(top + 0.02, 4))
    return model, spec, folder


@pytest.fixture(scope="module")
def certificates(tiny):
    """Certificates of the tiny property by input splitting and by ReLU splitting."""
    model, spec, folder = tiny
    out = {}
    for split in ("input", "relu"):
        path = folder / f"{split}.npz"
        result = verifier.verify(model, spec, timeout=60, split=split, certificate=path)
        assert result.verdict == "unsat", result.stage
        out[split] = str(path)
    return out


def _tampered(path: str, out: Path, change) -> str:
    header, arrays = fmt.read(path)
    change(header, arrays)
    fmt.write(str(out), header, arrays)
    return str(out)


# ------------------------------------------------------------------ the checker stands alone

def test_checker_imports_nothing_from_the_verifier():
    code = ("import sys, verifier.certcheck, verifier.certcheck.check; "
            "print(sorted(m for m in sys.modules if m.startswith('verifier') or m == 'torch'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    modules = eval(out)  # a printed list of names
    assert all(m == "verifier" or m.startswith("verifier.certcheck") for m in modules), modules


def test_checker_reads_onnx_without_the_onnx_package(tmp_path):
    """The checker's protobuf reading (no `import onnx`, whose start-up costs half a second)
    gives onnx's own tensors and attributes on every model family of the factory, and a later
    `import onnx` in the same process still works."""
    path = factory.save(factory.gen_conv2d(np.random.default_rng(1)), tmp_path / "m.onnx")
    code = ("import sys; from verifier.certcheck import onnx_proto; "
            f"m = onnx_proto.load_model({str(path)!r}); "
            "assert 'onnx' not in sys.modules and 'ml_dtypes' not in sys.modules; "
            "import onnx; assert onnx.load(" + repr(str(path)) + ").graph.node[0].op_type == m.graph.node[0].op_type")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)

    import onnx
    from onnx import helper, numpy_helper

    from verifier.certcheck import onnx_proto

    rng = np.random.default_rng(2)
    generators = [factory.gen_gemm, factory.gen_conv2d, factory.gen_conv1d, factory.gen_batchnorm,
                  factory.gen_maxpool, factory.gen_pad, factory.gen_reshape, factory.gen_slice]
    for i, generate in enumerate(generators):
        path = factory.save(generate(rng), tmp_path / f"g{i}.onnx")
        mine, theirs = onnx_proto.load_model(str(path)), onnx.load(str(path))
        for a, b in zip(mine.graph.initializer, theirs.graph.initializer):
            expected = numpy_helper.to_array(b)
            got = onnx_proto.to_array(a)
            assert got.dtype == expected.dtype and np.array_equal(got, expected)
        for n, m in zip(mine.graph.node, theirs.graph.node):
            for a, b in zip(n.attribute, m.attribute):
                got, expected = onnx_proto.attribute_value(a), helper.get_attribute_value(b)
                assert str(got) == str(expected)


def test_reader_matches_onnxruntime_and_bounds_contain_samples(tmp_path):
    rng = np.random.default_rng(0)
    generators = [factory.gen_gemm, factory.gen_matmul, factory.gen_matmul_const_left, factory.gen_conv2d,
                  factory.gen_conv1d, factory.gen_flatten]
    checked = 0
    for i in range(24):
        model = generators[i % len(generators)](rng)
        path = factory.save(model, tmp_path / f"m{i}.onnx")
        try:
            net = read_network(path)
        except CheckerError as e:  # what the checker leaves out (auto_pad, ...) is named
            assert "node '" in str(e) or "op(s)" in str(e), e
            continue
        lo = -np.abs(rng.normal(size=net.input_size))
        hi = lo + rng.uniform(0.0, 1.0, size=net.input_size)
        x = rng.uniform(lo, hi, size=(32, net.input_size)).astype(np.float32).astype(np.float64)
        reference = factory.run_onnxruntime(path, x.reshape(32, *factory.input_shape(model))).reshape(32, -1)
        assert np.allclose(net.evaluate(x), reference, rtol=1e-4, atol=1e-5)
        root = root_bounds(net, lo, hi)
        eye = np.eye(net.output_size)
        for domains in (crown_bounds(net, root, lo[None], hi[None])[0], forward_bounds(net, root, lo[None], hi[None])):
            lower = backward_lower(net, root, len(net.prims), np.concatenate([eye, -eye])[None], domains)[0]
            y = net.evaluate(x)
            assert (y >= lower[:net.output_size]).all() and (y <= -lower[net.output_size:]).all()
        checked += 1
    assert checked >= 8


@pytest.mark.parametrize("kind", ["gemm", "conv"])
def test_checker_charges_the_engines_float32_rounding(kind, tmp_path):
    """The checker's rounding rule, written again, gives the engine's bound for one op: no less
    (it would accept what the engine cannot prove), no more (a looser checker rejects the
    certificates of rows with tight margins, as ACAS Xu's did when the two rules drifted)."""
    import torch

    from verifier import api
    from verifier.float_error import local_rounding

    rng = np.random.default_rng(5)
    if kind == "gemm":
        b = factory.OnnxBuilder([1, 7], rng=rng)
        y = b.add("Gemm", [b.input, b.weight(5, 7, fan_in=7), b.weight(5, fan_in=1)], transB=1)
    else:
        b = factory.OnnxBuilder([1, 2, 5, 5], rng=rng)
        y = b.add("Conv", [b.input, b.weight(3, 2, 3, 3, fan_in=18), b.weight(3, fan_in=1)])
    path = factory.save(b.model(y), tmp_path / f"{kind}.onnx")
    (prim,) = read_network(path).prims
    graph = api.load_model(path).to(torch.float64)
    (node,) = graph.nodes
    mag = rng.uniform(0.0, 3.0, size=prim.n_in)
    m = torch.as_tensor(mag).reshape(1, *graph.input_shape)
    engine = local_rounding(node, lambda name: (-m, m)).flatten().numpy()
    checker = np.asarray(prim.rounding(mag)).flatten()
    assert (checker >= engine).all()
    np.testing.assert_allclose(checker, engine, rtol=1e-6)


def test_unsupported_op_is_named(tmp_path):
    b = factory.OnnxBuilder([1, 3])
    y = b.add("Sigmoid", [b.add("Gemm", [b.input, b.weight(3, 3), b.weight(3, fan_in=1)], transB=1)])
    with pytest.raises(CheckerError, match="Sigmoid"):
        read_network(b.save(tmp_path / "s.onnx", y))


# ------------------------------------------------------------------ valid certificates

@pytest.mark.parametrize("split", ["input", "relu"])
def test_certificate_of_the_tiny_property_is_valid(tiny, certificates, split):
    model, spec, _ = tiny
    outcome = check_certificate(model, spec, certificates[split])
    assert outcome.valid, outcome.message
    assert outcome.stats["leaves"] > 1  # a tree, not just the root


def test_shipped_crown_row_certificate(tmp_path):
    row = next(r for r in shipped_instances() if r["expected"] == "unsat" and "digits_cnn" in r["onnx"])
    path = tmp_path / "c.npz"
    assert verifier.verify(row["onnx"], row["vnnlib"], timeout=60, certificate=path).verdict == "unsat"
    assert check_certificate(row["onnx"], row["vnnlib"], str(path)).valid


# ------------------------------------------------------------------ tampered certificates

def _rejected(tiny, cert, match: str, **kwargs):
    model, spec, _ = tiny
    outcome = check_certificate(model, spec, cert, **kwargs)
    assert not outcome.valid and match in outcome.message, outcome.message


def _drop_first_box(header, arrays):
    part = header["regions"][0]["parts"][0]
    for key in (part["lo"], part["hi"], part["leaf_node"]):
        arrays[key] = arrays[key][1:]


def test_dropped_box_leaf_is_rejected(tiny, certificates, tmp_path):
    _rejected(tiny, _tampered(certificates["input"], tmp_path / "t.npz", _drop_first_box), "uncovered")


def test_enlarged_box_is_rejected(tiny, certificates, tmp_path):
    def enlarge(header, arrays):
        part = header["regions"][0]["parts"][0]
        hi = arrays[part["hi"]].copy()
        hi[int(np.argmax(hi[:, 0]))] += 0.5  # the box reaching the region's upper end, past it
        arrays[part["hi"]] = hi
    _rejected(tiny, _tampered(certificates["input"], tmp_path / "t.npz", enlarge), "past the region")


def _split_part(header):
    return next(p for p in header["regions"][0]["parts"] if p["kind"] == "splits" and len(p["leaves"]))


def test_dropped_split_leaf_is_rejected(tiny, certificates, tmp_path):
    def drop(header, arrays):
        leaves = _split_part(header)["leaves"]
        offsets = arrays[leaves["offsets"]]
        cut = offsets[1]
        arrays[leaves["offsets"]] = offsets[1:] - cut
        for key in ("layer", "neuron", "sign", "beta"):
            arrays[leaves[key]] = arrays[leaves[key]][cut:]
        for key in ("alpha", "z3"):
            arrays[leaves[key]] = arrays[leaves[key]][1:]
    _rejected(tiny, _tampered(certificates["relu"], tmp_path / "t.npz", drop), "not covered")


def test_flipped_split_sign_is_rejected(tiny, certificates, tmp_path):
    def flip(header, arrays):
        leaves = _split_part(header)["leaves"]
        sign = arrays[leaves["sign"]].copy()
        sign[0] = -sign[0]
        arrays[leaves["sign"]] = sign
    _rejected(tiny, _tampered(certificates["relu"], tmp_path / "t.npz", flip), "side")


def test_slope_outside_unit_interval_is_rejected(tiny, certificates, tmp_path):
    def push(header, arrays):
        leaves = _split_part(header)["leaves"]
        alpha = arrays[leaves["alpha"]].copy()
        alpha.reshape(-1)[0] = 1.5
        arrays[leaves["alpha"]] = alpha
    _rejected(tiny, _tampered(certificates["relu"], tmp_path / "t.npz", push), "slope")


def test_negative_split_multiplier_is_rejected(tiny, certificates, tmp_path):
    def negate(header, arrays):
        leaves = _split_part(header)["leaves"]
        beta = arrays[leaves["beta"]].copy()
        beta.reshape(-1)[0] = -0.25
        arrays[leaves["beta"]] = beta
    _rejected(tiny, _tampered(certificates["relu"], tmp_path / "t.npz", negate), "multiplier")


def test_leaf_trusted_to_z3_needs_trust(tiny, certificates, tmp_path):
    """A leaf marked trusted-z3 is not re-checked: invalid unless trust_z3, then counted."""
    def mark(header, arrays):
        leaves = _split_part(header)["leaves"]
        z3 = arrays[leaves["z3"]].copy()
        z3[0] = True
        arrays[leaves["z3"]] = z3
        leaves["z3_sha256"] = ["0" * 64]
    model, spec, _ = tiny
    marked = _tampered(certificates["relu"], tmp_path / "t.npz", mark)
    assert "trusted-z3" in check_certificate(model, spec, marked).message
    trusted = check_certificate(model, spec, marked, trust_z3=True)
    assert trusted.valid and trusted.stats["trusted_z3"] == 1, trusted.message


@pytest.mark.parametrize("split", ["input", "relu"])
def test_spec_with_a_threshold_that_fails_is_rejected(tiny, certificates, split, tmp_path):
    """The same certificate against the property with its threshold moved below the network's
    maximum (sat now): rejected by the bounds, and by the spec's hash without --ignore-hashes."""
    model, spec, _ = tiny
    text = Path(spec).read_text()
    line = next(line for line in text.splitlines() if "Y_0" in line and "assert" in line)
    threshold = float(line.split()[-1].rstrip(")"))
    moved = tmp_path / "moved.vnnlib"
    moved.write_text(text.replace(line, f"(assert (>= Y_0 {threshold - 0.1!r}))"))
    outcome = check_certificate(model, str(moved), certificates[split], check_hashes=False)
    assert not outcome.valid and "not refuted" in outcome.message, outcome.message
    assert "sha256" in check_certificate(model, str(moved), certificates[split]).message
    assert verifier.verify(model, str(moved), timeout=30).verdict == "sat"


@pytest.mark.parametrize("split", ["input", "relu"])
def test_certificate_of_an_unsound_mutant_is_rejected(split, tmp_path, monkeypatch):
    """With the MatMul/Gemm backward rule dropping the bias (tests/test_mutations.py), on a net
    whose one bias is +0.5 at the output, the verifier proves a threshold 0.25 below the
    maximum (counterexamples are silenced, so that it gets to prove it); its certificate does
    not check."""
    import test_mutations
    from verifier import pipeline

    model = _tiny_net(tmp_path / "net.onnx", output_bias_only=0.5)
    axis = np.linspace(-1, 1, 401)
    top = float(read_network(model).evaluate(np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)).max())
    failing = _spec(tmp_path / "fails.vnnlib", [-1.0, -1.0], [1.0, 1.0], top - 0.25)
    test_mutations.bias_dropped_in_linear_bound(monkeypatch)
    monkeypatch.setattr(pipeline.Query, "confirm", lambda self, region, x: None)
    path = tmp_path / "mutant.npz"
    result = verifier.verify(model, failing, timeout=60, split=split, certificate=path)
    assert result.verdict == "unsat", f"the mutant did not get it wrong: {result.verdict} ({result.stage})"
    outcome = check_certificate(model, failing, str(path))
    assert not outcome.valid and "not refuted" in outcome.message, outcome.message


# ------------------------------------------------------------------ the command line

def test_cli_exit_codes(tiny, certificates, tmp_path, capsys):
    """0 valid, 1 invalid, 2 a user error; the command itself imports no torch."""
    from verifier.cli import main

    model, spec, _ = tiny
    code = ("import sys; from verifier.cli import main; status = main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules; sys.exit(status)")
    ok = subprocess.run([sys.executable, "-c", code, "check-certificate", model, spec, certificates["input"]],
                        cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.startswith("valid"), ok.stdout + ok.stderr
    assert main(["check-certificate", model, spec, _tampered(certificates["input"], tmp_path / "t.npz", _drop_first_box)]) == 1
    assert capsys.readouterr().out.startswith("invalid: ")
    assert main(["check-certificate", model, spec, str(tmp_path / "none.npz")]) == 2
    assert "not found" in capsys.readouterr().err
    not_one = tmp_path / "x.npz"
    not_one.write_bytes(b"not a certificate")
    assert main(["check-certificate", model, spec, str(not_one)]) == 2
    assert "not a certificate" in capsys.readouterr().err


# ------------------------------------------------------------------ slow: real instances

@pytest.mark.slow
@pytest.mark.parametrize("row", [r for r in shipped_instances() if r["expected"] == "unsat"],
                         ids=lambda r: Path(r["vnnlib"]).stem)
def test_shipped_unsat_rows_have_valid_certificates(row, tmp_path):
    path = tmp_path / "c.npz"
    result = verifier.verify(row["onnx"], row["vnnlib"], timeout=120, certificate=path)
    assert result.verdict == "unsat", result.stage
    outcome = check_certificate(row["onnx"], row["vnnlib"], str(path))
    assert outcome.valid, outcome.message


CERTIFIED_BENCHMARKS = ("acasxu", "mnist_fc", "tllverifybench", "rl_benchmarks", "reach_prob_density",
                        "collins_rul_cnn", "test")


def _vnncomp_unsat_rows():
    import csv

    from conftest import vnncomp_dir

    path = vnncomp_dir() / "instances.csv"
    if not path.is_file():
        return []
    with open(path) as f:
        return [row for row in csv.DictReader(f)
                if row["expected"] == "unsat" and row["benchmark"] in CERTIFIED_BENCHMARKS]


@pytest.mark.slow
@pytest.mark.parametrize("row", _vnncomp_unsat_rows(), ids=lambda r: f"{r['benchmark']}-{Path(r['onnx']).stem}-{Path(r['vnnlib']).stem}")
def test_vnncomp_unsat_rows_have_valid_certificates(row, vnncomp, tmp_path):
    model, spec = str(vnncomp / row["onnx"]), str(vnncomp / row["vnnlib"])
    path = tmp_path / "c.npz"
    result = verifier.verify(model, spec, timeout=float(row["timeout"]), certificate=path)
    assert result.verdict == "unsat", result.stage
    outcome = check_certificate(model, spec, str(path))
    assert outcome.valid, outcome.message
