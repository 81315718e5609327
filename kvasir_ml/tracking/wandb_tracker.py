"""Weights & Biases implementation of the ``Tracker`` interface.

Offline by default: ``wandb.init`` writes ``<root>/wandb/offline-run-*/run-<id>.wandb`` (root =
``tracking.dir`` or the run folder) and ``wandb sync`` uploads it later. Three rules shape
this module:

- **W&B never stops training.** ``start`` falls back (online -> offline -> ``NullTracker``)
  and every method catches its own exceptions, warns once per method and skips the call;
  after a few failures in a row the tracker turns itself into a no-op.
- **Nothing in $HOME, nothing secret.** wandb keeps settings, a cache and artifact staging
  copies under ``~/.config``, ``~/.cache`` and ``~/.local/share`` unless ``WANDB_CONFIG_DIR`` /
  ``WANDB_CACHE_DIR`` / ``WANDB_DATA_DIR`` say otherwise; when unset they are pointed inside
  the run's wandb folder. Config keys named like secrets are dropped before logging.
- **Several runs per process.** Runs are created with ``reinit="create_new"`` (no run finishes
  another), and the newest run becomes ``wandb.run`` so ultralytics' W&B callback, when a
  user enables it, joins our run instead of opening its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from kvasir_ml.config import TrackingConfig
from kvasir_ml.tracking import NullTracker

log = logging.getLogger(__name__)

_SECRET_KEY = re.compile(r"api[_-]?key|token|passw(or)?d|secret|credential", re.IGNORECASE)
# Env vars that decide where wandb writes outside the run folder (values: sub-folder names).
_HOME_VARS = {"WANDB_CONFIG_DIR": "config", "WANDB_CACHE_DIR": "cache", "WANDB_DATA_DIR": "data"}
_owned_env: dict[str, str] = {}  # the variables this module set, with their values
_MAX_FAILURES = 5  # consecutive failed calls before the tracker gives up for the rest of the run
_MAX_IMAGE_SIDE_PX = 1024  # sample images are downscaled (boxes too) to keep run folders small
_MAX_SUMMARY_STR = 256
_PR_GRID = np.linspace(0.0, 1.0, 101)
_INIT_TIMEOUT_S = 30.0
_CLOSE_TIMEOUT_S = 10.0


def strip_secrets(config: Any) -> Any:
    """Copy of a (nested) config without keys that look like secrets (api_key, token, ...)."""
    if isinstance(config, dict):
        return {k: strip_secrets(v) for k, v in config.items() if not _SECRET_KEY.search(str(k))}
    if isinstance(config, (list, tuple)):
        return [strip_secrets(v) for v in config]
    return config


def flatten_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"test": {"ap": 1}}`` -> ``{"test/ap": 1}``; keeps numbers, bools and short strings only
    (lists, arrays and long strings belong in tables or the run folder, not the summary)."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_metrics(value, f"{name}/"))
        elif isinstance(value, (bool, int, float, np.integer, np.floating)):
            out[name] = value.item() if isinstance(value, np.generic) else value
        elif isinstance(value, str) and len(value) <= _MAX_SUMMARY_STR:
            out[name] = value
    return out


def _redirect_wandb_home(home: Path, include_config: bool) -> None:
    """Point wandb's config/cache/data folders inside ``home`` when the user has not set them.

    wandb reads these once per process (its service starts with the first run and warns when
    they change later), so the first run of a process sets them; ``_data_dir`` then re-points
    artifact staging to each later run's own folder while that run logs.
    Online runs keep the user's config folder (it may name a self-hosted server).
    """
    for var, sub in _HOME_VARS.items():
        if var == "WANDB_CONFIG_DIR" and not include_config:
            continue
        if var not in os.environ:
            os.environ[var] = _owned_env[var] = str(home / sub)


@contextlib.contextmanager
def _data_dir(home: Path) -> Iterator[None]:
    """While logging tables/artifacts, stage copies in this run's folder (only if we own the var).

    The variable is restored afterwards: wandb compares the environment at each ``init`` with
    the one it started with and warns about any change.
    """
    var = "WANDB_DATA_DIR"
    if var not in _owned_env or os.environ.get(var) != _owned_env[var]:
        yield
        return
    os.environ[var] = str(home / _HOME_VARS[var])
    try:
        yield
    finally:
        os.environ[var] = _owned_env[var]


def boxed_image(sample: dict[str, Any], class_names: Sequence[str], max_side_px: int) -> Any:
    """``wandb.Image`` of one sample with its boxes in two groups, ``ground_truth`` and
    ``predictions`` (pixel domain). Large images are downscaled, boxes with them.

    Args:
        sample: ``{"image": HxWx3 uint8, "caption": str, "boxes": [{"xywh_px", "class",
            "score", "kind": "pred"|"gt"}]}``.
        class_names: box classes; ``class_id`` is the index in this list.
        max_side_px: longest side of the logged image.

    Raises:
        ValueError: a box names a class that is not in ``class_names``.
    """
    import wandb
    from PIL import Image

    rgb = np.asarray(sample["image"], dtype=np.uint8)
    scale = min(1.0, max_side_px / max(rgb.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))
    index = {name: i for i, name in enumerate(class_names)}
    groups: dict[str, list[dict[str, Any]]] = {"ground_truth": [], "predictions": []}
    for box in sample.get("boxes", []):
        if box["class"] not in index:
            raise ValueError(f"box class {box['class']!r} is not one of {list(class_names)}")
        x, y, w, h = (float(v) * scale for v in box["xywh_px"])
        entry: dict[str, Any] = {
            "position": {"minX": x, "maxX": x + w, "minY": y, "maxY": y + h},
            "domain": "pixel", "class_id": int(index[box["class"]]), "box_caption": box["class"],
        }
        if box.get("score") is not None:
            entry["scores"] = {"score": float(box["score"])}
            entry["box_caption"] = f"{box['class']} {float(box['score']):.2f}"
        groups["ground_truth" if box.get("kind") == "gt" else "predictions"].append(entry)
    labels = {i: str(name) for i, name in enumerate(class_names)}
    boxes = {g: {"box_data": data, "class_labels": labels} for g, data in groups.items()}
    return wandb.Image(rgb, caption=str(sample.get("caption", "")), boxes=boxes)


def pr_points(y_true: Any, y_score: Any, class_names: Sequence[str], recall_grid: np.ndarray) -> list[list[Any]]:
    """Rows ``[class, recall, precision]`` of per-class PR curves on a fixed recall grid.

    Precision at recall r is the best precision at any recall >= r (the interpolation AP uses),
    so every class has the same number of points and curves stay readable when overlaid.

    Args:
        y_true: (N, C) 0/1 (multi-label) or (N,) class indices (single-label, one-vs-rest).
        y_score: (N, C) scores.
        class_names: C names.
        recall_grid: increasing recall values in [0, 1].
    """
    from sklearn.metrics import precision_recall_curve

    scores = np.asarray(y_score, dtype=float)
    truth = np.asarray(y_true)
    if truth.ndim == 1:
        truth = (truth[:, None] == np.arange(scores.shape[1])[None, :]).astype(int)
    if truth.shape != scores.shape or scores.shape[1] != len(class_names):
        raise ValueError(f"pr_curves: y_true {truth.shape}, y_score {scores.shape} and "
                         f"{len(class_names)} class names do not match")
    rows: list[list[Any]] = []
    for c, name in enumerate(class_names):
        if truth[:, c].sum() == 0:
            continue  # no positives: precision/recall undefined
        precision, recall, _ = precision_recall_curve(truth[:, c], scores[:, c])
        # running max from the high-recall end gives the interpolated (monotone) precision
        order = np.argsort(recall)
        rec, prec = recall[order], np.maximum.accumulate(precision[order][::-1])[::-1]
        idx = np.searchsorted(rec, recall_grid, side="left").clip(max=len(rec) - 1)
        rows += [[str(name), round(float(r), 4), round(float(p), 4)] for r, p in zip(recall_grid, prec[idx])]
    return rows


def _init_run(cfg: TrackingConfig, mode: str, root: Path, run_name: str, job_type: str,
              config: dict[str, Any], tags: list[str]) -> Any:
    import wandb

    settings = wandb.Settings(
        mode=mode,
        init_timeout=_INIT_TIMEOUT_S,
        login_timeout=_INIT_TIMEOUT_S,
        console="off",  # progress bars and our own logging stay ours; metrics.json is the record
        save_code=False,
        x_save_requirements=False,
        silent=True,
    )
    return wandb.init(
        project=cfg.project, entity=cfg.entity, group=cfg.group, job_type=job_type, name=run_name,
        tags=tags, config=config, dir=str(root), reinit="create_new", settings=settings,
    )


class WandbTracker:
    """A W&B run behind the ``Tracker`` methods. Build with ``start`` (or ``make_tracker``).

    Attributes:
        run_dir: the run folder the tracker belongs to.
        wandb_dir: ``<root>/wandb``, where wandb writes its run folders.
        offline_dir: this run's ``offline-run-*`` (or ``run-*``) folder; pass it to ``wandb sync``.
        run_id, mode: the W&B run id and the mode it really runs in.
    """

    def __init__(self, run: Any, cfg: TrackingConfig, run_dir: Path, root: Path, mode: str,
                 init_kwargs: dict[str, Any]):
        self._run = run
        self.cfg = cfg
        self.run_dir = run_dir
        self.wandb_dir = root / "wandb"
        self.home_dir = self.wandb_dir / ".home"
        self.offline_dir = Path(run.settings.sync_dir)
        self.run_id: str = run.id
        self.mode = mode
        self._init_kwargs = init_kwargs
        self._warned: set[str] = set()
        self._failures = 0
        self._dead = False
        self._finished = False

    # ----------------------------------------------------------------------- construction
    @classmethod
    def start(cls, cfg: TrackingConfig, run_dir: Path, run_name: str, job_type: str,
              config: dict[str, Any], tags: Sequence[str] = ()) -> "WandbTracker | NullTracker":
        """Open a W&B run; never raises.

        Args:
            cfg: tracking section (mode offline|online; disabled never gets here).
            run_dir: the run folder; wandb files go to ``(cfg.dir or run_dir)/wandb``.
            run_name: display name.
            job_type: ``train-classifier``, ``train-detector``, ``compare`` ...
            config: resolved run config; keys that look like secrets are dropped.
            tags: added to ``cfg.tags`` (duplicates removed, order kept).

        Returns:
            The tracker; online that cannot start falls back to offline, and a run that cannot
            start at all gives a ``NullTracker`` (with a warning).
        """
        run_dir = Path(run_dir)
        root = Path(cfg.dir) if cfg.dir else run_dir
        all_tags = list(dict.fromkeys(str(t)[:64] for t in [*cfg.tags, *tags] if str(t)))
        clean = strip_secrets(config)
        for mode in ([cfg.mode, "offline"] if cfg.mode == "online" else [cfg.mode]):
            try:
                (root / "wandb").mkdir(parents=True, exist_ok=True)
                _redirect_wandb_home(root / "wandb" / ".home", include_config=mode != "online")
                run = _init_run(cfg, mode, root, run_name, job_type, clean, all_tags)
                tracker = cls(run, cfg, run_dir, root, mode,
                              dict(run_name=run_name, job_type=job_type, config=clean, tags=all_tags))
                tracker._make_global()
                return tracker
            except Exception as exc:  # noqa: BLE001 — any W&B failure must not stop training
                log.warning("W&B %s run %r could not start (%s: %s)%s", mode, run_name, type(exc).__name__,
                            exc, "; trying offline" if mode == "online" else "; tracking disabled for this run")
        null = NullTracker()
        null.run_dir = run_dir
        return null

    def _make_global(self) -> None:
        """Make this run ``wandb.run`` so ultralytics' callback (if enabled) logs into it."""
        try:
            from wandb.sdk.wandb_init import _set_global_run

            _set_global_run(self._run)
        except Exception as exc:  # noqa: BLE001 — private API; only integrations depend on it
            self._warn("make_global", exc)

    # ------------------------------------------------------------------------ plumbing
    def _warn(self, method: str, exc: BaseException) -> None:
        if method not in self._warned:
            self._warned.add(method)
            log.warning("W&B %s failed (%s: %s); skipped, training continues", method, type(exc).__name__, exc)
        else:
            log.debug("W&B %s failed again: %s", method, exc)

    @contextlib.contextmanager
    def _guard(self, method: str) -> Iterator[bool]:
        """Yields whether to proceed; swallows and counts exceptions."""
        if self._dead or self._finished:
            yield False
            return
        try:
            with _data_dir(self.home_dir):
                yield True
            self._failures = 0
        except Exception as exc:  # noqa: BLE001 — a tracker error never reaches training code
            self._warn(method, exc)
            self._failures += 1
            if self._failures >= _MAX_FAILURES:
                self._dead = True
                log.warning("W&B failed %d times in a row; tracking is off for the rest of run %s",
                            self._failures, self.run_id)

    @property
    def run(self) -> Any:
        """The underlying ``wandb.Run`` (for integrations; prefer the tracker's methods)."""
        return self._run

    # ------------------------------------------------------------------------ protocol
    def log(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Time-series metrics. A ``step`` below the run's current step (another logger such as
        ultralytics' callback advanced it) is logged at the current step rather than dropped."""
        with self._guard("log") as ok:
            if ok:
                data = {k: v for k, v in flatten_metrics(metrics).items() if v is not None}
                if step is not None and step < self._run.step:
                    self._warn("log(step)", ValueError(f"step {step} < current step {self._run.step}"))
                    step = None
                self._run.log(data, step=step)

    def summary(self, metrics: dict[str, Any]) -> None:
        """Final numbers; nested dicts flattened to ``a/b`` keys, non-scalars skipped."""
        with self._guard("summary") as ok:
            if ok:
                self._run.summary.update(flatten_metrics(metrics))

    def table(self, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """A ``wandb.Table`` (numpy scalars converted to Python numbers)."""
        with self._guard("table") as ok:
            if ok:
                import wandb

                data = [[v.item() if isinstance(v, np.generic) else v for v in row] for row in rows]
                self._run.log({key: wandb.Table(columns=list(columns), data=data)})

    def image(self, key: str, path: str | Path, caption: str = "") -> None:
        """A PNG (or JPEG) already written to the run folder."""
        with self._guard("image") as ok:
            if ok:
                import wandb

                if not Path(path).is_file():
                    raise FileNotFoundError(f"image {path} does not exist")
                self._run.log({key: wandb.Image(str(path), caption=caption)})

    def predictions(self, key: str, samples: Sequence[dict[str, Any]], class_names: Sequence[str]) -> None:
        """Up to ``cfg.n_sample_images`` images with box overlays (groups ``ground_truth`` and
        ``predictions``, pixel domain; toggled per group and per class in the UI)."""
        with self._guard("predictions") as ok:
            if ok:
                images = [boxed_image(s, class_names, _MAX_IMAGE_SIDE_PX)
                          for s in list(samples)[: self.cfg.n_sample_images]]
                if images:
                    self._run.log({key: images})

    def pr_curves(self, key: str, y_true: Any, y_score: Any, class_names: Sequence[str]) -> None:
        """PR curves, one line per class, in W&B's own PR chart (``wandb/area-under-curve/v0``).

        ``y_true`` is (N, C) 0/1 for multi-label or (N,) class indices for single-label (turned
        into one-vs-rest columns). Classes without positives have no curve and are skipped.
        The points also land in the table ``<key>_table`` (class, recall, precision).
        """
        with self._guard("pr_curves") as ok:
            if ok:
                import wandb

                rows = pr_points(y_true, y_score, class_names, _PR_GRID)
                table = wandb.Table(columns=["class", "recall", "precision"], data=rows)
                chart = wandb.plot_table(
                    "wandb/area-under-curve/v0", table, {"x": "recall", "y": "precision", "class": "class"},
                    {"title": key, "x-axis-title": "Recall", "y-axis-title": "Precision"})
                self._run.log({key: chart})

    def confusion(self, key: str, y_true: Sequence[int], y_pred: Sequence[int], class_names: Sequence[str]) -> None:
        """``wandb.plot.confusion_matrix`` from class indices."""
        with self._guard("confusion") as ok:
            if ok:
                import wandb

                chart = wandb.plot.confusion_matrix(
                    y_true=[int(v) for v in y_true], preds=[int(v) for v in y_pred],
                    class_names=list(class_names), title=key)
                self._run.log({key: chart})

    def artifact(self, path: str | Path, name: str, type: str, metadata: dict[str, Any] | None = None) -> None:
        """A file or folder as an artifact.

        Files inside the run folder are referenced in place (no copy; sync uploads them from
        there). Anything else is copied into ``wandb/artifact-files/`` first, so a later edit of
        the source cannot change what ``wandb sync`` uploads. ``type="model"`` is skipped when
        ``cfg.log_model`` is false.
        """
        with self._guard("artifact") as ok:
            if ok:
                if type == "model" and not self.cfg.log_model:
                    return
                import wandb

                src = Path(path).resolve()
                if not src.exists():
                    raise FileNotFoundError(f"artifact source {path} does not exist")
                safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:128]
                if not src.is_relative_to(self.run_dir.resolve()):
                    dst = self.wandb_dir / "artifact-files" / f"{self.run_id}-{safe}" / src.name
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    (shutil.copytree(src, dst, dirs_exist_ok=True) if src.is_dir() else shutil.copy2(src, dst))
                    src = dst
                art = wandb.Artifact(safe, type=type, metadata=flatten_metrics(metadata or {}))
                if src.is_dir():
                    art.add_dir(str(src), policy="immutable")
                else:
                    art.add_file(str(src), policy="immutable")
                self._run.log_artifact(art)

    def finish(self) -> None:
        """Close the run (idempotent; failures are warned about, never raised)."""
        if self._finished:
            return
        self._finished = True
        try:
            with _data_dir(self.home_dir):
                self._run.finish()
            # finish() returns before the service has written the .wandb file; wait (bounded)
            # so readers (runs compare, tests, wandb sync right after) see the whole run.
            from kvasir_ml.tracking.offline import wait_until_closed

            log_file = self.offline_dir / f"run-{self.run_id}.wandb"
            if not wait_until_closed(log_file, timeout_s=_CLOSE_TIMEOUT_S):
                log.warning("W&B run file %s was not closed after %.0f s", log_file, _CLOSE_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001
            self._warn("finish", exc)

    # ------------------------------------------------------------------------ additions
    def ensure_active(self) -> bool:
        """Keep logging into this run after third-party code had its turn (ultralytics).

        Makes this run ``wandb.run`` again; if someone else finished it (older ultralytics
        callbacks call ``wandb.finish()``), reopens it with the same id and ``resume="allow"``.
        Offline, a reopened run is a second ``offline-run-*`` folder with the same id that
        ``wandb sync`` uploads into the same run (its steps restart at 0).

        Returns:
            True when the tracker can log.
        """
        if self._finished or self._dead:
            return False
        try:
            if getattr(self._run, "_is_finished", False):
                self._reopen()
            self._make_global()
            return True
        except Exception as exc:  # noqa: BLE001
            self._warn("ensure_active", exc)
            return False

    def _reopen(self) -> None:
        import wandb

        kw = self._init_kwargs
        log.warning("W&B run %s was finished by other code; reopening it (resume='allow')", self.run_id)
        self._run = wandb.init(
            project=self.cfg.project, entity=self.cfg.entity, group=self.cfg.group, job_type=kw["job_type"],
            name=kw["run_name"], tags=kw["tags"], config=kw["config"], id=self.run_id, resume="allow",
            dir=str(self.wandb_dir.parent), reinit="create_new",
            settings=wandb.Settings(mode=self.mode, init_timeout=_INIT_TIMEOUT_S, console="off", silent=True,
                                    save_code=False, x_save_requirements=False))
        self.offline_dir = Path(self._run.settings.sync_dir)
