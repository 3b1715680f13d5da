"""Exact TreeSHAP for a LightGBM booster, by the fastest method that is exact for it.

Two methods, fastest first:

- `leaf_patterns`: path-dependent TreeSHAP written as a sum over leaves. A leaf's share of an
  account's SHAP values depends only on which of the leaf's path features the account agrees
  with (a bit per feature), so each leaf's values are tabulated once per model for every such
  pattern and each account only evaluates the splits and adds up table rows. It evaluates
  numerical and categorical splits exactly as LightGBM does, missing values included.
- `pred_contrib`: LightGBM's own TreeSHAP (`booster.predict(..., pred_contrib=True)`), which is
  what `shap.TreeExplainer` calls for a booster; exact for every booster, and the fallback.

`method_for` says which one a booster gets; `shap_values` computes them. Both return log-odds
for a binary booster, one column per booster feature, and the expected value.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, fields
from typing import Any

import lightgbm as lgb
import numba
import numpy as np
import pandas as pd

LEAF_PATTERNS = "leaf_patterns"
PRED_CONTRIB = "pred_contrib"
METHODS = (LEAF_PATTERNS, PRED_CONTRIB)

MAX_PATH_FEATURES = 16
"""Distinct features on one leaf's path beyond which a leaf's table (2^k x k) is too large."""
MAX_TABLE_VALUES = 50_000_000
"""All tables together, in float64 values (400 MB); a model needing more gets `pred_contrib`."""
_ROWS_PER_BLOCK = 256
_MISSING = {"None": 0, "Zero": 1, "NaN": 2}
_K_ZERO = 1e-35  # LightGBM's kZeroThreshold: |x| at or below it is zero for missing_type Zero


@dataclass(frozen=True)
class _Compiled:
    """A booster's splits, tree vertices and leaf tables, as flat arrays for the kernel.

    Vertices (splits and leaves) are in depth-first order, each tree's after the one before;
    a vertex's pattern is its parent's with one bit set or cleared: bit `vertex_bit` stands for
    the parent split's feature, and is new on the path when `vertex_new`.
    """

    n_features: int
    expected_value: float
    tree_node_start: np.ndarray
    tree_vertex_start: np.ndarray
    node_feature: np.ndarray
    node_categorical: np.ndarray
    node_threshold: np.ndarray
    node_default_left: np.ndarray
    node_missing: np.ndarray
    node_cat_start: np.ndarray
    node_cat_len: np.ndarray
    cat_left: np.ndarray
    vertex_parent: np.ndarray
    vertex_split: np.ndarray
    vertex_left: np.ndarray
    vertex_bit: np.ndarray
    vertex_new: np.ndarray
    vertex_leaf: np.ndarray
    leaf_k: np.ndarray
    leaf_feature_start: np.ndarray
    leaf_feature: np.ndarray
    leaf_table_start: np.ndarray
    table: np.ndarray

    def kernel_arrays(self) -> tuple[np.ndarray, ...]:
        """The arrays `_explain` takes after the matrix and the output, in its order."""
        return tuple(getattr(self, f.name) for f in fields(self)[2:])


class _Unsupported(Exception):
    """The booster has something `leaf_patterns` does not evaluate exactly."""


_compiled: weakref.WeakKeyDictionary[lgb.Booster, _Compiled | None] = weakref.WeakKeyDictionary()
"""Per booster, its compiled form (None: not exact for `leaf_patterns`), built once: a scoring
run explains chunk after chunk with the same booster, which is never trained further."""


def method_for(booster: lgb.Booster) -> str:
    """The fastest method whose values are exact for this booster."""
    return LEAF_PATTERNS if _compile_once(booster) is not None else PRED_CONTRIB


def shap_values(
    booster: lgb.Booster, matrix: pd.DataFrame, method: str | None = None
) -> tuple[np.ndarray, float]:
    """SHAP values (rows x booster features) and the expected value, in the booster's raw output.

    `matrix` is the model matrix (`PropensityModel.matrix`): numerics as floats, categoricals as
    pandas categoricals on the training categories. `method` overrides the choice (benchmarks,
    tests); a method that is not exact for the booster is refused.
    """
    chosen = method or method_for(booster)
    if chosen not in METHODS:
        raise ValueError(f"unknown TreeSHAP method {chosen!r}; one of {', '.join(METHODS)}")
    if chosen == PRED_CONTRIB:
        out = np.asarray(booster.predict(matrix, pred_contrib=True), dtype="float64")
        if out.shape[1] != booster.num_feature() + 1:
            raise ValueError("pred_contrib: only single-output boosters are explained")
        return out[:, :-1], float(out[0, -1]) if len(out) else _expected_value(booster)
    model = _compile_once(booster)
    if model is None:
        raise ValueError(f"{LEAF_PATTERNS} is not exact for this booster; use {PRED_CONTRIB}")
    x = _numeric(booster, matrix)
    values = np.zeros((len(x), model.n_features))
    if len(x):
        _explain(x, values, *model.kernel_arrays())
    return values, model.expected_value


def _expected_value(booster: lgb.Booster) -> float:
    return sum(_tree_expected(t["tree_structure"]) for t in booster.dump_model()["tree_info"])


def _tree_expected(node: dict[str, Any]) -> float:
    if "leaf_value" in node:
        return float(node["leaf_value"])
    total = float(node["internal_count"])
    return sum(
        float(_count(node[side])) / total * _tree_expected(node[side])
        for side in ("left_child", "right_child")
    )


def _count(node: dict[str, Any]) -> float:
    return float(node["leaf_count"] if "leaf_value" in node else node["internal_count"])


def _numeric(booster: lgb.Booster, matrix: pd.DataFrame) -> np.ndarray:
    """The float matrix LightGBM predicts from: categoricals as their codes, missing as NaN.

    Columns are taken in the matrix's order, the booster's (as `booster.predict` takes them)."""
    if matrix.shape[1] != booster.num_feature():
        raise ValueError(f"{matrix.shape[1]} columns for a booster of {booster.num_feature()}")
    trained = iter(booster.pandas_categorical or [])
    columns = []
    for _, col in matrix.items():
        if isinstance(col.dtype, pd.CategoricalDtype):
            categories = next(trained, None)
            if categories is not None:  # codes as LightGBM maps them, on its training categories
                col = col.cat.set_categories(categories)
            codes = col.cat.codes.to_numpy().astype("float64")
            codes[codes < 0] = np.nan
            columns.append(codes)
        else:
            columns.append(col.to_numpy(dtype="float64", na_value=np.nan))
    if not columns:
        return np.empty((len(matrix), 0))
    return np.ascontiguousarray(np.column_stack(columns))


def _compile_once(booster: lgb.Booster) -> _Compiled | None:
    if booster not in _compiled:
        try:
            _compiled[booster] = _compile(booster)
        except _Unsupported:
            _compiled[booster] = None
    return _compiled[booster]


def _compile(booster: lgb.Booster) -> _Compiled:
    dump = booster.dump_model()
    if int(dump.get("num_tree_per_iteration", 1)) != 1:
        raise _Unsupported("multi-output booster")
    if dump.get("average_output"):
        raise _Unsupported("averaged trees (random forest mode)")
    trees = _Trees()
    tree_node_start, tree_vertex_start = [0], [0]
    for tree in dump["tree_info"]:
        trees.walk(tree["tree_structure"], [], -1, False)
        tree_node_start.append(len(trees.nodes))
        tree_vertex_start.append(len(trees.vertices))

    leaf_k, leaf_feature_start, leaf_feature = [], [0], []
    leaf_table_start, tables = [0], []
    expected = 0.0
    for value, features, fractions in trees.leaves:
        k = len(features)
        if k > MAX_PATH_FEATURES:
            raise _Unsupported("a leaf with too many path features")
        z = np.asarray(fractions, dtype="float64")
        expected += value * float(np.prod(z))
        leaf_feature.extend(features)
        leaf_k.append(k)
        leaf_feature_start.append(len(leaf_feature))
        tables.append(_leaf_table(value, z))
        leaf_table_start.append(leaf_table_start[-1] + tables[-1].size)
        if leaf_table_start[-1] > MAX_TABLE_VALUES:
            raise _Unsupported("leaf tables too large")

    def column(rows: list[dict[str, Any]], key: str, dtype: str = "int64") -> np.ndarray:
        return np.asarray([r[key] for r in rows], dtype=dtype)

    nodes, vertices = trees.nodes, trees.vertices
    return _Compiled(
        n_features=booster.num_feature(),
        expected_value=expected,
        tree_node_start=np.asarray(tree_node_start, dtype="int64"),
        tree_vertex_start=np.asarray(tree_vertex_start, dtype="int64"),
        node_feature=column(nodes, "feature"),
        node_categorical=column(nodes, "categorical", "bool"),
        node_threshold=column(nodes, "threshold", "float64"),
        node_default_left=column(nodes, "default_left", "bool"),
        node_missing=column(nodes, "missing"),
        node_cat_start=column(nodes, "cat_start"),
        node_cat_len=column(nodes, "cat_len"),
        cat_left=np.asarray(trees.cat_left, dtype="bool"),
        vertex_parent=column(vertices, "parent"),
        vertex_split=column(vertices, "split"),
        vertex_left=column(vertices, "left", "bool"),
        vertex_bit=column(vertices, "bit"),
        vertex_new=column(vertices, "new", "bool"),
        vertex_leaf=column(vertices, "leaf"),
        leaf_k=np.asarray(leaf_k, dtype="int64"),
        leaf_feature_start=np.asarray(leaf_feature_start, dtype="int64"),
        leaf_feature=np.asarray(leaf_feature, dtype="int64"),
        leaf_table_start=np.asarray(leaf_table_start, dtype="int64"),
        table=np.concatenate(tables) if tables else np.zeros(0),
    )


class _Trees:
    """Flattens trees from LightGBM's model dump: splits, vertices and leaves with their paths."""

    def __init__(self) -> None:
        self.nodes: list[dict[str, Any]] = []
        self.cat_left: list[bool] = []
        self.vertices: list[dict[str, Any]] = []
        self.leaves: list[tuple[float, list[int], list[float]]] = []
        """Per leaf: its value, its path's features in order of first split, and per feature
        the share of training rows that follow the path's splits on it (cover fractions)."""

    def walk(
        self, node: dict[str, Any], path: list[tuple[int, float]], split: int, left: bool
    ) -> None:
        """Add `node` (reached from split `split` on side `left`, along `path`: (feature,
        cover fraction) per split above it) and its subtree."""
        features = list(dict.fromkeys(f for f, _ in path[:-1]))
        vertex: dict[str, Any] = {"parent": -1, "split": split, "left": left, "bit": 0,
                                  "new": False, "leaf": -1}  # fmt: skip
        if path:
            vertex["parent"] = self.nodes[split]["vertex"]
            feature = path[-1][0]
            vertex["new"] = feature not in features
            vertex["bit"] = len(features) if vertex["new"] else features.index(feature)
        self.vertices.append(vertex)
        if "leaf_value" in node:
            if "leaf_coeff" in node:
                raise _Unsupported("linear trees")
            fractions = dict.fromkeys((f for f, _ in path), 1.0)
            for f, fraction in path:
                fractions[f] *= fraction
            vertex["leaf"] = len(self.leaves)
            value = float(node["leaf_value"])
            self.leaves.append((value, list(fractions), list(fractions.values())))
            return
        kind = node["decision_type"]
        if kind not in ("<=", "=="):
            raise _Unsupported(f"decision type {kind}")
        entry: dict[str, Any] = {
            "feature": int(node["split_feature"]),
            "categorical": kind == "==",
            "threshold": 0.0 if kind == "==" else float(node["threshold"]),
            "default_left": bool(node["default_left"]),
            "missing": _MISSING[node["missing_type"]],
            "cat_start": len(self.cat_left),
            "cat_len": 0,
            "vertex": len(self.vertices) - 1,
        }
        if kind == "==":  # the threshold lists the categories that go left
            goes_left = {int(c) for c in str(node["threshold"]).split("||")}
            entry["cat_len"] = max(goes_left) + 1
            self.cat_left.extend(c in goes_left for c in range(entry["cat_len"]))
        index = len(self.nodes)
        self.nodes.append(entry)
        total = float(node["internal_count"])
        for side, is_left in (("left_child", True), ("right_child", False)):
            child = node[side]
            step = (entry["feature"], _count(child) / total)
            self.walk(child, [*path, step], index, is_left)


def _leaf_table(value: float, z: np.ndarray) -> np.ndarray:
    """Per pattern of agreement with the leaf's k path features (bit b: agrees with feature b),
    each feature's share of the leaf's value: 2^k rows of k values, flattened."""
    table = np.empty((1 << len(z)) * len(z))
    _fill_table(value, z, table)
    return table


@numba.njit(cache=True)
def _fill_table(value: float, z: np.ndarray, table: np.ndarray) -> None:  # pragma: no cover
    # Shapley value of feature b in the leaf's game v * prod_j (o_j if j in S else z_j):
    # v (o_b - z_b) * sum_s s! (k-1-s)! / k! * [t^s] prod_{j != b} (z_j + o_j t).
    k = len(z)
    weight = np.empty(k)
    for s in range(k):
        w = 1.0 / k
        for i in range(1, s + 1):
            w *= i / (k - i)
        weight[s] = w
    poly = np.empty(k)
    for pattern in range(1 << k):
        for b in range(k):
            poly[:] = 0.0
            poly[0] = 1.0
            degree = 0
            for j in range(k):
                if j == b:
                    continue
                if (pattern >> j) & 1:
                    for d in range(degree + 1, 0, -1):
                        poly[d] = poly[d] * z[j] + poly[d - 1]
                    poly[0] *= z[j]
                    degree += 1
                else:
                    for d in range(degree + 1):
                        poly[d] *= z[j]
            total = 0.0
            for s in range(degree + 1):
                total += weight[s] * poly[s]
            one = 1.0 if (pattern >> b) & 1 else 0.0
            table[pattern * k + b] = value * (one - z[b]) * total


@numba.njit(parallel=True, cache=True)
def _explain(  # pragma: no cover - compiled
    x: np.ndarray,
    out: np.ndarray,
    tree_node_start: np.ndarray,
    tree_vertex_start: np.ndarray,
    node_feature: np.ndarray,
    node_categorical: np.ndarray,
    node_threshold: np.ndarray,
    node_default_left: np.ndarray,
    node_missing: np.ndarray,
    node_cat_start: np.ndarray,
    node_cat_len: np.ndarray,
    cat_left: np.ndarray,
    vertex_parent: np.ndarray,
    vertex_split: np.ndarray,
    vertex_left: np.ndarray,
    vertex_bit: np.ndarray,
    vertex_new: np.ndarray,
    vertex_leaf: np.ndarray,
    leaf_k: np.ndarray,
    leaf_feature_start: np.ndarray,
    leaf_feature: np.ndarray,
    leaf_table_start: np.ndarray,
    table: np.ndarray,
) -> None:
    # Rows in blocks and, within a block, one tree at a time: the tree's splits and tables stay
    # in cache while the block's rows use them; per-block arrays keep rows contiguous.
    n = x.shape[0]
    n_trees = tree_node_start.shape[0] - 1
    nodes_most, vertices_most = 1, 1
    for t in range(n_trees):
        nodes_most = max(nodes_most, tree_node_start[t + 1] - tree_node_start[t])
        vertices_most = max(vertices_most, tree_vertex_start[t + 1] - tree_vertex_start[t])
    blocks = (n + _ROWS_PER_BLOCK - 1) // _ROWS_PER_BLOCK
    for block in numba.prange(blocks):
        lo = block * _ROWS_PER_BLOCK
        rows = min(n, lo + _ROWS_PER_BLOCK) - lo
        xt = np.ascontiguousarray(x[lo : lo + rows].T)
        acc = np.zeros((out.shape[1], rows))
        goes_left = np.empty((nodes_most, rows), dtype=np.bool_)
        pattern = np.zeros((vertices_most, rows), dtype=np.int64)
        for t in range(n_trees):
            first_node = tree_node_start[t]
            for i in range(first_node, tree_node_start[t + 1]):
                values = xt[node_feature[i]]
                side = goes_left[i - first_node]
                if node_categorical[i]:
                    # LightGBM: NaN and negative codes go right; a code in the set goes left
                    for r in range(rows):
                        v = values[r]
                        if np.isnan(v) or v < 0:
                            side[r] = False
                        else:
                            c = int(v)
                            side[r] = c < node_cat_len[i] and cat_left[node_cat_start[i] + c]
                else:
                    missing = node_missing[i]
                    for r in range(rows):
                        v = values[r]
                        if np.isnan(v) and missing != 2:
                            v = 0.0
                        if (missing == 1 and abs(v) <= _K_ZERO) or (missing == 2 and np.isnan(v)):
                            side[r] = node_default_left[i]
                        else:
                            side[r] = v <= node_threshold[i]
            first_vertex = tree_vertex_start[t]
            for u in range(first_vertex, tree_vertex_start[t + 1]):
                here = pattern[u - first_vertex]
                parent = vertex_parent[u]
                if parent >= 0:
                    above = pattern[parent - first_vertex]
                    side = goes_left[vertex_split[u] - first_node]
                    bit = np.int64(1) << vertex_bit[u]
                    want = vertex_left[u]
                    if vertex_new[u]:
                        for r in range(rows):
                            here[r] = above[r] | bit if side[r] == want else above[r]
                    else:
                        for r in range(rows):
                            here[r] = above[r] if side[r] == want else above[r] & ~bit
                else:
                    here[:] = 0
                leaf = vertex_leaf[u]
                if leaf < 0:
                    continue
                k = leaf_k[leaf]
                first = leaf_feature_start[leaf]
                start = leaf_table_start[leaf]
                for b in range(k):
                    into = acc[leaf_feature[first + b]]
                    for r in range(rows):
                        into[r] += table[start + here[r] * k + b]
        out[lo : lo + rows] += acc.T
