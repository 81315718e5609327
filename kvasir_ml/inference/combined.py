"""Combined prediction: classifier labels, detector boxes and the inset state per image.

Output, one entry per image (the interface ``kvasir-ml predict`` writes)::

    {"image": "path/a.jpg", "width": 622, "height": 529,
     "inset": {"state": "green", "box_xywh_px": [...] | null},
     "labels": {"polyp": 0.93, ...},                 # every label's score (classifier)
     "predicted_labels": ["polyp"],                   # scores >= tuned per-class thresholds
     "source_class": {"name": "polyps", "score": 0.8} | null,
     "boxes": [{"class": "polyp", "score": 0.71, "xywh_px": [x, y, w, h]}]}

Images that cannot be read or processed get ``{"image": ..., "error": "..."}`` (plus whatever
was computed before the failure) and do not stop the rest: one bad image costs only itself.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from kvasir_ml.cpu_threads import CpuPlan, Lanes, ThreadTuner, deferred, lanes_plan
from kvasir_ml.data.images import MIN_FRAME_SIDE_PX, ImageError, load_rgb
from kvasir_ml.data.inset import detect_inset

log = logging.getLogger(__name__)

# Images decoded and held in memory at a time (each is decoded once for all models).
CHUNK_IMAGES = 32


class Predictor:
    """The classifier and/or detector loaded once; calling it on image paths gives
    ``predict_images``' entries (long-lived callers such as the ML backend keep one).

    Args:
        classifier_ckpt: classifier checkpoint (always loaded with ``weights_only=True``).
        detector_ckpt: detector checkpoint (checked by ``detection.safe_load`` first).
        device: auto | cpu | cuda[:N].
        trust_detector: skip the detector checkpoint's safety check (files you trust).
        detector_conf: boxes below this score are dropped; None = the checkpoint's ``predict_conf``.
        max_boxes: boxes kept per frame, the highest scores first.

    Raises:
        CheckpointError / WeightsError: a checkpoint cannot be loaded (here, before any image);
            a detector given as a model YAML (untrained) is refused.
    """

    def __init__(self, classifier_ckpt: str | Path | None = None, detector_ckpt: str | Path | None = None,
                 device: str = "auto", trust_detector: bool = False, detector_conf: float | None = None,
                 max_boxes: int = 100):
        self.classify: Callable | None = None
        self.detect: Callable | None = None
        self.classifier: tuple | None = None  # (model, config, checkpoint) from load_classifier
        from kvasir_ml.device import resolve_device

        self.device = None
        # On a CPU the classifier runs its batches in lanes, one per core (cpu_threads says why).
        # Ultralytics' predictor is one object whose batch cannot be cut: the detector's thread
        # count is tuned per batch instead.
        self.classifier_plan: CpuPlan | None = None  # one call, threads left alone (a GPU); set below on a CPU
        self.classifier_lanes = Lanes()
        self.detector_threads = ThreadTuner(_device_or_none(device) if detector_ckpt else None)
        if classifier_ckpt:
            from kvasir_ml.train.classify import classifier_inputs, load_classifier

            dev = self.device = resolve_device(device)
            loaded = self.classifier = load_classifier(classifier_ckpt, dev)
            if dev.type == "cpu":
                self.classifier_plan = lanes_plan()
            self.classify = lambda rgbs, insets: self.classify_prepared(
                [classifier_inputs(loaded[1], rgb, inset) for rgb, inset in zip(rgbs, insets)])
        if detector_ckpt:
            from kvasir_ml.detection.detect import detect_arrays
            from kvasir_ml.detection.ultralytics_env import WeightsError
            from kvasir_ml.detection.yolo import load_yolo

            if str(detector_ckpt).endswith((".yaml", ".yml")):  # an architecture, no trained weights
                raise WeightsError(f"detector {detector_ckpt} is a model description (YAML), not a trained "
                                   "detector: its boxes would be random; give a trained checkpoint "
                                   "(RUN_DIR/checkpoints/best.pt)")
            model = load_yolo(detector_ckpt, trust=trust_detector)

            def detect(rgbs: list[Any], insets: list[Any]) -> list[Any]:
                with self.detector_threads.batch(len(rgbs)):
                    return detect_arrays(model, rgbs, device=device, insets=insets, conf=detector_conf,
                                         max_det=max_boxes, batch=max(1, len(rgbs)))

            self.detect = detect

    def classify_prepared(self, inputs: Sequence[Any]) -> list[dict[str, Any]]:
        """The classifier on inputs made by ``train.classify.classifier_inputs``, as one batch
        (on a CPU in lanes: ``start_classify``)."""
        from kvasir_ml.train.classify import collate_inputs

        assert self.device is not None  # set when the classifier is loaded
        return self.start_classify(collate_inputs(inputs, self.device))()

    def start_classify(self, batch: dict[str, Any]) -> Callable[[], list[dict[str, Any]]]:
        """Start the classifier on a batch of prepared inputs (``classifier_inputs``' tensors
        stacked per key); the returned call gives one entry per image, in order (waiting for
        them), and raises the batch's error (even one raised while starting it). On a CPU the batch is queued on the lanes and this
        returns at once: start the next batch before collecting this one and no core idles
        between batches (``Lanes.submit``)."""
        from kvasir_ml.train.classify import classifier_entries

        loaded, device = self.classifier, self.device
        assert loaded is not None and device is not None  # loaded together

        def start() -> Callable[[], list[dict[str, Any]]]:
            outputs = self.start_forward({k: v.to(device) for k, v in batch.items()})
            return lambda: classifier_entries(loaded, outputs())

        return deferred(start)

    def start_forward(self, batch: dict[str, Any], plan: CpuPlan | None = None) -> Callable[[], Any]:
        """The classifier's raw outputs on one input batch, started on ``plan`` (default
        ``classifier_plan``; ``Lanes.submit``); the returned call waits for them."""
        assert self.classifier is not None
        model = self.classifier[0]
        n = len(next(iter(batch.values())))
        chunks = self.classifier_lanes.submit(lambda a, b: model(**{k: v[a:b] for k, v in batch.items()}), n,
                                              plan or self.classifier_plan)

        def outputs() -> Any:
            outs = chunks()
            return outs[0] if len(outs) == 1 else torch.cat(outs)

        return outputs

    def __call__(self, image_paths: Sequence[str | Path]) -> list[dict[str, Any]]:
        """One entry per image, in order; failed images carry ``"error"``."""
        paths = [Path(p) for p in image_paths]
        chunks = [paths[start:start + CHUNK_IMAGES] for start in range(0, len(paths), CHUNK_IMAGES)]
        results: list[dict[str, Any]] = []
        # The next chunk is decoded in a thread while the models run on this one (PIL's decode
        # and torch release the GIL); only two chunks of frames are in memory at a time.
        with ThreadPoolExecutor(1, thread_name_prefix="predict-decode") as pool:
            pending = pool.submit(_decode_chunk, chunks[0]) if chunks else None
            for i in range(len(chunks)):
                assert pending is not None  # one pending decode per chunk
                decoded = pending.result()
                if i + 1 < len(chunks):
                    pending = pool.submit(_decode_chunk, chunks[i + 1])
                results += _run_chunk(decoded, self.classify, self.detect)
        return results


def _device_or_none(name: str) -> Any:
    """The torch device, or None where only ultralytics understands the name (its own errors then)."""
    from kvasir_ml.device import resolve_device

    try:
        return resolve_device(name)
    except ValueError:
        return None


def predict_images(
    image_paths: Sequence[str | Path],
    classifier_ckpt: str | Path | None = None,
    detector_ckpt: str | Path | None = None,
    device: str = "auto",
    trust_detector: bool = False,
    detector_conf: float | None = None,
    max_boxes: int = 100,
) -> list[dict[str, Any]]:
    """Run the classifier and/or the detector on images and merge their outputs.

    Args:
        image_paths: image files.
        classifier_ckpt, detector_ckpt, device, trust_detector, detector_conf, max_boxes: as for ``Predictor``.

    Returns:
        One entry per image, in order; failed images carry ``"error"``.

    Raises:
        CheckpointError / WeightsError: a checkpoint cannot be loaded (before any image).
    """
    return Predictor(classifier_ckpt, detector_ckpt, device, trust_detector, detector_conf, max_boxes)(image_paths)


def decode_frame(path: Path) -> tuple[dict[str, Any], Any, Any]:
    """Decode one image and measure its inset: ``(entry, rgb, inset)``; on failure ``rgb`` and
    ``inset`` are None and the entry carries ``"error"`` (one bad image costs only itself)."""
    try:
        rgb = load_rgb(path, min_side_px=MIN_FRAME_SIDE_PX)
        inset = detect_inset(rgb)
    except ImageError as exc:
        return {"image": str(path), "error": exc.reason}, None, None
    except Exception as exc:  # noqa: BLE001 — a bug on one odd image must not cost the others
        return {"image": str(path), "error": f"inset detection failed ({type(exc).__name__}: {exc})"}, None, None
    entry = {
        "image": str(path), "width": int(rgb.shape[1]), "height": int(rgb.shape[0]),
        "inset": {"state": inset.state, "box_xywh_px": list(inset.box_xywh_px) if inset.box_xywh_px else None},
        "labels": {}, "predicted_labels": [], "source_class": None, "boxes": [],
    }
    return entry, rgb, inset


def _decode_chunk(paths: list[Path]) -> list[tuple[dict[str, Any], Any, Any]]:
    return [decode_frame(path) for path in paths]


def _predict_chunk(paths: list[Path], classify: Callable | None, detect: Callable | None) -> list[dict[str, Any]]:
    """Decode each image once; the inset, the classifier and the detector all use that decode."""
    return _run_chunk(_decode_chunk(paths), classify, detect)


def _run_chunk(decoded: list[tuple[dict[str, Any], Any, Any]], classify: Callable | None,
               detect: Callable | None) -> list[dict[str, Any]]:
    """The models on decoded frames (``decode_frame``'s triples); the entries, in order."""
    results = [entry for entry, _, _ in decoded]
    frames = [rgb for _, rgb, _ in decoded if rgb is not None]
    insets = [inset for _, rgb, inset in decoded if rgb is not None]
    ok = [entry for entry, rgb, _ in decoded if rgb is not None]
    if classify is not None:
        _apply("classifier", classify, ok, frames, insets, lambda entry, out: entry.update(out))
    if detect is not None:
        _apply("detector", detect, ok, frames, insets, lambda entry, boxes: entry.__setitem__("boxes", boxes))
    return results


def _apply(name: str, run: Callable[[list[Any], list[Any]], list[Any]], entries: list[dict[str, Any]],
           frames: list[Any], insets: list[Any], merge: Callable[[dict[str, Any], Any], None],
           started: Callable[[], list[Any]] | None = None) -> None:
    """Merge ``run(frames, insets)`` into ``entries`` (or ``started()``: the batch's results, from
    a run started earlier); if the batch fails, retry frame by frame with ``run`` so only the
    images that fail get an ``error`` (the others keep their results)."""
    if not entries:
        return
    try:
        outputs: list[Any] = started() if started is not None else run(frames, insets)
    except Exception as exc:  # noqa: BLE001 — find the image(s) at fault below
        log.warning("%s failed on a batch (%s: %s); retrying image by image", name, type(exc).__name__, exc)
        outputs = []
        for frame, inset in zip(frames, insets):
            try:
                outputs.append(run([frame], [inset])[0])
            except Exception as one:  # noqa: BLE001
                outputs.append(one)
    for entry, out in zip(entries, outputs):
        if isinstance(out, Exception):
            reason = out.reason if isinstance(out, ImageError) else f"{type(out).__name__}: {out}"
            entry["error"] = f"{name} failed: {reason}"
        else:
            merge(entry, out)


def count_failures(results: Sequence[dict[str, Any]]) -> int:
    """How many entries of ``predict_images``' output carry an ``error``."""
    return sum(1 for r in results if "error" in r)
