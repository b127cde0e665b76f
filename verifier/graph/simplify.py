"""Exact rewrites of the IR that make bound propagation cheaper and tighter.

- MatMul followed by Add(constant) becomes one matmul with a bias.
- Two consecutive matmuls become one (W1 W2, b1 W2 + b2) when the product is no larger than
  the pair; chains like 2 -> 24 -> 576 -> 1152 (tllverifybench) collapse to 2 -> 1152, and
  the pre-activations then depend on the input directly.
Only a node read by nothing else is merged into its reader, and never into a node marked
`unmerged` (a softmax's differences, whose input the attacks read). The rewrites are exact in
real arithmetic (float64 weights); only rounding differs.
"""
from __future__ import annotations

import numpy as np

from verifier.graph.ir import Node


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
        if src is None or src.op != "matmul" or readers[src.name] != 1 or src.name == output \
                or n.attrs.get("unmerged"):
            continue
        merged = _merge(src, n)
        if merged is not None:
            return [merged if m is n else m for m in nodes if m is not src], True
    return nodes, False


def _merge(src: Node, n: Node) -> Node | None:
    W1, b1 = src.tensors["W"], src.tensors.get("b")
    if n.op == "affine" and set(n.tensors) == {"shift"} and n.shape == src.shape:
        bias = n.tensors["shift"] + (b1 if b1 is not None else 0.0)
        return Node(n.name, "matmul", src.inputs, n.shape, {"W": W1, "b": bias}, {}, src.onnx_name)
    if n.op == "matmul":
        W2, b2 = n.tensors["W"], n.tensors.get("b")
        k_in, k_mid, k_out = W1.shape[0], W1.shape[1], W2.shape[1]
        if k_in * k_out > k_in * k_mid + k_mid * k_out:
            return None
        tensors = {"W": W1 @ W2}
        if b1 is not None or b2 is not None:
            first = np.broadcast_to(b1, src.shape) @ W2 if b1 is not None else 0.0
            tensors["b"] = first + (b2 if b2 is not None else 0.0)
        return Node(n.name, "matmul", src.inputs, n.shape, tensors, {}, n.onnx_name)
    return None
