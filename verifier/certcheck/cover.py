"""Do the leaves cover the region? Boxes must tile the region's box; split sets must form a
complete binary tree.

Boxes: the certificate gives the tree of splits (each node halved at its midpoint along one
dimension, as the verifier bisects); every split must have both halves, every other node must
be a leaf whose recorded box is its node's. The tree also lets bounds be handed down from
parents to children, as the verifier's input splitting does.

Split sets: each leaf is a set of (layer, neuron, sign) constraints; a group of leaves covers
its cell when some neuron is split in every one of them and each sign's leaves cover their
half (with that neuron dropped), and a single leaf covers it only when nothing is left.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class NotCovered(Exception):
    def __init__(self, leaf: int | None, reason: str):
        super().__init__(reason)
        self.leaf = leaf
        self.reason = reason


@dataclass
class BoxTree:
    """Nodes of a tree of input boxes: node 0 is the region; parent[i] (-1 for the root),
    depth[i], the node's box, and leaf_node[j]: the node that is leaf j."""

    parent: np.ndarray
    depth: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    leaf_node: np.ndarray


def box_tree(region_lo, region_hi, parent, side, dim, leaf_node, leaf_lo, leaf_hi) -> BoxTree:
    """The tree the certificate describes, checked: every split node has a left and a right
    child (its box halved at the midpoint along its dimension, as the verifier bisects), every
    other node is exactly one leaf, and each leaf's recorded box is its node's box; the leaves
    then tile the region."""
    count, n = len(parent), len(region_lo)
    outside = ((leaf_lo < region_lo) | (leaf_hi > region_hi) | (leaf_lo > leaf_hi)).any(1)
    if outside.any():
        raise NotCovered(int(np.flatnonzero(outside)[0]), "its box extends past the region")
    if count == 0 or parent[0] != -1 or (parent[1:] < 0).any() or (parent[1:] >= np.arange(1, count)).any():
        raise NotCovered(None, "the tree's nodes do not start at the region and come after their parents")
    if ((dim < -1) | (dim >= n)).any() or not np.isin(side, (0, 1)).all():
        raise NotCovered(None, "a split names a dimension or a side that does not exist")
    children = np.zeros((count, 2), dtype=np.int64)
    np.add.at(children, (parent[1:], side[1:]), 1)
    split = dim >= 0
    bad = np.flatnonzero(split & ((children != 1).any(1)) | ~split & (children.sum(1) > 0))
    if len(bad):
        raise NotCovered(None, f"node {int(bad[0])}: a split without both halves (part of the region is uncovered)")
    if (leaf_node < 0).any() or (leaf_node >= count).any() or split[leaf_node].any():
        raise NotCovered(int(np.flatnonzero((leaf_node < 0) | (leaf_node >= count))[0]) if
                         ((leaf_node < 0) | (leaf_node >= count)).any() else None, "a leaf names a node that is not one")
    leaves_at = np.bincount(leaf_node, minlength=count)
    missing = np.flatnonzero(~split & (leaves_at == 0))
    if len(missing):
        raise NotCovered(None, f"node {int(missing[0])}: neither split nor closed (part of the region is uncovered)")
    depth = np.zeros(count, dtype=np.int64)
    for i in range(1, count):  # parents come first
        depth[i] = depth[parent[i]] + 1
    lo, hi = np.empty((count, n)), np.empty((count, n))
    lo[0], hi[0] = region_lo, region_hi
    for level in range(1, int(depth.max()) + 1):
        nodes = np.flatnonzero(depth == level)
        up_, d = parent[nodes], dim[parent[nodes]]
        lo[nodes], hi[nodes] = lo[up_], hi[up_]
        mid = (lo[up_, d] + hi[up_, d]) / 2
        right = side[nodes] == 1
        lo[nodes[right], d[right]] = mid[right]
        hi[nodes[~right], d[~right]] = mid[~right]
    same = (leaf_lo == lo[leaf_node]).all(1) & (leaf_hi == hi[leaf_node]).all(1)
    if not same.all():
        raise NotCovered(int(np.flatnonzero(~same)[0]), "its box is not the one its place in the tree gives")
    return BoxTree(parent, depth, lo, hi, leaf_node)


def split_cover(leaves: list[dict]) -> None:
    """leaves[i]: {(layer, neuron): sign}. Raises NotCovered unless they form a complete tree."""
    stack = [(list(range(len(leaves))), frozenset())]
    if not leaves:
        raise NotCovered(None, "no leaves")
    while stack:
        group, decided = stack.pop()
        if len(group) == 1:
            extra = [key for key in leaves[group[0]] if key not in decided]
            if extra:
                layer, neuron = extra[0]
                raise NotCovered(group[0], f"its split of layer {layer} neuron {neuron} has no sibling leaf "
                                           "(the other side is not covered)")
            continue
        neuron = _common_split(leaves, group, decided)
        if neuron is None:
            raise NotCovered(group[0], "its split set and its neighbours' do not form a complete tree "
                                       "(no split is shared by all the leaves of a subtree)")
        sides = {+1: [], -1: []}
        for i in group:
            sign = leaves[i][neuron]
            if sign not in sides:
                raise NotCovered(i, f"split sign {sign} is neither +1 nor -1")
            sides[sign].append(i)
        for sign, members in sides.items():
            if not members:
                missing = "inactive" if sign < 0 else "active"
                raise NotCovered(group[0], f"layer {neuron[0]} neuron {neuron[1]}: no leaf covers its {missing} side")
            stack.append((members, decided | {neuron}))


def _common_split(leaves, group, decided):
    first = leaves[group[0]]
    for key in first:
        if key not in decided and all(key in leaves[i] for i in group[1:]):
            return key
    return None
