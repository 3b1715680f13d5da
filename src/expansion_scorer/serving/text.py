"""Sentences from templates: Jinja over an account's features, with number filters.

Templates come from the YAML files a data scientist edits, so they run sandboxed. A template
that touches a missing value raises, and the caller falls back to plain text.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError
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
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    env.filters.update(num=num, pct=pct, change=change, money=money, times=times, humanize=humanize)
    env.tests["number"] = _is_number
    return env


@lru_cache(maxsize=512)
def compile_template(source: str) -> Any:
    return environment().from_string(source)


def render(source: str | None, fallback: str, values: dict[str, Any]) -> str:
    """The template filled from `values`, or `fallback` when a value it needs is missing."""
    if not source:
        return fallback
    try:
        text = compile_template(source).render(values)
    except (MissingValue, TemplateError, TypeError, ValueError):
        return fallback
    return " ".join(text.split())
