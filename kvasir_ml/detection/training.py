"""Training through ultralytics: arguments, timing hooks, checkpoints, history.

``fit`` calls ``YOLO(model_yaml_or_local_weights).train(...)`` for real; our additions are
callbacks that time the data wait vs the optimisation step of every batch and mirror each
epoch's metrics to the tracker, and the copy of ultralytics' ``weights/best.pt`` into
``RUN_DIR/checkpoints`` with a ``kvasir_ml`` entry (class names, inset mode, image size).
"""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path
from typing import Any

from kvasir_ml.config import dump_config
from kvasir_ml.detection.config import DetectorConfig
from kvasir_ml.detection.yolo_dataset import YoloExport
from kvasir_ml.detection.safe_load import check_resume_args, load_detector_checkpoint
from kvasir_ml.detection.ultralytics_env import no_platform_key
from kvasir_ml.detection.yolo import (
    load_yolo,
    resolve_amp,
    resolve_weights,
    ultralytics_device,
)
from kvasir_ml.device import resolve_device
from kvasir_ml.io import atomic_write
from kvasir_ml.taxonomy import load_taxonomy
from kvasir_ml.tracking import Tracker

log = logging.getLogger(__name__)


def train_kwargs(cfg: DetectorConfig, data_yaml: Path, run_dir: Path, device: str) -> dict[str, Any]:
    """Keyword arguments for ``YOLO.train`` (everything explicit; nothing left to hub defaults)."""
    t = cfg.train
    return dict(
        data=str(data_yaml), epochs=t.epochs, imgsz=t.imgsz, batch=t.batch, device=ultralytics_device(device),
        workers=t.workers, seed=t.seed, deterministic=t.deterministic, amp=resolve_amp(t.amp, device),
        optimizer=t.optimizer, lr0=t.lr0, patience=t.patience, warmup_epochs=t.warmup_epochs,
        mosaic=t.mosaic, close_mosaic=t.close_mosaic, fliplr=t.fliplr, flipud=t.flipud, degrees=t.degrees,
        cache=t.cache, plots=t.plots, project=str(run_dir.resolve()), name="ultralytics", exist_ok=True,
        pretrained=cfg.model.weights is not None, verbose=False, val=True,
        conf=cfg.eval.conf, iou=cfg.eval.iou, max_det=cfg.eval.max_det, time=t.time_h,
    )


class EpochRecorder:
    """ultralytics callbacks: per-batch data vs step time, per-epoch metrics to the tracker."""

    def __init__(self, tracker: Tracker, n_train_images: int, sync_cuda: bool):
        self.tracker, self.n_train, self.sync_cuda = tracker, n_train_images, sync_cuda
        self.epochs: dict[int, dict[str, float]] = {}
        self._t_ready = self._t_start = self._t_epoch = self._t_train_end = 0.0
        self._data_s = self._step_s = 0.0
        self._pending = False  # a training epoch ended and its validation is not logged yet

    def register(self, model) -> None:
        for event in ("on_train_epoch_start", "on_train_batch_start", "on_train_batch_end",
                      "on_train_epoch_end", "on_fit_epoch_end"):
            model.add_callback(event, getattr(self, event))

    def _sync(self) -> None:
        if self.sync_cuda:  # CUDA kernels are asynchronous: time them after they finished
            import torch

            torch.cuda.synchronize()

    def on_train_epoch_start(self, trainer) -> None:
        self._t_epoch = self._t_ready = time.perf_counter()
        self._data_s = self._step_s = 0.0

    def on_train_batch_start(self, trainer) -> None:
        self._t_start = time.perf_counter()
        self._data_s += self._t_start - self._t_ready

    def on_train_batch_end(self, trainer) -> None:
        self._sync()
        self._t_ready = time.perf_counter()
        self._step_s += self._t_ready - self._t_start

    def on_train_epoch_end(self, trainer) -> None:
        self._t_train_end = time.perf_counter()
        self._pending = True

    def on_fit_epoch_end(self, trainer) -> None:
        now = time.perf_counter()
        metrics = {k: float(v) for k, v in (trainer.metrics or {}).items()}
        if not self._pending:  # ultralytics' final validation of best.pt, after the last epoch
            self.tracker.log({f"best/{k}": v for k, v in metrics.items()})
            return
        self._pending = False
        epoch = int(trainer.epoch) + 1
        train_s = self._t_train_end - self._t_epoch
        record = {
            "epoch_time_s": now - self._t_epoch, "train_time_s": train_s, "val_time_s": now - self._t_train_end,
            "data_time_s": self._data_s, "step_time_s": self._step_s,
            "img_s": self.n_train / train_s if train_s > 0 else 0.0,
        }
        self.epochs[epoch] = record
        losses = {k: float(v) for k, v in trainer.label_loss_items(trainer.tloss, prefix="train").items()}
        self.tracker.log({"epoch": epoch, **losses, **metrics, **record, **trainer.lr}, step=epoch)


def fit(cfg: DetectorConfig, export: YoloExport, run_dir: Path, tracker: Tracker, resume: bool = False) -> dict:
    """Train with ultralytics and copy the checkpoints into ``RUN_DIR/checkpoints``.

    Returns:
        ``{"device", "epochs": {epoch: timing}, "epoch_time_s_mean"}``.
    """
    device = str(resolve_device(cfg.train.device))
    last = run_dir / "ultralytics" / "weights" / "last.pt"
    recorder = EpochRecorder(tracker, len(export.file_names["train"]), device.startswith("cuda"))
    if resume and _training_finished(last):
        # ultralytics would drop resume=True for a finished run and train its default
        # dataset (coco8, a download) instead; there is nothing left to train: re-score.
        log.warning("%s: training already finished; checkpoints and scores are rebuilt", last)
    else:
        if resume:  # _training_finished just unpickled last.pt safely: no second check
            model = load_yolo(last, trust=True)
        else:  # resolve_weights already checked the weights (trusted or safe): no second check
            model = load_yolo(resolve_weights(cfg.model.arch, cfg.model.weights, cfg.model.trust_weights), trust=True)
        recorder.register(model)
        kwargs = train_kwargs(cfg, export.data_yaml, run_dir, device)
        if resume:  # ultralytics takes the saved args from last.pt; data is named so it never defaults,
            # save_dir so it writes into this run folder, wherever the file says (a handed-over folder)
            kwargs = {"resume": str(last), "data": kwargs["data"], "device": kwargs["device"],
                      "save_dir": str(last.parent.parent.resolve())}
        log.info("training %s on %s (%s)", cfg.model.weights or cfg.model.arch, device, export.data_yaml)
        with no_platform_key():
            model.train(**kwargs)
    save_checkpoints(run_dir, cfg, export)
    times = [r["epoch_time_s"] for r in recorder.epochs.values()]
    return {"device": device, "epochs": recorder.epochs,
            "epoch_time_s_mean": sum(times) / len(times) if times else None}


def _training_finished(last: Path) -> bool:
    """ultralytics strips finished checkpoints: no optimizer state, ``epoch == -1``."""
    if not last.is_file():
        raise FileNotFoundError(f"{last}: nothing to resume from")
    ckpt = check_resume_checkpoint(last)
    return ckpt.get("optimizer") is None or int(ckpt.get("epoch", -1)) < 0


def check_resume_checkpoint(last: Path) -> dict[str, Any]:
    """``last.pt`` of a run to resume, loaded safely: no code in the pickle, none in its model
    YAML (``model_yaml``), no training argument that loads another file (``check_resume_args``)."""
    ckpt = load_detector_checkpoint(last)
    check_resume_args(ckpt, last)
    return ckpt


def save_checkpoints(run_dir: Path, cfg: DetectorConfig, export: YoloExport) -> None:
    """Copy ultralytics' best/last.pt into ``checkpoints/`` with our metadata inside."""
    import torch

    meta = {
        "box_class_names": export.names, "inset_mode": cfg.data.inset_mode, "imgsz": cfg.train.imgsz,
        "predict_conf": cfg.eval.predict_conf, "config": dump_config(cfg),
        "taxonomy_version": load_taxonomy().version,
    }
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    for name in ("best.pt", "last.pt"):
        src = run_dir / "ultralytics" / "weights" / name
        if not src.is_file():
            raise FileNotFoundError(f"{src}: ultralytics finished without writing {name}")
        ckpt = load_detector_checkpoint(src)
        ckpt["kvasir_ml"] = meta

        def write(tmp: Path, ckpt=ckpt) -> None:
            with open(tmp, "wb") as fh:  # a file object: a full disk raises OSError(ENOSPC)
                torch.save(ckpt, fh)

        atomic_write(run_dir / "checkpoints" / name, write)


def history_from_results(results_csv: Path, timing: dict[int, dict[str, float]]) -> list[dict[str, Any]]:
    """Per-epoch history from ultralytics' ``results.csv`` (covers resumed runs) plus our timing."""
    if not results_csv.is_file():
        return []
    history: dict[int, dict[str, Any]] = {}  # a resumed epoch appears twice: keep the last row
    with open(results_csv, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            row = {k.strip(): v.strip() for k, v in row.items() if k}
            epoch = int(float(row["epoch"]))
            entry: dict[str, Any] = {"epoch": epoch}
            losses = [float(row[k]) for k in ("train/box_loss", "train/cls_loss", "train/dfl_loss") if k in row]
            entry["train_loss"] = sum(losses) if losses else None
            for key, value in row.items():
                if key not in ("epoch", "time"):
                    entry[_history_key(key)] = float(value)
            entry.update(timing.get(epoch, {}))
            history[epoch] = entry
    return [history[e] for e in sorted(history)]


def _history_key(column: str) -> str:
    """``metrics/mAP50-95(B)`` -> ``val_map50_95``; ``train/box_loss`` -> ``train_box_loss``."""
    key = column.replace("metrics/", "val_").replace("(B)", "").replace("/", "_").replace("-", "_")
    return key.lower()
