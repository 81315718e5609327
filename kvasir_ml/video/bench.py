"""Video throughput: ``predict_video`` end to end against a bare forward of the same models
on the same frames, in one process (``scripts/bench_video.py``, the GPU check's ``video`` step).

- ``end_to_end``: ``predict_video`` on the file (decode process, inset, classifier +
  detector, tracker, smoother, frames.jsonl, annotated MP4 in the encode thread), its fps and
  each stage's busy milliseconds per frame (decode, inference: both model threads' seconds
  summed, tracking, encode; stages overlap).
- ``bare``: the same frames decoded into memory beforehand; the classifier's ``model(**batch)``
  on input tensors built beforehand, and the detector's network + NMS (``BatchDetector``) on
  letterboxed batches built beforehand, at the same batch size: the models' own cost, nothing
  of the pipeline. One model after the other, and on a CPU also both at once in two threads
  (``side_by_side``, as ``predict_video`` runs them there; from 2026-12-06). (Until 2026-12-06
  the detector's part was ``YOLO.predict`` on the frames, which also letterboxed and built
  ``Results`` in the timing: an easier baseline.) On a CPU it is timed at each thread count the pipeline's
  ``ThreadTuner`` may pick and side by side; the fastest counts.
- ``ratio`` = end-to-end fps / bare fps (goal >= 0.8 on a CPU at the tiny models' size).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch

from kvasir_ml.cpu_threads import side_by_side_threads, thread_candidates
from kvasir_ml.video.io import iter_frames


@torch.no_grad()
def bare_forward_fps(frames: list, classifier_ckpt: str | Path | None, detector_ckpt: str | Path | None,
                     device: str = "cpu", batch: int = 8, repeats: int = 1) -> dict[str, Any]:
    """Frames per second of the models alone on frames already in memory (inputs prepared outside the timing)."""
    from kvasir_ml.data.cache import square_from_rgb
    from kvasir_ml.data.inset import detect_inset
    from kvasir_ml.detection.batch import BatchDetector
    from kvasir_ml.detection.yolo import load_yolo
    from kvasir_ml.device import resolve_device
    from kvasir_ml.train.data import inset_inputs
    from kvasir_ml.train.classify import load_classifier

    dev = resolve_device(device)
    cls_batches: list[dict[str, torch.Tensor]] = []
    det_calls: list[Callable[[], Any]] = []
    insets = [detect_inset(rgb) for rgb in frames]
    if classifier_ckpt:
        model, cfg, _ = load_classifier(classifier_ckpt, dev)
        for start in range(0, len(frames), batch):
            items = [inset_inputs(square_from_rgb(rgb, cfg.data.image_size_px), (rgb.shape[1], rgb.shape[0]),
                                  inset.state, cfg.model.inset_mode, cfg.model.branch_size_px)
                     for rgb, inset in zip(frames[start:start + batch], insets[start:start + batch])]
            cls_batches.append({k: torch.stack([it[k] for it in items]).to(dev) for k in items[0]})
        model(**cls_batches[0])  # warm-up
    if detector_ckpt:
        det = BatchDetector(load_yolo(detector_ckpt), device)  # at the checkpoint's predict_conf
        det_calls = [partial(det, det.prepare(frames[s:s + batch], insets[s:s + batch]), frames[0].shape)
                     for s in range(0, len(frames), batch)]
        det_calls[0]()  # warm-up

    @torch.no_grad()  # grad mode is per thread: the side-by-side run calls this from a pool thread
    def classify() -> None:
        for _ in range(repeats):
            for b in cls_batches:
                model(**b)

    def detect() -> None:
        for _ in range(repeats):
            for call in det_calls:
                call()

    def run(side_by_side: bool = False) -> float:
        _sync(dev)
        start = time.perf_counter()
        if side_by_side:  # the two models at once, each in a thread of its own (as predict_video on a CPU)
            with ThreadPoolExecutor(2) as pool:
                for done in [pool.submit(classify), pool.submit(detect)]:
                    done.result()
        else:
            classify()
            detect()
        _sync(dev)
        return time.perf_counter() - start

    # On a CPU, at each thread count predict_video's tuner may pick, and with both models side
    # by side at the threads predict_video gives each: the fastest is the baseline.
    candidates = thread_candidates() if dev.type == "cpu" else [torch.get_num_threads()]
    saved, seconds = torch.get_num_threads(), {}
    try:
        for threads in candidates:
            torch.set_num_threads(threads)
            seconds[str(threads)] = run()
        if dev.type == "cpu" and cls_batches and det_calls:
            torch.set_num_threads(side_by_side_threads())
            seconds["side_by_side"] = run(side_by_side=True)
    finally:
        torch.set_num_threads(saved)
    best = min(seconds, key=seconds.__getitem__)
    n = repeats * len(frames)
    return {"fps": round(n / seconds[best], 3), "ms_per_frame": round(1000 * seconds[best] / n, 3), "threads": best,
            "fps_by_threads": {t: round(n / s, 3) for t, s in seconds.items()}}


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def bench_video(video: str | Path, out_dir: str | Path, classifier_ckpt: str | Path | None,
                detector_ckpt: str | Path | None, device: str = "cpu", batch: int = 8) -> dict[str, Any]:
    """End-to-end vs bare fps on one video (both passes in this process, bare first).

    Returns:
        ``{"frames", "frame_size_px", "bare": {fps, ms_per_frame}, "end_to_end": {fps, ms_per_frame,
        stage_ms_per_frame}, "ratio"}``.
    """
    from kvasir_ml.video.predict import predict_video

    frames = [rgb for _, _, rgb in iter_frames(video)]
    bare = bare_forward_fps(frames, classifier_ckpt, detector_ckpt, device, batch)
    h, w = frames[0].shape[:2]
    n = len(frames)
    del frames
    summary = predict_video(video, out_dir, classifier_ckpt, detector_ckpt, batch_frames=batch, device=device,
                            progress=False)
    e2e = {"fps": summary["fps_processed"], "ms_per_frame": round(1000 * summary["wall_s"] / n, 3),
           "stage_ms_per_frame": summary["stage_ms_per_frame"]}
    return {"frames": n, "frame_size_px": [w, h], "batch": batch, "device": device, "bare": bare,
            "end_to_end": e2e, "ratio": round(e2e["fps"] / bare["fps"], 3) if bare["fps"] else None}


GPU_GOAL_FPS = 30.0


def video_step(p: dict[str, Any], save) -> None:
    """The GPU check's ``video`` step: the classifier and the detector the earlier steps trained
    (``<work>/classifier-run``, ``<work>/detector-run``: ResNet50 and YOLO at 512 px on a GPU),
    end to end on a synthetic video vs their bare forward (goal on a GPU: >= 30 fps end to end)."""
    from kvasir_ml.video.synth import synthesize_video

    work = Path(p["work"])
    ckpts = {k: work / f"{k}-run" / "checkpoints" / "best.pt" for k in ("classifier", "detector")}
    missing = [str(c) for c in ckpts.values() if not c.is_file()]
    if missing:
        save({"ok": False, "error": f"no checkpoint from the earlier steps: {missing}"})
        return
    truth = synthesize_video(work / "video", n_frames=p["frames"], frame_size_px=(p["width"], p["height"]))
    res = bench_video(truth.parent / "video.mp4", work / "video-pred", ckpts["classifier"], ckpts["detector"],
                      p["device"], p["batch"])
    goal = GPU_GOAL_FPS if p["device"].startswith("cuda") else None
    save({**res, "goal_fps": goal, "meets_goal": None if goal is None else res["end_to_end"]["fps"] >= goal,
          "ok": res["end_to_end"]["fps"] > 0})
