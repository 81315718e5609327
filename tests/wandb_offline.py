"""Read a W&B offline run back (config, summary, history, tables) for the tests.

Built on ``kvasir_ml.tracking.offline.iter_records``; lives in tests/ because only the tests
read runs back (researchers use the W&B UI or ``wandb sync``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from kvasir_ml.tracking.offline import OfflineRunError, iter_records



def find_run_files(path: str | Path) -> list[Path]:
    """``.wandb`` files under ``path`` (a ``.wandb`` file, a run folder, a ``wandb/`` folder or
    a folder above it), oldest first."""
    path = Path(path)
    if path.is_file():
        return [path]
    files = sorted(path.rglob("run-*.wandb"), key=lambda p: (p.parent.name.split("-", 2)[-1], str(p)))
    return [f for f in files if f.is_file()]

def _key(item: Any) -> list[str]:
    return list(item.nested_key) if item.nested_key else [item.key]


def _set_path(target: dict[str, Any], path: list[str], value: Any) -> None:
    for k in path[:-1]:
        target = target.setdefault(k, {})
    target[path[-1]] = value


def _del_path(target: dict[str, Any], path: list[str]) -> None:
    for k in path[:-1]:
        target = target.get(k, {})
    target.pop(path[-1], None)


def read_offline_run(path: str | Path) -> dict[str, Any]:
    """Config, summary, history and tables of one offline run.

    Args:
        path: a ``run-<id>.wandb`` file, or a folder holding exactly one run (a run folder,
            ``offline-run-*``, or the ``wandb/`` folder of a run folder).

    Returns:
        ``{"file", "run_id", "project", "entity", "name", "group", "job_type", "tags",
        "config", "summary", "history": [row, ...], "tables": {key: {"columns", "data"}},
        "artifacts": [{"name", "type", "files"}], "exit_code"}``. Summary keys are as logged
        (flat ``test/macro_ap``); tables are read from the run's ``files/media`` folder.

    Raises:
        OfflineRunError: no run or several runs under ``path``, or an unreadable log.
    """
    files = find_run_files(path)
    ids = {f.stem for f in files}
    if not files:
        raise OfflineRunError(f"{path}: no W&B offline run (run-*.wandb) found")
    if len(ids) > 1:
        raise OfflineRunError(f"{path}: {len(ids)} runs found ({sorted(ids)}); pass one run folder or file")
    out: dict[str, Any] = {"file": str(files[-1]), "config": {}, "summary": {}, "history": [],
                           "tables": {}, "artifacts": [], "exit_code": None}
    for wandb_file in files:  # a run reopened with resume="allow" has one file per segment
        for record in iter_records(wandb_file):
            _apply(out, record)
    out["config"].pop("_wandb", None)
    out["tables"] = _read_tables(files, out["summary"], out["history"])
    return out


def _apply_items(target: dict[str, Any], record: Any) -> None:
    """Apply a config/summary record's ``update`` and ``remove`` items to ``target``."""
    for item in record.update:
        _set_path(target, _key(item), json.loads(item.value_json))
    for item in record.remove:
        _del_path(target, _key(item))


def _apply(out: dict[str, Any], record: Any) -> None:
    kind = record.WhichOneof("record_type")
    if kind == "run":
        run = record.run
        out.update(run_id=run.run_id, project=run.project, entity=run.entity, name=run.display_name,
                   group=run.run_group, job_type=run.job_type, tags=list(run.tags))
        for item in run.config.update:
            _set_path(out["config"], _key(item), json.loads(item.value_json))
    elif kind == "config":
        _apply_items(out["config"], record.config)
    elif kind == "history":
        row: dict[str, Any] = {}
        for item in record.history.item:
            _set_path(row, _key(item), json.loads(item.value_json))
        out["history"].append(row)
    elif kind == "summary":
        _apply_items(out["summary"], record.summary)
    elif kind == "artifact":
        art = record.artifact
        out["artifacts"].append({"name": art.name, "type": art.type,
                                 "files": [e.path for e in art.manifest.contents]})
    elif kind == "exit":
        out["exit_code"] = record.exit.exit_code


def _read_tables(files: list[Path], summary: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    """Tables (``wandb.Table`` and chart tables) referenced from the summary or history."""
    refs: dict[str, str] = {}
    for row in [*history, summary]:
        for key, value in _flat(row):
            if isinstance(value, dict) and value.get("_type") == "table-file" and "path" in value:
                refs[key] = value["path"]
    tables: dict[str, Any] = {}
    for key, rel in refs.items():
        for wandb_file in reversed(files):
            candidate = wandb_file.parent / "files" / rel
            if candidate.is_file():
                table = json.loads(candidate.read_text(encoding="utf-8"))
                tables[key] = {"columns": table.get("columns", []), "data": table.get("data", [])}
                break
    return tables


def _flat(node: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in node.items():
        name = f"{prefix}{key}"
        yield name, value
        if isinstance(value, dict) and "_type" not in value:
            yield from _flat(value, f"{name}/")
