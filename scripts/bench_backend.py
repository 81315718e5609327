"""Latency of the Label Studio ML backend's ``/predict``, over HTTP, as Label Studio calls it.

Times one task (what opening a task costs an annotator) and a batch (the data manager's
*Retrieve Predictions*), and, in the same process, the backend's own predictor (the models it
holds) called directly on the same images: the difference is the HTTP + conversion overhead. The backend loads
its checkpoints once, at start-up (``load_s``: what ``predict_images`` would pay per call).

    python scripts/bench_backend.py --classifier RUN/checkpoints/best.pt [--detector DET.pt] \\
        [--n 200 --batch 16 --repeats 3 --json benchmarks/results/bench_backend_cpu.json]

Without checkpoints it trains tiny ones on synthetic data first (resnet18 / yolov8n, 64 px).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _tiny_models(work: Path, root: Path, canonical: Path) -> tuple[Path, Path]:
    from kvasir_ml.config import load_config
    from kvasir_ml.detection.config import DetectorConfig
    from kvasir_ml.detection.run import train_detector
    from kvasir_ml.train.config import load_classifier_config
    from kvasir_ml.train.run import train_classifier

    data = [f"data.canonical={canonical}", f"data.root={root}", "tracking.mode=disabled"]
    train_classifier(load_classifier_config(REPO / "configs" / "classifier_multilabel_tiny.yaml",
                                            data + ["optim.epochs=1"]), work / "cls")
    train_detector(load_config(DetectorConfig, REPO / "configs" / "detector_tiny.yaml",
                               data + ["train.epochs=1", "train.imgsz=64", "eval.n_overlays=0"]), work / "det")
    return work / "cls" / "checkpoints" / "best.pt", work / "det" / "checkpoints" / "best.pt"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classifier")
    parser.add_argument("--detector")
    parser.add_argument("--n", type=int, default=48, help="synthetic images (batch calls use the first --batch)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)

    import httpx

    from kvasir_ml.data.coco import load_canonical
    from kvasir_ml.data.synth import synthesize
    from kvasir_ml.io import atomic_write_json
    from kvasir_ml.labelstudio.backend import Backend, checkpoint_predict_fn, make_backend_server
    from kvasir_ml.labelstudio.sync import model_version_for

    work = Path(tempfile.mkdtemp(prefix="kvasir-bench-backend-"))
    canonical = synthesize(work / "root", n=args.n, seed=0, size_range_px=(560, 720))
    root = canonical.parent
    classifier, detector = args.classifier, args.detector
    if not classifier and not detector:
        classifier, detector = _tiny_models(work, root, canonical)
    names = [img["file_name"] for img in load_canonical(canonical).images]
    version = model_version_for(classifier, detector)
    t0 = time.perf_counter()
    predict_fn = checkpoint_predict_fn(classifier, detector, args.device)
    load_s = time.perf_counter() - t0
    server = make_backend_server(Backend(root, predict_fn, version), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/predict"

    def task(i: int) -> dict:
        return {"id": i, "data": {"file_name": names[i % len(names)]}}

    def timed(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    one = [timed(lambda i=i: httpx.post(url, json={"tasks": [task(i)]}, timeout=600).raise_for_status())
           for i in range(args.repeats + 1)]
    batch = [timed(lambda: httpx.post(url, json={"tasks": [task(i) for i in range(args.batch)]},
                                      timeout=600).raise_for_status()) for _ in range(args.repeats)]
    paths = [root / names[i % len(names)] for i in range(args.batch)]
    direct = [timed(lambda: predict_fn(paths)) for _ in range(args.repeats)]
    server.shutdown()
    result = {
        "classifier": str(classifier), "detector": str(detector), "device": args.device, "batch": args.batch,
        "load_s": round(load_s, 3),
        "one_task_first_s": round(one[0], 3), "one_task_median_s": round(statistics.median(one[1:]), 3),
        "batch_median_s": round(statistics.median(batch), 3),
        "batch_per_task_s": round(statistics.median(batch) / args.batch, 4),
        "predictor_batch_median_s": round(statistics.median(direct), 3),
        "http_and_conversion_overhead_s": round(statistics.median(batch) - statistics.median(direct), 3),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
