"""Push and pull N tasks (with predictions) against a local Label Studio; print tasks/s per phase.

    python scripts/bench_labelstudio.py --n 1000 --n 10000        # starts its own server
    python scripts/bench_labelstudio.py --n 10000 --json           # one JSON object per N
    LABEL_STUDIO_API_KEY=... python scripts/bench_labelstudio.py --url http://127.0.0.1:8080 --data-root DIR

Phases: push (project + storage + bulk import with inline predictions), re-push (the
idempotence check: nothing new is created), annotate (a sample of tasks annotated one by
one through the API, as annotators would; not part of the target), pull (snapshot export,
download, conversion to a new canonical version, write).
With ``--url`` the server's document root must be ``--data-root``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from kvasir_ml.data.coco import CanonicalDataset
from kvasir_ml.labelstudio.client import LSClient, LSConnection, connection_from_env
from kvasir_ml.labelstudio.convert import box_to_result, choices_result
from kvasir_ml.labelstudio.server import LabelStudioServer
from kvasir_ml.labelstudio.sync import push_dataset, pull_project
from kvasir_ml.taxonomy import load_taxonomy

W_PX, H_PX = 720, 576


def make_data(root: Path, n: int, seed: int = 0) -> tuple[CanonicalDataset, dict[str, dict]]:
    """N canonical entries (hard links to one small JPEG) and combined-format predictions."""
    tax = load_taxonomy()
    rng = random.Random(seed)
    folder = root / f"bench{n}"
    folder.mkdir(parents=True, exist_ok=True)
    master = folder / "master.jpg"
    Image.new("RGB", (W_PX, H_PX), (120, 60, 50)).save(master, quality=50)
    ds, preds = CanonicalDataset.new("synthetic"), {}
    for i in range(n):
        name = f"bench{n}/img{i:06d}.jpg"
        if not (root / name).exists():
            os.link(master, root / name)
        cls = tax.source("synthetic").classes[i % 8]
        ds.add_image(name, W_PX, H_PX, tax.labels_for("synthetic", cls), "synthetic", cls, inset="none")
        box = [rng.uniform(0, 300), rng.uniform(0, 300), rng.uniform(20, 300), rng.uniform(20, 250)]
        if "polyp" in tax.labels_for("synthetic", cls):
            ds.images[-1]["_box"] = box
        preds[name] = {"file_name": name, "width": W_PX, "height": H_PX,
                       "labels": {lab: rng.random() for lab in tax.label_names},
                       "predicted_labels": tax.labels_for("synthetic", cls),
                       "boxes": [{"class": "polyp", "score": rng.random(), "xywh_px": box}],
                       "inset": {"state": "none", "box_xywh_px": None}}
    for img in ds.images:
        if "_box" in img:
            ds.add_box(img["id"], "polyp", img.pop("_box"))
    return ds, preds


def annotate_sample(client: LSClient, project_id: int, k: int) -> int:
    tasks = client.list_tasks(project_id)[:k]
    for task in tasks:
        result = [box_to_result("polyp", [10.5, 20.25, 100.0, 80.0], W_PX, H_PX),
                  choices_result("labels", ["polyp", "dyed"]), choices_result("inset", ["green"])]
        client.call("annotate", client.sdk.annotations.create, idempotent=False, id=task["id"], result=result)
    return len(tasks)


def bench_one(client: LSClient, root: Path, n: int, n_annotate: int, all_tasks: bool = False) -> dict:
    ds, preds = make_data(root, n)
    base = root / f"bench{n}.coco.json"
    ds.save(base, keep_backup=False)
    title = f"bench-{n}-{int(time.time())}"
    t0 = time.perf_counter()
    rep = push_dataset(client, ds, root, title, predictions=preds, model_version="bench-v1")
    push_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rep2 = push_dataset(client, ds, root, rep.project_id, predictions=preds, model_version="bench-v1")
    repush_s = time.perf_counter() - t0
    assert rep2.n_tasks_created == 0 and rep2.n_predictions_created == 0, rep2.summary_lines()
    t0 = time.perf_counter()
    n_ann = annotate_sample(client, rep.project_id, n_annotate)
    annotate_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    # The sample replaces labels and boxes: "apply" takes them (the default would hold them for review).
    pulled = pull_project(client, rep.project_id, root, base_path=base, expert_changes="apply")
    pull_s = time.perf_counter() - t0
    assert pulled.report.n_applied == n_ann and not pulled.report.errors, pulled.report.summary_lines()
    extra = {}
    if all_tasks:
        # The full snapshot (every task with its predictions), as a first pull of a new project would.
        t0 = time.perf_counter()
        full = pull_project(client, rep.project_id, root, base_path=base, all_tasks=True, expert_changes="apply")
        extra["pull_all_s"] = round(time.perf_counter() - t0, 3)
        assert full.report.n_applied == n_ann and not full.report.errors, full.report.summary_lines()
    return {"n_tasks": n, "push_s": round(push_s, 3), "pull_s": round(pull_s, 3), **extra, "repush_s": round(repush_s, 3),
            "annotate_s": round(annotate_s, 3), "n_annotated": n_ann, "n_predictions": rep.n_predictions_created,
            "push_tasks_per_s": round(n / push_s, 1), "pull_tasks_per_s": round(n / pull_s, 1),
            "repush_tasks_per_s": round(n / repush_s, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, action="append", help="tasks (repeatable; default 1000 and 10000)")
    parser.add_argument("--annotate", type=int, default=200, help="tasks annotated before the pull")
    parser.add_argument("--url", help="use this server (API key from $LABEL_STUDIO_API_KEY) instead of starting one")
    parser.add_argument("--data-root", help="image root (the server's document root); default: a temp folder")
    parser.add_argument("--all-tasks", action="store_true",
                        help="also time a pull that exports every task (pull_all_s), not only the annotated ones")
    parser.add_argument("--json", action="store_true", help="print one JSON object per N and nothing else")
    parser.add_argument("--out", help="also write all results to this JSON file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    sizes = args.n or [1000, 10000]
    root = Path(args.data_root or tempfile.mkdtemp(prefix="kvasir-ls-bench-")).resolve()
    server = None
    if args.url:
        conn = connection_from_env(args.url)
    else:
        t0 = time.perf_counter()
        server = LabelStudioServer(root).start()
        conn = LSConnection(server.url, server.token)
        if not args.json:
            print(f"server start {time.perf_counter() - t0:.1f} s")
    results = []
    try:
        client = LSClient(conn)
        for n in sizes:
            res = bench_one(client, root, n, min(args.annotate, n), all_tasks=args.all_tasks)
            results.append(res)
            if args.json:
                print(json.dumps(res), flush=True)
            else:
                print(f"n={n}: push {res['push_s']:.1f} s ({res['push_tasks_per_s']:.0f} tasks/s), re-push "
                      f"{res['repush_s']:.1f} s ({res['repush_tasks_per_s']:.0f} tasks/s), annotate {res['n_annotated']} "
                      f"in {res['annotate_s']:.1f} s, pull {res['pull_s']:.1f} s ({res['pull_tasks_per_s']:.0f} tasks/s); "
                      f"push+pull {res['push_s'] + res['pull_s']:.1f} s"
                      + (f"; full export pull {res['pull_all_s']:.1f} s" if "pull_all_s" in res else ""), flush=True)
    finally:
        if server is not None:
            server.stop()
        if not args.data_root:
            shutil.rmtree(root, ignore_errors=True)
    if args.out:
        from kvasir_ml.io import atomic_write_json

        atomic_write_json(args.out, {"machine": "2 shared CPU cores, local Label Studio 1.23.2 (sqlite)",
                                     "results": results}, keep_backup=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
