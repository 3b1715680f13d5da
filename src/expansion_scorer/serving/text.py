"""Sentences from templates: Jinja over an account's features, with number filters.

Templates come from the YAML files a data scientist edits, so they run sandboxed. A template
that touches a missing value (a number filter on NaN, or a bare `{{ x }}` of a missing category)
raises `MissingValue`; `render` then falls back to plain text, `fill` lets it propagate.
Templates are parsed once and checked against the columns they will get (`check_template`),
so a typo or a value the scored row does not hold stops at load, not at render.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import pandas as pd
from jinja2 import StrictUndefined, TemplateError, meta
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


def names_in(source: str) -> set[str]:
    """The variables a template reads; a syntax error raises `TemplateError`."""
    return set(meta.find_undeclared_variables(environment().parse(source)))


def check_template(source: str, columns: set[str], where: str) -> str | None:
    """Why the template cannot be rendered from rows holding `columns`, or None when it can."""
    try:
        unknown = sorted(names_in(source) - columns)
    except TemplateError as exc:
        return f"{where}: template does not parse ({exc}); fix its Jinja syntax"
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
