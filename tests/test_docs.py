"""The docs stay true: the reference pages are what the code makes now, and every relative link
in the README and under docs/ reaches a file."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from pydantic import BaseModel, Field, SecretStr

from expansion_scorer import docs

ROOT = Path(__file__).resolve().parents[1]
MARKDOWN = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("name", sorted(docs.pages()))
def test_committed_reference_page_is_what_the_code_makes(name: str) -> None:
    # Given the page the code makes now, when it is compared with the committed one, then they
    # are the same, or the developer is told the one command that rewrites them.
    committed = ROOT / "docs" / "reference" / name
    expected = docs.pages()[name]
    assert committed.is_file(), f"docs/reference/{name} is missing: run `{docs.REFRESH}`"
    assert committed.read_text(encoding="utf-8") == expected, (
        f"docs/reference/{name} is stale (the code changed since it was written): run"
        f" `{docs.REFRESH}` from the repository root and commit docs/reference/"
    )


def test_pages_do_not_depend_on_the_terminal_or_our_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a narrow terminal and a source mapping set in the environment, then a wide one and
    # none, the pages are the same: a developer's shell never changes a committed page.
    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setenv("EXPANSION_SOURCES", "/somewhere/sources.yaml")
    narrow = docs.pages()
    monkeypatch.setenv("COLUMNS", "300")
    monkeypatch.delenv("EXPANSION_SOURCES")
    assert docs.pages() == narrow
    assert "/somewhere" not in narrow["cli.md"]


class _Inner(BaseModel):
    """A block of its own."""

    depth: int = Field(default=3, ge=1)
    """How deep it goes."""


class _Email(BaseModel):
    to: str
    password: SecretStr = SecretStr("hunter2")


class _Webhook(BaseModel):
    url: str
    folder: Path = Path("out")


class _Outer(BaseModel):
    name: str
    """What it is called."""
    inner: _Inner = _Inner(depth=5)
    many: list[_Inner] = Field(default_factory=list)
    targets: list[_Email | _Webhook] = Field(default_factory=list, description="Where to send.")


def test_config_page_walks_whatever_fields_a_model_has() -> None:
    # Given a model the generator has never seen, with a nested block whose default differs
    # from the block's own, the page lists every key by its dotted path with the parent's
    # default, its limits and its docstring.
    toy = _Outer(name="toy")
    assert toy.inner.depth == 5 and toy.targets == []
    page = docs.config_page([("Toy", "`toy.yaml`", _Outer)])
    assert "| `name` | text | required |  | What it is called. |" in page
    assert "| `inner.depth` | whole number | `5` | >= 1 | How deep it goes. |" in page
    assert "| `many[].depth` | whole number | `3` | >= 1 | How deep it goes. |" in page
    assert "A block of its own." in page
    # a list of either of two blocks documents both, and odd defaults render (a secret masked)
    assert "### `targets[]` (_Email)" in page and "### `targets[]` (_Webhook)" in page
    assert "| `targets[].folder` | Path | `out` |" in page
    assert "hunter2" not in page and "| `targets[].password` | SecretStr | `'**********'` |" in page


def test_cli_page_lists_every_subcommand_and_option() -> None:
    # Given a parser with a subcommand the generator has never seen, its synopsis, options,
    # defaults and help are on the page.
    parser = argparse.ArgumentParser(prog="toy", description="A toy.")
    sub = parser.add_subparsers(dest="command", required=True)
    deliver = sub.add_parser("deliver", help="send each list where it is read")
    deliver.add_argument("--out", type=Path, required=True, help="the output root")
    deliver.add_argument("--dry-run", action="store_true", help="say what would be sent")
    deliver.add_argument("--retries", type=int, default=3)
    deliver.add_argument("--secret-knob", help=argparse.SUPPRESS)
    channels = deliver.add_subparsers(dest="channel")
    channels.add_parser("email", help="by SMTP").add_argument("--host", default="127.0.0.1")
    page = docs.cli_page(parser)
    assert "toy deliver --out OUT [--dry-run] [--retries RETRIES] COMMAND ...\n" in page
    assert "| `--out OUT` (required) | path |  | the output root |" in page
    assert "| `--retries RETRIES` | whole number | `3` |  |" in page
    assert "send each list where it is read" in page
    assert "--secret-knob" not in page
    assert "### toy deliver email" in page and "| `--host HOST` | text | `127.0.0.1` |  |" in page


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _links(path: Path) -> list[str]:
    """The link targets of a Markdown file, outside fenced code blocks."""
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)
    return LINK.findall(text)


def _anchors(path: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces to
    hyphens, a repeated heading numbered from -1."""
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#+ (.*)$", text, flags=re.M):
        anchor = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        seen[anchor] = seen.get(anchor, -1) + 1
        if seen[anchor]:
            seen[f"{anchor}-{seen[anchor]}"] = 0
    return set(seen)


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_reaches_a_file(page: Path) -> None:
    # Given each page of the README and docs/, every link that is not a web address names a
    # file or folder that exists, relative to the page, and a heading there when it names one.
    broken = []
    for target in _links(page):
        if re.match(r"^[a-z]+:", target):
            continue
        name, _, anchor = target.partition("#")
        path = page.parent / name if name else page
        if not path.exists() or (anchor and path.is_file() and anchor not in _anchors(path)):
            broken.append(target)
    assert not broken, (
        f"{page.relative_to(ROOT)} links to missing files or headings: {', '.join(broken)}"
    )


def test_the_link_check_reads_links_and_headings(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# A `page`: one\n\n## Twice\n\n## Twice\n\n[ok](page.md) [web](https://x.org)"
        " [gone](nowhere.md#top)\n\n```\n[in code](skip.md)\n```\n"
    )
    assert _links(page) == ["page.md", "https://x.org", "nowhere.md#top"]
    assert _anchors(page) == {"a-page-one", "twice", "twice-1"}
