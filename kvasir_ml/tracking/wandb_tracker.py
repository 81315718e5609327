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
from kvasir_ml.tracking.wandb_media import boxed_image, flatten_metrics, pr_points, strip_secrets

log = logging.getLogger(__name__)

# Env vars that decide where wandb writes outside the run folder (values: sub-folder names).
_HOME_VARS = {"WANDB_CONFIG_DIR": "config", "WANDB_CACHE_DIR": "cache", "WANDB_DATA_DIR": "data"}
_owned_env: dict[str, str] = {}  # the variables this module set, with their values
_MAX_FAILURES = 5  # consecutive failed calls before the tracker gives up for the rest of the run
_MAX_IMAGE_SIDE_PX = 1024  # sample images are downscaled (boxes too) to keep run folders small
_PR_GRID = np.linspace(0.0, 1.0, 101)
_INIT_TIMEOUT_S = 30.0
_CLOSE_TIMEOUT_S = 10.0


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

    def __init__(self, run: Any, cfg: TrackingConfig, run_dir: Path, root: Path, mode: str):
        self._run = run
        self.cfg = cfg
        self.run_dir = run_dir
        self.wandb_dir = root / "wandb"
        self.home_dir = self.wandb_dir / ".home"
        self.offline_dir = Path(run.settings.sync_dir)
        self.run_id: str = run.id
        self.mode = mode
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
                tracker = cls(run, cfg, run_dir, root, mode)
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
