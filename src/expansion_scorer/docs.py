"""The reference pages under `docs/reference/`, written from the code so they cannot drift from it.

The CLI page comes from the argparse parser, the config page from the pydantic models' fields
(their types, limits, defaults and attribute docstrings, nested models included), the data
contract page from the table specs. `python -m expansion_scorer.docs` rewrites them, from the
repository root; `tests/test_docs.py` fails when a committed page differs from what this
module makes now. Nothing here reads the terminal's width or the environment, so the pages are
the same on every machine.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import os
import re
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from enum import Enum
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

REFRESH = "python -m expansion_scorer.docs"
"""The one command that rewrites every reference page (run from the repository root)."""
OUT = Path("docs") / "reference"
ENV_PREFIX = "EXPANSION_"
"""Options whose default reads an environment variable of ours are documented without it."""


def _header(source: str) -> str:
    return f"<!-- Generated from {source} by `{REFRESH}`; do not edit by hand. -->\n"


def _cell(text: str) -> str:
    """Text for one Markdown table cell: one line, pipes escaped, angle brackets shown (not read
    as HTML) outside code spans."""
    flat = " ".join(text.split()).replace("|", "\\|")
    parts = flat.split("`")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts)


def _code(text: str) -> str:
    return f"`{text}`" if text else ""


# ---- the CLI ----------------------------------------------------------------------------------


@contextmanager
def _without_our_environment() -> Iterator[None]:
    """Build the parser as on a fresh machine: defaults bound to EXPANSION_* variables (such as
    `--sources` from EXPANSION_SOURCES) must not leak this shell's values into the page."""
    saved = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
    for key in saved:
        del os.environ[key]
    try:
        yield
    finally:
        os.environ.update(saved)


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of every subcommand, in the order the parser defines them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return []


def _arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The arguments a user writes: not --help, not a hidden one, not the subcommand itself."""
    return [
        a
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)
        and a.help != argparse.SUPPRESS
    ]


def _metavar(action: argparse.Action) -> str:
    if action.choices is not None and action.metavar is None:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    if isinstance(action.metavar, str):
        return action.metavar
    return action.dest.upper()


def _form(action: argparse.Action) -> str:
    """How the argument is written: `--as-of AS_OF`, `--per-csm`, `DATA_DIR`, `PRESET ...`."""
    if not action.option_strings:
        name = _metavar(action)
        return f"{name} ..." if action.nargs in ("+", "*") else name
    flag = max(action.option_strings, key=len)
    return flag if action.nargs == 0 else f"{flag} {_metavar(action)}"


def _synopsis(name: str, parser: argparse.ArgumentParser) -> str:
    words = [name]
    for action in _arguments(parser):
        form = _form(action)
        optional = not action.required if action.option_strings else action.nargs in ("?", "*")
        words.append(f"[{form}]" if optional else form)
    if _subcommands(parser):
        words.append("COMMAND ...")
    return " ".join(words)


def _value(action: argparse.Action) -> str:
    """What the argument takes, from its type, choices or default."""
    if action.nargs == 0:
        return "flag"
    if action.choices is not None:
        return "one of " + ", ".join(_code(str(c)) for c in action.choices)
    if isinstance(action.default, Enum):
        return "one of " + ", ".join(_code(str(m.value)) for m in type(action.default))
    kind = action.type
    names = {str: "text", int: "whole number", float: "number", Path: "path", None: "text"}
    if kind in names:
        return names[kind]
    name = getattr(kind, "__name__", "value").strip("_")
    return {"date": "date (YYYY-MM-DD)", "positive": "whole number above 0"}.get(name, name)


def _default(action: argparse.Action) -> str:
    value = action.default
    if value is None or value is False or value is argparse.SUPPRESS or action.nargs == 0:
        return ""
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, date):
        value = value.isoformat()
    return _code(str(value))


def _argument_table(parser: argparse.ArgumentParser) -> list[str]:
    lines = ["| argument | value | default | what it does |", "|---|---|---|---|"]
    for action in _arguments(parser):
        form = _code(_form(action)) + (" (required)" if action.required else "")
        lines.append(
            f"| {form} | {_value(action)} | {_default(action)} | {_cell(action.help or '')} |"
        )
    return lines


def cli_page(parser: argparse.ArgumentParser) -> str:
    """The CLI reference: the program's options, then each subcommand's synopsis and table."""
    prog = parser.prog
    lines = [
        _header("the argparse parser, `expansion_scorer.cli.build_parser`"),
        f"# `{prog}`: the command line",
        "",
        _cell(parser.description or "").replace("\\|", "|"),
        "",
        f"Every command takes `{prog} [options] COMMAND ...`; the options before the command:",
        "",
        *_argument_table(parser),
    ]
    commands = _subcommands(parser)
    lines += ["", "| command | what it does |", "|---|---|"]
    lines += [
        f"| [`{name}`](#{_anchor(f'{prog} {name}')}) | {_cell(text)} |"
        for name, text, _ in commands
    ]
    for name, text, sub in commands:
        lines += _command_section(f"{prog} {name}", text, sub, 2)
    return "\n".join(lines) + "\n"


def _command_section(
    name: str, text: str, parser: argparse.ArgumentParser, level: int
) -> list[str]:
    """One command's help, synopsis and arguments, then its own subcommands', if it has any."""
    lines = ["", "#" * level + f" {name}", "", _cell(text).replace("\\|", "|"), ""]
    lines += ["```", _synopsis(name, parser), "```", "", *_argument_table(parser)]
    for sub_name, sub_text, sub in _subcommands(parser):
        lines += _command_section(f"{name} {sub_name}", sub_text, sub, min(level + 1, 4))
    return lines


# ---- the configs ------------------------------------------------------------------------------


def _attribute_docs(model: type[BaseModel]) -> dict[str, str]:
    """Each field's attribute docstring (the string literal under its annotation), read from the
    source of the model and of its bases, as pydantic's `use_attribute_docstrings` would."""
    docs: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or cls is BaseModel:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(cls))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0]
        assert isinstance(body, ast.ClassDef)
        for stmt, after in zip(body.body, body.body[1:], strict=False):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[stmt.target.id] = inspect.cleandoc(after.value.value)
    return docs


def _type(tp: Any) -> str:
    """A field's type as a reader of the YAML sees it."""
    origin = get_origin(tp)
    if origin is Literal:
        return " \\| ".join(_code(_yaml(v)) for v in get_args(tp))
    if origin in (Union, UnionType):
        parts = ["null" if a is NoneType else _type(a) for a in get_args(tp)]
        return " \\| ".join(dict.fromkeys(parts))
    if origin in (list, tuple, set, frozenset):
        return f"list of {_type(get_args(tp)[0])}"
    if origin is dict:
        key, value = get_args(tp)
        return f"map of {_type(key)} to {_type(value)}"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "mapping (below)"
    if isinstance(tp, type) and issubclass(tp, Enum):
        return " \\| ".join(_code(str(m.value)) for m in tp)
    names = {str: "text", int: "whole number", float: "number", bool: "true \\| false"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _limits(metadata: list[Any]) -> str:
    """Pydantic's constraints (Ge, Gt, Le, Lt, MinLen, MaxLen), as `>= 7, <= 730`."""
    signs = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "min_length": "length >=",
             "max_length": "length <=", "pattern": "matches"}  # fmt: skip
    out = []
    for item in metadata:
        for attr, sign in signs.items():
            value = getattr(item, attr, None)
            if value is not None:
                out.append(f"{sign} {_code(str(value)) if attr == 'pattern' else value}")
    return ", ".join(out)


def _yaml(value: Any) -> str:
    """A default as YAML would hold it, through pydantic's own JSON conversion (models, enums,
    dates, paths; a secret prints masked), so any field type a model gains renders."""
    plain = to_jsonable_python(value, fallback=str)
    text = yaml.safe_dump(
        plain, default_flow_style=True, sort_keys=False, width=10**6, allow_unicode=True
    )
    return text.strip().removesuffix("...").strip()


def _models_in(tp: Any) -> list[tuple[str, type[BaseModel]]]:
    """The models a field holds, each with how its entries are addressed: a model (`key`), a
    list of models (`key[]`) or a map of them (`key.<name>`); a union may hold several (one
    kind of entry each); none for a plain value."""
    origin = get_origin(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [("", tp)]
    if origin in (Union, UnionType):
        return [found for arg in get_args(tp) for found in _models_in(arg)]
    if origin in (list, tuple, set, frozenset):
        return [("[]" + suffix, m) for suffix, m in _models_in(get_args(tp)[0])]
    if origin is dict:
        return [(".<name>" + suffix, m) for suffix, m in _models_in(get_args(tp)[1])]
    return []


def _model_sections(
    model: type[BaseModel], path: str, instance: BaseModel | None, level: int, kind: str = ""
) -> list[str]:
    """A section for `model` at `path` (a table of its fields), then one per nested model. The
    defaults are read from `instance` where the parent sets one (`uplift.lightgbm` differs from
    `lightgbm`), else from each field's own default. `kind` names the model when the path holds
    one of several."""
    lines = ["", "#" * level + f" `{path}`{kind}", ""] if path else [""]
    doc = model.__dict__.get("__doc__")
    if doc:
        lines += [inspect.cleandoc(doc), ""]
    docs = _attribute_docs(model)
    lines += ["| key | type | default | limits | what it means |", "|---|---|---|---|---|"]
    nested: list[tuple[str, str, type[BaseModel], BaseModel | None]] = []
    for name, field in model.model_fields.items():
        key = f"{path}.{name}" if path else name
        if field.is_required():
            default = "required"
            value = None
        else:
            value = (
                getattr(instance, name)
                if instance is not None
                else field.get_default(call_default_factory=True)
            )
            default = _code(_yaml(value))
        found = _models_in(field.annotation)
        described = field.description or docs.get(name, "")
        for suffix, inner in found:
            sub = isinstance(value, BaseModel) and type(value) is inner and not suffix
            kind = f" ({inner.__name__})" if len(found) > 1 else ""
            nested.append((key + suffix, kind, inner, value if sub else None))
            described = (described + f" Its keys are under `{key + suffix}`{kind} below.").strip()
            if sub:
                default = "below"
        lines.append(
            f"| `{key}` | {_type(field.annotation)} | {default} | {_limits(field.metadata)} |"
            f" {_cell(described)} |"
        )
    for key, kind, inner, value in nested:
        lines += _model_sections(inner, key, value, min(level + 1, 4), kind)
    return lines


def config_page(configs: list[tuple[str, str, type[BaseModel]]]) -> str:
    """The config reference: every field of each top-level model, nested models included."""
    lines = [
        _header("the pydantic models in `expansion_scorer.config`"),
        "# Configuration reference",
        "",
        "Every key each YAML file takes, with its type, default, limits and meaning. A key that"
        " is not listed is an error when the file loads (the models forbid extra keys), and so"
        " is a value outside its limits.",
        "",
        *(f"- [{title}](#{_anchor(title)}): {where}" for title, where, _ in configs),
    ]
    for title, where, model in configs:
        lines += ["", f"## {title}", "", where]
        lines += _model_sections(model, "", None, 2)
    return "\n".join(lines) + "\n"


def _anchor(title: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^a-z0-9 _-]", "", title.lower()).replace(" ", "-")


# ---- the data contract ------------------------------------------------------------------------


def contract_page() -> str:
    """The data contract reference: each table, whether it must be there, what dates its rows,
    and every column's kind, limits and default."""
    from expansion_scorer.data import contract

    lines = [
        _header("the table specs in `expansion_scorer.data.contract`"),
        "# Data contract reference",
        "",
        inspect.cleandoc(contract.__doc__ or ""),
        "",
        "A data directory holds one file per table, `<table>.parquet` or `<table>.csv` (not"
        " both). Exactly one of "
        + " and ".join(_code(t) for t in contract.REVENUE_SOURCES)
        + " holds the money.",
        "",
        "| table | must be there | dated by | ends by |",
        "|---|---|---|---|",
    ]
    for spec in contract.TABLES.values():
        must = "yes" if spec.mandatory else "no"
        if spec.name in contract.REVENUE_SOURCES:
            must = "one of " + ", ".join(contract.REVENUE_SOURCES)
        lines.append(
            f"| [`{spec.name}`](#{spec.name}) | {must} | {_code(spec.dated_by)} |"
            f" {_code(spec.ends_by or '')} |"
        )
    for spec in contract.TABLES.values():
        lines += [
            "",
            f"## {spec.name}",
            "",
            "| column | required | kind (SQL type) | minimum | maximum | an empty cell reads as |",
            "|---|---|---|---|---|---|",
        ]
        for column in spec.columns:
            required = "yes" if column in spec.required else "no"
            kind = f"{column.kind} ({_code(contract.SQL_TYPES[column.kind])})"
            bounds = [
                "" if b is None else _code(f"{b:g}")
                for b in (column.minimum, column.maximum, column.default)
            ]
            lines.append(f"| `{column.name}` | {required} | {kind} | {' | '.join(bounds)} |")
    return "\n".join(lines) + "\n"


# ---- all pages --------------------------------------------------------------------------------


def pages() -> dict[str, str]:
    """Every reference page, by its file name under docs/reference/, as the code makes it now."""
    from expansion_scorer.cli import build_parser
    from expansion_scorer.config import FeatureSet, ServingConfig, TrainingConfig

    with _without_our_environment():
        parser = build_parser()
    configs: list[tuple[str, str, type[BaseModel]]] = [
        ("Training config", "`training/*.yaml`, read by `--config` of `train` and `promote`,"
         " and by `--training-config` of `score`.", TrainingConfig),
        ("Serving config", "`serving/*.yaml`, read by `--config` of `score`, `monitor` and"
         " `measure`.", ServingConfig),
        ("Feature definitions", "`features/*.yaml`, read by `--features`.", FeatureSet),
    ]  # fmt: skip
    return {
        "cli.md": cli_page(parser),
        "config.md": config_page(configs),
        "data-contract.md": contract_page(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m expansion_scorer.docs", description=__doc__)
    parser.add_argument("--out", type=Path, default=OUT, help="default: docs/reference")
    args = parser.parse_args(argv)
    if not args.out.parent.is_dir():
        print(
            f"error: {args.out.parent}/ is not here; run from the repository root or give --out",
            file=sys.stderr,
        )
        return 2
    args.out.mkdir(exist_ok=True)
    for name, text in pages().items():
        path = args.out / name
        changed = not path.is_file() or path.read_text(encoding="utf-8") != text
        path.write_text(text, encoding="utf-8")
        print(f"{'wrote' if changed else 'unchanged'} {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
