"""Records, while the verifier runs, what each closed leaf's bound was made from, and writes
the certificate (verifier/certcheck/format.py) when the answer is unsat.

Nothing here runs unless a certificate is asked for: the stages call it through
`query.recorder` (or a bound state's `recorder`), which is None otherwise. Records are taken
where a bound is made, in the tensors the stage already has; only the leaves that close (and
the intermediate slopes of ReLU splitting's root) are kept.

Everything is keyed by ReLU layer index (the order of the graph's ReLU nodes) and flat neuron
index, which the checker's own reading of the ONNX model reproduces.
"""
from __future__ import annotations

import os
import tempfile
from collections import deque

import numpy as np
import torch

from verifier.certcheck import format as fmt


# |u + l| below this share of the width counts as a tie of CROWN's adaptive slope choice.
_TIE = 1e-7


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


class Recorder:
    """The proof of one query: per region (input box), its parts."""

    def __init__(self, graph):
        relus = [n for n in graph.nodes if n.op == "relu"]
        self.relu_index = {n.name: i for i, n in enumerate(relus)}
        self.pre_index = {n.inputs[0]: i for i, n in enumerate(relus)}
        self.relu_sizes = [int(n.size) for n in relus]
        self.offsets = np.cumsum([0] + self.relu_sizes)
        self.regions: dict[bytes, RegionProof] = {}
        self.pending_box_slopes = None  # (open box indices, {layer: (values, mask)}) of this round
        self.uncertifiable: list[str] = []

    def region(self, region, spec) -> "RegionProof":
        key = region.lo.tobytes() + region.hi.tobytes()
        if key not in self.regions:
            self.regions[key] = RegionProof(self, region, _np(spec.C), _np(spec.owner))
        return self.regions[key]

    def global_index(self, layer: int, neurons: np.ndarray) -> np.ndarray:
        return self.offsets[layer] + neurons

    # --- called from the stages
    def crown_region(self, region, spec) -> None:
        """The region refuted by plain CROWN at its root: one box."""
        self.region(region, spec).boxes("crown").closed(region.lo[None], region.hi[None], [0])

    def box_slopes(self, state, open_boxes: torch.Tensor, alphas: dict) -> None:
        """Output-row slopes alpha-CROWN found for this round's open boxes (unstable neurons)."""
        per_layer = {}
        for name, a in alphas.items():
            l, u = state.bounds[state.graph.by_name[name].inputs[0]]
            unstable = ((l < 0) & (u > 0)).flatten(1)
            per_layer[self.relu_index[name]] = (_np(a.flatten(2)), _np(unstable))
        self.pending_box_slopes = (_np(open_boxes), per_layer)

    # --- writing
    def write(self, path: str, model_path: str, spec_path: str) -> int:
        """Write the certificate; returns its size in bytes."""
        arrays: dict[str, np.ndarray] = {}
        regions = [proof.to_json(f"r{i}", arrays) for i, proof in enumerate(self.regions.values())]
        header = {"format": fmt.FORMAT, "version": fmt.VERSION, "model_sha256": fmt.file_sha256(str(model_path)),
                  "spec_sha256": fmt.file_sha256(str(spec_path)), "relu_sizes": self.relu_sizes,
                  "regions": regions}
        folder = os.path.dirname(os.path.abspath(path))
        handle, temporary = tempfile.mkstemp(prefix=".certificate", dir=folder)
        os.close(handle)
        try:
            fmt.write(temporary, header, arrays)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
        return os.path.getsize(path)


class RegionProof:
    def __init__(self, recorder: Recorder, region, C: np.ndarray, owner: np.ndarray):
        self.recorder, self.region = recorder, region
        self.C, self.owner = C.astype(np.float64), owner.astype(np.int64)
        self.parts: list = []
        self.versions: list[Version] = []

    def boxes(self, intermediate: str) -> "BoxPart":
        part = BoxPart(self, intermediate)
        self.parts.append(part)
        return part

    def to_json(self, prefix: str, arrays: dict) -> dict:
        arrays[f"{prefix}/lo"], arrays[f"{prefix}/hi"] = self.region.lo, self.region.hi
        arrays[f"{prefix}/C"], arrays[f"{prefix}/owner"] = self.C, self.owner
        return {"lo": f"{prefix}/lo", "hi": f"{prefix}/hi", "C": f"{prefix}/C", "owner": f"{prefix}/owner",
                "versions": [v.to_json(f"{prefix}/v{i}", arrays) for i, v in enumerate(self.versions)],
                "parts": [p.to_json(f"{prefix}/p{i}", arrays) for i, p in enumerate(self.parts)]}


class BoxPart:
    """Input splitting: the tree of boxes (each split halves a box along one dimension at its
    midpoint), the closed ones, the slopes of those alpha-CROWN closed, and CROWN's slope
    choices at ties u = -l. Nodes are numbered as they are made: the root is 0, each split
    makes a left then a right child."""

    def __init__(self, proof: RegionProof, intermediate: str):
        self.proof, self.intermediate = proof, intermediate
        self.parent, self.side, self.dim = [-1], [0], [-1]
        self.batches = [0]  # the first node of each batch bounded together
        self.pending = [0]  # the nodes of the batch being bounded, in its order
        self.waiting: dict[bytes, deque] = {}  # open boxes -> their nodes, until split
        self.lo, self.hi, self.leaf_node = [], [], []
        self.count = 0
        self.slope_pairs, self.slope_neurons, self.slope_values = [], [], []
        self.tie_nodes, self.tie_counts, self.tie_neurons, self.tie_slopes = [], [], [], []

    def closed(self, lo: np.ndarray, hi: np.ndarray, nodes: list, slopes: list | None = None) -> None:
        """Closed boxes (N, n) at these nodes; slopes: per box None or [(row, neurons, values)]."""
        for i, box_slopes in enumerate(slopes or []):
            for row, neurons, values in box_slopes or ():
                self.slope_pairs.append((self.count + i, row))
                self.slope_neurons.append(neurons)
                self.slope_values.append(values)
        self.lo.append(lo)
        self.hi.append(hi)
        self.leaf_node += list(nodes)
        self.count += len(lo)

    def round_closed(self, spec, lo, hi, lower, refuted, state) -> None:
        """A round of input splitting: the boxes whose disjuncts are all refuted close (those
        alpha-CROWN closed keep, per disjunct, the slopes of the row that refutes it best); the
        others wait to be split."""
        recorder = self.proof.recorder
        nodes = np.asarray(self.pending)
        self._ties(state, nodes)
        closed = _np(refuted.all(1))
        pending, recorder.pending_box_slopes = recorder.pending_box_slopes, None
        lo_np, hi_np = _np(lo), _np(hi)
        for box in np.flatnonzero(~closed):
            self.waiting.setdefault(lo_np[box].tobytes() + hi_np[box].tobytes(), deque()).append(int(nodes[box]))
        if not closed.any():
            return
        slopes = [None] * int(closed.sum())
        if pending is not None:
            open_boxes, per_layer = pending
            position = {int(b): i for i, b in enumerate(open_boxes)}
            margins = _np(lower - spec.threshold)
            owner = _np(spec.owner)
            for out, box in enumerate(np.flatnonzero(closed)):
                if int(box) in position:
                    slopes[out] = self._best_rows(position[int(box)], margins[box], owner, per_layer)
        self.closed(lo_np[closed], hi_np[closed], nodes[closed].tolist(), slopes)

    def split(self, lo, hi, dims) -> None:
        """The boxes taken from the queue, halved along dims: their children (left halves in
        order, then right halves, as verifier.bab.input_split.bisect makes them) come next."""
        lo_np, hi_np, dims = _np(lo), _np(hi), _np(dims)
        chosen = [self.waiting[lo_np[i].tobytes() + hi_np[i].tobytes()].popleft() for i in range(len(lo_np))]
        for node, dim in zip(chosen, dims):
            self.dim[node] = int(dim)
        self.batches.append(len(self.parent))
        self.pending = []
        for side in (0, 1):
            for node in chosen:
                self.pending.append(len(self.parent))
                self.parent.append(node)
                self.side.append(side)
                self.dim.append(-1)

    def _ties(self, state, nodes: np.ndarray) -> None:
        """Where a bounded box has a neuron with u = -l (to rounding; lattice networks have
        exact ones), CROWN's adaptive slope (1 if u > -l) could go either way in the checker's
        rigorous arithmetic: keep the one taken here, with the box's node (leaf or not)."""
        recorder = self.proof.recorder
        found = []
        for pre, k in recorder.pre_index.items():
            l, u = (t.flatten(1) for t in state.bounds[pre])
            tie = (l < 0) & (u > 0) & ((u + l).abs() <= _TIE * (u - l))
            box, neuron = (_np(t) for t in tie.nonzero().unbind(1))
            if len(box):
                found.append((box, recorder.global_index(k, neuron), _np((u > -l)[tie]).astype(np.int8)))
        if not found:
            return
        box, neurons, slopes = (np.concatenate(x) for x in zip(*found))
        order = np.argsort(box, kind="stable")
        box, neurons, slopes = box[order], neurons[order], slopes[order]
        boxes, counts = np.unique(box, return_counts=True)
        self.tie_nodes.append(nodes[boxes])
        self.tie_counts.append(counts)
        self.tie_neurons.append(neurons)
        self.tie_slopes.append(slopes)

    def _best_rows(self, i: int, margins: np.ndarray, owner: np.ndarray, per_layer: dict):
        recorder = self.proof.recorder
        out = []
        for k in np.unique(owner):
            rows = np.flatnonzero(owner == k)
            row = int(rows[margins[rows].argmax()])
            neurons, values = [], []
            for layer, (a, unstable) in per_layer.items():
                where = np.flatnonzero(unstable[i])
                neurons.append(recorder.global_index(layer, where))
                values.append(a[i, row, where])
            out.append((row, np.concatenate(neurons), np.concatenate(values)))
        return out

    def to_json(self, prefix: str, arrays: dict) -> dict:
        arrays[f"{prefix}/lo"] = np.concatenate(self.lo)
        arrays[f"{prefix}/hi"] = np.concatenate(self.hi)
        arrays[f"{prefix}/leaf_node"] = np.asarray(self.leaf_node, dtype=np.int64)
        arrays[f"{prefix}/node_parent"] = np.asarray(self.parent, dtype=np.int64)
        arrays[f"{prefix}/node_side"] = np.asarray(self.side, dtype=np.int8)
        arrays[f"{prefix}/node_dim"] = np.asarray(self.dim, dtype=np.int32)
        arrays[f"{prefix}/batches"] = np.asarray(self.batches, dtype=np.int64)
        alpha = None
        if self.slope_pairs:
            arrays[f"{prefix}/pairs"] = np.asarray(self.slope_pairs, dtype=np.int64)
            arrays[f"{prefix}/offsets"] = np.cumsum([0] + [len(v) for v in self.slope_values]).astype(np.int64)
            arrays[f"{prefix}/neurons"] = np.concatenate(self.slope_neurons).astype(np.int64)
            arrays[f"{prefix}/values"] = np.concatenate(self.slope_values).astype(np.float64)
            alpha = {k: f"{prefix}/{k}" for k in ("pairs", "offsets", "neurons", "values")}
        ties = None
        if self.tie_nodes:
            arrays[f"{prefix}/tie_nodes"] = np.concatenate(self.tie_nodes).astype(np.int64)
            arrays[f"{prefix}/tie_offsets"] = np.concatenate([[0], np.cumsum(np.concatenate(self.tie_counts))])
            arrays[f"{prefix}/tie_neurons"] = np.concatenate(self.tie_neurons).astype(np.int64)
            arrays[f"{prefix}/tie_slopes"] = np.concatenate(self.tie_slopes)
            ties = {k: f"{prefix}/tie_{k}" for k in ("nodes", "offsets", "neurons", "slopes")}
        disjuncts = sorted(int(k) for k in np.unique(self.proof.owner))
        return {"kind": "boxes", "disjuncts": disjuncts, "intermediate": self.intermediate,
                "lo": f"{prefix}/lo", "hi": f"{prefix}/hi", "leaf_node": f"{prefix}/leaf_node",
                "nodes": {k: f"{prefix}/node_{k}" for k in ("parent", "side", "dim")},
                "batches": f"{prefix}/batches",
                "alpha": alpha, "ties": ties}


class LeafBlock:
    """ReLU split domains that closed: their splits, multipliers and slopes (see format.py)."""

    def __init__(self, recorder: Recorder, alpha_neurons: np.ndarray, m: int):
        self.recorder, self.alpha_neurons, self.m = recorder, alpha_neurons, m
        self.counts, self.layer, self.neuron, self.sign, self.beta = [], [], [], [], []
        self.alpha, self.z3, self.z3_sha256, self.tree = [], [], [], []

    def __len__(self):
        return int(sum(self.counts))

    def add(self, n: int, splits: dict, alphas: dict, betas: dict, tree: np.ndarray | None = None,
            z3_sha256: list | None = None) -> None:
        """n domains given as the verifier's dicts: splits relu -> (n, *shape) int8, alphas relu ->
        (n, m, *shape), betas pre-activation -> (n, m, *shape)."""
        recorder = self.recorder
        entries = []  # (leaf, layer, neuron, sign, beta (m,))
        pre_of = {name: pre for pre, name in _pairs(recorder)}
        for name, split in splits.items():
            layer = recorder.relu_index[name]
            flat = split.flatten(1)
            leaf, neuron = (t for t in flat.nonzero().unbind(1))
            if len(leaf) == 0:
                continue
            beta = betas.get(pre_of[name])
            values = (beta.flatten(2)[leaf, :, neuron] if beta is not None
                      else torch.zeros(len(leaf), self.m, dtype=torch.float64))
            entries.append((_np(leaf), np.full(len(leaf), layer), _np(neuron), _np(flat[leaf, neuron]).astype(np.int8),
                            _np(values).astype(np.float64)))
        if entries:
            leaf, layer, neuron, sign, beta = (np.concatenate(x) for x in zip(*entries))
            order = np.lexsort((neuron, layer, leaf))
            leaf, layer, neuron, sign, beta = leaf[order], layer[order], neuron[order], sign[order], beta[order]
        else:
            leaf = layer = neuron = sign = np.zeros(0, dtype=np.int64)
            beta = np.zeros((0, self.m))
        self.counts.append(np.bincount(leaf, minlength=n))
        self.layer.append(layer)
        self.neuron.append(neuron)
        self.sign.append(sign)
        self.beta.append(beta.reshape(len(beta), self.m))
        self.alpha.append(self._alphas(alphas, n))
        self.z3.append(np.zeros(n, dtype=bool) if z3_sha256 is None else np.ones(n, dtype=bool))
        self.z3_sha256 += list(z3_sha256 or [])
        if tree is not None:
            self.tree.append(tree)

    def _alphas(self, alphas: dict, n: int) -> np.ndarray:
        recorder = self.recorder
        out = np.zeros((n, self.m, len(self.alpha_neurons)), dtype=np.float32)
        layer = np.searchsorted(recorder.offsets, self.alpha_neurons, side="right") - 1
        for name, a in alphas.items():
            k = recorder.relu_index[name]
            mine = np.flatnonzero(layer == k)
            if len(mine):
                flat = _np(a.flatten(2))
                out[:, :, mine] = flat[:, :, self.alpha_neurons[mine] - recorder.offsets[k]]
        return out

    def to_json(self, prefix: str, arrays: dict) -> dict:
        counts = np.concatenate(self.counts) if self.counts else np.zeros(0, dtype=np.int64)
        arrays[f"{prefix}/offsets"] = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        arrays[f"{prefix}/layer"] = np.concatenate(self.layer).astype(np.int16) if self.layer else np.zeros(0, np.int16)
        arrays[f"{prefix}/neuron"] = np.concatenate(self.neuron).astype(np.int32) if self.neuron else np.zeros(0, np.int32)
        arrays[f"{prefix}/sign"] = np.concatenate(self.sign).astype(np.int8) if self.sign else np.zeros(0, np.int8)
        arrays[f"{prefix}/beta"] = np.concatenate(self.beta) if self.beta else np.zeros((0, self.m))
        arrays[f"{prefix}/neurons"] = self.alpha_neurons.astype(np.int64)
        alpha = np.concatenate(self.alpha) if self.alpha else np.zeros((0, self.m, len(self.alpha_neurons)), np.float32)
        arrays[f"{prefix}/alpha"] = alpha if _exact_float32(alpha) else alpha.astype(np.float64)
        arrays[f"{prefix}/z3"] = np.concatenate(self.z3) if self.z3 else np.zeros(0, bool)
        out = {k: f"{prefix}/{k}" for k in ("offsets", "layer", "neuron", "sign", "beta", "neurons", "alpha", "z3")}
        out["z3_sha256"] = self.z3_sha256
        if self.tree:
            arrays[f"{prefix}/tree"] = np.concatenate(self.tree).astype(np.int32)
            out["tree"] = f"{prefix}/tree"
        return out


def _exact_float32(a) -> bool:
    return a.dtype == np.float32


def _pairs(recorder: Recorder):
    """(pre-activation name, relu name) pairs."""
    relu_by_index = {i: name for name, i in recorder.relu_index.items()}
    return [(pre, relu_by_index[i]) for pre, i in recorder.pre_index.items()]


class Version:
    """Intermediate bounds of ReLU splitting's root: version 0 from alpha-CROWN, each later one
    from an earlier one with a layer refined by lemma trees and the later layers re-tightened.
    The slopes of every alpha-CROWN row are kept."""

    def __init__(self, recorder: Recorder, base: int | None = None, refined_layer: int | None = None,
                 lemma_neurons: np.ndarray | None = None):
        self.recorder, self.base, self.refined_layer = recorder, base, refined_layer
        self.slopes: list = []  # (layer, elements, neurons, values (r, 2, U))
        self.unstable = np.zeros(0, dtype=np.int64)  # global indices, set by the root bound
        self.lemmas = None if refined_layer is None else LeafBlock(recorder, lemma_neurons, 1)
        self.lemma_trees: list = []  # (neuron, side) per tree

    def add_slopes(self, state, start: str, C: torch.Tensor, slopes: dict) -> None:
        recorder = self.recorder
        layer = recorder.pre_index.get(start)
        if layer is None:
            return
        rows = C.shape[1] // 2
        elements = _np(C[0, :rows].flatten(1).abs().argmax(1))
        neurons, values = [], []
        for name, a in slopes.items():
            k = recorder.relu_index[name]
            l, u = state.bounds[state.graph.by_name[name].inputs[0]]
            where = _np(((l[0] < 0) & (u[0] > 0)).flatten().nonzero().flatten())
            flat = _np(a[0].flatten(1))  # (2 rows, n)
            values.append(np.stack([flat[:rows][:, where], flat[rows:][:, where]], 1))
            neurons.append(recorder.global_index(k, where))
        if neurons:
            self.slopes.append((layer, elements, np.concatenate(neurons), np.concatenate(values, 2)))

    def to_json(self, prefix: str, arrays: dict) -> dict:
        records = []
        for j, (layer, elements, neurons, values) in enumerate(self.slopes):
            names = {k: f"{prefix}/s{j}/{k}" for k in ("elements", "neurons", "values")}
            arrays[names["elements"]] = elements.astype(np.int64)
            arrays[names["neurons"]] = neurons.astype(np.int64)
            arrays[names["values"]] = values
            records.append({"layer": int(layer), **names})
        lemmas = None
        if self.lemmas is not None:
            lemmas = self.lemmas.to_json(f"{prefix}/lemma", arrays)
            trees = np.asarray(self.lemma_trees, dtype=np.int64).reshape(-1, 2)
            arrays[f"{prefix}/lemma/tree_neuron"], arrays[f"{prefix}/lemma/tree_side"] = trees[:, 0], trees[:, 1]
            lemmas.update({"tree_neuron": f"{prefix}/lemma/tree_neuron", "tree_side": f"{prefix}/lemma/tree_side"})
            if "tree" not in lemmas:
                arrays[f"{prefix}/lemma/tree"] = np.zeros(0, dtype=np.int32)
                lemmas["tree"] = f"{prefix}/lemma/tree"
        return {"base": self.base, "refined_layer": self.refined_layer, "slopes": records, "lemmas": lemmas}


class SplitPart:
    """Leaves of ReLU splitting that prove disjuncts `disjuncts` (rows `rows` of the region)."""

    def __init__(self, disjuncts: list[int], rows: np.ndarray, version: int, leaves: LeafBlock):
        self.disjuncts, self.rows, self.version, self.leaves = disjuncts, rows, version, leaves

    def to_json(self, prefix: str, arrays: dict) -> dict:
        return {"kind": "splits", "disjuncts": self.disjuncts, "rows": [int(r) for r in self.rows],
                "version": self.version, "leaves": self.leaves.to_json(prefix, arrays)}


class ReluSplitProof:
    """ReLU splitting of one region. Serves as the root bound state's `recorder`: alpha-CROWN's
    intermediate slopes and the root's bound arrive here, then the trees' closed leaves, and
    the lemma trees of refined layers."""

    def __init__(self, proof: RegionProof):
        self.proof, self.recorder = proof, proof.recorder
        proof.versions.append(Version(self.recorder))
        self.root = None
        self.open_tree = None

    @property
    def version_index(self) -> int:
        return len(self.proof.versions) - 1

    @property
    def version(self) -> Version:
        return self.proof.versions[-1]

    # --- intermediate bounds and the root
    def intermediate_slopes(self, state, start: str, C: torch.Tensor, slopes: dict) -> None:
        self.version.add_slopes(state, start, C, slopes)

    def root_bound(self, state, root) -> None:
        """The root domain bounded on this version's intermediate bounds."""
        recorder = self.recorder
        unstable = []
        for pre, k in recorder.pre_index.items():
            l, u = state.bounds[pre]
            unstable.append(recorder.global_index(k, _np(((l[0] < 0) & (u[0] > 0)).flatten().nonzero().flatten())))
        self.version.unstable = np.concatenate(unstable) if unstable else np.zeros(0, dtype=np.int64)
        self.root = root

    def root_refutes(self, k: int, spec) -> None:
        rows = spec.rows_of(k)
        root = self.root.only_rows(rows)
        block = LeafBlock(self.recorder, self.version.unstable, len(rows))
        block.add(len(root), root.splits, root.alphas, root.betas)
        self.proof.parts.append(SplitPart([int(k)], _np(rows), self.version_index, block))

    def refine_begin(self, name: str) -> None:
        layer = self.recorder.pre_index[name]
        below = self.version.unstable[self.version.unstable < self.recorder.offsets[layer]]
        self.proof.versions.append(Version(self.recorder, self.version_index, layer, below))

    def lemma_domains(self, rows: torch.Tensor, tree: torch.Tensor, domains) -> None:
        """Domains the refined layer's trees bounded (tree t bounds rows[t] . x, a signed unit
        row): all of them, since a domain's bound is the better of its own and its parent's."""
        version = self.version
        if not version.lemma_trees:
            signed = _np(rows)
            neuron = np.abs(signed).argmax(1)
            version.lemma_trees = list(zip(neuron.tolist(), np.sign(signed[np.arange(len(signed)), neuron]).astype(int).tolist()))
        if len(domains):
            version.lemmas.add(len(domains), domains.splits, domains.alphas, domains.betas, tree=_np(tree))

    # --- trees of the disjuncts
    def tree_begin(self, k: int, rows: torch.Tensor) -> None:
        self.open_tree = SplitPart([int(k)], _np(rows), self.version_index,
                                   LeafBlock(self.recorder, self.version.unstable, len(rows)))

    def tree_leaves(self, domains) -> None:
        if len(domains):
            self.open_tree.leaves.add(len(domains), domains.splits, domains.alphas, domains.betas)

    def tree_lp_leaf(self, splits: dict, alphas: dict, betas: dict) -> None:
        self.open_tree.leaves.add(1, splits, alphas, betas)

    def tree_z3_leaf(self, leaf, region, spec) -> None:
        """A leaf closed by z3: its hash (the exact stage's inputs: box, splits, rows)."""
        import hashlib

        digest = hashlib.sha256(region.lo.tobytes() + region.hi.tobytes() + _np(spec.C).tobytes()
                                + _np(spec.d).tobytes())
        for name in sorted(leaf.splits):
            digest.update(name.encode() + _np(leaf.splits[name]).tobytes())
        self.open_tree.leaves.add(1, leaf.splits, leaf.alphas, leaf.betas, z3_sha256=[digest.hexdigest()])

    def tree_end(self, proved: bool) -> None:
        if proved and self.open_tree is not None:
            self.proof.parts.append(self.open_tree)
        self.open_tree = None


def relu_split_proof(query, region, spec):
    """The recorder of a region's ReLU splitting, or None when no certificate is asked for."""
    if getattr(query, "recorder", None) is None:
        return None
    return ReluSplitProof(query.recorder.region(region, spec))


def box_proof(query, region, spec, intermediate: str):
    """The recorder of a region's input splitting, or None when no certificate is asked for."""
    if getattr(query, "recorder", None) is None:
        return None
    return query.recorder.region(region, spec).boxes(intermediate)
