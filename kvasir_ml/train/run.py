"""``train_classifier(cfg, out_dir)``: config -> data -> model -> loop -> checkpoints -> report.

Reproducibility: every epoch reseeds all RNGs (and the loader's generator) from
``(seed, epoch)``, so a run resumed from ``last.pt`` replays the remaining epochs exactly as
an uninterrupted run would (CPU; on CUDA up to non-deterministic kernels unless
``runtime.deterministic``). The device-side augmentation's generator is reseeded the same
way (per rank), so a resume replays it without saving its state. Multi-GPU: launch with
``torchrun``; ``WORLD_SIZE`` > 1 turns on DistributedDataParallel, ``runtime.batch_size`` is
then per process, and only rank 0 evaluates and writes (see ``train.distributed``).
"""

from __future__ import annotations

import contextlib
import logging
import random
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from kvasir_ml.config import dump_config, save_config
from kvasir_ml.device import resolve_device
from kvasir_ml.evaluation import posthoc
from kvasir_ml.results_schema import write_metrics
from kvasir_ml.models.classifier import KvasirClassifier, build_model, check_weights_file
from kvasir_ml.rundir import RunDirError, check_run_dir, config_differences
from kvasir_ml.runlock import run_lock
from kvasir_ml.taxonomy import load_taxonomy
from kvasir_ml.models.losses import build_loss
from kvasir_ml.tracking import NullTracker, Tracker, make_tracker
from kvasir_ml.train import augment, report
from kvasir_ml.train import distributed as ddp
from kvasir_ml.train.checkpoint import (
    commit_checkpoints,
    library_versions,
    load_checkpoint,
    recover_checkpoints,
    rng_state,
    set_rng_state,
)
from kvasir_ml.train.config import ClassifierConfig, load_classifier_config
from kvasir_ml.train.loop import evaluate, lr_find, train_one_epoch
from kvasir_ml.train.prepare import make_loaders, prepare_data
from kvasir_ml.train.tta import TTA_NAME, evaluate_tta

log = logging.getLogger(__name__)

def seed_everything(seed: int, generator: torch.Generator | None = None) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if generator is not None:
        generator.manual_seed(seed)


# What a classifier run folder holds before its first checkpoint (set aside on a restart).
_RUN_DIR_ENTRIES = ("config.yaml", "split.json", "checkpoints", "plots", "wandb", "cache", "data",
                    "predictions_test.npz")


def _check_run_dir(run_dir: Path, cfg: ClassifierConfig, resume: bool, world: int) -> bool:
    """``rundir.check_run_dir`` for a classifier run (resumes from ``checkpoints/last.pt``); a
    resume must match the checkpoint's config and number of processes. Checked before anything
    is written, so a refused resume leaves the run folder as it was."""
    last = run_dir / "checkpoints" / "last.pt"
    # the image cache is content-addressed and written atomically: a restart reuses it
    resume = check_run_dir(run_dir, resume, last, _RUN_DIR_ENTRIES, keep=("cache",))
    if resume:
        state = load_checkpoint(last, map_location="cpu")
        diffs = config_differences(dump_config(cfg), state["config"])
        if diffs:
            raise RunDirError(f"cannot resume {run_dir}: config differs from the checkpoint in {', '.join(diffs)}")
        _check_resume_world(int(state.get("world_size", 1)), world, cfg.runtime.batch_size, run_dir)
    return resume


def _check_resume_world(saved: int, now: int, batch_size: int, run_dir: Path) -> None:
    """Refuse a resume with another number of processes: each rank's shard, the steps per
    epoch and so the LR schedule's length all depend on it, so it would not continue the run."""
    if saved != now:
        how = f"torchrun --nproc_per_node {saved} ..." if saved > 1 else "one process (no torchrun)"
        raise RunDirError(f"cannot resume {run_dir}: it was trained by {saved} process(es) (global batch "
                          f"{saved} x {batch_size}), this launch has {now}; resume it with {how}")


def make_optimizer(model: KvasirClassifier, lr: float, backbone_lr_factor: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with two groups: head (+ inset branch) at ``lr``, backbone at ``lr * factor``."""
    groups = [{"params": model.head_parameters(), "lr": lr, "name": "head"},
              {"params": model.backbone_parameters(), "lr": lr * backbone_lr_factor, "name": "backbone"}]
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: ClassifierConfig, steps_per_epoch: int) -> Any:
    total = max(1, cfg.optim.epochs * steps_per_epoch)
    if cfg.optim.schedule == "onecycle":
        max_lrs = [g["lr"] for g in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lrs, total_steps=total)
    if cfg.optim.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    return None


# runtime.compile applies on these devices, with this torch.compile backend. Not on CPU: inductor
# needs a C++ toolchain there and compiles for minutes; the CPU tests add "cpu" with "aot_eager"
# (dynamo + AOTAutograd, the parts the frozen -> unfrozen re-wrap depends on).
COMPILE_DEVICES: tuple[str, ...] = ("cuda",)
COMPILE_BACKEND = "inductor"


class _Trainer:
    """Holds a run's pieces so the epoch loop and the final report stay a screen each."""

    def __init__(self, cfg: ClassifierConfig, run_dir: Path, resume: bool):
        self.cfg, self.run_dir, self.resume = cfg, run_dir, resume
        rt = cfg.runtime
        if rt.threads:
            torch.set_num_threads(rt.threads)
        if rt.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = not rt.deterministic
        self.rank, self.world, self.device = ddp.init_distributed(resolve_device(rt.device))
        self.is_main = self.rank == 0
        self.ckpt_dir = run_dir / "checkpoints"
        self._setup_data()
        self._setup_model(resume)
        self.start_epoch, self.best_score = 0, -float("inf")
        self.history: list[dict[str, Any]] = []
        # thresholds, calibration and decoder fitted on val at the last epoch (PostHoc.to_state)
        self.posthoc_state: dict[str, Any] = {"thresholds": None, "calibration": None, "decoder": None}
        self.best_epoch = 0  # the epoch best.pt holds (0: none yet)
        self.run_name = f"{cfg.name}-{run_dir.name}"
        self.tracker: Tracker = NullTracker()
        if self.is_main:
            save_config(self.cfg, run_dir / "config.yaml")  # resolved: after the LR finder
            tags = [cfg.model.task, f"inset-{cfg.model.inset_mode}", self.data.dataset_name]
            self.tracker = make_tracker(cfg.tracking, run_dir, self.run_name, "train-classifier",
                                        dump_config(self.cfg), tags=tags)

    def _setup_data(self) -> None:
        # Rank 0 synthesizes, splits and fills the cache; the others then read what it wrote.
        def prepare(may_write: bool):
            if may_write:
                self.run_dir.mkdir(parents=True, exist_ok=True)
            return prepare_data(self.cfg, self.run_dir, may_write=may_write)

        self.data = ddp.rank0_first(prepare, self.rank, self.world)
        self.train_loader, self.generator, self.eval_loaders = make_loaders(
            self.cfg, self.data, self.device, self.world, self.rank)
        self.augment = augment.build_batch_augment(self.cfg.aug)

    def _setup_model(self, resume: bool) -> None:
        cfg = self.cfg
        seed_everything(cfg.runtime.seed)  # same initial weights on every rank and every run
        task = cfg.model.task
        if task == "singlelabel" and not (self.data.records["train"].y_class >= 0).any():
            raise ValueError(f"{self.data.canonical_path}: no train image has a {cfg.data.class_source} class; "
                             "a single-label model cannot be trained on it (set data.class_source)")
        n_out = len(self.data.label_names) if task == "multilabel" else len(self.data.class_names)
        names = self.data.label_names if task == "multilabel" else self.data.class_names
        self.model = build_model(cfg.model, n_out, names).to(self.device)
        if cfg.runtime.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.loss_fn = build_loss(cfg.loss, task, self.data.records["train"].y_labels).to(self.device)
        self.lr_find_result: dict[str, Any] | None = None
        if cfg.optim.lr_find:
            self._run_lr_find(resume)
        o = self.cfg.optim
        self.optimizer = make_optimizer(self.model, o.lr, o.backbone_lr_factor, o.weight_decay)
        self.scheduler = make_scheduler(self.optimizer, self.cfg, len(self.train_loader))

    def _run_lr_find(self, resume: bool) -> None:
        o = self.cfg.optim
        if resume:  # the finder already ran: its suggestion is the lr saved in the resolved config
            saved_lr = load_checkpoint(self.ckpt_dir / "last.pt")["config"]["optim"]["lr"]
            self.cfg = self.cfg.model_copy(update={"optim": o.model_copy(update={"lr": saved_lr})})
            return
        result = None
        if self.is_main:  # one finder, on rank 0's shard: every replica must train with the same LR
            result = lr_find(self.model, self.train_loader, self.loss_fn,
                             lambda m, lr: make_optimizer(cast(KvasirClassifier, m), lr, o.backbone_lr_factor, o.weight_decay),
                             self.device, self.cfg.model.task, amp=self.cfg.runtime.amp,
                             channels_last=self.cfg.runtime.channels_last, augment=self.augment)
        result = ddp.broadcast_from_rank0(result, self.world)
        log.info("LR finder suggests lr=%.2e (config had %.2e)", result["suggested_lr"], o.lr)
        self.cfg = self.cfg.model_copy(update={"optim": o.model_copy(update={"lr": result["suggested_lr"]})})
        self.lr_find_result = result

    def restore(self) -> None:
        """Load ``last.pt`` (model, optimizer, scheduler, epoch, RNG, history) for ``--resume``.

        First finishes or undoes a checkpoint commit a kill interrupted (see
        ``checkpoint.commit_checkpoints``) and checks that ``best.pt`` holds the epoch ``last.pt`` names.
        """
        state = load_checkpoint(self.ckpt_dir / "last.pt", map_location=self.device)  # checked by _check_run_dir
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        self.start_epoch = int(state["epoch"])
        self.best_score = float(state.get("best_score", state.get("best_val_macro_ap", -float("inf"))))
        self.history = list(state["history"])
        self.posthoc_state = {k: state.get(k) for k in self.posthoc_state}
        self.best_epoch = int(state.get("best_epoch", 0))
        ddp.on_rank0(lambda: recover_checkpoints(self.ckpt_dir, state), self.rank, self.world)
        log.info("resumed %s after epoch %d", self.run_dir, self.start_epoch)

    def checkpoint_state(self, epoch: int) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else {},
            "epoch": epoch,
            "rng": rng_state(),  # the augmentation generator needs none: it is reseeded every epoch
            "world_size": self.world,
            "config": dump_config(self.cfg),
            "label_names": self.data.label_names,
            "class_names": self.data.class_names,
            "taxonomy_version": load_taxonomy().version,  # checked by predict (train.classify.check_taxonomy_version)
            **self.posthoc_state,  # thresholds, calibration, decoder
            "split_sha256": self.data.split.sha256,
            "dataset": self.data.dataset_name,
            "versions": library_versions(),
            "select": self.cfg.eval.select,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "history": self.history,
        }

    def _wrapped(self, frozen: bool) -> nn.Module:
        """The module to train this epoch: DDP must be rebuilt when the trainable set changes."""
        self.model.set_backbone_frozen(frozen)
        net: nn.Module = self.model
        if self.world > 1:  # gradients are averaged over ranks: the global batch is world x batch_size
            net = DistributedDataParallel(net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.cfg.runtime.compile and self.device.type in COMPILE_DEVICES:
            net = cast(nn.Module, torch.compile(net, backend=COMPILE_BACKEND))  # an OptimizedModule
        return net

    def run_epoch(self, epoch: int, net: nn.Module) -> dict[str, Any]:
        cfg = self.cfg
        epoch_seed = cfg.runtime.seed * 100_003 + epoch
        seed_everything(epoch_seed, self.generator)
        if self.augment is not None:  # its own stream per rank: replicas see differently augmented images
            self.augment.generator.manual_seed(epoch_seed + 7_777_777 + 1_000_003 * self.rank)
        if self.world > 1:
            self.train_loader.sampler.sampler.set_epoch(epoch)  # type: ignore[attr-defined]  # sampler = BatchSampler(DistributedSampler); torch types it Iterable
        stats = train_one_epoch(net, self.train_loader, self.loss_fn, self.optimizer, self.scheduler, self.device,
                                cfg.model.task, cfg.runtime.amp, cfg.runtime.channels_last,
                                progress=cfg.runtime.progress and self.is_main, desc=f"epoch {epoch + 1}/{cfg.optim.epochs}",
                                augment=self.augment)
        stats = ddp.reduce_epoch_stats(stats, self.device, self.world)  # logged loss and img/s are over all ranks
        entry: dict[str, Any] = {"epoch": epoch + 1, **stats}
        if self.is_main:
            val = self.evaluate_split("val")
            post = report.tune_on_val(cfg.model.task, val["outputs"], self.data)
            self.posthoc_state = post.to_state()
            metrics = report.score(cfg.model.task, val["outputs"], "val", self.data, post)
            entry.update({"val_loss": val["loss"], **report.scalars(metrics, "val_")})
        return entry

    def _tta_outputs(self, split: str) -> Any:
        rt = self.cfg.runtime
        return evaluate_tta(self.model, self.eval_loaders[split], self.device, self.cfg.model.task, rt.amp,
                            rt.channels_last)

    def evaluate_split(self, split: str) -> dict[str, Any]:
        rt = self.cfg.runtime
        return evaluate(self.model, self.eval_loaders[split], self.device, self.cfg.model.task, self.loss_fn,
                        rt.amp, rt.channels_last)

    def train(self, stop_after_epoch: int | None = None) -> bool:
        """Epoch loop from ``start_epoch``; returns False when stopped early by ``stop_after_epoch``."""
        cfg, net, frozen = self.cfg, None, None
        for epoch in range(self.start_epoch, cfg.optim.epochs):
            if frozen != (epoch < cfg.optim.warmup_epochs):
                frozen = epoch < cfg.optim.warmup_epochs
                net = self._wrapped(frozen)
            assert net is not None  # wrapped in the first iteration (frozen starts as None)
            entry = self.run_epoch(epoch, net)
            if self.is_main:
                self._end_epoch(epoch, entry)
            ddp.barrier(self.world)
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < cfg.optim.epochs:
                return False
        return True

    def _end_epoch(self, epoch: int, entry: dict[str, Any]) -> None:
        self.history.append(entry)
        score = report.selection_score(self.cfg.eval.select, entry)
        improved = score > self.best_score
        if improved:
            self.best_score = score
        self._save_checkpoints(epoch + 1, improved)
        self.tracker.log({k: v for k, v in entry.items() if isinstance(v, (int, float)) and v is not None}, step=epoch + 1)
        log.info("epoch %d: train_loss %.4f  val_macro_ap %.4f  val_top1 %.4f  %.1f img/s (data %.1fs, step %.1fs)%s",
                 epoch + 1, entry["train_loss"], entry.get("val_macro_ap", float("nan")),
                 entry.get("val_top1", float("nan")), entry["img_s"], entry["data_time_s"], entry["step_time_s"],
                 "  *best*" if improved else "")

    def _save_checkpoints(self, epochs_done: int, improved: bool) -> None:
        """Commit best.pt and last.pt of this epoch (``checkpoint.commit_checkpoints``)."""
        new_best = improved or not (self.ckpt_dir / "best.pt").is_file()
        if new_best:
            self.best_epoch = epochs_done
        commit_checkpoints(self.ckpt_dir, self.checkpoint_state(epochs_done), new_best)

    def final_report(self) -> dict[str, Any]:
        """Best checkpoint on val (for the record) and test (the report); plots; metrics.json.

        Scores are calibrated and decoded with what best.pt carries (fitted on val at its
        epoch); the TTA rows get their own calibration, decoder and thresholds, fitted on
        the TTA outputs of val (the 8-view mean is a different score from one view's).
        """
        best = load_checkpoint(self.ckpt_dir / "best.pt", map_location=self.device)
        self.model.load_state_dict(best["model"])
        task = self.cfg.model.task
        n_out = len(self.data.label_names) if task == "multilabel" else len(self.data.class_names)
        post = posthoc.from_checkpoint(best, task, n_out, where=str(self.ckpt_dir / "best.pt"))
        val = report.score(task, self.evaluate_split("val")["outputs"], "val", self.data, post)
        test_out = self.evaluate_split("test")["outputs"]
        test = report.score(task, test_out, "test", self.data, post)
        report.save_predictions(self.run_dir / "predictions_test.npz", task, test_out, self.data, post)
        m = self.cfg.model
        plot_paths = report.write_plots(task, test_out, test, self.data, m.inset_mode, m.branch_size_px,
                                        self.run_dir / "plots", post)
        metrics = {
            "kind": "classifier", "task": task, "model": m.arch, "inset_mode": m.inset_mode,
            "seed": self.cfg.runtime.seed, "dataset": self.data.dataset_name, "split_sha256": self.data.split.sha256,
            "device": str(self.device), "best_epoch": int(best["epoch"]),
            "n_images": {k: len(r) for k, r in self.data.records.items()},
            "ground_truth": self.data.ground_truth,  # folder or verified labels on test, and on how many images
            "label_names": self.data.label_names, "class_names": self.data.class_names,
            "thresholds_tuned_on": "val", "calibrated_on": "val",
            "selection": report.selection_record(self.cfg.eval.select, best),
            "history": self.history, "val": val, "test": test,
        }
        if self.cfg.eval.tta:  # its own keys: the untouched "test" numbers stay what the model alone gives
            metrics.update(self._tta_report(task))
        if self.lr_find_result is not None:
            metrics["lr_find"] = self.lr_find_result
        write_metrics(self.run_dir / "metrics.json", metrics)
        report.log_final(self.tracker, task, test_out, test, self.data, plot_paths, self.run_dir,
                         self.cfg.tracking, self.run_name, post)
        return metrics

    def _tta_report(self, task: str) -> dict[str, Any]:
        """``val_tta`` and ``test_tta``: TTA outputs scored with calibration, decoder and
        thresholds fitted on the TTA outputs of val (``posthoc_fitted_on: "val-tta"``)."""
        val_out, test_out = self._tta_outputs("val"), self._tta_outputs("test")
        post = report.tune_on_val(task, val_out, self.data)
        tag = {"tta": TTA_NAME, "posthoc_fitted_on": "val-tta"}
        report.save_predictions(self.run_dir / "predictions_test_tta.npz", task, test_out, self.data, post)
        return {"val_tta": {**report.score(task, val_out, "val", self.data, post), **tag},
                "test_tta": {**report.score(task, test_out, "test", self.data, post), **tag}}


def train_classifier(cfg: ClassifierConfig, out_dir: str | Path, resume: bool = False,
                     stop_after_epoch: int | None = None) -> Path:
    """Train one classifier run and write its run folder.

    Args:
        cfg: validated config.
        out_dir: run folder; must be absent or empty unless ``resume``.
        resume: continue from ``out_dir/checkpoints/last.pt`` (the config must match it); a
            run that failed before its first checkpoint is started again.
        stop_after_epoch: return after this many epochs as if the run were killed (leaves
            ``last.pt`` and no metrics.json); used by the resume test and time-boxed jobs.

    Returns:
        The run folder.

    Raises:
        RunDirError: existing run folder without ``resume``, or nothing to resume.
        RunLockedError: another training is running into ``out_dir``.
        CheckpointError: ``model.weights`` is a file that cannot be loaded safely.
    """
    run_dir = Path(out_dir)
    check_weights_file(cfg.model)  # a bad or unsafe model.weights file fails before anything is written
    rank, world = ddp.join_process_group(resolve_device(cfg.runtime.device))
    # one training per run folder (rank 0 holds the lock for all ranks), taken before the folder check
    with run_lock(run_dir) if rank == 0 else contextlib.nullcontext():
        return _train_classifier(cfg, run_dir, resume, stop_after_epoch, rank, world)


def _train_classifier(cfg: ClassifierConfig, run_dir: Path, resume: bool, stop_after_epoch: int | None,
                      rank: int, world: int) -> Path:
    resume = ddp.on_rank0(lambda: _check_run_dir(run_dir, cfg, resume, world), rank, world)  # before any write
    # Thread count and determinism are process-wide: put them back for the caller afterwards.
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    trainer = None
    try:
        trainer = _Trainer(cfg, run_dir, resume)
        if resume:
            trainer.restore()
        finished = trainer.train(stop_after_epoch)
        if finished and trainer.is_main:
            trainer.final_report()
        ddp.barrier(trainer.world)  # every rank returns once the run folder is complete
    finally:
        if trainer is not None:
            trainer.tracker.finish()
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1])
        torch.backends.cudnn.benchmark = saved[2]
    return run_dir


def train_classifier_from_cli(config_path: str | Path, out_dir: str | Path, overrides: list[str] | tuple[str, ...] = (),
                              resume: bool = False) -> Path:
    """``kvasir-ml train classifier``: load the YAML + overrides, then ``train_classifier``."""
    cfg = load_classifier_config(config_path, list(overrides))
    return train_classifier(cfg, out_dir, resume=resume)
