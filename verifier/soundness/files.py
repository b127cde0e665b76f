"""The files of a soundness set:

    DIR/onnx/NET.onnx
    DIR/vnnlib/NET_pK_PLACEMENT.vnnlib, DIR/vnnlib/NET_cK.vnnlib
    DIR/witnesses/NET_pK_PLACEMENT.npy   (flat float32 input; never given to a verifier)
    DIR/instances.csv                    onnx,vnnlib,timeout,expected,kind,arch,act,witness
    DIR/generation.json                  settings, counts and what was discarded (no timings,
                                         so that the same seed gives the same files)
"""
from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

COLUMNS = ("onnx", "vnnlib", "timeout", "expected", "kind", "arch", "act", "witness")
PLANTED, CONTROL = "planted", "control"
EXPECTED = {PLANTED: "sat", CONTROL: "unsat"}


@dataclass
class Row:
    onnx: str  # paths relative to DIR
    vnnlib: str
    timeout: float
    expected: str
    kind: str
    arch: str
    act: str
    witness: str  # empty for a control


def clear_previous(out: Path) -> None:
    """Removes the files of a set generated in `out` before (only those, and only if its
    instances.csv is there), so that no stale instance survives."""
    if not (out / "instances.csv").is_file():
        return
    for sub, pattern in (("onnx", "*.onnx"), ("vnnlib", "*.vnnlib"), ("witnesses", "*.npy")):
        for path in (out / sub).glob(pattern):
            path.unlink()
    for name in ("instances.csv", "generation.json"):
        (out / name).unlink(missing_ok=True)


def make_dirs(out: Path) -> None:
    for sub in ("onnx", "vnnlib", "witnesses"):
        (out / sub).mkdir(parents=True, exist_ok=True)


def onnx_path(out: Path, net: str) -> Path:
    return out / "onnx" / f"{net}.onnx"


def spec_path(out: Path, spec: str) -> Path:
    return out / "vnnlib" / f"{spec}.vnnlib"


def witness_path(out: Path, spec: str) -> Path:
    return out / "witnesses" / f"{spec}.npy"


def save_witness(path: Path, x: np.ndarray) -> None:
    np.save(path, np.asarray(x, dtype=np.float32).reshape(-1), allow_pickle=False)


def write_instances(out: Path, rows: list[Row]) -> Path:
    path = out / "instances.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([f"{row.timeout:g}" if c == "timeout" else getattr(row, c) for c in COLUMNS])
    return path


def read_instances(path: Path) -> list[Row]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("onnx", "vnnlib", "timeout") if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: header lacks {', '.join(missing)}")
        return [Row(r["onnx"], r["vnnlib"], float(r["timeout"]), (r.get("expected") or "").strip().lower(),
                    r.get("kind") or "", r.get("arch") or "", r.get("act") or "", r.get("witness") or "")
                for r in reader]


def write_summary(out: Path, summary: dict) -> None:
    (out / "generation.json").write_text(json.dumps(summary, indent=1, default=_plain) + "\n")


def _plain(value):
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(type(value))
