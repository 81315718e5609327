"""Push and pull N tasks (with predictions) against a local Label Studio; print tasks/s per phase.

    python scripts/bench_labelstudio.py --n 1000 --n 10000        # starts its own server
    python scripts/bench_labelstudio.py --n 10000 --json           # one JSON object per N
    LABEL_STUDIO_API_KEY=... python scripts/bench_labelstudio.py --url http://127.0.0.1:8080 --data-root DIR

Every timed phase runs the CLI (``python -m kvasir_ml ls ...``) in a child process, as a user
would; its peak RSS is that child's own, sampled (``*_peak_rss_mb``; ``peak_rss_mb`` the largest).
Phases: push (``ls push --predictions``: project + storage + bulk import with inline
predictions), re-push (the idempotence check: nothing new is created), annotate (a sample of
tasks annotated one by one through the API, as annotators would; not part of the target),
pull (``ls pull``: snapshot export of annotated/skipped tasks, download, streaming conversion
to a new canonical version, write) and with ``--all-tasks`` ``ls pull --all-tasks``.
With ``--url`` the server's document root must be ``--data-root``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from kvasir_ml.data.coco import CanonicalDataset
from kvasir_ml.io import atomic_write_json
from kvasir_ml.labelstudio.client import ENV_API_KEY, ENV_URL, LSClient, LSConnection, connection_from_env
from kvasir_ml.labelstudio.convert import box_to_result, choices_result
from kvasir_ml.labelstudio.server import LabelStudioServer
from kvasir_ml.labelstudio.sync import find_project
from kvasir_ml.taxonomy import load_taxonomy

W_PX, H_PX = 720, 576


def make_data(root: Path, n: int, seed: int = 0) -> tuple[CanonicalDataset, dict[str, dict]]:
    """N canonical entries (hard links to one small JPEG) and combined-format predictions."""
    tax = load_taxonomy()
    rng = random.Random(seed)
    folder = root / f"bench{n}"
    folder.mkdir(parents=True, exist_ok=True)
    ds, preds = CanonicalDataset.new("synthetic"), {}
    for i in range(n):
        name = f"bench{n}/img{i:06d}.jpg"
        master = folder / f"master{i // 50000}.jpg"  # ext4 allows 65000 links to one file
        if not master.exists():
            Image.new("RGB", (W_PX, H_PX), (120, 60, 50)).save(master, quality=50)
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
    """Annotate the first ``k`` tasks one by one, as annotators would (one page listed, not all tasks)."""
    pager = client.call("list tasks", client.sdk.tasks.list, project=project_id, page=1, page_size=k,
                        fields="task_only", include="id,data")
    tasks = list(pager.items or [])[:k]
    for task in tasks:
        result = [box_to_result("polyp", [10.5, 20.25, 100.0, 80.0], W_PX, H_PX),
                  choices_result("labels", ["polyp", "dyed"]), choices_result("inset", ["green"])]
        client.call("annotate", client.sdk.annotations.create, idempotent=False, id=task.id, result=result)
    return len(tasks)


PYCACHE = os.path.join(tempfile.gettempdir(), "kvasir-bench-pycache")


def warm_bytecode() -> None:
    """Compile the CLI's imports once (untimed). Without bytecode on disk (an install that did not
    compile, or PYTHONDONTWRITEBYTECODE) each CLI start compiles label_studio_sdk's ~800 modules
    again: ~20 s per command on a busy 2-core machine, a cost no installed package pays."""
    env = {**os.environ, "PYTHONPYCACHEPREFIX": PYCACHE}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-c", "import label_studio_sdk.client, kvasir_ml.cli.labelstudio, "
                    "kvasir_ml.labelstudio.sync"], env=env, check=True)


def run_cli(argv: list[str], conn: LSConnection) -> tuple[float, float, str]:
    """``kvasir-ml ARGV`` in a child process (what a user runs); seconds, its peak RSS in MB, its output.

    The peak is sampled (psutil, every 50 ms): Linux's ``ru_maxrss`` of a forked child keeps the
    parent's high-water mark, and this parent holds the whole synthetic dataset."""
    import threading

    import psutil

    env = {**os.environ, ENV_API_KEY: conn.api_key, ENV_URL: conn.url, "PYTHONPYCACHEPREFIX": PYCACHE}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # compiled once, as an installed package is (see warm_bytecode)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "kvasir_ml", *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    chunks: list[str] = []
    stdout = proc.stdout
    assert stdout is not None  # stdout=PIPE
    reader = threading.Thread(target=lambda: chunks.append(stdout.read()), daemon=True)
    reader.start()
    child, peak_bytes = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            peak_bytes = max(peak_bytes, child.memory_info().rss)
        except psutil.Error:
            pass
        time.sleep(0.05)
    seconds = time.perf_counter() - t0
    reader.join()
    out = "".join(chunks)
    if proc.returncode != 0:
        raise RuntimeError(f"kvasir-ml {' '.join(argv)} exited {proc.returncode}:\n{out[-3000:]}")
    return seconds, peak_bytes / 2**20, out


def _n_applied(out: str) -> int:
    match = re.search(r"applied (\d+)", out)
    if match is None:
        raise RuntimeError(f"no pull summary in the output:\n{out[-2000:]}")
    return int(match.group(1))


def bench_one(client: LSClient, conn: LSConnection, root: Path, n: int, n_annotate: int, all_tasks: bool = False,
              repush: bool = True) -> dict:
    """Push, annotate a sample, pull (and with ``all_tasks`` pull every task), all through the CLI."""
    ds, preds = make_data(root, n)
    base = root / f"bench{n}.coco.json"
    ds.save(base, keep_backup=False)
    pred_file = root / f"bench{n}.predictions.json"
    atomic_write_json(pred_file, list(preds.values()), indent=None)
    del ds, preds  # the CLI reads its files, as a user's run would
    title = f"bench-{n}-{int(time.time())}"
    push = ["ls", "push", str(base), "--project", title, "--data-root", str(root), "--predictions", str(pred_file),
            "--model-version", "bench-v1", "--no-expert-draft"]
    push_s, push_rss_mb, _ = run_cli(push, conn)
    pid = find_project(client, title)
    assert pid is not None, f"the push made no project {title!r}"
    res = {"n_tasks": n, "push_s": round(push_s, 3), "push_peak_rss_mb": round(push_rss_mb, 1)}
    if repush:
        repush_s, _, out = run_cli(push[:3] + ["--project", str(pid)] + push[5:], conn)
        assert "tasks created 0," in out and "predictions created 0," in out, out  # idempotent
        res["repush_s"] = round(repush_s, 3)
    t0 = time.perf_counter()
    n_ann = annotate_sample(client, pid, n_annotate)
    res.update(annotate_s=round(time.perf_counter() - t0, 3), n_annotated=n_ann)
    # The sample replaces labels and boxes: "apply" takes them (the default would hold them for review).
    pull = ["ls", "pull", "--project", str(pid), "--base", str(base), "--data-root", str(root),
            "--expert-changes", "apply"]
    pull_s, pull_rss_mb, out = run_cli(pull + ["--out", str(root / f"bench{n}.v2.coco.json")], conn)
    assert _n_applied(out) == n_ann, out
    res.update(pull_s=round(pull_s, 3), pull_peak_rss_mb=round(pull_rss_mb, 1))
    if all_tasks:
        # The full snapshot (every task with its predictions), as a first pull of a new project would.
        full_s, full_rss_mb, out = run_cli(pull + ["--all-tasks", "--out", str(root / f"bench{n}.v3.coco.json")], conn)
        assert _n_applied(out) == n_ann, out
        res.update(pull_all_s=round(full_s, 3), pull_all_peak_rss_mb=round(full_rss_mb, 1),
                   push_plus_pull_all_s=round(push_s + full_s, 3))
    res["peak_rss_mb"] = max(v for k, v in res.items() if k.endswith("peak_rss_mb"))
    res.update(push_tasks_per_s=round(n / push_s, 1), pull_tasks_per_s=round(n / pull_s, 1),
               load_avg_1m=round(os.getloadavg()[0], 2))
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, action="append", help="tasks (repeatable; default 1000 and 10000)")
    parser.add_argument("--annotate", type=int, default=200, help="tasks annotated before the pull")
    parser.add_argument("--url", help="use this server (API key from $LABEL_STUDIO_API_KEY) instead of starting one")
    parser.add_argument("--data-root", help="image root (the server's document root); default: a temp folder")
    parser.add_argument("--all-tasks", action="store_true",
                        help="also time `ls pull --all-tasks`, the export of every task (pull_all_s)")
    parser.add_argument("--no-repush", action="store_true", help="skip the re-push (idempotence) phase")
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
    warm_bytecode()
    try:
        client = LSClient(conn)
        for n in sizes:
            res = bench_one(client, conn, root, n, min(args.annotate, n), all_tasks=args.all_tasks,
                            repush=not args.no_repush)
            results.append(res)
            if args.json:
                print(json.dumps(res), flush=True)
            else:
                print(f"n={n}: push {res['push_s']:.1f} s ({res['push_tasks_per_s']:.0f} tasks/s), annotate "
                      f"{res['n_annotated']} in {res['annotate_s']:.1f} s, pull {res['pull_s']:.1f} s; "
                      + (f"full export pull {res['pull_all_s']:.1f} s; " if "pull_all_s" in res else "")
                      + f"peak RSS {res['peak_rss_mb']:.0f} MB", flush=True)
    finally:
        if server is not None:
            server.stop()
        if not args.data_root:
            shutil.rmtree(root, ignore_errors=True)
    if args.out:
        atomic_write_json(args.out, {"machine": "2 shared CPU cores, local Label Studio 1.23.2 (sqlite)",
                                     "command": "python scripts/bench_labelstudio.py " + " ".join(argv or sys.argv[1:]),
                                     "results": results}, keep_backup=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
