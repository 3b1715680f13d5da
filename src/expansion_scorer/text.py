"""Sentences from templates: Jinja over an account's features, with number filters.

Templates come from the YAML files a data scientist edits, so they run sandboxed. A template
that touches a missing value (a number filter on NaN, or a bare `{{ x }}` of a missing category)
raises `MissingValue`; `render` then falls back to plain text, `fill` lets it propagate.
Templates are parsed once and checked against the columns they will get (`check_template`),
so a typo or a value the scored row does not hold stops at load, not at render.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from datetime import date
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import StrictUndefined, TemplateError, meta
from jinja2 import nodes as jnodes
from jinja2.sandbox import SandboxedEnvironment


class MissingValue(ValueError):
    """A template needed a value the account does not have."""


def _number(value: Any) -> float:
    if value is None or isinstance(value, str):
        raise MissingValue(repr(value))
    number = float(value)
    if math.isnan(number):
        raise MissingValue("nan")
    return number


def num(value: Any, digits: int = 0) -> str:
    return f"{_number(value):,.{digits}f}"


def pct(value: Any) -> str:
    return f"{_number(value):.0%}"


def change(value: Any) -> str:
    number = _number(value)
    if number > 1:
        return f"x{number + 1:.1f}"
    return f"{number:+.0%}"


def money(value: Any) -> str:
    return f"{_number(value):,.0f}"


def times(value: Any) -> str:
    number = _number(value)
    words = {2: "doubled", 3: "tripled", 4: "quadrupled"}
    return (
        words.get(round(number), f"x{number:.1f}")
        if abs(number - round(number)) < 0.25
        else f"x{number:.1f}"
    )


def plural(value: Any, singular: str, many: str | None = None) -> str:
    """'1 seat', '12 seats'; with `many`, '1 person', '2 people'."""
    number = _number(value)
    word = singular if abs(number) == 1 else (many if many is not None else singular + "s")
    return f"{num(number)} {word}"


def is_missing(value: Any) -> bool:
    """None, NaN, NaT or pandas' NA: no value to speak of."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or an array is a value
        return False


def _finalize(value: Any) -> Any:
    if is_missing(value):
        raise MissingValue("missing")
    return value


def humanize(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise MissingValue("none")
    text = str(value).replace("_", " ")
    plural = {"export report": "reports exported", "schedule task": "tasks scheduled",
              "api call": "API calls"}  # fmt: skip
    return plural.get(text, text)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value))


@lru_cache(maxsize=1)
def environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, finalize=_finalize)
    env.filters.update(
        num=num, pct=pct, change=change, money=money, times=times, humanize=humanize, plural=plural
    )
    env.tests["number"] = _is_number
    return env


@lru_cache(maxsize=512)
def compile_template(source: str) -> Any:
    return environment().from_string(source)


@lru_cache(maxsize=512)
def names_in(source: str) -> frozenset[str]:
    """The variables a template reads; a syntax error raises `TemplateError`. Cached: the
    definitions are checked every time a feature set is built, and they rarely change."""
    return frozenset(meta.find_undeclared_variables(environment().parse(source)))


def check_template(source: str, columns: set[str], where: str) -> str | None:
    """Why the template cannot be rendered from rows holding `columns`, or None when it can.

    The template is compiled here, so an unknown filter or test stops at load; at render it
    would only have fallen back to the plain description."""
    try:
        unknown = sorted(names_in(source) - columns)
        compile_template(source)
    except TemplateError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return (
            f"{where}: template does not parse ({first}); fix its Jinja syntax (our filters:"
            f" {', '.join(sorted(_FILTERS))})"
        )
    if unknown:
        return (
            f"{where}: template reads {', '.join(unknown)}, which the scored row does not hold;"
            " use feature names (a window is a column only through a feature)"
        )
    return None


def fill(source: str, values: dict[str, Any]) -> str:
    """The template filled from `values`, on one line; raises `MissingValue` when a value it
    needs is missing."""
    try:
        text = compile_template(source).render(values)
    except (TemplateError, TypeError, ValueError) as exc:
        if isinstance(exc, MissingValue):
            raise
        raise MissingValue(str(exc)) from exc
    return " ".join(text.split())


def render(source: str | None, fallback: str, values: dict[str, Any]) -> str:
    """The template filled from `values`, or `fallback` when a value it needs is missing."""
    if not source:
        return fallback
    try:
        return fill(source, values)
    except MissingValue:
        return fallback


# Bulk rendering: one template over many accounts. A template made of text, output expressions
# (names, constants, the filters above, arithmetic, comparisons, `and`/`or`/`not`, `is number`,
# `is string`, `a if b else c`) and `if`/`elif`/`else` is compiled once into a plan evaluated a
# column at a time: each step runs over the accounts that reach it, with the same Python
# operations on the same values as Jinja's compiled code, so the strings and the fallbacks are
# the same. Any other template is rendered by Jinja once per distinct tuple of the values it reads.

_ERROR = object()  # this account's render failed: it gets the fallback
_FAILS = (TemplateError, TypeError, ValueError)  # what `fill` turns into `MissingValue`
_FILTERS = frozenset({"num", "pct", "change", "money", "times", "humanize", "plural"})
_TESTS = frozenset({"number", "string"})
_BINOPS = {
    "Add": operator.add, "Sub": operator.sub, "Mul": operator.mul, "Div": operator.truediv,
    "FloorDiv": operator.floordiv, "Mod": operator.mod,
}  # fmt: skip
_COMPARE = {
    "eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "lteq": operator.le,
    "gt": operator.gt, "gteq": operator.ge,
}  # fmt: skip


def _native(value: Any) -> Any:
    """A NumPy scalar in an object column as the Python value a row's dict holds (pandas'
    `maybe_box_native`, which `to_dict` applies to object columns)."""
    if isinstance(value, np.number | np.bool_):
        return value.item()
    if isinstance(value, np.datetime64):
        return pd.Timestamp(value)
    if isinstance(value, np.timedelta64):
        return pd.Timedelta(value)
    return value


class Columns:
    """A frame's columns as the Python values `frame.to_dict(orient="records")` gives a row,
    boxed once per column when a template first reads it."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self._values: dict[str, list[Any]] = {}

    def __len__(self) -> int:
        return len(self.frame)

    def __contains__(self, name: object) -> bool:
        return name in self.frame.columns

    def __getitem__(self, name: str) -> list[Any]:
        if name not in self._values:
            column = self.frame[name]
            values = list(column)
            self._values[name] = (
                [_native(v) for v in values] if pd.api.types.is_object_dtype(column) else values
            )
        return self._values[name]

    def missing(self, name: str) -> np.ndarray:
        """Per account, whether it has no value for `name` (`is_missing`)."""
        if name not in self.frame.columns:
            return np.ones(len(self.frame), dtype=bool)
        return self.frame[name].isna().to_numpy(dtype=bool)


def _safe(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except _FAILS:
        return _ERROR


def _truth(value: Any) -> Any:
    return _safe(bool, value)


class _Unsupported(Exception):
    """The template uses something the bulk plan does not evaluate: Jinja renders it."""


class _Plan:
    """A parsed template evaluated over lists of accounts (positions into `Columns`)."""

    def __init__(self, source: str) -> None:
        self.body = environment().parse(source).body
        self.names = names_in(source)
        self._check(self.body)

    def _check(self, nodes_: list[Any]) -> None:
        for node in nodes_:
            if isinstance(node, jnodes.Output):
                for child in node.nodes:
                    if not isinstance(child, jnodes.TemplateData):
                        self._check_expr(child)
            elif isinstance(node, jnodes.If):
                self._check_expr(node.test)
                self._check(node.body)
                for elif_ in node.elif_:
                    self._check([elif_])
                self._check(node.else_)
            else:
                raise _Unsupported(type(node).__name__)

    def _check_expr(self, node: Any) -> None:
        kind = type(node).__name__
        if isinstance(node, jnodes.Name | jnodes.Const):
            return
        if isinstance(node, jnodes.Filter | jnodes.Test):
            allowed = _FILTERS if isinstance(node, jnodes.Filter) else _TESTS
            if node.name not in allowed or node.kwargs or node.dyn_args or node.dyn_kwargs:
                raise _Unsupported(node.name)
            if node.node is None or not all(isinstance(a, jnodes.Const) for a in node.args):
                raise _Unsupported(node.name)
            self._check_expr(node.node)
        elif kind in _BINOPS or isinstance(node, jnodes.And | jnodes.Or):
            self._check_expr(node.left)
            self._check_expr(node.right)
        elif isinstance(node, jnodes.Not | jnodes.Neg):
            self._check_expr(node.node)
        elif isinstance(node, jnodes.Compare):
            if len(node.ops) != 1 or node.ops[0].op not in _COMPARE:
                raise _Unsupported("compare")
            self._check_expr(node.expr)
            self._check_expr(node.ops[0].expr)
        elif isinstance(node, jnodes.CondExpr):
            if node.expr2 is None:
                raise _Unsupported("conditional without else")
            for part in (node.test, node.expr1, node.expr2):
                self._check_expr(part)
        else:
            raise _Unsupported(kind)

    def run(self, columns: Columns, rows: list[int]) -> tuple[list[str], list[bool]]:
        """Each account's text (not yet on one line) and whether its render failed."""
        text = [""] * len(rows)
        failed = [False] * len(rows)
        self._run(self.body, columns, rows, list(range(len(rows))), text, failed)
        return text, failed

    def _run(
        self,
        body: list[Any],
        columns: Columns,
        rows: list[int],
        at: list[int],
        text: list[str],
        failed: list[bool],
    ) -> None:
        for node in body:
            at = [k for k in at if not failed[k]]  # Jinja stops an account at its first error
            if not at:
                return
            if isinstance(node, jnodes.Output):
                for child in node.nodes:
                    if isinstance(child, jnodes.TemplateData):
                        for k in at:
                            text[k] += child.data
                        continue
                    for k, value in zip(at, self._eval(child, columns, rows, at), strict=True):
                        out = value if type(value) is str else _safe(_finalize, value)
                        if out is _ERROR:
                            failed[k] = True
                        else:
                            text[k] += out if type(out) is str else str(out)
                    at = [k for k in at if not failed[k]]
            else:  # If, with its elif chain and else
                rest = at
                branches = [node, *node.elif_]
                for branch in branches:
                    tested = self._eval(branch.test, columns, rows, rest)
                    truth = [_ERROR if v is _ERROR else _truth(v) for v in tested]
                    for k, t in zip(rest, truth, strict=True):
                        if t is _ERROR:
                            failed[k] = True
                    taken = [k for k, t in zip(rest, truth, strict=True) if t is True]
                    rest = [k for k, t in zip(rest, truth, strict=True) if t is False]
                    self._run(branch.body, columns, rows, taken, text, failed)
                self._run(node.else_, columns, rows, rest, text, failed)

    def _eval(self, node: Any, columns: Columns, rows: list[int], at: list[int]) -> list[Any]:
        """The expression's value for each account in `at` (`_ERROR` where it raised)."""
        if isinstance(node, jnodes.Name):
            values = columns[node.name]
            return [values[rows[k]] for k in at]
        if isinstance(node, jnodes.Const):
            return [node.value] * len(at)
        if isinstance(node, jnodes.Filter | jnodes.Test):
            args = [a.value for a in node.args if isinstance(a, jnodes.Const)]  # all are
            env = environment()
            fn = (env.filters if isinstance(node, jnodes.Filter) else env.tests)[node.name]
            return _map_cached(fn, args, self._eval(node.node, columns, rows, at))
        if isinstance(node, jnodes.Not):
            return [_ERROR if v is _ERROR else _safe(operator.not_, v) for v in
                    self._eval(node.node, columns, rows, at)]  # fmt: skip
        if isinstance(node, jnodes.Neg):
            return [_ERROR if v is _ERROR else _safe(operator.neg, v) for v in
                    self._eval(node.node, columns, rows, at)]  # fmt: skip
        if isinstance(node, jnodes.And | jnodes.Or):
            left = self._eval(node.left, columns, rows, at)
            truth = [_ERROR if v is _ERROR else _truth(v) for v in left]
            want = isinstance(node, jnodes.And)  # `a and b` is b where a holds, `a or b` where not
            out = [_ERROR if t is _ERROR else v for v, t in zip(left, truth, strict=True)]
            go = [i for i, t in enumerate(truth) if t is want]
            for i, v in zip(go, self._eval(node.right, columns, rows, [at[i] for i in go]),
                            strict=True):  # fmt: skip
                out[i] = v
            return out
        if isinstance(node, jnodes.CondExpr):
            truth = [_ERROR if v is _ERROR else _truth(v) for v in
                     self._eval(node.test, columns, rows, at)]  # fmt: skip
            out = [_ERROR] * len(at)
            for want, part in ((True, node.expr1), (False, node.expr2)):
                go = [i for i, t in enumerate(truth) if t is want]
                for i, v in zip(go, self._eval(part, columns, rows, [at[i] for i in go]),
                                strict=True):  # fmt: skip
                    out[i] = v
            return out
        if isinstance(node, jnodes.Compare):
            op, right = _COMPARE[node.ops[0].op], node.ops[0].expr
            pairs = zip(self._eval(node.expr, columns, rows, at),
                        self._eval(right, columns, rows, at), strict=True)  # fmt: skip
        else:
            op = _BINOPS[type(node).__name__]
            pairs = zip(self._eval(node.left, columns, rows, at),
                        self._eval(node.right, columns, rows, at), strict=True)  # fmt: skip
        return [_ERROR if a is _ERROR or b is _ERROR else _safe(op, a, b) for a, b in pairs]


def _key(value: Any) -> tuple[type, Any] | None:
    """A cache key that tells apart what a filter tells apart (1 from 1.0 from True, 0.0 from
    -0.0), or None for a value not to cache (NaN never equals a key; NA; unhashable)."""
    try:
        if value != value or (type(value) is float and value == 0.0):
            return None
        key = (type(value), value)
        hash(key)
    except TypeError:
        return None
    return key


def _map_cached(fn: Any, args: list[Any], values: list[Any]) -> list[Any]:
    """`fn(value, *args)` for each value, computed once per distinct value."""
    seen: dict[tuple[type, Any], Any] = {}
    out = []
    for v in values:
        if v is _ERROR:
            out.append(_ERROR)
            continue
        key = _key(v)
        if key is None:
            out.append(_safe(fn, v, *args))
            continue
        if key not in seen:
            seen[key] = _safe(fn, v, *args)
        out.append(seen[key])
    return out


@lru_cache(maxsize=512)
def _plan(source: str) -> _Plan | None:
    try:
        return _Plan(source)
    except (_Unsupported, TemplateError):
        return None


def fill_rows(source: str, columns: Columns, rows: Sequence[int] | np.ndarray) -> list[str | None]:
    """`fill` for each account at `rows` (positions), None where it would raise
    `MissingValue`."""
    positions: list[int] = np.asarray(rows, dtype=np.intp).tolist()
    plan = _plan(source)
    if plan is not None and plan.names <= set(columns.frame.columns):
        text, failed = plan.run(columns, positions)
        return [None if bad else " ".join(t.split()) for t, bad in zip(text, failed, strict=True)]
    try:
        names = sorted(names_in(source))
    except TemplateError:  # `fill` says MissingValue for a template that does not parse
        return [None] * len(positions)
    present = [n for n in names if n in columns]
    values = [columns[n] for n in present]
    seen: dict[tuple[Any, ...], str | None] = {}
    out: list[str | None] = []
    for r in positions:
        row = {n: v[r] for n, v in zip(present, values, strict=True)}
        keys = [_key(x) for x in row.values()]
        key = None if any(k is None for k in keys) else tuple(keys)
        if key is not None and key in seen:
            out.append(seen[key])
            continue
        try:
            said: str | None = fill(source, row)
        except MissingValue:
            said = None
        if key is not None:
            seen[key] = said
        out.append(said)
    return out


def render_rows(
    source: str | None, fallback: str, columns: Columns, rows: Sequence[int] | np.ndarray
) -> list[str]:
    """`render` for each account at `rows`: the filled template, or `fallback`."""
    if not source:
        return [fallback] * len(rows)
    return [fallback if t is None else t for t in fill_rows(source, columns, rows)]


def span(dates: Sequence[date], empty: str = "none") -> str:
    """The first and last of some dates as 'first..last'; `empty` when there are none."""
    return f"{min(dates)}..{max(dates)}" if len(dates) else empty
