"""Generate small benchmark instances: digits networks, L-inf specs, ground truth.

Run from anywhere:  python bench_instances/generate.py

Trains three tiny networks on scikit-learn's packaged 8x8 digits (no download),
exports them to ONNX, writes VNN-LIB robustness specs to ../specs/ and labels
each spec independently of the project's verifier:
  sat    a PGD attack finds a counterexample that also holds in onnxruntime
         (the witness is saved to witnesses/INSTANCE.npy);
  unsat  an exact big-M MILP (scipy/HiGHS, float64) proves every
         max_x f_j(x) - f_t(x) < 0 over the box (ReLU models only).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import scipy.sparse as sp
import torch
from scipy.optimize import Bounds, LinearConstraint, milp
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

HERE = Path(__file__).resolve().parent
ONNX_DIR = HERE / "onnx"
WITNESS_DIR = HERE / "witnesses"
SPEC_DIR = HERE.parent / "specs"

SEED = 0
TIMEOUT = 30
EPS_GRID = [round(0.01 * k, 2) for k in range(1, 11)] + [0.12, 0.15]
NEAR_ZERO = 1e-4  # unsat needs every max_j f_j - f_t < -NEAR_ZERO (closer optima are left unlabelled)
MILP_TIME_LIMIT = 20.0

# Per model: its input shape, the digit classes whose first correctly classified
# test image is used, and the largest eps given to the MILP (None: no MILP, not ReLU).
# The CNN's MILPs get slow (tens of seconds) above eps 0.05.
MODELS = {
    "digits_mlp": dict(input_shape=(1, 64), classes=[0, 1, 2, 3], milp_max_eps=0.15),
    "digits_cnn": dict(input_shape=(1, 1, 8, 8), classes=[4, 5, 6, 7], milp_max_eps=0.05),
    "digits_tanh": dict(input_shape=(1, 64), classes=[8, 9, 2], milp_max_eps=None),
}


def build_model(name: str) -> nn.Module:
    if name == "digits_mlp":
        return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))
    if name == "digits_cnn":
        return nn.Sequential(
            nn.Conv2d(1, 4, 3, stride=1, padding=1), nn.ReLU(),
            nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(8 * 4 * 4, 10),
        )
    if name == "digits_tanh":
        return nn.Sequential(nn.Linear(64, 24), nn.Tanh(), nn.Linear(24, 24), nn.Tanh(), nn.Linear(24, 10))
    raise ValueError(name)


# ---------------------------------------------------------------- data, training

@dataclass
class Data:
    x_train: np.ndarray  # (n, 64) float32 in [0, 1]
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    test_index: np.ndarray  # index of each test image in load_digits()


def load_data() -> Data:
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    idx = np.arange(len(x))
    i_tr, i_te = train_test_split(idx, test_size=0.3, random_state=SEED, stratify=digits.target)
    return Data(x[i_tr], digits.target[i_tr], x[i_te], digits.target[i_te], i_te)


def forward_flat(model: nn.Module, x_flat: torch.Tensor, input_shape) -> torch.Tensor:
    return model(x_flat.reshape(-1, *input_shape[1:]))


def train(name: str, data: Data, epochs: int = 30) -> nn.Module:
    torch.manual_seed(SEED)
    model = build_model(name)
    shape = MODELS[name]["input_shape"]
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train).long()
    gen = torch.Generator().manual_seed(SEED)
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=gen).split(32):
            opt.zero_grad()
            nn.functional.cross_entropy(forward_flat(model, x[batch], shape), y[batch]).backward()
            opt.step()
    return model.eval()


def predict(model: nn.Module, x: np.ndarray, shape) -> np.ndarray:
    with torch.no_grad():
        return forward_flat(model, torch.from_numpy(x), shape).argmax(1).numpy()


# ---------------------------------------------------------------- ONNX

def export_onnx(model: nn.Module, name: str, data: Data) -> Path:
    shape = MODELS[name]["input_shape"]
    path = ONNX_DIR / f"{name}.onnx"
    torch.onnx.export(model, (torch.zeros(shape),), str(path), opset_version=13, dynamo=False,
                      input_names=["input"], output_names=["output"])
    rng = np.random.default_rng(SEED)
    checks = np.concatenate([data.x_test[:10], rng.random((10, 64), dtype=np.float32)])
    for x in checks:
        with torch.no_grad():
            expected = forward_flat(model, torch.from_numpy(x), shape).numpy()[0]
        error = np.max(np.abs(run_onnx(path, x, shape) - expected))
        assert error <= 1e-5 * max(1.0, np.max(np.abs(expected))), (name, error)  # 1e-5, relative to large logits
    return path


_SESSIONS: dict[Path, ort.InferenceSession] = {}


def run_onnx(path: Path, x_flat: np.ndarray, shape) -> np.ndarray:
    if path not in _SESSIONS:
        _SESSIONS[path] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    sess = _SESSIONS[path]
    return sess.run(None, {"input": x_flat.astype(np.float32).reshape(shape)})[0][0]


# ---------------------------------------------------------------- specs

def decimal(value: float) -> str:
    """Pixels are k/16 and eps has 2 decimals, so 8 places are exact; trailing zeros are dropped (0.5, 0.0)."""
    text = f"{value:.8f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def box_strings(x: np.ndarray, eps: float) -> tuple[list[str], list[str]]:
    """Box bounds as the decimal text written to the spec."""
    return [decimal(max(0.0, float(v) - eps)) for v in x], [decimal(min(1.0, float(v) + eps)) for v in x]


def box(x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """The box exactly as a float64 reader of the spec text sees it."""
    lo, hi = box_strings(x, eps)
    return np.array(lo, dtype=np.float64), np.array(hi, dtype=np.float64)


def instance_name(model: str, image: int, eps: float) -> str:
    return f"{model}_img{image}_eps{eps:.2f}"


def write_vnnlib(path: Path, model: str, image: int, label: int, x: np.ndarray, eps: float) -> None:
    lo, hi = box_strings(x, eps)
    lines = [
        f"; L-inf robustness of {model}.onnx on sklearn load_digits() image {image} (a test image, label {label}),",
        f"; eps = {eps:.2f}, pixels scaled to [0, 1], box clipped to [0, 1], inputs flattened in C order.",
        f"; Unsafe (sat) iff some class j != {label} scores at least as high as class {label}.",
    ]
    lines += [f"(declare-const X_{i} Real)" for i in range(len(x))]
    lines += [f"(declare-const Y_{j} Real)" for j in range(10)]
    lines.append("; Input constraints:")
    for i in range(len(x)):
        lines += [f"(assert (<= X_{i} {hi[i]}))", f"(assert (>= X_{i} {lo[i]}))"]
    lines.append("; Output constraints:")
    lines.append("(assert (or")
    lines += [f"    (and (>= Y_{j} Y_{label}))" for j in range(10) if j != label]
    lines.append("))")
    path.write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------- PGD (sat)

def pgd_attack(model: nn.Module, shape, lo: np.ndarray, hi: np.ndarray, label: int,
               restarts: int = 20, steps: int = 150) -> np.ndarray | None:
    """Targeted PGD on f_j - f_t for every j != t, many random starts. Returns a float32 witness or None."""
    torch.manual_seed(SEED)
    lo_t, hi_t = torch.from_numpy(lo).float(), torch.from_numpy(hi).float()
    targets = torch.tensor([j for j in range(10) if j != label]).repeat_interleave(restarts)
    x = lo_t + (hi_t - lo_t) * torch.rand(len(targets), lo.size)
    x[:: restarts] = (lo_t + hi_t) / 2  # one start per target at the centre
    rows = torch.arange(len(targets))
    for step in range(steps):
        x.requires_grad_(True)
        out = forward_flat(model, x, shape)
        margin = out[rows, targets] - out[:, label]
        if margin.max() > 0.05:  # a clear violation: stop early
            break
        (grad,) = torch.autograd.grad(margin.sum(), x)
        alpha = (hi_t - lo_t) * (0.25 if step < steps // 2 else 0.05)
        x = torch.min(torch.max(x.detach() + alpha * grad.sign(), lo_t), hi_t)
    with torch.no_grad():
        out = forward_flat(model, x, shape)
        margin = out[rows, targets] - out[:, label]
    best = int(margin.argmax())
    return x[best].detach().numpy() if margin[best] >= 0 else None


def float32_inside(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Cast to float32 and clip so that every entry lies in [lo, hi] exactly."""
    lo32 = lo.astype(np.float32)
    lo32 = np.where(lo32 < lo, np.nextafter(lo32, np.float32(np.inf)), lo32)
    hi32 = hi.astype(np.float32)
    hi32 = np.where(hi32 > hi, np.nextafter(hi32, np.float32(-np.inf)), hi32)
    return np.clip(x.astype(np.float32), lo32, hi32)


def violates_in_onnx(path: Path, shape, witness: np.ndarray, label: int) -> bool:
    y = run_onnx(path, witness, shape)
    return any(y[j] >= y[label] for j in range(10) if j != label)


# ---------------------------------------------------------------- MILP (unsat)

def affine_layers(model: nn.Module, shape) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ReLU network as float64 affine maps (W, b); conv layers become dense matrices."""
    layers, in_shape = [], shape[1:]
    model = copy.deepcopy(model).double()
    for module in model:
        if isinstance(module, nn.Linear):
            layers.append((module.weight.detach().numpy().copy(), module.bias.detach().numpy().copy()))
            in_shape = (module.out_features,)
        elif isinstance(module, nn.Conv2d):
            n_in = int(np.prod(in_shape))
            with torch.no_grad():
                basis = torch.cat([torch.zeros(1, n_in), torch.eye(n_in)]).double().reshape(-1, *in_shape)
                out = module(basis)
            in_shape = tuple(out.shape[1:])
            out = out.reshape(n_in + 1, -1).numpy()
            layers.append(((out[1:] - out[0]).T.copy(), out[0].copy()))
    return layers


def affine_forward(layers, x: np.ndarray) -> np.ndarray:
    for k, (w, b) in enumerate(layers):
        x = w @ x + b
        x = np.maximum(x, 0) if k < len(layers) - 1 else x
    return x


def interval_step(w, b, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    mid, rad = w @ ((lo + hi) / 2) + b, np.abs(w) @ ((hi - lo) / 2)
    return mid - rad, mid + rad


@dataclass
class Encoding:
    """Big-M encoding of the hidden layers: variables x | a_1 d_1 | a_2 d_2 | ... (a post-ReLU, d binary)."""

    columns: list[int]  # first column of x, a_1, a_2, ...
    var_lo: np.ndarray
    var_hi: np.ndarray
    integrality: np.ndarray
    rows: list[sp.csr_matrix]
    row_lo: list[np.ndarray]
    row_hi: list[np.ndarray]

    def constraint(self) -> LinearConstraint:
        return LinearConstraint(sp.vstack(self.rows).tocsr(), np.concatenate(self.row_lo), np.concatenate(self.row_hi))

    def objective(self, w: np.ndarray) -> np.ndarray:
        """Cost vector of w . a_last (a_last = x when there are no hidden layers)."""
        c = np.zeros(self.var_lo.size)
        c[self.columns[-1]: self.columns[-1] + w.size] = w
        return c


def encode(layers, lo, hi, pre_bounds) -> Encoding:
    """Encode every layer of `layers` as hidden ReLU layers with the given pre-activation bounds."""
    sizes = [w.shape[0] for w, _ in layers]
    columns = [0] + list(lo.size + np.cumsum([0] + [2 * n for n in sizes[:-1]]))
    n_total = lo.size + 2 * sum(sizes)
    enc = Encoding(columns, np.zeros(n_total), np.zeros(n_total), np.zeros(n_total), [], [], [])
    enc.var_lo[: lo.size], enc.var_hi[: lo.size] = lo, hi

    def add(parts, lb, ub):  # parts: (first column, block of coefficients)
        block = np.zeros((len(lb), n_total))
        for start, coeffs in parts:
            block[:, start: start + coeffs.shape[1]] = coeffs
        enc.rows.append(sp.csr_matrix(block))
        enc.row_lo.append(lb)
        enc.row_hi.append(ub)

    for k, ((w, b), (l, u)) in enumerate(zip(layers, pre_bounds)):
        prev, a, n = columns[k], columns[k + 1], w.shape[0]
        d = a + n
        enc.var_hi[a: a + n] = np.maximum(u, 0)
        active, unstable = l >= 0, (l < 0) & (u > 0)
        enc.var_hi[d: d + n] = unstable
        enc.integrality[d: d + n] = unstable
        i = np.flatnonzero(active)
        add([(prev, w[i]), (a, -np.eye(n)[i])], -b[i], -b[i])  # a = z
        i = np.flatnonzero(unstable)
        add([(prev, w[i]), (a, -np.eye(n)[i])], np.full(i.size, -np.inf), -b[i])  # a >= z
        add([(a, np.eye(n)[i]), (d, -np.diag(u)[i])], np.full(i.size, -np.inf), np.zeros(i.size))  # a <= u d
        add([(prev, w[i]), (a, -np.eye(n)[i]), (d, np.diag(l)[i])], l[i] - b[i],
            np.full(i.size, np.inf))  # a <= z - l (1 - d)
    return enc


def tightened_bounds(layers, lo, hi) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pre-activation bounds of the hidden layers: interval arithmetic, then LP over the relaxed encoding."""
    bounds = []
    for k, (w, b) in enumerate(layers[:-1]):
        prev_lo, prev_hi = (lo, hi) if k == 0 else (np.maximum(bounds[-1][0], 0), np.maximum(bounds[-1][1], 0))
        l, u = interval_step(w, b, prev_lo, prev_hi)
        if k > 0:
            enc = encode(layers[:k], lo, hi, bounds)
            for i in np.flatnonzero((l < 0) & (u > 0)):
                u[i] = min(u[i], lp_max(enc, w[i]) + b[i])
                l[i] = max(l[i], -lp_max(enc, -w[i]) + b[i])
        bounds.append((l, u))
    return bounds


def lp_max(enc: Encoding, w: np.ndarray) -> float:
    """Upper bound on w . a_last over the LP relaxation (+inf when the LP is not solved), with a little slack."""
    res = milp(-enc.objective(w), bounds=Bounds(enc.var_lo, enc.var_hi), constraints=enc.constraint())
    return -res.fun + 1e-6 * max(1.0, abs(res.fun)) if res.status == 0 else np.inf


def max_margin_milp(layers, lo, hi, label: int, other: int, enc: Encoding) -> tuple[float, bool]:
    """max over the box of f_other - f_label, by an exact big-M MILP. Returns (upper bound, solved to optimality)."""
    w_last, b_last = layers[-1]
    res = milp(-enc.objective(w_last[other] - w_last[label]), integrality=enc.integrality,
               bounds=Bounds(enc.var_lo, enc.var_hi), constraints=enc.constraint(),
               options=dict(time_limit=MILP_TIME_LIMIT))
    if res.x is None:
        return np.nan, False
    value = -res.fun + b_last[other] - b_last[label]
    upper = -res.mip_dual_bound + b_last[other] - b_last[label]
    replay = affine_forward(layers, res.x[: lo.size])
    assert abs(replay[other] - replay[label] - value) < 1e-5 * max(1.0, abs(value)), "MILP encoding mismatch"
    return max(value, upper), res.status == 0


def prove_robust(layers, lo, hi, label: int) -> bool:
    """True iff every MILP max of f_j - f_t is solved and clearly negative."""
    pre_bounds = tightened_bounds(layers, lo, hi)
    enc = encode(layers[:-1], lo, hi, pre_bounds)
    prev_lo, prev_hi = np.maximum(pre_bounds[-1][0], 0), np.maximum(pre_bounds[-1][1], 0)
    w_last = layers[-1][0]
    for other in range(10):
        if other == label:
            continue
        margin_hi = interval_step((w_last[other] - w_last[label])[None], np.zeros(1), prev_lo, prev_hi)[1][0]
        if margin_hi + layers[-1][1][other] - layers[-1][1][label] < -NEAR_ZERO:
            continue
        value, optimal = max_margin_milp(layers, lo, hi, label, other, enc)
        if not optimal or value >= -NEAR_ZERO:
            return False
    return True


# ---------------------------------------------------------------- instance selection

@dataclass
class Instance:
    model: str
    image: int
    label: int
    eps: float
    expected: str  # "sat", "unsat" or "" (unknown)
    witness: np.ndarray | None = None

    @property
    def name(self) -> str:
        return instance_name(self.model, self.image, self.eps)


def first_correct_images(model, name, data: Data) -> list[int]:
    """Test-set positions of the first correctly classified test image of each chosen class."""
    correct = predict(model, data.x_test, MODELS[name]["input_shape"]) == data.y_test
    return [int(np.flatnonzero(correct & (data.y_test == c))[0]) for c in MODELS[name]["classes"]]


def label_image(model, name, onnx_path, data: Data, pos: int) -> list[Instance]:
    """Instances around the attack boundary of one image: the smallest eps on the grid where PGD succeeds
    (sat, found by bisection) and the largest smaller one that the MILP proves (unsat; tanh: unknown)."""
    shape, x, label = MODELS[name]["input_shape"], data.x_test[pos], int(data.y_test[pos])
    image, max_eps = int(data.test_index[pos]), MODELS[name]["milp_max_eps"]
    found = []
    # Bisection on the grid: PGD fails at EPS_GRID[fails] and succeeds at EPS_GRID[succeeds] (-1, len: sentinels).
    fails, succeeds = -1, len(EPS_GRID)
    while succeeds - fails > 1:
        mid = (fails + succeeds) // 2
        witness = find_witness(model, shape, onnx_path, *box(x, EPS_GRID[mid]), label)
        if witness is None:
            fails = mid
        else:
            succeeds, found = mid, [Instance(name, image, label, EPS_GRID[mid], "sat", witness)]
    smaller = EPS_GRID[:succeeds][::-1]
    if max_eps is None:
        return found + [Instance(name, image, label, e, "") for e in smaller[:1]]
    layers = affine_layers(model, shape)
    for eps in [e for e in smaller if e <= max_eps][:3]:  # give up after a few
        if prove_robust(layers, *box(x, eps), label):
            return found + [Instance(name, image, label, eps, "unsat")]
    return found


def find_witness(model, shape, onnx_path, lo, hi, label) -> np.ndarray | None:
    """A PGD counterexample, as float32 inside the box, that also violates in onnxruntime."""
    adv = pgd_attack(model, shape, lo, hi, label)
    if adv is None:
        return None
    witness = float32_inside(adv, lo, hi)
    return witness if violates_in_onnx(onnx_path, shape, witness, label) else None


# ---------------------------------------------------------------- outputs

def write_outputs(instances: list[Instance], data: Data, accuracies: dict, seconds: float) -> None:
    csv = ["onnx,vnnlib,timeout,expected,benchmark"]
    for inst in instances:
        pos = int(np.flatnonzero(data.test_index == inst.image)[0])
        write_vnnlib(SPEC_DIR / f"{inst.name}.vnnlib", inst.model, inst.image, inst.label, data.x_test[pos], inst.eps)
        if inst.witness is not None:
            np.save(WITNESS_DIR / f"{inst.name}.npy", inst.witness.astype(np.float32).ravel())
        csv.append(f"onnx/{inst.model}.onnx,../specs/{inst.name}.vnnlib,{TIMEOUT},{inst.expected},{inst.model}")
    (HERE / "instances.csv").write_text("\n".join(csv) + "\n")
    (HERE / "README.md").write_text(readme(instances, accuracies, seconds))


def readme(instances: list[Instance], accuracies: dict, seconds: float) -> str:
    lines = [
        "# Small digits instances",
        "",
        "Made by `python bench_instances/generate.py` (seeded, CPU only, no downloads; "
        f"the last run took {seconds:.0f} s).",
        "",
        "Three tiny networks are trained with torch (Adam, 30 epochs) on scikit-learn's packaged 8x8 digits",
        "(`load_digits`, pixels / 16 in [0, 1], 70/30 stratified split, `random_state=0`) and exported to",
        "`onnx/NAME.onnx` (opset 13, batch 1; onnxruntime matches torch to 1e-5). `specs/NAME_img{K}_eps{EPS}.vnnlib`",
        "asks for L-inf robustness of test image K (its index in `load_digits()`): unsafe iff some other class",
        "scores at least as high as the true one. `instances.csv` lists them (timeout 30 s).",
        "",
        "| model | input | test accuracy | sat | unsat | unknown |",
        "|---|---|---|---|---|---|",
    ]
    for name, cfg in MODELS.items():
        count = lambda e: sum(i.model == name and i.expected == e for i in instances)  # noqa: E731
        lines.append(f"| {name} | {cfg['input_shape']} | {accuracies[name]:.1%} | {count('sat')} | "
                     f"{count('unsat')} | {count('')} |")
    lines += [
        "",
        "Ground truth, independent of the verifier in this repository:",
        "",
        "- **sat**: targeted PGD in torch (20 starts for every other class, one of them the box centre;",
        "  150 signed-gradient steps) finds a point with f_j >= f_t; the point, cast to float32 and clipped",
        "  into the box, is replayed in onnxruntime and must still violate. It is saved as",
        "  `witnesses/INSTANCE.npy` (float32, flattened input).",
        "- **unsat** (ReLU models only): exact MILP with `scipy.optimize.milp` (HiGHS) in float64, big-M",
        "  ReLU encoding, convolutions as dense matrices. Pre-activation bounds: interval arithmetic, then",
        "  (second hidden layer) LP over the relaxed encoding of the first, plus 1e-6 relative slack.",
        "  For every j != t it maximises f_j - f_t over the box (skipping j whose interval bound is already",
        f"  negative); unsat iff each MILP is solved to optimality and its optimum and dual bound are below -{NEAR_ZERO:g}.",
        "  Each MILP optimum is replayed through the float64 network as a check of the encoding.",
        "- **unknown** (empty `expected`, tanh only): PGD found nothing; no exact method is used.",
        "",
        f"Images: per model, the first correctly classified test image of a few digit classes. For each, eps runs",
        f"over {', '.join(f'{e:g}' for e in EPS_GRID)}: the smallest eps where PGD succeeds (bisection) gives a sat",
        "instance, and the largest smaller eps that the MILP proves (tried up to 3 eps values, at most",
        f"{MODELS['digits_cnn']['milp_max_eps']:g} for the CNN, whose MILPs get slow above it) an unsat one. For tanh, the largest",
        "eps below the first sat one is shipped as unknown.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    start = time.time()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    for folder in (ONNX_DIR, WITNESS_DIR, SPEC_DIR):
        folder.mkdir(parents=True, exist_ok=True)
    for stale in [*SPEC_DIR.glob("digits_*.vnnlib"), *WITNESS_DIR.glob("digits_*.npy")]:
        stale.unlink()
    data = load_data()
    instances, accuracies = [], {}
    for name, cfg in MODELS.items():
        model = train(name, data)
        accuracies[name] = float(np.mean(predict(model, data.x_test, cfg["input_shape"]) == data.y_test))
        onnx_path = export_onnx(model, name, data)
        print(f"{name}: test accuracy {accuracies[name]:.1%}", flush=True)
        for pos in first_correct_images(model, name, data):
            for inst in label_image(model, name, onnx_path, data, pos):
                instances.append(inst)
                print(f"  {inst.name}: {inst.expected or 'unknown'}", flush=True)
    for name, cfg in MODELS.items():
        labels = {i.expected for i in instances if i.model == name}
        assert cfg["milp_max_eps"] is None or {"sat", "unsat"} <= labels, (name, labels)
    write_outputs(instances, data, accuracies, time.time() - start)
    print(f"{len(instances)} instances in {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
