"""The YAML documents people edit (configs, source mappings), parsed the one way."""

from __future__ import annotations

import yaml

from expansion_scorer.errors import UserError

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader where PyYAML was built with it (its wheels are): the same documents as
the pure-Python one, parsed about ten times faster; every command reads several."""


def parse_yaml(text: str, where: str) -> object:
    """The document in `text` (an empty one is `{}`); invalid YAML is one line naming `where`
    and the line."""
    try:
        return yaml.load(text, Loader=LOADER) or {}  # a safe loader, C or Python
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        at = f" line {line + 1}" if line is not None else ""
        raise UserError(f"{where}{at}: not valid YAML; fix its syntax") from None
