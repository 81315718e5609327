"""Predict over a whole archive: JSON Lines written as it goes, bounded memory, resumable.

``kvasir-ml predict FOLDER --out predictions.jsonl`` writes one ``kvasir_ml.inference.combined`` entry
per line and flushes after every batch, so a run over 100k frames holds only the batches in
flight, and a run that was killed is resumed by running the same command again: images
whose line is already in the file are skipped (matched by the ``"image"`` path as written),
and a torn last line (the kill came mid-write) is cut off first.

Decoding, inset detection and the classifier's input preparation run in DataLoader worker
processes while the main process runs the models, so the models wait for frames only when
the workers cannot keep up, and (the classifier alone) each batch is started on the model
before the previous one is collected and written, so on a CPU no core idles between batches
(``Lanes.submit``; ``scripts/bench_predict.py`` measures the ratio to a bare forward pass).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from kvasir_ml.inference.combined import CHUNK_IMAGES, Predictor, _apply, decode_frame
from kvasir_ml.results_schema import PredictionRecord, parse_result, prediction_line

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def list_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files given directly (kept as given, even when missing: they become error entries)
    and every image under the given folders (recursive, sorted; by suffix ``IMAGE_SUFFIXES``)."""
    out: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            out.append(path)
    return out


def written_images(out_path: str | Path) -> set[str]:
    """The ``"image"`` of every complete line of a JSON Lines output; a torn last line (no line
    end: the writer was killed mid-line) is cut off the file.

    Raises:
        ValueError: a complete line that is not a JSON object with ``"image"`` (naming file and line).
    """
    out_path = Path(out_path)
    if not out_path.exists():
        return set()
    done: set[str] = set()
    with open(out_path, "rb+") as fh:
        offset = 0
        for lineno, line in enumerate(fh, 1):
            if not line.endswith(b"\n"):
                log.warning("%s: line %d is torn (the run was stopped while writing it): cut off, its image "
                            "is predicted again", out_path, lineno)
                fh.truncate(offset)
                break
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
            if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
                raise ValueError(f"{out_path}, line {lineno}: not a prediction entry (a JSON object with \"image\"); "
                                 "resume only a file `kvasir-ml predict --out FILE.jsonl` wrote, or give a new --out")
            done.add(entry["image"])
            offset += len(line)
    return done


def read_predictions(path: str | Path) -> list[PredictionRecord]:
    """Every record of a JSON Lines prediction file, checked as ``PredictionRecord``.

    Raises:
        ValueError: as ``read_jsonl``; ``ResultsError`` for a record with a field of the wrong
            type, naming the file, line and field.
    """
    return [parse_result(PredictionRecord, e, f"{path}, line {n}") for n, e in read_jsonl(path, numbered=True)]


def read_jsonl(path: str | Path, numbered: bool = False) -> list[Any]:
    """Every entry of a JSON Lines prediction file (``ls push --predictions``), as parsed
    (``numbered``: as ``(line number, entry)`` pairs).

    Raises:
        ValueError: a line that is not a JSON object, or a torn last line (a run still writing,
            or one that was stopped: run it again to finish), naming the file and line.
    """
    entries = []
    with open(path, "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            if not line.endswith(b"\n"):
                raise ValueError(f"{path}, line {lineno}: torn last line (the predict run is still writing or was "
                                 "stopped); run the same `kvasir-ml predict` again to finish the file")
            try:
                entry = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}, line {lineno}: not JSON ({exc})") from None
            if not isinstance(entry, dict):
                raise ValueError(f"{path}, line {lineno}: expected a prediction entry (a JSON object)")
            entries.append((lineno, entry) if numbered else entry)
    return entries


@dataclass
class StreamReport:
    n_images: int = 0  # images asked for
    n_already: int = 0  # skipped: already in the output (resume)
    n_written: int = 0  # lines written by this run
    n_failed: int = 0  # of those, entries with "error"
    seconds: float = 0.0  # from the first batch asked for to the last line flushed

    @property
    def images_per_s(self) -> float:
        return self.n_written / self.seconds if self.seconds > 0 else 0.0


class _Frames(Dataset):
    """Decoded frame -> entry stub, inset, classifier inputs (and the frame itself for a detector)."""

    def __init__(self, paths: Sequence[Path], classifier_cfg: Any | None, keep_frames: bool):
        self.paths, self.cfg, self.keep_frames = list(paths), classifier_cfg, keep_frames

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        entry, rgb, inset = decode_frame(self.paths[i])
        item: dict[str, Any] = {"entry": entry, "inset": inset}
        if rgb is None:
            return item
        if self.cfg is not None:
            from kvasir_ml.train.classify import classifier_inputs

            try:
                item["inputs"] = classifier_inputs(self.cfg, rgb, inset)
            except Exception as exc:  # noqa: BLE001 — one odd frame costs only itself
                entry["error"] = f"classifier failed: {type(exc).__name__}: {exc}"
        if self.keep_frames:
            item["frame"] = torch.from_numpy(rgb)  # shared memory between processes, no pickled copy
        return item


@dataclass
class _Batch:
    """One batch of ``_Frames`` items and, stacked per key, the classifier inputs of those
    without an error (the frames that decoded and were prepared), in order; None without any."""

    items: list[dict[str, Any]]
    inputs: dict[str, torch.Tensor] | None


def _collate(items: list[dict[str, Any]]) -> _Batch:
    """Stack the inputs in the worker: a few shared-memory tensors per batch reach the main
    process, not 3 per image (each passed as a file descriptor: measured 2 ms of the main
    process's time per image, against 0.1 ms stacked, 2-core AMD EPYC, 224 px)."""
    inputs = [it.pop("inputs") for it in items if "inputs" in it]
    return _Batch(items, default_collate(inputs) if inputs else None)


def default_workers() -> int:
    """Worker processes for decoding: the cores the models leave (at least 1)."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def predict_to_jsonl(predictor: Predictor, paths: Sequence[str | Path], out_path: str | Path,
                     model_version: str | None = None, workers: int | None = None,
                     batch_images: int = CHUNK_IMAGES, progress: bool = True) -> StreamReport:
    """Predict ``paths`` into the JSON Lines file ``out_path``, skipping images already in it.

    Args:
        predictor: the loaded models.
        model_version: stamped on each entry (``kvasir-ml ls push`` reads it).
        workers: decoding processes (0 = in this process); default ``default_workers()``.
        batch_images: images per model batch (and per flush).
        progress: a tqdm bar with img/s and the ETA (on stderr).

    Returns:
        Counts and this run's seconds / images per second.
    """
    from tqdm import tqdm

    out_path = Path(out_path)
    paths = [Path(p) for p in paths]
    done = written_images(out_path)
    todo = [Path(p) for p in paths if str(p) not in done]  # (Path(p): paths holds Paths by now)
    report = StreamReport(n_images=len(paths), n_already=len(paths) - len(todo))
    if report.n_already:
        log.info("%s holds %d of the %d images: resuming with the other %d", out_path, report.n_already,
                 len(paths), len(todo))
    workers = default_workers() if workers is None else workers
    cfg = predictor.classifier[1] if predictor.classifier is not None else None
    loader = DataLoader(_Frames(todo, cfg, keep_frames=predictor.detect is not None), batch_size=batch_images,
                        num_workers=workers, collate_fn=_collate, prefetch_factor=2 if workers else None)
    bar = tqdm(total=len(paths), initial=report.n_already, unit="img", disable=not progress, smoothing=0.05,
               dynamic_ncols=True)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(out_path, "a", encoding="utf-8") as fh:
        for entries in _in_flight(predictor, loader):
            for entry in entries:
                if model_version:
                    entry["model_version"] = model_version
                fh.write(prediction_line(entry))
                report.n_written += 1
                report.n_failed += "error" in entry
            fh.flush()  # a kill loses at most the batches in flight
            bar.update(len(entries))
    report.seconds = time.perf_counter() - t0
    bar.close()
    return report


def _in_flight(predictor: Predictor, batches: Iterable[_Batch]) -> Iterator[list[dict[str, Any]]]:
    """Each batch's entries, in order. With the classifier alone a batch is started
    (``start_models``) before the previous one is collected, so the cores go on to it while that
    one's last chunks finish. With a detector, one batch at a time: it runs when its batch is
    collected, and would otherwise share the cores with the next batch's lanes (its thread
    count is tuned for the cores being its own)."""
    ahead = predictor.detect is None
    finish = None
    for batch in batches:
        started = start_models(predictor, batch)
        if finish is not None:
            yield finish()
        finish = started
        if not ahead:
            yield finish()
            finish = None
    if finish is not None:
        yield finish()


def start_models(predictor: Predictor, batch: _Batch) -> Callable[[], list[dict[str, Any]]]:
    """Start the classifier on one batch (``Predictor.start_classify``); the returned call
    finishes it (the detector runs then) and gives its entries, in order (failures carry "error")."""
    ok = [it for it in batch.items if "error" not in it["entry"]]  # (just those with inputs, if any)
    entries, insets = [it["entry"] for it in ok], [it["inset"] for it in ok]
    inputs = batch.inputs
    # _Frames sets an error exactly where it made no inputs: results are matched by position.
    assert inputs is None or len(next(iter(inputs.values()))) == len(ok), "inputs out of step with the frames"
    started = None
    if predictor.classifier is not None and ok and inputs is not None:
        started = predictor.start_classify(inputs)

    def finish() -> list[dict[str, Any]]:
        if started is not None and inputs is not None:
            one_by_one = [{k: v[i] for k, v in inputs.items()} for i in range(len(ok))]  # for a retry
            _apply("classifier", lambda each, _insets: predictor.classify_prepared(each), entries, one_by_one,
                   insets, lambda e, out: e.update(out), started=started)
        if predictor.detect is not None:
            _apply("detector", predictor.detect, entries, [it["frame"].numpy() for it in ok], insets,
                   lambda e, boxes: e.__setitem__("boxes", boxes))
        return [it["entry"] for it in batch.items]

    return finish
