"""The one options object, built once (from CLI flags or keyword arguments) and passed down."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Options:
    timeout: float = 300.0  # seconds for the whole query
    device: str = "auto"  # "auto" (cuda when present), "cpu" or "cuda"
    seed: int = 0
    attack_restarts: int = 64
    attack_steps: int = 100
    split: str = "auto"  # branch and bound on "input" boxes, "relu" neurons, or "auto"
    method: str = "auto"  # "auto" (the staged pipeline) or "smt" (the exact z3 path only)

    def resolved_device(self) -> str:
        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device
