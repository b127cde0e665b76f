"""Do the leaves cover the region? Boxes must tile the region's box; split sets must form a
complete binary tree.

Boxes: the tiling is rebuilt as a tree of guillotine cuts, level by level: a node whose
leaves all lie on either side of some cut x_d = v strictly inside it is cut there (the
midpoint first, as the verifier bisects, else any leaf's lower end that no leaf crosses), both
sides must hold leaves, and a node with one leaf left must equal it exactly. The tree it returns (parents, cut nodes' children)
lets bounds be handed down from parents to children, as the verifier's input splitting does.

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
    """Nodes of the rebuilt tiling: node 0 is the region; parent[i] (-1 for the root), depth[i],
    the node's box, and leaf_node[j]: the node that is leaf j."""

    parent: np.ndarray
    depth: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    leaf_node: np.ndarray


def box_tiling(region_lo: np.ndarray, region_hi: np.ndarray, leaf_lo: np.ndarray, leaf_hi: np.ndarray) -> BoxTree:
    n_leaves = len(leaf_lo)
    if n_leaves == 0:
        raise NotCovered(None, "no leaves")
    outside = ((leaf_lo < region_lo) | (leaf_hi > region_hi) | (leaf_lo > leaf_hi)).any(1)
    if outside.any():
        raise NotCovered(int(np.flatnonzero(outside)[0]), "its box extends past the region")
    parents, los, his = [-1], [region_lo[None]], [region_hi[None]]
    leaf_node = np.full(n_leaves, -1)
    node_of = np.zeros(n_leaves, dtype=np.int64)  # current node of each unplaced leaf
    active = np.arange(n_leaves)
    node_lo, node_hi = region_lo[None].copy(), region_hi[None].copy()  # boxes of the current level's nodes
    level_ids = np.array([0])
    count = 1
    while len(active):
        order = np.argsort(node_of[active], kind="stable")
        active = active[order]
        nodes, first, sizes = np.unique(node_of[active], return_index=True, return_counts=True)
        local = np.searchsorted(level_ids, nodes)
        n_lo, n_hi = node_lo[local], node_hi[local]
        single = sizes == 1
        lone = active[first[single]]
        same = (leaf_lo[lone] == n_lo[single]).all(1) & (leaf_hi[lone] == n_hi[single]).all(1)
        if not same.all():
            bad = int(np.flatnonzero(~same)[0])
            leaf, box_lo, box_hi = lone[bad], n_lo[single][bad], n_hi[single][bad]
            if (leaf_lo[leaf] < box_lo).any() or (leaf_hi[leaf] > box_hi).any():
                raise NotCovered(int(leaf), "its box extends past the region (or past its part of the tiling)")
            raise NotCovered(int(leaf), "part of the region next to its box is uncovered")
        leaf_node[lone] = nodes[single]
        keep = np.repeat(~single, sizes)
        active, group = active[keep], np.repeat(np.arange(len(nodes)), sizes)[keep]
        nodes, n_lo, n_hi = nodes[~single], n_lo[~single], n_hi[~single]
        if len(active) == 0:
            break
        starts = np.searchsorted(group, np.unique(group))
        group = np.unique(group, return_inverse=True)[1]
        cut = (n_lo + n_hi) / 2  # (nodes, n)
        sides_ok = (leaf_hi[active] <= cut[group]) | (leaf_lo[active] >= cut[group])
        valid = np.logical_and.reduceat(sides_ok, starts, axis=0) & (cut < n_hi) & (cut > n_lo)
        dim = valid.argmax(1)
        value = cut[np.arange(len(nodes)), dim]
        ends = np.append(starts[1:], len(active))
        for j in np.flatnonzero(~valid.any(1)):
            members = active[starts[j]:ends[j]]
            found = _any_cut(leaf_lo[members], leaf_hi[members], n_lo[j], n_hi[j])
            if found is None:
                raise NotCovered(int(members[0]), "its box overlaps another leaf's or leaves part of the "
                                                  "region uncovered")
            dim[j], value[j] = found
        right = leaf_lo[active, dim[group]] >= value[group]
        right_count = np.add.reduceat(right.astype(np.int64), starts)
        left_count = np.diff(np.append(starts, len(active))) - right_count
        if ((right_count == 0) | (left_count == 0)).any():
            bad_node = int(np.flatnonzero((right_count == 0) | (left_count == 0))[0])
            raise NotCovered(int(active[starts[bad_node]]), "part of the region is covered by no leaf")
        k = len(nodes)
        left_ids, right_ids = count + np.arange(k), count + k + np.arange(k)
        count += 2 * k
        left_hi, right_lo = n_hi.copy(), n_lo.copy()
        left_hi[np.arange(k), dim] = value
        right_lo[np.arange(k), dim] = value
        parents += list(nodes) + list(nodes)
        los += [n_lo, right_lo]
        his += [left_hi, n_hi]
        node_of[active] = np.where(right, right_ids[group], left_ids[group])
        level_ids = np.concatenate([left_ids, right_ids])
        node_lo, node_hi = np.concatenate([n_lo, right_lo]), np.concatenate([left_hi, n_hi])
    parent = np.asarray(parents, dtype=np.int64)
    depth = np.zeros(len(parent), dtype=np.int64)
    for i in range(1, len(parent)):  # parents come before children
        depth[i] = depth[parent[i]] + 1
    return BoxTree(parent, depth, np.concatenate(los), np.concatenate(his), leaf_node)


def _any_cut(lo: np.ndarray, hi: np.ndarray, node_lo: np.ndarray, node_hi: np.ndarray):
    """(dimension, value) of a cut strictly inside the node that no leaf crosses, or None."""
    for d in range(lo.shape[1]):
        order = np.argsort(lo[:, d], kind="stable")
        reach = np.maximum.accumulate(hi[order, d])[:-1]  # furthest end among the first i leaves
        nxt = lo[order, d][1:]
        ok = (reach <= nxt) & (nxt > node_lo[d]) & (nxt < node_hi[d])
        if ok.any():
            return d, nxt[int(np.argmax(ok))]
    return None


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
