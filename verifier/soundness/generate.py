"""`cli.py soundness generate`: networks with planted hidden counterexamples, and controls.

Per network: sample boxes (data.py), adversarially train the base network (training.py),
plant a calibrated pocket in each planted box (pockets.py), export to ONNX, then keep each
plant only if its witness lies in the box as written, violates the spec by >= MIN_VIOLATION
replayed in onnxruntime (float32) and in float64, and the strong attack finds nothing
(attacks.py). On ReLU
networks, clean boxes whose robustness the MILP proves become controls (exact.py).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from verifier.errors import UserError
from verifier.soundness import files
from verifier.soundness.attacks import AttackConfig, find_counterexample
from verifier.soundness.data import CORNER, INTERIOR, Box, sample_boxes
from verifier.soundness.exact import prove_robust
from verifier.soundness.models import ACTS, ARCHS, build_model, export_onnx, parameter_count
from verifier.soundness.pockets import PocketConfig, calibrate, design_pocket, plant
from verifier.soundness.replay import OnnxModel
from verifier.soundness.training import TrainConfig, train
from verifier.soundness.vnnlib_io import parse_spec, spec_text

MIXED = "mixed"
INPUT_SHAPES = {"mlp": ((10,), (20,), (24,)), "cnn": ((1, 5, 5), (3, 5, 5)), "resnet": ((1, 5, 5), (3, 5, 5))}
RADII = (0.05, 0.1, 0.2)
DEPTHS = (2e-3, 5e-3, 2e-2)  # f_other - f_label at a planted point
MIN_VIOLATION = 1e-3  # in onnxruntime (float32), at the witness
CORNER_MIN_INPUTS = 20  # below this, random corner sampling would find a corner plant


@dataclass(frozen=True)
class GenerateConfig:
    count: int = 10  # networks
    seed: int = 0
    arch: str = MIXED
    act: str = MIXED
    plants_per_net: int = 2
    clean_per_net: int = 1  # boxes without a plant; on ReLU networks each may become a control
    timeout: float = 30.0  # written to instances.csv
    train: TrainConfig = field(default_factory=TrainConfig)
    pocket: PocketConfig = field(default_factory=PocketConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)


@dataclass
class NetworkPlan:
    index: int
    arch: str
    act: str
    input_shape: tuple[int, ...]
    radius: float
    placements: list[str]
    depths: list[float]
    seed: int

    @property
    def name(self) -> str:
        shape = "x".join(map(str, self.input_shape))
        return f"n{self.index:02d}_{self.arch}_{self.act}_{shape}"


@dataclass
class Report:
    rows: list[files.Row] = field(default_factory=list)
    discarded: list[dict] = field(default_factory=list)  # {"spec", "reason"}
    networks: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def plan_network(index: int, config: GenerateConfig) -> NetworkPlan:
    """What network `index` will be; depends only on the seed and the index."""
    rng = np.random.default_rng([config.seed, index])
    arch = ARCHS[index % len(ARCHS)] if config.arch == MIXED else config.arch
    act = ACTS[(index + index // len(ARCHS)) % len(ACTS)] if config.act == MIXED else config.act
    shapes = INPUT_SHAPES[arch]
    shape = shapes[int(rng.integers(len(shapes)))]
    radius = float(RADII[int(rng.integers(len(RADII)))])
    if int(np.prod(shape)) >= CORNER_MIN_INPUTS:
        first = int(rng.integers(2))
        placements = [(CORNER, INTERIOR)[(first + k) % 2] for k in range(config.plants_per_net)]
    else:
        placements = [INTERIOR] * config.plants_per_net
    depths = [float(DEPTHS[int(i)]) for i in rng.integers(len(DEPTHS), size=config.plants_per_net)]
    return NetworkPlan(index, arch, act, shape, radius, placements, depths, int(rng.integers(2**31)))


def _print(line: str) -> None:
    print(line, flush=True)


def generate(out: str | Path, config: GenerateConfig, log=_print) -> Report:
    """Writes the set into `out` (replacing a set generated there before); returns what happened."""
    if config.count < 1:
        raise UserError(f"--count must be at least 1, not {config.count}")
    out = Path(out)
    files.clear_previous(out)
    files.make_dirs(out)
    report = Report()
    started = time.monotonic()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: one thread is as fast, and the results reproducible
    try:
        for index in range(config.count):
            _one_network(out, plan_network(index, config), config, report, log)
    finally:
        torch.set_num_threads(threads)
    report.seconds = time.monotonic() - started
    files.write_instances(out, report.rows)
    files.write_summary(out, _summary(config, report))
    return report


def _one_network(out: Path, plan: NetworkPlan, config: GenerateConfig, report: Report, log) -> None:
    started = time.monotonic()
    model, boxes = build_network(plan, config)
    onnx = files.onnx_path(out, plan.name)
    export_onnx(model, plan.input_shape, onnx)
    runner = OnnxModel(str(onnx))
    _check_export(model, runner, boxes, plan.input_shape)
    planted_boxes = [b for b in boxes if b.planted is not None]
    rows = [_vet_plant(out, plan, model, runner, box, k, config, report) for k, box in enumerate(planted_boxes)]
    if plan.act == "relu":  # the exact method covers ReLU networks only
        clean = [b for b in boxes if b.planted is None]
        rows += [_prove_control(out, plan, model, box, k, config, report) for k, box in enumerate(clean)]
    rows = [row for row in rows if row is not None]
    if not rows:
        onnx.unlink()
    report.rows += rows
    planted = sum(r.kind == files.PLANTED for r in rows)
    controls = sum(r.kind == files.CONTROL for r in rows)
    report.networks.append({"name": plan.name, "parameters": parameter_count(model), "radius": plan.radius,
                            "placements": plan.placements, "depths": plan.depths,
                            "planted": planted, "controls": controls})
    log(f"{plan.name}: {parameter_count(model)} parameters, radius {plan.radius:g}, "
        f"{planted}/{len(planted_boxes)} plants kept, {controls} controls ({time.monotonic() - started:.1f} s)")


def build_network(plan: NetworkPlan, config: GenerateConfig):
    """The trained network with its calibrated pockets (float32, eval mode), and its boxes."""
    rng = np.random.default_rng(plan.seed)
    torch.manual_seed(plan.seed)
    gen = torch.Generator().manual_seed(plan.seed)
    boxes = sample_boxes(rng, int(np.prod(plan.input_shape)), plan.radius, plan.placements, config.clean_per_net)
    base = build_model(plan.arch, plan.act, plan.input_shape)
    train(base, boxes, plan.input_shape, config.train, plan.seed)
    planted_boxes = [b for b in boxes if b.planted is not None]
    pockets = [design_pocket(base, plan.act, plan.input_shape, b, depth, config.pocket, gen)
               for b, depth in zip(planted_boxes, plan.depths)]
    model64 = plant(base, plan.act, pockets, config.pocket)
    calibrate(model64, pockets, plan.input_shape)
    return copy.deepcopy(model64).float().eval(), boxes


@torch.no_grad()
def _check_export(model, runner: OnnxModel, boxes: list[Box], input_shape) -> None:
    """onnxruntime must compute what torch computes (float32, to 1e-5 relative)."""
    for box in boxes:
        for x in (box.centre, box.lo, box.hi):
            expected = model(torch.as_tensor(x).reshape(1, *input_shape))[0].double().numpy()
            got = runner.run(x)
            if np.abs(got - expected).max() > 1e-5 * (1 + np.abs(expected).max()):
                raise AssertionError(f"onnxruntime disagrees with torch: {got} vs {expected}")


@torch.no_grad()
def _float64_output(model, x: np.ndarray, input_shape) -> np.ndarray:
    """The exported network (float32 weights) evaluated in float64."""
    model64 = copy.deepcopy(model).double()
    return model64(torch.as_tensor(x, dtype=torch.float64).reshape(1, *input_shape))[0].numpy()


def _vet_plant(out: Path, plan: NetworkPlan, model, runner: OnnxModel, box: Box, k: int,
               config: GenerateConfig, report: Report) -> files.Row | None:
    """The plant's row if its witness holds and the attacks miss it; else records why not."""
    name = f"{plan.name}_p{k}_{box.placement}"
    text = _spec_text(box, plan)
    reason = _plant_problem(text, model, runner, box, plan, config)
    if reason:
        report.discarded.append({"spec": name, "reason": reason})
        return None
    files.spec_path(out, name).write_text(text)
    files.save_witness(files.witness_path(out, name), box.planted)
    return _row(out, plan, name, files.PLANTED, config, witness=files.witness_path(out, name))


def _plant_problem(text: str, model, runner: OnnxModel, box: Box, plan: NetworkPlan, config) -> str:
    """Why the plant must be discarded ('' if it is kept)."""
    spec = parse_spec(text)
    witness = box.planted
    if not spec.inside(runner.cast(witness)):
        return "the witness lies outside the box as written"
    violation = spec.violation(runner.run(witness))
    if violation < MIN_VIOLATION:
        return f"the witness violates by only {violation:.3g} in onnxruntime"
    exact = spec.violation(_float64_output(model, witness, plan.input_shape))
    if exact < MIN_VIOLATION:  # real arithmetic must agree, or the truth would depend on rounding
        return f"the witness violates by only {exact:.3g} in float64"
    found = find_counterexample(model, plan.input_shape, box.lo, box.hi, box.label, config.attack, plan.seed)
    if found is not None:
        distance = float(np.abs(found - witness).max() / plan.radius)
        return f"the attack found a counterexample ({distance:.2f} radii from the planted point)"
    return ""


def _prove_control(out: Path, plan: NetworkPlan, model, box: Box, k: int, config: GenerateConfig,
                   report: Report) -> files.Row | None:
    name = f"{plan.name}_c{k}"
    proof = prove_robust(model, plan.input_shape, box.lo, box.hi, box.label)
    if not proof.proved:
        report.discarded.append({"spec": name, "reason": f"MILP did not prove it (max {proof.optimum:.3g}, "
                                                            f"bound {proof.bound:.3g}, {proof.status})"})
        return None
    text = _spec_text(box, plan)
    files.spec_path(out, name).write_text(text)
    return _row(out, plan, name, files.CONTROL, config)


def _spec_text(box: Box, plan: NetworkPlan) -> str:
    comment = f"Robustness of class {box.label} on an L-inf box (radius {plan.radius:g})."
    return spec_text(box.lo, box.hi, box.label, comment)


def _row(out: Path, plan: NetworkPlan, name: str, kind: str, config: GenerateConfig, witness: Path | None = None):
    rel = lambda p: p.relative_to(out).as_posix()
    return files.Row(rel(files.onnx_path(out, plan.name)), rel(files.spec_path(out, name)), config.timeout,
                     files.EXPECTED[kind], kind, plan.arch, plan.act, rel(witness) if witness else "")


def _summary(config: GenerateConfig, report: Report) -> dict:
    return {
        "settings": config,
        "instances": len(report.rows),
        "planted": sum(r.kind == files.PLANTED for r in report.rows),
        "controls": sum(r.kind == files.CONTROL for r in report.rows),
        "discarded": report.discarded,
        "networks": report.networks,
    }


def format_report(report: Report, out) -> str:
    planted = sum(r.kind == files.PLANTED for r in report.rows)
    controls = sum(r.kind == files.CONTROL for r in report.rows)
    lines = [f"{len(report.rows)} instances ({planted} planted, {controls} controls) from "
             f"{len(report.networks)} networks in {out}; {len(report.discarded)} discarded; "
             f"{report.seconds:.1f} s"]
    lines += [f"  discarded {d['spec']}: {d['reason']}" for d in report.discarded]
    return "\n".join(lines)
