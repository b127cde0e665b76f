"""The certificate file: one numpy .npz whose member `header` is UTF-8 JSON; the JSON names the
arrays (other members) it refers to. Version 1:

header = {
  "format": FORMAT, "version": 1,
  "model_sha256": hex, "spec_sha256": hex,
  "relu_sizes": [elements of each ReLU layer, in order],
  "regions": [{
    "lo", "hi": arrays (n_in,): the region's input box,
    "C": array (m, n_out), "owner": array (m,): the region's rows C y <= d and their disjuncts,
    "versions": [  # intermediate bounds of ReLU splitting's root, built one on another
      {"base": null or an earlier version, "refined_layer": null or k,
       "slopes": [{"layer": k, "elements": (r,), "neurons": (U,) global ReLU indices,
                   "values": (r, 2, U) float32}],   # alpha-CROWN slopes, rows +e_j then -e_j
       "lemmas": null or a leaf block (below) of every domain the lemma trees bounded, with
                 "tree" (N,) and per tree "tree_neuron", "tree_side" (+1: a lower bound of
                 x_j, -1: an upper bound); a domain's parent is the one of its tree with one
                 split less, its bound the better of its own and its parent's, and the domains
                 without children must cover the region}],
    "parts": [
      {"kind": "boxes", "disjuncts": [...], "intermediate": "crown" or "forward",
       "nodes": {"parent", "side", "dim": (K,)},   # the tree of splits: node 0 the region,
                 # each split node halved at its midpoint along dim, side 0 the lower half;
                 # dim -1 for the closed nodes
       "batches": (R,) the first node of each batch the verifier bounded together,
       "lo", "hi": (N, n_in) leaf boxes, "leaf_node": (N,) their nodes,
       "alpha": null or {"pairs": (Q, 2) [leaf, row], "offsets": (Q + 1,), "neurons": (T,),
                         "values": (T,)},   # output-row slopes of the leaves alpha-CROWN closed
       "ties": null or {"nodes": (K',) tree nodes, "offsets": (K' + 1,), "neurons": (T,),
                        "slopes": (T,)}},   # CROWN's slope choice at u = -l
      {"kind": "splits", "disjuncts": [...], "rows": [...], "version": v, "leaves": block}]
  }]
}

A leaf block (ReLU split domains over the region's box): "offsets" (N + 1,) into "layer",
"neuron", "sign" (S,) (+1 active x >= 0, -1 inactive x <= 0) and "beta" (S, m) split
multipliers, one column per row; "neurons" (U,) global ReLU indices and "alpha" (N, m, U) their
lower slopes (adaptive elsewhere); "z3" (N,) bool for leaves closed by z3 (trusted-z3), with
"z3_sha256" (a list in the JSON) the hash of each such leaf's encoding.

A global ReLU index is the layer's offset (sum of earlier layers' sizes) plus the flat neuron.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np

FORMAT = "verifier-unsat-certificate"
VERSION = 1


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write(path: str, header: dict, arrays: dict) -> None:
    """The header and the arrays as one compressed .npz (written to `path` exactly)."""
    members = {"header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
    members.update(arrays)
    with open(path, "wb") as f:
        np.savez_compressed(f, **members)


def read(path: str) -> tuple[dict, dict]:
    """(header, arrays); ValueError when the file is not a certificate."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"not a certificate file ({e})") from None
    if "header" not in arrays:
        raise ValueError("not a certificate file (no header)")
    try:
        header = json.loads(arrays.pop("header").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"the certificate's header is not JSON ({e})") from None
    if header.get("format") != FORMAT:
        raise ValueError("not a certificate file (unknown format)")
    if header.get("version") != VERSION:
        raise ValueError(f"certificate version {header.get('version')} (this checker reads {VERSION})")
    return header, arrays
