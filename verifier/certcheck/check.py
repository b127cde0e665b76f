"""Check an unsat certificate against the model and the spec: `valid` only when every region of
the spec is covered by leaves whose re-computed lower bounds beat every disjunct's threshold.
The bounds are rigorous (float64 with explicit error terms) and hold for the float32 network
that onnxruntime runs as well as for the real-valued one (bounds.py, float_error.py).

Nothing in the certificate is trusted: boxes must tile the region, split sets must form
complete trees, slopes must lie in [0, 1] and split multipliers be >= 0 (any such values give
valid bounds), intermediate bounds are recomputed (CROWN or forward mode, or from recorded
alpha-CROWN slopes, or refined by lemma trees whose leaves are checked like any other), and
thresholds come from the spec file, read here.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from verifier.certcheck import format as fmt
from verifier.certcheck.bounds import (Domains, backward_lower, crown_bounds, domain_roundings,
                                       forward_bounds, root_bounds)
from verifier.certcheck.cover import NotCovered, box_tree, split_cover
from verifier.certcheck.network import CheckerError, Network, read_network
from verifier.certcheck.vnnlib import parse_spec

_CHUNK_ELEMENTS = 1 << 23  # per-domain elements handled at once


class Invalid(Exception):
    """The certificate does not prove the property: where and why."""


@dataclass
class Outcome:
    valid: bool
    message: str
    stats: dict = field(default_factory=dict)


def check_certificate(model: str, spec: str, certificate: str, trust_z3: bool = False,
                      check_hashes: bool = True) -> Outcome:
    """Raises CheckerError for unreadable or unsupported inputs."""
    started = time.monotonic()
    try:
        header, arrays = fmt.read(certificate)
    except ValueError as e:
        raise CheckerError(f"{certificate}: {e}") from None
    stats = {"leaves": 0, "trusted_z3": 0}
    try:
        if check_hashes:
            for name, path in (("model", model), ("spec", spec)):
                if fmt.file_sha256(path) != header.get(f"{name}_sha256"):
                    raise Invalid(f"the {name} file's sha256 differs from the certificate's")
        net = read_network(model)
        if list(header.get("relu_sizes", [])) != net.relu_sizes:
            raise Invalid(f"the certificate's ReLU layers {header.get('relu_sizes')} are not the model's "
                          f"{net.relu_sizes}")
        regions = parse_spec(spec, net.input_size, net.output_size)
        proofs = [_Proof(r, arrays) for r in header.get("regions", [])]
        for index, region in enumerate(regions):
            proof = next((p for p in proofs if p.box_equals(region.lo, region.hi)), None)
            if proof is None:
                raise Invalid(f"region {index}: no proof for its input box")
            _RegionCheck(net, proof, region, index, trust_z3, stats).run()
    except Invalid as reason:
        return Outcome(False, f"invalid: {reason}", stats)
    except (KeyError, IndexError, TypeError, ValueError) as e:
        return Outcome(False, f"invalid: malformed certificate ({type(e).__name__}: {e})", stats)
    finally:
        stats["seconds"] = time.monotonic() - started
    trusted = f" ({stats['trusted_z3']} leaves trusted to z3)" if stats["trusted_z3"] else ""
    return Outcome(True, "valid" + trusted, stats)


class _Proof:
    """One region of the certificate, with its arrays looked up by name."""

    def __init__(self, region: dict, arrays: dict):
        self.json, self.arrays = region, arrays

    def array(self, name) -> np.ndarray:
        return self.arrays[name]

    def box_equals(self, lo, hi) -> bool:
        mine_lo, mine_hi = self.array(self.json["lo"]), self.array(self.json["hi"])
        return mine_lo.shape == lo.shape and bool((mine_lo == lo).all() and (mine_hi == hi).all())


class _RegionCheck:
    def __init__(self, net: Network, proof: _Proof, region, index: int, trust_z3: bool, stats: dict):
        self.net, self.proof, self.region, self.index = net, proof, region, index
        self.trust_z3, self.stats = trust_z3, stats
        self.C = proof.array(proof.json["C"]).astype(np.float64)
        self.owner = proof.array(proof.json["owner"]).astype(np.int64)
        self.versions: dict[int, Domains] = {}
        offsets = np.cumsum([0] + net.relu_sizes)
        self.relu_offsets = offsets

    def fail(self, where: str, reason: str):
        raise Invalid(f"region {self.index}, {where}: {reason}")

    def run(self):
        lo, hi = self.region.lo, self.region.hi
        self.root = root_bounds(self.net, lo, hi)
        self.thresholds, needed = self._thresholds()
        proved: set[int] = set()
        for p, part in enumerate(self.proof.json["parts"]):
            where = f"part {p}"
            kind = part["kind"]
            if kind == "boxes":
                self._boxes(part, where)
            elif kind == "splits":
                self._splits(part, where)
            else:
                self.fail(where, f"unknown part kind '{kind}'")
            proved |= set(part["disjuncts"])
        missing = sorted(needed - proved)
        if missing:
            self.fail(f"disjunct {missing[0]}", "no part of the certificate proves it")

    # --- thresholds from the spec
    def _thresholds(self):
        """Per certificate row: the spec's threshold (+inf for rows of disjuncts the spec does
        not have; bounds already hold for the float32 network); and the certificate disjuncts
        the spec needs."""
        thresholds = np.full(len(self.C), np.inf)
        needed, used = set(), set()
        n_disjuncts = int(self.owner.max()) + 1 if len(self.owner) else 0
        for j, (C, d) in enumerate(self.region.disjuncts):
            match = next((k for k in range(n_disjuncts) if k not in used
                          and np.array_equal(self.C[self.owner == k], C)), None)
            if match is None:
                self.fail(f"spec disjunct {j}", "the certificate has no disjunct with these output rows")
            used.add(match)
            needed.add(match)
            rows = np.flatnonzero(self.owner == match)
            thresholds[rows] = d
        return thresholds, needed

    # --- refutation of leaves
    def _refute(self, lower: np.ndarray, rows: np.ndarray, disjuncts, leaf_ids, where: str):
        """Every leaf (row of `lower`, bounds of `rows`) must refute every needed disjunct."""
        beats = lower > self.thresholds[rows]
        owners = self.owner[rows]
        for k in disjuncts:
            mine = owners == k
            if not mine.any():
                self.fail(where, f"disjunct {k} has no rows in this part")
            ok = beats[:, mine].any(1)
            if not ok.all():
                bad = int(np.flatnonzero(~ok)[0])
                best = lower[bad, mine].max()
                threshold = self.thresholds[rows][mine].min()
                self.fail(f"{where}, leaf {int(leaf_ids[bad])}",
                          f"disjunct {k} is not refuted (bound {best:.9g}, needs > {threshold:.9g})")
        self.stats["leaves"] += len(lower)

    def _needed(self, part) -> list[int]:
        return [k for k in part["disjuncts"] if np.isfinite(self.thresholds[self.owner == k]).all()]

    # --- input boxes
    def _boxes(self, part, where):
        lo, hi = self.proof.array(part["lo"]), self.proof.array(part["hi"])
        nodes = {k: self.proof.array(v).astype(np.int64) for k, v in part["nodes"].items()}
        leaf_node = self.proof.array(part["leaf_node"]).astype(np.int64)
        if len(leaf_node) != len(lo):
            self.fail(where, "the leaves and their nodes do not match")
        try:
            tree = box_tree(self.region.lo, self.region.hi, nodes["parent"], nodes["side"], nodes["dim"],
                            leaf_node, lo, hi)
        except NotCovered as e:
            self.fail(where if e.leaf is None else f"{where}, leaf {e.leaf}", e.reason)
        rows = np.arange(len(self.C))
        try:
            alphas = _BoxAlphas(self.proof, part.get("alpha"), self.net, self.relu_offsets, len(lo), len(rows))
            ties = _Ties(self.proof, part.get("ties"), self.net, self.relu_offsets)
        except Invalid as e:
            self.fail(where, str(e))
        disjuncts = self._needed(part)
        if part["intermediate"] == "forward":
            for chunk in _chunks(len(lo), self._chunk_size(len(rows))):
                domains = forward_bounds(self.net, self.root, lo[chunk], hi[chunk], ties.lookup(leaf_node[chunk]))
                self._box_leaves(domains, np.arange(len(lo))[chunk], rows, alphas, disjuncts, where)
        elif part["intermediate"] == "crown":
            batches = self.proof.array(part["batches"]).astype(np.int64)
            if len(batches) == 0 or batches[0] != 0 or (np.diff(batches) <= 0).any() or batches[-1] >= len(tree.parent):
                self.fail(where, "the batches do not split the tree's nodes")
            self._box_tree(tree, batches, rows, alphas, ties, disjuncts, where)
        else:
            self.fail(where, f"unknown intermediate bounds '{part['intermediate']}'")

    def _box_tree(self, tree, batches, rows, alphas, ties, disjuncts, where):
        """CROWN batch by batch, as the verifier bounded the boxes (a batch's bounds depend on
        its members, see bounds.tighten_pairs), each box starting from its parent's bounds."""
        leaf_of_node = np.full(len(tree.parent), -1)
        leaf_of_node[tree.leaf_node] = np.arange(len(tree.leaf_node))
        if ((tree.parent[1:] >= np.repeat(batches, np.diff(np.append(batches, len(tree.parent))))[1:])).any():
            self.fail(where, "a box is bounded in the batch of its parent or before")
        kept: dict[int, list] = {}  # split node -> its pre-activation bounds, until its children are done
        ends = np.append(batches[1:], len(tree.parent))
        for start, end in zip(batches, ends):
            ids = np.arange(start, end)
            inherited = None
            if start > 0:
                inherited = [(np.stack([kept[p][k][0] for p in tree.parent[ids]]),
                              np.stack([kept[p][k][1] for p in tree.parent[ids]]))
                             for k in range(len(self.net.relu_at))]
                for p in np.unique(tree.parent[ids]):
                    del kept[int(p)]  # both halves are in this batch
            choices = ties.lookup(ids)
            if start == 0 and end == 1 and not choices:  # the region itself: the root's CROWN
                domains = self.root.domains
            else:
                domains, _, _ = crown_bounds(self.net, self.root, tree.lo[ids], tree.hi[ids], inherited,
                                             choices=choices)
            is_leaf = leaf_of_node[ids] >= 0
            leaves = np.flatnonzero(is_leaf)
            for chunk in _chunks(len(leaves), self._chunk_size(len(rows))):
                self._box_leaves(domains.select(leaves[chunk]), leaf_of_node[ids][leaves[chunk]], rows,
                                 alphas, disjuncts, where)
            for j in np.flatnonzero(~is_leaf):
                kept[int(ids[j])] = [(l[j], u[j]) for l, u in domains.pre]

    def _box_leaves(self, domains: Domains, leaf_ids, rows, alphas, disjuncts, where):
        P = len(leaf_ids)
        lam = np.broadcast_to(self.C[rows], (P, len(rows), self.C.shape[1]))
        try:
            leaf_alphas = alphas.for_leaves(leaf_ids, domains)
        except Invalid as e:
            self.fail(where, str(e))
        lower = backward_lower(self.net, self.root, len(self.net.prims), lam, domains, leaf_alphas)
        self._refute(lower, rows, disjuncts, leaf_ids, where)

    def _chunk_size(self, m: int) -> int:
        widest = max(self.net.sizes)
        return max(1, _CHUNK_ELEMENTS // (max(m, 2) * widest))

    # --- ReLU splits
    def _splits(self, part, where):
        version = self.version(int(part["version"]))
        rows = np.asarray(part["rows"], dtype=np.int64)
        block = _LeafBlock(self.proof, part["leaves"], self.net, self.relu_offsets, where, self.fail, self.root)
        block.check_cover(range(block.count))
        disjuncts = self._needed(part)
        lam_rows = self.C[rows]
        for chunk in _chunks(block.count, self._chunk_size(len(rows))):
            ids = np.arange(block.count)[chunk]
            lower, ids = self._split_leaves(block, ids, version, len(self.net.prims), lam_rows, where)
            if len(ids):
                self._refute(lower, rows, disjuncts, ids, where)

    def _split_leaves(self, block, ids, version: Domains, start: int, lam_rows, where):
        """Lower bounds (P, m) of lam_rows . value_start on the leaves `ids` (those trusted to z3
        or empty dropped); returns (lower, ids kept)."""
        z3 = block.z3[ids]
        if z3.any():
            if not self.trust_z3:
                leaf = int(ids[np.flatnonzero(z3)[0]])
                self.fail(f"{where}, leaf {leaf}", "closed by z3 (trusted-z3, not re-checkable here; "
                                                   "--trust-z3 accepts it)")
            self.stats["trusted_z3"] += int(z3.sum())
            ids = ids[~z3]
        domains, betas, empty = block.domains(ids, version, self.net)
        if empty.any():
            keep = np.flatnonzero(~empty)
            ids, domains = ids[keep], domains.select(keep)
            betas = {k: (b[keep], s[keep]) for k, (b, s) in betas.items()}
        lam = np.broadcast_to(lam_rows, (len(ids), *lam_rows.shape))
        alphas = block.alphas(ids, domains, lam_rows.shape[0])
        return backward_lower(self.net, self.root, start, lam, domains, alphas, betas), ids

    # --- intermediate bounds of ReLU splitting's root
    def version(self, v: int) -> Domains:
        if v in self.versions:
            return self.versions[v]
        spec = self.proof.json["versions"][v]
        slopes = _RecordedSlopes(self.proof, spec.get("slopes", []), self.net, self.relu_offsets,
                                 f"version {v}", self.fail)
        lo, hi = self.region.lo[None], self.region.hi[None]
        if spec.get("base") is None:
            domains, _, _ = crown_bounds(self.net, self.root, lo, hi, slopes=slopes.selector)
        else:
            if int(spec["base"]) >= v:
                self.fail(f"version {v}", "its base is not an earlier version")
            base = self.version(int(spec["base"]))
            layer = int(spec["refined_layer"])
            lemma = self._lemmas(spec["lemmas"], base, layer, f"version {v} lemmas")
            domains, _, _ = crown_bounds(self.net, self.root, lo, hi, inherited=base.pre, slopes=slopes.selector,
                                         first_layer=layer + 1, lemmas={layer: lemma})
        self.versions[v] = domains
        return domains

    def _lemmas(self, block_json, base: Domains, layer: int, where):
        """Layer `layer`'s bounds refined by the lemma trees. A tree's domains split the layers
        before `layer`; each bounds x_j (side +1) or -x_j (side -1) by the better of its own
        bound and its parent's (the domain with one split less); the domains without children
        must cover the region, and the least of their bounds is the tree's."""
        l, u = (b.copy() for b in base.pre[layer])
        block = _LeafBlock(self.proof, block_json, self.net, self.relu_offsets, where, self.fail, self.root)
        tree = self.proof.array(block_json["tree"]).astype(np.int64)
        neuron = self.proof.array(block_json["tree_neuron"]).astype(np.int64)
        side = self.proof.array(block_json["tree_side"]).astype(np.int64)
        if len(tree) != block.count or (block.layer >= layer).any() or (tree < 0).any() or (tree >= len(neuron)).any():
            self.fail(where, "lemma domains must split only the layers before the refined one")
        if len(side) != len(neuron) or not np.isin(side, (-1, 1)).all() or (neuron < 0).any() \
                or (neuron >= self.net.relu_sizes[layer]).any():
            self.fail(where, "a lemma tree must bound x_j or -x_j of an existing neuron j")
        start = self.net.relu_at[layer]
        size = self.net.sizes[start]
        own = np.full(block.count, -np.inf)  # empty domains: no bound needed (stays -inf, harmless)
        for chunk in _chunks(block.count, self._chunk_size(1)):
            ids = np.arange(block.count)[chunk]
            rows = np.zeros((len(ids), 1, size))
            rows[np.arange(len(ids)), 0, neuron[tree[ids]]] = side[tree[ids]]
            lower, kept = self._lemma_leaves(block, ids, base, start, rows, where)
            own[kept] = lower[:, 0]
        worst = np.full(len(neuron), np.inf)
        for t in range(len(neuron)):
            members = np.flatnonzero(tree == t)
            if len(members):
                worst[t] = self._lemma_tree(block, members, own, f"{where}, tree {t}")
        proved = np.isfinite(worst)  # a tree whose every leaf is empty proves nothing to use
        lower_side, upper_side = (side > 0) & proved, (side < 0) & proved
        l[0, neuron[lower_side]] = np.maximum(l[0, neuron[lower_side]], worst[lower_side])
        u[0, neuron[upper_side]] = np.minimum(u[0, neuron[upper_side]], -worst[upper_side])
        return l, u

    def _lemma_tree(self, block, members, own, where) -> float:
        """The least effective bound over the tree's childless domains, after checking that
        they cover the region; effective = max(own, parent's effective)."""
        splits = [block.splits_of(int(i)) for i in members]
        index = {frozenset(s.items()): position for position, s in enumerate(splits)}
        effective = own[members].copy()
        has_child = np.zeros(len(members), dtype=bool)
        for position in sorted(range(len(members)), key=lambda p: len(splits[p])):
            items = splits[position].items()
            parents = [index.get(frozenset(x for x in items if x != item)) for item in items]
            parents = [p for p in parents if p is not None]
            if items and not parents:
                self.fail(where, f"domain {int(members[position])} has no parent in its tree")
            if parents:
                effective[position] = max(effective[position], effective[parents[0]])
                has_child[parents[0]] = True
        block.check_cover(members[~has_child], where)
        return float(effective[~has_child].min())

    def _lemma_leaves(self, block, ids, base, start, rows, where):
        if block.z3[ids].any():
            self.fail(where, "a lemma leaf cannot be trusted to z3")
        domains, betas, empty = block.domains(ids, base, self.net)
        keep = np.flatnonzero(~empty)
        domains = domains.select(keep)
        betas = {k: (b[keep], s[keep]) for k, (b, s) in betas.items()}
        alphas = block.alphas(ids[keep], domains, 1)
        return backward_lower(self.net, self.root, start, rows[keep], domains, alphas, betas), ids[keep]


def _chunks(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _unpack_global(net: Network, offsets: np.ndarray, neurons: np.ndarray):
    """Global ReLU indices -> (layer, neuron) arrays."""
    layer = np.searchsorted(offsets, neurons, side="right") - 1
    if len(neurons) and (neurons.min() < 0 or neurons.max() >= offsets[-1]):
        raise Invalid("a ReLU index is out of range")
    return layer, neurons - offsets[layer]


def _offsets_ok(offsets: np.ndarray, count: int, total: int) -> bool:
    """offsets (count + 1,) cut `total` entries into consecutive runs."""
    return (len(offsets) == count + 1 and offsets[0] == 0 and offsets[-1] == total
            and bool((np.diff(offsets) >= 0).all()))


def _check_slopes(values: np.ndarray, what: str):
    if not np.isfinite(values).all() or (values < 0).any() or (values > 1).any():
        raise Invalid(f"{what}: a slope lies outside [0, 1]")


def _default_alphas(domains: Domains, m: int) -> dict:
    """The domains' default slopes per layer as (P, m, n) arrays, to be overwritten where recorded."""
    return {k: np.repeat(choice[:, None, :], m, axis=1) for k, choice in enumerate(domains.choice)}


class _BoxAlphas:
    """Recorded output-row slopes of box leaves: (leaf, row) pairs with sparse values."""

    def __init__(self, proof, spec, net, offsets, n_leaves, m):
        self.spec, self.m = spec, m
        if spec is None:
            return
        self.pairs = proof.array(spec["pairs"]).astype(np.int64).reshape(-1, 2)
        self.offsets = proof.array(spec["offsets"]).astype(np.int64)
        self.values = proof.array(spec["values"]).astype(np.float64)
        self.layer, self.neuron = _unpack_global(net, offsets, proof.array(spec["neurons"]).astype(np.int64))
        _check_slopes(self.values, "recorded slopes")
        if (self.pairs < 0).any() or (self.pairs[:, 0] >= n_leaves).any() or (self.pairs[:, 1] >= m).any() \
                or not _offsets_ok(self.offsets, len(self.pairs), len(self.values)):
            raise Invalid("recorded slopes refer to a leaf or row that does not exist")
        self.by_leaf = {}
        for q, (leaf, _) in enumerate(self.pairs):
            self.by_leaf.setdefault(int(leaf), []).append(q)

    def for_leaves(self, leaf_ids, domains: Domains):
        if self.spec is None or not any(int(i) in self.by_leaf for i in leaf_ids):
            return None
        alphas = _default_alphas(domains, self.m)
        for position, leaf in enumerate(leaf_ids):
            for q in self.by_leaf.get(int(leaf), ()):
                row = self.pairs[q, 1]
                part = slice(self.offsets[q], self.offsets[q + 1])
                for k in np.unique(self.layer[part]):
                    mine = self.layer[part] == k
                    alphas[int(k)][position, row, self.neuron[part][mine]] = self.values[part][mine]
        return alphas


class _Ties:
    """The verifier's adaptive slope choices at near-ties u = -l, by tree node."""

    def __init__(self, proof, spec, net, offsets):
        self.by_node = {}
        if spec is None:
            return
        nodes = proof.array(spec["nodes"]).astype(np.int64)
        starts = proof.array(spec["offsets"]).astype(np.int64)
        layer, neuron = _unpack_global(net, offsets, proof.array(spec["neurons"]).astype(np.int64))
        slopes = proof.array(spec["slopes"]).astype(np.float64)
        if not _offsets_ok(starts, len(nodes), len(slopes)) or len(neuron) != len(slopes):
            raise Invalid("the recorded slope choices are malformed")
        if not np.isin(slopes, (0.0, 1.0)).all():
            raise Invalid("a recorded slope choice is neither 0 nor 1")
        for i, node in enumerate(nodes):
            part = slice(starts[i], starts[i + 1])
            self.by_node[int(node)] = (layer[part], neuron[part], slopes[part])

    def lookup(self, nodes) -> dict:
        """layer -> (rows, neurons, slopes) for the nodes (in this order) with recorded choices."""
        if not self.by_node:
            return {}
        found: dict = {}
        for row, node in enumerate(nodes):
            hit = self.by_node.get(int(node))
            if hit is None:
                continue
            for k in np.unique(hit[0]):
                mine = hit[0] == k
                found.setdefault(int(k), []).append((np.full(int(mine.sum()), row), hit[1][mine], hit[2][mine]))
        return {k: tuple(np.concatenate(x) for x in zip(*parts)) for k, parts in found.items()}


class _RecordedSlopes:
    """alpha-CROWN slopes of a version's intermediate rows, served per (layer, neuron) pair."""

    def __init__(self, proof, records, net, offsets, where, fail):
        self.records = {}
        for record in records:
            k = int(record["layer"])
            elements = proof.array(record["elements"]).astype(np.int64)
            values = proof.array(record["values"]).astype(np.float64)
            try:
                _check_slopes(values, f"{where}, layer {k}")
                layer, neuron = _unpack_global(net, offsets, proof.array(record["neurons"]).astype(np.int64))
            except Invalid as e:
                fail(where, str(e))
            if (layer >= k).any() or values.shape != (len(elements), 2, len(layer)):
                fail(where, f"layer {k}: malformed slope record")
            self.records.setdefault(k, []).append((elements, layer, neuron, values))

    def selector(self, k: int):
        if k not in self.records:
            return None

        def alphas(boxes, neurons, domains: Domains):
            out = _default_alphas(domains, 2)
            out = {j: np.repeat(a, len(neurons), axis=0) if len(a) == 1 else a for j, a in out.items()}
            for elements, layer, neuron, values in self.records[k]:
                position = {int(e): r for r, e in enumerate(elements)}
                hits = [(p, position[int(j)]) for p, j in enumerate(neurons) if int(j) in position]
                if not hits:
                    continue
                pairs, record_rows = (np.array(x) for x in zip(*hits))
                for j in np.unique(layer):
                    mine = layer == j
                    block = out[int(j)][pairs]
                    block[:, :, neuron[mine]] = values[record_rows][:, :, mine]
                    out[int(j)][pairs] = block
            return out
        return alphas


class _LeafBlock:
    """A block of ReLU-split leaves (see format.py)."""

    def __init__(self, proof, spec, net, offsets, where, fail, root):
        self.where, self.fail_at, self.root = where, fail, root
        self.offsets = proof.array(spec["offsets"]).astype(np.int64)
        self.count = len(self.offsets) - 1
        self.layer = proof.array(spec["layer"]).astype(np.int64)
        self.neuron = proof.array(spec["neuron"]).astype(np.int64)
        self.sign = proof.array(spec["sign"]).astype(np.int64)
        self.beta = proof.array(spec["beta"]).astype(np.float64)
        self.alpha_neurons = proof.array(spec["neurons"]).astype(np.int64)
        self.alpha = proof.array(spec["alpha"])
        self.z3 = proof.array(spec["z3"]).astype(bool) if "z3" in spec else np.zeros(self.count, bool)
        if not _offsets_ok(self.offsets, self.count, len(self.layer)) or len(self.z3) != self.count \
                or not len(self.neuron) == len(self.sign) == len(self.beta) == len(self.layer):
            self.fail("the leaves' split lists are malformed")
        sizes = np.asarray(net.relu_sizes)
        if len(self.layer) and ((self.layer < 0).any() or (self.layer >= len(sizes)).any()
                                or (self.neuron < 0).any() or (self.neuron >= sizes[self.layer]).any()):
            self.fail("a split names a neuron that does not exist")
        if not np.isin(self.sign, (-1, 1)).all():
            self.fail("a split sign is neither +1 nor -1")
        bad = ~np.all(np.isfinite(self.beta) & (self.beta >= 0), axis=tuple(range(1, self.beta.ndim)))
        if bad.any():
            leaf = int(np.searchsorted(self.offsets, np.flatnonzero(bad)[0], side="right") - 1)
            self.fail(f"leaf {leaf}: a split multiplier is negative or not finite")
        try:
            _check_slopes(self.alpha.astype(np.float64), "a leaf")
            self.alpha_layer, self.alpha_neuron = _unpack_global(net, offsets, self.alpha_neurons)
        except Invalid as e:
            self.fail(str(e))

    def fail(self, reason):
        self.fail_at(self.where, reason)

    def splits_of(self, i: int) -> dict:
        part = slice(self.offsets[i], self.offsets[i + 1])
        return {(int(k), int(j)): int(s) for k, j, s in zip(self.layer[part], self.neuron[part], self.sign[part])}

    def check_cover(self, ids, where: str | None = None):
        ids = list(ids)
        try:
            split_cover([self.splits_of(i) for i in ids])
        except NotCovered as e:
            where = where or self.where
            self.fail_at(f"{where}, leaf {ids[e.leaf]}" if e.leaf is not None else where, e.reason)

    def domains(self, ids, base: Domains, net: Network):
        """Domains of leaves `ids`: the base bounds clamped at each split, the split multipliers
        per layer as (beta (P, m, n), sign (P, 1, n)), and which domains are empty (a clamp
        crossing the bounds: nothing to prove there)."""
        P = len(ids)
        pre = [(np.repeat(l, P, 0).copy(), np.repeat(u, P, 0).copy()) for l, u in base.pre]
        counts = self.offsets[ids + 1] - self.offsets[ids]
        entries = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in ids]) if P else np.zeros(0, int)
        owner = np.repeat(np.arange(P), counts)
        m = self.beta.shape[1] if self.beta.ndim == 2 else 1
        betas = {}
        for k in np.unique(self.layer[entries]) if len(entries) else []:
            mine = entries[self.layer[entries] == k]
            who = owner[self.layer[entries] == k]
            l, u = pre[int(k)]
            active = self.sign[mine] > 0
            l[who[active], self.neuron[mine][active]] = np.maximum(l[who[active], self.neuron[mine][active]], 0.0)
            u[who[~active], self.neuron[mine][~active]] = np.minimum(u[who[~active], self.neuron[mine][~active]], 0.0)
            beta = np.zeros((P, m, net.relu_sizes[int(k)]))
            sign = np.zeros((P, 1, net.relu_sizes[int(k)]))
            beta[who, :, self.neuron[mine]] = self.beta[mine].reshape(len(mine), m)
            sign[who, 0, self.neuron[mine]] = -self.sign[mine]  # s x <= 0: s = -1 active, +1 inactive
            betas[int(k)] = (beta, sign)
        empty = np.zeros(P, dtype=bool)
        domains = Domains(np.repeat(base.lo, P, 0), np.repeat(base.hi, P, 0), [])
        for k, (l, u) in enumerate(pre):
            empty |= (l > u).any(1)
            domains.add_layer(l, u, self.root.tiny[k])
        domains.rounding = domain_roundings(net, self.root, domains)
        return domains, betas, empty

    def alphas(self, ids, domains: Domains, m: int):
        out = _default_alphas(domains, m)
        if len(self.alpha_neurons) == 0:
            return out
        values = self.alpha[ids].astype(np.float64)  # (P, m, U)
        for k in np.unique(self.alpha_layer):
            mine = self.alpha_layer == k
            out[int(k)][:, :, self.alpha_neuron[mine]] = values[:, :, mine]
        return out
