"""Concrete evaluation of the IR in torch, batched."""
from __future__ import annotations

import torch

from verifier.graph.ir import Graph
from verifier.ops import RULES


def evaluate(graph: Graph, x: torch.Tensor, keep_all: bool = False):
    """Run the graph on a batch x of shape (B, *input_shape) or (B, input_size).

    Returns the output (B, *output_shape), or with keep_all the dict of every tensor.
    """
    x = x.reshape(x.shape[0], *graph.input_shape)
    values = {graph.input_name: x}
    for node in graph.nodes:
        values[node.name] = RULES[node.op].forward(node, *(values[i] for i in node.inputs))
    return values if keep_all else values[graph.output_name]
