"""`manifest.json`: what a run read, with which model and config, and where every account went.

Everything but the `run` section (wall-clock start and step timings) is a function of the
inputs, the model and the config, so a re-run of a week writes the same manifest apart from
`run`; `deterministic_sha256` is the digest of the rest, for a quick comparison.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from expansion_scorer.data.loading import World


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def input_summary(world: World) -> dict[str, dict[str, Any]]:
    """Per table: the file name (not its path), rows in the file, rows dated before the as-of
    date, and the file's content hash."""
    out: dict[str, dict[str, Any]] = {}
    for name, path in sorted(world.files.items()):
        total = world.con.execute(f"SELECT count(*) FROM raw_{name}").fetchone()
        seen = world.con.execute(f"SELECT count(*) FROM {name}").fetchone()
        out[name] = {
            "file": path.name,
            "rows": int(total[0]) if total else 0,
            "rows_before_as_of": int(seen[0]) if seen else 0,
            "sha256": file_sha256(path),
        }
    return out


def canonical(body: dict[str, Any]) -> str:
    return json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"


def render_manifest(body: dict[str, Any], run: dict[str, Any]) -> str:
    """The manifest text: the deterministic body, its digest, and the run's timings."""
    digest = hashlib.sha256(canonical(body).encode("utf-8")).hexdigest()
    return canonical({**body, "deterministic_sha256": digest, "run": run})
