"""``kvasir-ml video predict``: labels, tracked boxes and smoothed alerts for every frame of a video.

Pipeline (a decode process and a few threads, bounded queues, nothing but a few batches of
pixels in memory):

    decode process (decode, inset, classifier inputs, the detector's letterboxed batch;
    ``decode_process``) ──batches in shared-memory slots──▶ main: the models on batch k (on a
    CPU, the classifier and the detector, ``detection.batch.BatchDetector``, side by side in
    two model threads) while batch k-1 goes through the tracker and the smoother into
    frames.jsonl ──frames──▶ encode thread: annotated MP4, then the batch's slot is reused

Why a process: the inset detection is many small numpy steps that hold the GIL, and every
torch op of the models needs the GIL back when it ends; in a thread of this process it delays
the models. Why the two models side by side on a CPU: at the tiny models' size a
forward split over 2 threads is only ~1.35x faster than on 1 (the threads wait for each other
at every op), so two single-threaded forwards at once use the cores better. OpenCV's encoder
and drawing release the GIL, so encoding stays a thread.

Outputs in ``out_dir``: ``frames.jsonl`` (one line per processed frame, streamed),
``annotated.mp4``, ``timeline.png``, ``summary.json``; the timeline and the summary are
computed from ``frames.jsonl`` afterwards (``render``).
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
import torch

from kvasir_ml.data.inset import detect_inset
from kvasir_ml.io import backup_existing
from kvasir_ml.video.io import VideoWriter, iter_frames, probe_video
from kvasir_ml.video.smoothing import LabelSmoother, SmoothingConfig

if TYPE_CHECKING:
    from kvasir_ml.detection.batch import BatchDetector
    from kvasir_ml.video.decode_process import ForkedDecoder

log = logging.getLogger(__name__)

FRAMES_NAME, VIDEO_NAME, TIMELINE_NAME, SUMMARY_NAME = "frames.jsonl", "annotated.mp4", "timeline.png", "summary.json"
STAGES = ("decode", "inference", "tracking", "encode")
_DONE = object()


class _Worker(threading.Thread):
    """A daemon thread whose exception is re-raised by ``join_checked`` in the caller."""

    def __init__(self, target: Callable[[], None], name: str):
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._target_fn()
        except BaseException as exc:  # noqa: BLE001 — handed to the main thread
            self.error = exc

    def join_checked(self) -> None:
        self.join()
        if self.error is not None:
            raise self.error


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put unless the consumer gave up (then False), so a failed run never blocks on a full queue."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.2)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event) -> Any:
    """The next item, or ``_DONE`` once another thread has set ``stop`` (it will send nothing more)."""
    while True:
        try:
            return q.get(timeout=0.2)
        except queue.Empty:
            if stop.is_set():
                return _DONE


def _batches(video: Path, every: int, batch: int, start_s: float, end_s: float | None, times: dict[str, float],
             prepare: Callable | None) -> Iterator[list[tuple[int, float, np.ndarray, Any, Any]]]:
    """Decoded frames with their inset measured and the classifier's inputs made (``prepare``),
    in the decode thread: off the inference path."""
    chunk: list[tuple[int, float, np.ndarray, Any, Any]] = []
    t0 = time.perf_counter()
    for index, time_s, rgb in iter_frames(video, every, start_s, end_s):
        inset = detect_inset(rgb)
        chunk.append((index, time_s, rgb, inset, prepare(rgb, inset) if prepare else None))
        times["decode"] += time.perf_counter() - t0
        if len(chunk) == batch:
            yield chunk
            chunk = []
        t0 = time.perf_counter()
    if chunk:
        yield chunk


class _DecodedBatches:
    """``_batches`` packed for the decode process (``decode_process.ForkedDecoder``): decoding,
    the inset and both models' inputs run there, away from this process's GIL (the inset's many
    small numpy steps hold it), and arrive as a few arrays per batch.

    Each item: ``{"meta": [(index, time_s, inset)], "rgb": (N, H, W, 3) uint8, "cls": {key: stacked
    classifier inputs} | None, "det": the detector's input | None, "decode_s": seconds spent}``.
    """

    def __init__(self, video: Path, every: int, batch: int, start_s: float, end_s: float | None,
                 prepare: Callable | None, prepare_det: Callable | None):
        self.args = (video, every, batch, start_s, end_s)
        self.prepare, self.prepare_det = prepare, prepare_det

    def __iter__(self) -> Iterator[dict[str, Any]]:
        times = {"decode": 0.0}
        for chunk in _batches(*self.args, times, self.prepare):
            t0 = time.perf_counter()
            rgbs, insets = [c[2] for c in chunk], [c[3] for c in chunk]
            cls = {k: torch.stack([c[4][k] for c in chunk]) for k in chunk[0][4]} if self.prepare else None
            det = torch.from_numpy(self.prepare_det(rgbs, insets)) if self.prepare_det else None
            item = {"meta": [(c[0], c[1], c[3]) for c in chunk], "rgb": torch.from_numpy(np.stack(rgbs)), "cls": cls,
                    "det": det, "decode_s": times["decode"] + time.perf_counter() - t0}
            times["decode"] = 0.0
            yield item


def _unpack(item: dict[str, Any]) -> tuple[list[tuple[int, float, np.ndarray, Any, Any]], np.ndarray | None]:
    """A ``_DecodedBatches`` item as ``_batches`` yields it (views, no copies) plus the detector's input."""
    rgb, cls = item["rgb"].numpy(), item["cls"]
    chunk = [(index, time_s, rgb[i], inset, {k: v[i] for k, v in cls.items()} if cls is not None else None)
             for i, (index, time_s, inset) in enumerate(item["meta"])]
    return chunk, item["det"].numpy() if item["det"] is not None else None


def predict_video(video: str | Path, out_dir: str | Path, classifier_ckpt: str | Path | None = None,
                  detector_ckpt: str | Path | None = None, *, every: int = 1, batch_frames: int = 8,
                  device: str = "auto", trust_detector: bool = False, tracker: str = "bytetrack",
                  smoothing: SmoothingConfig | None = None, start_s: float = 0.0, end_s: float | None = None,
                  annotate: bool = True, tracking=None, progress: bool = True) -> dict[str, Any]:
    """Run the classifier and/or detector over a video and write the frame log and its renderings.

    Args:
        video: the video file (anything OpenCV's FFmpeg decodes).
        out_dir: output folder; an existing ``frames.jsonl`` there is backed up first.
        classifier_ckpt, detector_ckpt, device, trust_detector: as for ``kvasir_ml.inference.combined.Predictor``.
        every: process every k-th frame.
        batch_frames: frames per inference batch.
        tracker: ``bytetrack`` | ``botsort`` (box identities).
        smoothing: EMA + hysteresis settings (``SmoothingConfig()`` by default).
        start_s, end_s: time window to process (seek by time).
        annotate: write ``annotated.mp4``.
        tracking: a ``TrackingConfig`` for W&B (None or mode disabled = none).
        progress: show a progress bar with the ETA (stderr).

    Returns:
        The summary (also written to ``summary.json``): findings, tracks, fps, per-stage seconds per frame.

    Raises:
        VideoError: the video cannot be read; CheckpointError / WeightsError: a checkpoint cannot be loaded.
        ValueError: neither checkpoint given.
    """
    from kvasir_ml.detection.yolo import load_yolo
    from kvasir_ml.inference.combined import Predictor
    from kvasir_ml.video import render

    if not classifier_ckpt and not detector_ckpt:
        raise ValueError("video predict: give a classifier and/or a detector checkpoint")
    video, out = Path(video), Path(out_dir)
    info = probe_video(video)
    out.mkdir(parents=True, exist_ok=True)
    backup_existing(out / FRAMES_NAME)
    # The classifier through the still-image Predictor; the detector loaded the same way, but
    # called with a lower confidence (ByteTrack's second stage extends tracks with weak boxes).
    predictor = Predictor(classifier_ckpt, None, device)
    detector = load_yolo(detector_ckpt, trust=trust_detector) if detector_ckpt else None
    run = _Run(predictor, detector, device, info.fps / every, tracker, smoothing or SmoothingConfig())
    n_expected = max(1, int(((end_s or info.duration_s) - start_s) * info.fps + every - 1) // every)
    t_start = time.perf_counter()
    run.stream(video, out, every, batch_frames, start_s, end_s, annotate, info, n_expected, progress)
    wall_s = time.perf_counter() - t_start
    summary = render.summarize(out / FRAMES_NAME, info.fps / every)
    summary.update({"video": str(video), "fps_video": info.fps, "every": every, "frames_processed": run.n_frames,
                    "wall_s": round(wall_s, 3), "fps_processed": round(run.n_frames / wall_s, 3) if wall_s else None,
                    "stage_ms_per_frame": {k: round(1000 * v / max(1, run.n_frames), 3) for k, v in run.times.items()},
                    "tracker": tracker, "smoothing": run.smoothing_cfg.model_dump(),
                    "thresholds": {"on": run.smoother.on, "off": run.smoother.off} if run.smoother else None})
    render.plot_timeline(out / FRAMES_NAME, out / TIMELINE_NAME, summary.get("thresholds"))
    from kvasir_ml.io import atomic_write_json

    atomic_write_json(out / SUMMARY_NAME, summary)
    if tracking is not None:
        render.log_to_tracker(tracking, out, summary)
    return summary


class _Run:
    """State of one video: models, tracker, smoother and the stage timers."""

    def __init__(self, predictor, detector, device: str, fps_processed: float, tracker: str,
                 smoothing: SmoothingConfig):
        from kvasir_ml.cpu_threads import ThreadTuner
        from kvasir_ml.device import resolve_device
        from kvasir_ml.train.classify import classifier_inputs, classify_inputs
        from kvasir_ml.video.tracks import BoxTracker

        self.detector, self.device, self.smoothing_cfg = detector, device, smoothing
        dev = resolve_device(device)
        # On a CPU with both models, the detector and the classifier run in threads of their
        # own, side by side, each on its share of the cores (side_by_side_threads): for small models
        # two single-threaded forwards at once use two cores better than one forward split
        # over both, whose threads wait for each other at every op.
        self.side_by_side = dev.type == "cpu" and predictor.classifier is not None and detector is not None
        # The classifier split as `kvasir-ml predict` streams it: inputs made in the decode
        # process (classifier_inputs, pure CPU), the model in a model thread (classify_inputs).
        self.prepare: Callable | None = None
        self.classify: Callable | None = None
        if predictor.classifier is not None:
            cfg = predictor.classifier[1]
            self.prepare = lambda rgb, inset: classifier_inputs(cfg, rgb, inset)
            if self.side_by_side:
                self.classify = lambda inputs: classify_inputs(predictor.classifier, inputs, dev, max(1, len(inputs)))
            else:
                self.classify = predictor.classify_prepared  # in lanes on a CPU (cpu_threads)
        self.detector_threads = ThreadTuner(dev if detector is not None and not self.side_by_side else None)
        self._model_pool: ThreadPoolExecutor | None = None  # side by side: the two model threads
        self._times_lock = threading.Lock()
        self.times = dict.fromkeys(STAGES, 0.0)
        self.n_frames = 0
        self.smoother: LabelSmoother | None = None  # built from the first classifier output's thresholds
        self.tracker = None
        self.detect: BatchDetector | None = None
        if detector is not None:
            from kvasir_ml.detection.batch import BatchDetector
            from kvasir_ml.detection.detect import checkpoint_meta

            meta = checkpoint_meta(detector)
            self.high_conf = float(meta["predict_conf"])
            self.low_conf = min(0.1, self.high_conf)
            # ultralytics' predict steps once per batch, the input made in the decode process (detection.batch).
            self.detect = BatchDetector(detector, device, conf=self.low_conf)
            self.tracker = BoxTracker(meta["box_class_names"], fps_processed, tracker, self.low_conf, self.high_conf)

    def stream(self, video: Path, out: Path, every: int, batch: int, start_s: float, end_s: float | None,
               annotate: bool, info, n_expected: int, progress: bool) -> None:
        stop = threading.Event()
        decoded: queue.Queue = queue.Queue(maxsize=2)
        to_encode: queue.Queue = queue.Queue(maxsize=2 * batch)

        # The decode process is forked here, before this run starts any thread: a fork while another
        # thread holds a lock (OpenCV's, opening the MP4 writer) leaves that lock held in the child,
        # which then hangs opening the video.
        source = _DecodedBatches(video, every, batch, start_s, end_s, self.prepare,
                                 self.detect.prepare if self.detect else None)
        forked = self._forked_decoder(source, batch, info)
        batches = forked if forked is not None else source

        def decode() -> None:
            try:
                for item in batches:
                    self.times["decode"] += item["decode_s"]
                    release = partial(forked.release, item["slot"]) if forked is not None else None
                    if not _put(decoded, (*_unpack(item), release), stop):
                        return
            finally:  # also after an error (the main loop joins this thread and raises it) or a stop
                _put(decoded, _DONE, stop)

        def encode() -> None:
            from kvasir_ml.video.render import annotate_frame

            try:
                with VideoWriter(out / VIDEO_NAME, info.fps / every, (info.width, info.height)) as writer:
                    while (item := to_encode.get()) is not _DONE:
                        t0 = time.perf_counter()
                        rgb, entry, release = item
                        writer.write(annotate_frame(rgb, entry))
                        if release is not None:
                            release()  # the batch's last frame: its decode slot is free again
                        self.times["encode"] += time.perf_counter() - t0
                    writer.close(keep=not stop.is_set())  # a failed run leaves no annotated.mp4 that looks whole
            except BaseException:
                stop.set()  # the main loop stops feeding frames and raises this error
                raise

        try:
            with self._models_side_by_side():
                self._pump(decode, encode, out, annotate, decoded, to_encode, stop, n_expected, progress, video,
                           forked.stop_process if forked is not None else None)
        finally:
            if forked is not None:
                forked.close()

    def _forked_decoder(self, source: "_DecodedBatches", batch: int, info) -> "ForkedDecoder | None":
        """On Linux, ``source`` in a forked process (``decode_process``), its slots sized from a
        blank frame of the video's size; elsewhere None (a spawned process cannot unpickle the
        classifier's input closure: decoding stays a thread)."""
        from kvasir_ml.video.decode_process import ForkedDecoder

        if sys.platform != "linux":
            return None
        blank = np.zeros((info.height, info.width, 3), np.uint8)
        inset = detect_inset(blank)
        sample: dict[str, Any] = {"rgb": blank}
        if self.detect is not None:
            sample["det"] = self.detect.prepare([blank], [inset])[0]
        if self.prepare is not None:
            sample.update({f"cls.{k}": v.numpy() for k, v in self.prepare(blank, inset).items()})
        return ForkedDecoder(source, sample, batch).start()

    @contextmanager
    def _models_side_by_side(self) -> Iterator[None]:
        """With ``side_by_side``: the two model threads, and torch's intra-op threads shared out (restored after)."""
        from kvasir_ml.cpu_threads import side_by_side_threads

        if not self.side_by_side:
            yield
            return
        saved_threads = torch.get_num_threads()
        torch.set_num_threads(side_by_side_threads())
        self._model_pool = ThreadPoolExecutor(2, thread_name_prefix="video-model")
        try:
            yield
        finally:
            torch.set_num_threads(saved_threads)
            self._model_pool.shutdown(cancel_futures=True)
            self._model_pool = None

    def _pump(self, decode: Callable[[], None], encode: Callable[[], None], out: Path, annotate: bool,
              decoded: queue.Queue, to_encode: queue.Queue, stop: threading.Event, n_expected: int, progress: bool,
              video: Path, halt_decoding: Callable[[], None] | None) -> None:
        """Start the decode and encode threads, run the models on each decoded batch, write the log.
        On an error anywhere (``stop`` set), the encoder drops its partial MP4 and the decode process
        is stopped (``halt_decoding``) before this returns."""
        from tqdm import tqdm

        workers = [_Worker(decode, "video-decode")] + ([_Worker(encode, "video-encode")] if annotate else [])
        for w in workers:
            w.start()
        bar = tqdm(total=n_expected, unit="frame", disable=not progress, desc=video.name)
        try:
            with open(out / FRAMES_NAME, "w", encoding="utf-8") as log_file:
                # One batch in flight: the models run on batch k while batch k-1 is tracked and written.
                pending: _Launched | None = None
                while True:
                    item = _get(decoded, stop)
                    if item is _DONE and not stop.is_set():  # the decode thread ends here: its error ends the run
                        workers[0].join()
                        if workers[0].error is not None:
                            raise workers[0].error
                    launched = self.launch(item[0], item[1]) if item is not _DONE else None
                    if launched is not None:
                        launched.release = item[2]
                    if pending is not None and not self._write(pending, log_file, annotate, to_encode, stop, bar):
                        break
                    if launched is None or stop.is_set():
                        break
                    pending = launched
                if stop.is_set():  # set by the encoder as it failed: its error is this run's
                    workers[1].join()
                    raise workers[1].error or RuntimeError("video predict: the encode thread stopped")
            if annotate:
                _put(to_encode, _DONE, stop)
        except BaseException:
            stop.set()
            raise
        finally:
            bar.close()
            if stop.is_set():
                for q in (decoded, to_encode):  # unblock the workers
                    while not q.empty():
                        q.get_nowait()
                if annotate:
                    to_encode.put(_DONE)
                    workers[1].join()  # it drops its partial MP4 before this run's error is raised
                if halt_decoding is not None:
                    halt_decoding()  # a decode thread waiting on the process for a slot ends too
                workers[0].join(timeout=10)
        for w in workers:
            w.join_checked()

    def _write(self, launched: "_Launched", log_file, annotate: bool, to_encode: queue.Queue,
               stop: threading.Event, bar) -> bool:
        """Finish a launched batch: its log lines, its frames to the encoder; False if the encoder gave up."""
        chunk, release = launched.chunk, launched.release
        entries = self.finish(launched)
        for i, (rgb, entry) in enumerate(zip((c[2] for c in chunk), entries, strict=True)):
            log_file.write(json.dumps(entry) + "\n")
            # The batch's last frame takes its decode slot back to the decoder once encoded.
            if annotate and not _put(to_encode, (rgb, entry, release if i == len(chunk) - 1 else None), stop):
                return False
        if not annotate and release is not None:
            release()
        bar.update(len(chunk))
        return True

    def launch(self, chunk: list[tuple[int, float, np.ndarray, Any, Any]], det_input: np.ndarray | None = None
               ) -> "_Launched":
        """Start the models on a batch. Side by side (a CPU, both models), the detector and the
        classifier go to the two model threads and the caller is free until ``finish``: it
        tracks and writes the previous batch meanwhile. (Splitting the classifier's batch between
        the threads was tried: a small batch costs far more per frame, the weights are read per
        call.) Otherwise the models run here, now."""
        launched = _Launched(chunk)
        if self.detect is not None and det_input is None:
            det_input = self.detect.prepare([c[2] for c in chunk], [c[3] for c in chunk])
        if self._model_pool is not None:
            if self.detect is not None:
                launched.boxes = self._model_pool.submit(self._timed, self.detect, det_input, chunk[0][2].shape)
            if self.classify is not None:
                launched.labels = self._model_pool.submit(self._timed, self.classify, [c[4] for c in chunk])
            return launched
        t0 = time.perf_counter()
        if self.detect is not None and det_input is not None:
            with self.detector_threads.batch(len(chunk)):
                launched.boxes = self.detect(det_input, chunk[0][2].shape)
        if self.classify is not None:
            launched.labels = self.classify([c[4] for c in chunk])
        self.times["inference"] += time.perf_counter() - t0
        return launched

    def _timed(self, fn: Callable, *args: Any) -> Any:
        """``fn(*args)`` in a model thread, its seconds added to the inference stage."""
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            with self._times_lock:
                self.times["inference"] += time.perf_counter() - t0

    def finish(self, launched: "_Launched") -> list[dict[str, Any]]:
        """Wait for a launched batch's models, then run the tracker and the smoother frame by frame."""
        chunk = launched.chunk
        boxes, labels = launched.results()
        entries = []
        for (index, time_s, rgb, inset, _), lab, frame_boxes in zip(chunk, labels, boxes, strict=True):
            t1 = time.perf_counter()
            entry: dict[str, Any] = {"frame": index, "time_s": round(time_s, 4),
                                     "inset": {"state": inset.state, "box_xywh_px": list(inset.box_xywh_px)
                                               if inset.box_xywh_px else None}}
            if lab is not None:
                if self.smoother is None:
                    self.smoother = LabelSmoother(lab["thresholds"], self.smoothing_cfg)
                smoothed, alerts = self.smoother.update(time_s, lab["labels"])
                entry.update({"labels": {k: round(v, 5) for k, v in lab["labels"].items()},
                              "predicted_labels": lab["predicted_labels"], "source_class": lab["source_class"],
                              "smoothed": {k: round(v, 5) for k, v in smoothed.items()}, "alerts": alerts})
            if self.tracker is not None:
                # BoT-SORT's camera-motion compensation reads the frame (BGR); ByteTrack needs none.
                bgr = np.ascontiguousarray(rgb[:, :, ::-1]) if self.tracker.kind == "botsort" else None
                tracked = self.tracker.update(frame_boxes, bgr)
                # Low-score boxes only serve the tracker's second stage: keep them when they extend a track.
                entry["boxes"] = [b for b in tracked if b["score"] >= self.high_conf or b["track_id"] is not None]
            self.times["tracking"] += time.perf_counter() - t1
            entries.append(entry)
        self.n_frames += len(chunk)
        return entries


class _Launched:
    """A batch whose models were started (``_Run.launch``): results or futures of them."""

    def __init__(self, chunk: list[tuple[int, float, np.ndarray, Any, Any]]):
        self.chunk = chunk
        self.boxes: Any = None  # list per frame, or a Future of it
        self.labels: Any = None  # list per frame, or a Future of it
        self.release: Callable[[], None] | None = None  # gives the batch's decode slot back

    def results(self) -> tuple[list[Any], list[Any]]:
        """``(boxes per frame, labels per frame)``, waiting for the model threads where needed."""
        n = len(self.chunk)
        boxes = self.boxes.result() if isinstance(self.boxes, Future) else self.boxes
        labels = self.labels.result() if isinstance(self.labels, Future) else self.labels
        return (boxes if boxes is not None else [[] for _ in range(n)],
                labels if labels is not None else [None] * n)
