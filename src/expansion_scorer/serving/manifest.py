"""`manifest.json`: what a run read, with which model and config, and where every account went.

Everything but the `run` section (wall-clock start and step timings) is a function of the
inputs, the model and the config, so a re-run of a week writes the same manifest apart from
`run`; `deterministic_sha256` is the digest of the rest, for a quick comparison.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from expansion_scorer.data.loading import AnyWorld, file_sha256


def input_summary(world: AnyWorld) -> dict[str, dict[str, Any]]:
    """Per table: the file name (not its path), rows in the file, rows dated before the as-of
    date, and the file's content hash. A mapped table names its mapping entry instead, and
    hashes the files it names (a `files:` glob) or its SELECT's text (a `sql:` entry, whose
    files DuckDB opens itself)."""
    out: dict[str, dict[str, Any]] = {}
    for name, source in sorted(world.tables.items()):
        total = world.rows(f"SELECT count(*) FROM raw_{name}")[0][0]
        seen = world.rows(f"SELECT count(*) FROM {name}")[0][0]
        counts = {"rows": int(total), "rows_before_as_of": int(seen)}
        if not source.mapped:
            out[name] = {"file": source.label, **counts, "sha256": world.sha256(name)}
            continue
        digest = hashlib.sha256((source.sql or "").encode("utf-8"))
        for path in source.files:
            digest.update(f"{path.name}:{file_sha256(path)}".encode())
        out[name] = {
            "source": source.label,
            "files": [p.name for p in source.files],
            **counts,
            "sha256": digest.hexdigest(),
        }
    return out


def canonical(body: dict[str, Any]) -> str:
    return json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"


def render_manifest(body: dict[str, Any], run: dict[str, Any]) -> str:
    """The manifest text: the deterministic body, its digest, and the run's timings."""
    digest = hashlib.sha256(canonical(body).encode("utf-8")).hexdigest()
    return canonical({**body, "deterministic_sha256": digest, "run": run})
