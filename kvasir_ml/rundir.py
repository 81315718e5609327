"""Run folders, one policy for classifier, detector and experiment runs.

* A new run needs an absent or empty folder; an existing run is never overwritten.
* ``--resume`` continues from the run's checkpoint; a run that failed before its first
  checkpoint is started again, its files moved aside to ``attempt-<UTC>/`` (nothing deleted).
* A run may be resumed (or, in an experiment, reused) only with the config it was trained
  with, except for where and how fast it runs (``RESUME_FREE``) and an ``optim.lr`` that the
  LR finder chose.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from kvasir_ml.io import set_aside

log = logging.getLogger(__name__)

# Dotted config keys (or whole sections) that may differ between a run and its resume or reuse:
# where and how fast it runs, and how it is tracked, never what is trained.
RESUME_FREE = ("tracking", "runtime.device", "runtime.workers", "runtime.progress", "runtime.threads",
               "runtime.compile", "train.device", "train.workers")


class RunDirError(ValueError):
    """The run folder exists (and we are not resuming), or lacks what resuming needs."""


def check_run_dir(run_dir: Path, resume: bool, checkpoint: Path, entries: Sequence[str],
                  finished: bool = False, keep: Sequence[str] = ()) -> bool:
    """Check a run folder before a run starts; returns whether to continue from ``checkpoint``.

    Args:
        run_dir: the run folder (``--out``).
        resume: ``--resume`` was given.
        checkpoint: the file a resume continues from (its presence makes the run resumable).
        entries: names a run of this kind writes before its first checkpoint (what is set aside
            when a run that failed early is started again).
        finished: the run has already finished (a resume then rebuilds its report).
        keep: entries a restart reuses instead of setting aside (content-addressed caches).

    Raises:
        RunDirError: ``run_dir`` is a file; it is not empty and we are not resuming; there is
            nothing to resume; or it holds files a run never writes (not a run folder).
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{run_dir} is an existing file, not a run folder; choose another --out")
    if resume and (checkpoint.is_file() or finished):
        return True
    names = {p.name for p in run_dir.iterdir()} if run_dir.is_dir() else set()
    if not names:
        if resume:
            raise RunDirError(f"cannot resume: {checkpoint} does not exist")
        return False
    failed_early = not checkpoint.is_file() and not finished and all(
        n in entries or n.startswith("attempt-") for n in names)
    if not resume:
        hint = ("it holds a run that failed before its first checkpoint: pass --resume to start it again "
                "(the failed attempt's files are kept in an attempt-<time>/ sub-folder)" if failed_early
                else "choose another --out or pass --resume")
        raise RunDirError(f"run folder {run_dir} exists and is not empty; {hint}")
    if not failed_early:
        raise RunDirError(f"cannot resume: {checkpoint} does not exist and {run_dir} holds files a run does not "
                          f"write ({', '.join(sorted(n for n in names if n not in entries)[:5])}); "
                          "is this a run folder?")
    moved = set_aside(run_dir, tuple(e for e in entries if e not in keep))
    log.warning("%s: no checkpoint yet (the run failed before its first epoch ended); starting it again, "
                "the failed attempt's files are kept in %s", run_dir, moved)
    return False


def config_differences(now: dict[str, Any], saved: dict[str, Any], free: Sequence[str] = RESUME_FREE) -> list[str]:
    """Dotted keys whose values differ between two dumped configs, ``free`` keys excepted.

    ``optim.lr`` is also free when ``optim.lr_find`` is on: the saved config holds the LR the
    finder chose, not the one the YAML asked for.
    """
    free_keys = set(free)
    if (now.get("optim") or {}).get("lr_find"):
        free_keys.add("optim.lr")
    return _diff(now, saved or {}, "", free_keys)


def _diff(a: dict[str, Any], b: dict[str, Any], prefix: str, free: set[str]) -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        name = f"{prefix}{key}"
        if name in free:
            continue
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            out += _diff(x, y, f"{name}.", free)
        elif x != y and not (isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)) and list(x) == list(y)):
            out.append(name)
    return out
