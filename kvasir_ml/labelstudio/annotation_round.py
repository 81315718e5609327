"""``kvasir-ml loop``: one turn of the annotation loop.

pull the project -> new canonical version -> fine-tune the classifier and/or detector from
their previous checkpoints on it -> push the new models' predictions under a new
``model_version`` -> make that version the project's prelabeling model.

Fine-tuning reuses the previous run's ``config.yaml`` (same architecture, image size, inset
mode) and its ``split.json`` (the frozen split: images the previous model saw in training
never land in the new test split), with ``data.canonical`` set to the new version and
``model.weights`` to the previous checkpoint; extra ``key=value`` overrides apply on top
(e.g. ``optim.epochs=2``). Classifier: the whole model (backbone, head, inset branch)
starts from the previous checkpoint when its labels are unchanged, else the backbone does and
the head is re-learned (``models.classifier.build_model``); detector: the whole ultralytics
model starts from it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from kvasir_ml.io import atomic_write_json, read_json
from kvasir_ml.labelstudio.client import LSClient
from kvasir_ml.labelstudio.from_export import ConvertReport
from kvasir_ml.labelstudio.serving import write_current_model
from kvasir_ml.labelstudio.uncertainty import PRELABEL_CONF, PRELABEL_MAX_BOXES
from kvasir_ml.labelstudio.push_models import push_with_predictions
from kvasir_ml.labelstudio.sync import PushReport, model_version_for, pull_project, set_prelabeling_model
from kvasir_ml.rundir import RunDirError

log = logging.getLogger(__name__)


@dataclass
class LoopResult:
    """What one turn did; ``stopped`` says why it ended early (nothing changed)."""

    canonical: Path | None = None
    pull_report: ConvertReport | None = None
    classifier: Path | None = None
    detector: Path | None = None
    model_version: str | None = None
    push_report: PushReport | None = None
    prelabel_before: str | None = None
    stopped: str | None = None
    runs: dict[str, str] = field(default_factory=dict)
    resumed: list[str] = field(default_factory=list)  # steps an earlier attempt of this turn had finished
    backends: dict[str, str] = field(default_factory=dict)  # connected ML backend URL -> version it serves

    def to_dict(self) -> dict[str, Any]:
        out = {"canonical": str(self.canonical) if self.canonical else None, "classifier": _s(self.classifier),
               "detector": _s(self.detector), "model_version": self.model_version, "runs": self.runs,
               "prelabel_before": self.prelabel_before, "stopped": self.stopped, "backends": self.backends,
               "push": self.push_report.summary_lines() if self.push_report else None}
        if self.pull_report is not None:  # a resumed turn keeps the pull report its first attempt wrote
            out["pull"] = self.pull_report.to_dict()
        return out


def _s(path: Path | None) -> str | None:
    return str(path) if path else None


def _run_dir_of(ckpt: Path) -> Path:
    """``RUN_DIR`` of ``RUN_DIR/checkpoints/best.pt`` (where config.yaml and split.json live)."""
    run_dir = ckpt.resolve().parent.parent
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{ckpt} is not inside a kvasir-ml run folder (no {run_dir / 'config.yaml'}); "
                                "fine-tuning reuses that run's config and split")
    return run_dir


def fine_tune_overrides(prev_ckpt: Path, canonical: Path, data_root: Path, extra: Sequence[str] = ()) -> list[str]:
    """Overrides that turn the previous run's config into its fine-tuning on ``canonical``."""
    run_dir = _run_dir_of(prev_ckpt)
    out = [f"data.canonical={canonical.resolve()}", f"data.root={data_root.resolve()}",
           f"model.weights={prev_ckpt.resolve()}"]
    if (run_dir / "split.json").is_file():
        out.append(f"data.split_file={run_dir / 'split.json'}")
    return out + list(extra)


def fine_tune_classifier(prev_ckpt: Path, canonical: Path, data_root: Path, out_dir: Path,
                         overrides: Sequence[str] = (), resume: bool = False) -> Path:
    """Train a classifier from ``prev_ckpt`` on ``canonical``; returns the new best checkpoint."""
    from kvasir_ml.train.config import load_classifier_config
    from kvasir_ml.train.run import train_classifier

    cfg = load_classifier_config(_run_dir_of(prev_ckpt) / "config.yaml",
                                 fine_tune_overrides(prev_ckpt, canonical, data_root, overrides))
    train_classifier(cfg, out_dir, resume=resume)
    return out_dir / "checkpoints" / "best.pt"


def fine_tune_detector(prev_ckpt: Path, canonical: Path, data_root: Path, out_dir: Path,
                       overrides: Sequence[str] = (), resume: bool = False) -> Path:
    """Train a detector from ``prev_ckpt`` on ``canonical``; returns the new best checkpoint."""
    from kvasir_ml.config import load_config
    from kvasir_ml.detection.config import DetectorConfig
    from kvasir_ml.detection.run import train_detector

    cfg = load_config(DetectorConfig, _run_dir_of(prev_ckpt) / "config.yaml",
                      fine_tune_overrides(prev_ckpt, canonical, data_root, overrides))
    train_detector(cfg, out_dir, resume=resume)
    return out_dir / "checkpoints" / "best.pt"


LOOP_FILE = "loop.json"
STEPS = ("pull", "classifier", "detector", "push", "prelabel", "current_model")


def _turn_args(project, base, data_root, classifier, detector, classifier_overrides, detector_overrides, policy,
               conf, max_boxes) -> dict[str, Any]:
    """What defines a turn: a resume must be given the same (``loop.json`` records it)."""
    def path(p):
        return str(Path(p).resolve()) if p else None

    return {"project": str(project), "base": path(base), "data_root": path(data_root), "classifier": path(classifier),
            "detector": path(detector), "classifier_overrides": list(classifier_overrides),
            "detector_overrides": list(detector_overrides), "policy": policy, "conf": conf, "max_boxes": max_boxes}


def _start_or_resume(out_dir: Path, args: dict[str, Any], resume: bool) -> dict[str, Any]:
    """The turn's state: new (``out_dir`` absent or empty) or read back for ``--resume``.

    Raises:
        RunDirError: a non-empty folder without ``--resume``, a folder that is no loop turn, or a
            resume with other arguments than the turn was started with.
    """
    state_path = out_dir / LOOP_FILE
    if out_dir.exists() and not out_dir.is_dir():
        raise RunDirError(f"{out_dir} is a file; each turn of the loop writes a new folder")
    names = {p.name for p in out_dir.iterdir()} if out_dir.is_dir() else set()
    if not names:
        if resume:
            raise RunDirError(f"cannot resume: {out_dir} holds no turn of the loop (start it without --resume)")
        return {"args": args, "steps_done": []}
    if not resume:
        raise RunDirError(f"{out_dir} exists and is not empty; each turn of the loop writes a new folder "
                          "(pass --resume to finish a turn that stopped part-way)")
    if LOOP_FILE not in names:
        raise RunDirError(f"cannot resume {out_dir}: it has no {LOOP_FILE} (not a loop turn)")
    try:
        state = read_json(state_path)
    except ValueError as exc:
        raise RunDirError(f"cannot resume {out_dir}: {exc}") from None
    differs = sorted(k for k in args if state.get("args", {}).get(k) != args[k])
    if differs:
        raise RunDirError(f"cannot resume {out_dir}: it was started with other {', '.join(differs)} "
                          f"(see its {LOOP_FILE}); resume with the same arguments or start a new --out")
    return state


def _save(out_dir: Path, state: dict[str, Any], result: LoopResult, step: str | None = None) -> None:
    if step and step not in state["steps_done"]:
        state["steps_done"].append(step)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / LOOP_FILE, {**state, **result.to_dict()})


def _fine_tune(kind: str, prev: Path, result: LoopResult, data_root: Path, out_dir: Path,
               overrides: Sequence[str]) -> Path:
    """Fine-tune one model, or reuse the run a previous attempt of this turn finished
    (``metrics.json`` is its last file), or resume the run it left half-way."""
    run = out_dir / kind
    best = run / "checkpoints" / "best.pt"
    if (run / "metrics.json").is_file() and best.is_file():
        log.info("%s: finished by an earlier attempt of this turn; reused", run)
        return best
    resume = run.is_dir() and any(run.iterdir())
    tune = fine_tune_classifier if kind == "classifier" else fine_tune_detector
    assert result.canonical is not None  # pulled before any fine-tuning
    return tune(prev, result.canonical, data_root, run, overrides, resume=resume)


def run_loop(
    client: LSClient, project: str | int, base: str | Path, data_root: str | Path, out_dir: str | Path,
    classifier: str | Path | None = None, detector: str | Path | None = None,
    classifier_overrides: Sequence[str] = (), detector_overrides: Sequence[str] = (),
    policy: str = "latest", device: str = "auto", force: bool = False, resume: bool = False,
    conf: float | None = PRELABEL_CONF, max_boxes: int = PRELABEL_MAX_BOXES,
    current_model: str | Path | None = None, backend_wait_s: float = 60.0, expert_changes: str = "review",
    backend_auth: tuple[str, str] | None = None,
) -> LoopResult:
    """One turn of the loop (see the module doc).

    Args:
        base: the canonical version the previous models were trained on (kept unchanged).
        out_dir: new, empty: ``classifier/`` and ``detector/`` run folders and ``loop.json``
            (the turn's state, rewritten after each step).
        classifier, detector: the previous checkpoints (``RUN_DIR/checkpoints/best.pt``); at least one.
        force: fine-tune and push even when the pull changed nothing.
        resume: finish a turn that stopped part-way in ``out_dir`` (same arguments): steps it
            finished are not run again (no second pull or version; a finished fine-tune is
            reused, an interrupted one resumed); push and prelabel are idempotent.
        conf, max_boxes: pre-annotation box threshold and per-frame cap.
        current_model: a current-model file (``serving``) to point at the new models; the ML
            backends connected to the project that watch it are waited for (``backend_wait_s``;
            ``backend_auth``: their basic-auth pair, if they require one).
        expert_changes: the pull's guard for the base file's labels (``expert.py``): ``review``
            keeps them where a submission removes, moves or relabels them; ``apply`` takes it.

    Returns:
        The turn's result; ``stopped`` is set (and nothing trained) when the annotations
        did not change since ``base`` and ``force`` is off.
    """
    if not classifier and not detector:
        raise ValueError("the loop needs the previous --classifier and/or --detector checkpoint")
    out_dir, data_root = Path(out_dir), Path(data_root)
    state = _start_or_resume(out_dir, _turn_args(project, base, data_root, classifier, detector, classifier_overrides,
                                                 detector_overrides, policy, conf, max_boxes), resume)
    done = set(state["steps_done"])
    result = LoopResult(resumed=sorted(done, key=STEPS.index) if done else [])
    if state.get("stopped"):
        result.stopped = state["stopped"]
        return result
    if "pull" in done:
        result.canonical = Path(state["canonical"])
    else:
        _save(out_dir, state, result)  # from here on, a turn that fails can be resumed
        pulled = pull_project(client, project, data_root, base_path=base, policy=policy, expert_changes=expert_changes)
        result.pull_report = pulled.report
        if pulled.path is None and not force:
            held = pulled.report.n_held_for_review
            result.stopped = f"no annotation changed since {base}: nothing to retrain on" + (
                f" ({held} submission(s) that change expert labels held for review: {pulled.review_path})" if held else "")
            state["stopped"] = result.stopped
            _save(out_dir, state, result, "pull")
            return result
        result.canonical = pulled.path or Path(base)
        _save(out_dir, state, result, "pull")
    for kind, prev, overrides in (("classifier", classifier, classifier_overrides),
                                  ("detector", detector, detector_overrides)):
        if prev:
            setattr(result, kind, _fine_tune(kind, Path(prev), result, data_root, out_dir, overrides))
            result.runs[kind] = str(out_dir / kind)
            _save(out_dir, state, result, kind)
    result.model_version = model_version_for(result.classifier, result.detector)
    from kvasir_ml.data.coco import load_canonical

    result.push_report = push_with_predictions(client, load_canonical(result.canonical), data_root, project,
                                               classifier=result.classifier, detector=result.detector,
                                               model_version=result.model_version, device=device, conf=conf,
                                               max_boxes=max_boxes)
    _save(out_dir, state, result, "push")
    if "prelabel" in done:  # the version it replaced was recorded by the attempt that moved it
        result.prelabel_before = state.get("prelabel_before")
    else:
        result.prelabel_before = set_prelabeling_model(client, result.push_report.project_id, result.model_version)
    _save(out_dir, state, result, "prelabel")
    if current_model:
        write_current_model(current_model, result.classifier, result.detector, result.model_version)
        result.backends = wait_for_backends(client, result.push_report.project_id, result.model_version, backend_wait_s,
                                            basic_auth=backend_auth)
        _save(out_dir, state, result, "current_model")
    return result


def wait_for_backends(client: LSClient, project_id: int, model_version: str, timeout_s: float = 60.0,
                      poll_s: float = 0.5, basic_auth: tuple[str, str] | None = None) -> dict[str, str]:
    """Wait until every ML backend connected to the project reports ``model_version`` on
    ``/health`` (a backend watching the current-model file switches within seconds).
    ``basic_auth``: the backends' (user, password) when they require it (``ls backend`` with
    ``BASIC_AUTH_USER``/``BASIC_AUTH_PASS``).

    Returns:
        ``{backend URL: the version it serves, or why it could not be asked}``.
    """
    import httpx

    urls = [(ml.url or "").rstrip("/") for ml in client.call(f"list ML backends of project {project_id}",
                                                             client.sdk.ml.list, project=project_id)]
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    for url in urls:
        while True:
            try:
                answer = httpx.get(f"{url}/health", timeout=2.0, auth=basic_auth)
                seen[url] = (str(answer.json().get("model_version")) if answer.status_code == 200 else
                             f"not usable (HTTP {answer.status_code}" + (": set BASIC_AUTH_USER/BASIC_AUTH_PASS)"
                                                                        if answer.status_code == 401 else ")"))
            except (httpx.HTTPError, ValueError) as exc:
                seen[url] = f"not reachable ({type(exc).__name__})"
            if seen[url] == model_version or time.monotonic() > deadline:
                break
            time.sleep(poll_s)
        if seen[url] != model_version:
            log.warning("ML backend %s still serves %s, not %s (started without --current-model?)", url, seen[url],
                        model_version)
    return seen
