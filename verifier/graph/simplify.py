"""Exact rewrites of the IR that make bound propagation cheaper and tighter.

- MatMul followed by Add(constant) becomes one matmul with a bias.
- Two consecutive matmuls become one (W1 W2, b1 W2 + b2) when the product is no larger than
  the pair; chains like 2 -> 24 -> 576 -> 1152 (tllverifybench) collapse to 2 -> 1152, and
  the pre-activations then depend on the input directly.
Only a node read by nothing else is merged into its reader. The rewrites are exact in real
arithmetic (float64 weights); only rounding differs, and the merged node keeps the rounding
terms of the chain onnxruntime computes (`rounding_terms`).
"""
from __future__ import annotations

import numpy as np

from verifier.graph.ir import Node
from verifier.float32 import UNIT_ROUNDOFF, gamma


def simplify(nodes: list[Node], output: str) -> list[Node]:
    changed = True
    while changed:
        nodes, changed = _merge_once(nodes, output)
    return nodes


def _merge_once(nodes: list[Node], output: str) -> tuple[list[Node], bool]:
    readers: dict[str, int] = {}
    for n in nodes:
        for i in n.inputs:
            readers[i] = readers.get(i, 0) + 1
    by_name = {n.name: n for n in nodes}
    for n in nodes:
        src = by_name.get(n.inputs[0]) if n.inputs else None
        if src is None or src.op != "matmul" or readers[src.name] != 1 or src.name == output:
            continue
        merged = _merge(src, n)
        if merged is not None:
            return [merged if m is n else m for m in nodes if m is not src], True
    return nodes, False


def rounding_terms(node: Node) -> tuple[np.ndarray, np.ndarray, float]:
    """(A, c, G) with float32's error on the matmul's result at most G (|x| A + c): |W|, |b|
    and gamma_{k+2} for one matmul; for a merged chain, the terms of the chain."""
    t = node.tensors
    if "W_abs" in t:
        return t["W_abs"], t["b_abs"], node.attrs["gamma"]
    b = np.abs(t["b"]) if "b" in t else np.zeros(t["W"].shape[1])
    return np.abs(t["W"]), b, gamma(t["W"].shape[0] + 2)


def _merge(src: Node, n: Node) -> Node | None:
    W1, b1 = src.tensors["W"], src.tensors.get("b")
    A, c, G = rounding_terms(src)
    if n.op == "affine" and set(n.tensors) == {"shift"} and n.shape == src.shape:
        bias = n.tensors["shift"] + (b1 if b1 is not None else 0.0)
        # the sum's own rounding: u |h + shift| <= u ((1 + G)(|x| A + c) + |shift|)
        rounding = {"W_abs": A, "b_abs": c + np.abs(n.tensors["shift"])}
        return Node(n.name, "matmul", src.inputs, n.shape, {"W": W1, "b": bias, **rounding},
                    {"gamma": G + UNIT_ROUNDOFF * (1 + G)}, src.onnx_name)
    if n.op == "matmul":
        W2, b2 = n.tensors["W"], n.tensors.get("b")
        k_in, k_mid, k_out = W1.shape[0], W1.shape[1], W2.shape[1]
        if k_in * k_out > k_in * k_mid + k_mid * k_out:
            return None
        tensors = {"W": W1 @ W2}
        if b1 is not None or b2 is not None:
            first = np.broadcast_to(b1, src.shape) @ W2 if b1 is not None else 0.0
            tensors["b"] = first + (b2 if b2 is not None else 0.0)
        # the first product's error passes through |W2|, the second adds its own
        A2, c2, g2 = rounding_terms(n)
        tensors.update(W_abs=A @ A2, b_abs=np.broadcast_to(c, src.shape) @ A2 + c2)
        return Node(n.name, "matmul", src.inputs, n.shape, tensors, {"gamma": G + g2 + G * g2}, n.onnx_name)
    return None
