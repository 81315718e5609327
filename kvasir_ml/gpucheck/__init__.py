"""The GPU check: one time-budgeted run that tells what a new GPU host does with this project.

``run_check(out, budget_s)`` (``scripts/gpu_check.py``, ``make gpu-check``) runs, in order:

1. ``env`` — Python, torch/CUDA/cuDNN, GPU, driver, memory, /dev/shm, package versions;
2. ``bench_train`` — ResNet50 at 224 px, bf16, channels_last: project vs bare loop img/s,
   ratio and MFU, eager and with ``torch.compile``;
3. ``classifier`` — a multi-label ResNet50 run on synthetic 224 px data with compile,
   stopped after some epochs (``first``) and resumed in a NEW process (``resume``);
4. ``detector`` — YOLO on Kvasir-SEG at 512 px, trained for a bounded time, scored with
   pycocotools (AP, AP50) and timed (inference img/s);
5. ``gpu_tests`` — the checkout's tests marked ``gpu`` (``pytest -m gpu tests/gpu``): head
   warm-up then unfreeze with inductor ``torch.compile`` on CUDA, ``kvasir-ml eval`` on CUDA.

Every step (phase) is its own process with its own time limit, killed with its process
group when it overruns; ``out/results.json`` is rewritten after each, so a failing or
killed step keeps the others' results (and its own partial ones). Unused time rolls over to
later steps. ``dry_run`` runs every step tiny on the CPU (minutes on 2 cores): the check of
the check. Only ``results.json`` and one log per step go to ``out`` (the device tool brings
back at most 8 files); data, caches and runs go to a work folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kvasir_ml.io import atomic_write_json

DEFAULT_BUDGET_S = 480
DETECTOR_OVERHEAD_S = 60  # import, indexing, export, RAM cache, final validation, scoring val + test
STEP_NAMES = ("env", "bench_train", "classifier", "detector", "video", "gpu_tests")


@dataclass
class Phase:
    """One process of a step: its parameters and its share of the budget."""

    step: str
    params: dict[str, Any]
    share: float  # fraction of the budget reserved for it (unused time rolls over)
    min_s: float  # never started with less than this (it could not finish)


def plan(dry_run: bool, kvasir_seg: str | None, cpu_count: int, tests: str | None = None) -> list[Phase]:
    """The phases of a real check (GPU, sized for ~8 minutes) or a dry run (CPU, tiny)."""
    workers = 0 if dry_run else shm_safe_workers(max(2, min(12, cpu_count - 2)), batch=256, size_px=224)
    if dry_run:
        dev = {"device": "cpu", "bf16": False, "channels_last": False, "threads": 1}
        bench = {**dev, "arch": "resnet18", "size_px": 32, "batch": 8, "n_images": 64, "steps": 2, "warmup": 1,
                 "warmup_compile": 1, "inset_mode": "branch", "workers": workers, "modes": ["eager", "compile"]}
        clf = {**dev, "arch": "resnet18", "size_px": 32, "branch_px": 16, "batch": 8, "n_images": 64, "epochs": 2,
               "stop_after": 1, "compile": True, "workers": workers}
        det = {"arch": "yolov8n.yaml", "imgsz": 64, "batch": 8, "workers": 0, "device": "cpu", "epochs": 1,
               "cache": "false", "warmup_epochs": 0, "time_h": None, "synthetic_n": 32, "kvasir_seg": None}
    else:
        dev = {"device": "cuda", "bf16": True, "channels_last": True, "threads": 0}
        # batch 256 and the same model in bench and classifier: the second compiles hit the FX graph cache
        bench = {**dev, "arch": "resnet50", "size_px": 224, "batch": 256, "n_images": 1024, "steps": 20, "warmup": 3,
                 "warmup_compile": 4, "inset_mode": "branch", "workers": workers, "modes": ["eager", "compile"]}
        clf = {**dev, "arch": "resnet50", "size_px": 224, "branch_px": 48, "batch": 256, "n_images": 1024,
               "epochs": 4, "stop_after": 2, "compile": True, "workers": workers}
        det = {"arch": "yolo11s.yaml", "imgsz": 512, "batch": 32, "workers": min(8, workers), "device": "cuda",
               "epochs": 300, "cache": "ram", "warmup_epochs": 1, "time_h": None, "synthetic_n": 64,
               "kvasir_seg": kvasir_seg}
    env = {"workers": bench["workers"], "batch": bench["batch"], "size_px": bench["size_px"]}
    # video: the classifier and detector trained above, end to end on a synthetic video (docs/video.md)
    video = ({"device": "cpu", "frames": 24, "width": 128, "height": 96, "batch": 8} if dry_run else
             {"device": "cuda", "frames": 300, "width": 640, "height": 512, "batch": 16})
    # Shares: bench_train holds two compilations (the bare loop's hits the FX graph cache);
    # the classifier's compiles hit it too; the detector trains for whatever time is left.
    # env: importing torch (and a cold CUDA init) ran past 10 s (3 % of 330 s) in dry runs (26 s at
    # load 5), hence 8 %; unused time rolls over to later steps.
    # gpu_tests: the checkout's `-m gpu` tests (tests/gpu: warm-up -> unfreeze compiled, eval on CUDA)
    # (~50 s of the default 350 s check; not yet timed on a GPU)
    return [Phase("env", env, 0.08, 5), Phase("bench_train", bench, 0.29, 30),
            Phase("classifier", {**clf, "phase": "first"}, 0.16, 30),
            Phase("classifier", {**clf, "phase": "resume"}, 0.11, 20),
            Phase("detector", det, 0.16, 40), Phase("video", video, 0.06, 20), Phase("gpu_tests", {"tests": tests}, 0.14, 30)]


def shm_bytes_per_worker(batch: int, size_px: int) -> int:
    """Shared memory one loader worker holds at most: its prefetched batches of uint8 images."""
    from kvasir_ml.train.prepare import PREFETCH_BATCHES

    return PREFETCH_BATCHES * batch * 3 * size_px**2


def shm_safe_workers(wanted: int, batch: int, size_px: int, shm: str = "/dev/shm") -> int:
    """At most as many loader workers as /dev/shm holds batches for, with half of it to spare;
    containers often give it 64 MiB."""
    try:
        st = os.statvfs(shm)
    except OSError:
        return wanted
    return max(0, min(wanted, int(0.5 * st.f_frsize * st.f_bavail // shm_bytes_per_worker(batch, size_px))))


def _run_phase(phase: Phase, work: Path, log_path: Path, limit_s: float) -> dict[str, Any]:
    """Run one phase as ``python -m kvasir_ml.gpucheck.steps`` with a hard time limit."""
    import kvasir_ml

    package_root = str(Path(kvasir_ml.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)}
    cmd = [sys.executable, "-m", "kvasir_ml.gpucheck.steps", phase.step, str(work), json.dumps(phase.params)]
    start = time.monotonic()
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"\n=== {phase.step} {phase.params.get('phase', '')} (limit {limit_s:.0f} s) ===\n")
        log.flush()
        # cwd = the work folder: ``-m`` puts the cwd first on sys.path, and a checkout there
        # would shadow the package this process imported (e.g. one installed with its data files).
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work,
                                start_new_session=True)
        timed_out = False
        try:
            rc = proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            rc = proc.returncode
        log.write(f"=== exit {rc}{' (killed at the time limit)' if timed_out else ''} after "
                  f"{time.monotonic() - start:.1f} s ===\n")
    return {"rc": rc, "timed_out": timed_out, "seconds": round(time.monotonic() - start, 1)}


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the phase's process group (DataLoader and compile workers too), then SIGKILL."""
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _log_tail(path: Path, n_lines: int = 15) -> list[str]:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines() if path.is_file() else []
    return lines[-n_lines:]


def run_check(out: str | Path, budget_s: float = DEFAULT_BUDGET_S, dry_run: bool = False,
              kvasir_seg: str | Path | None = None, work: str | Path | None = None,
              only: list[str] | None = None, tests: str | Path | None = None) -> dict[str, Any]:
    """Run the check; ``out/results.json`` is written after every phase.

    Args:
        out: folder for ``results.json`` and ``<step>.log`` (created).
        budget_s: wall-clock budget of the whole check.
        dry_run: every step tiny on the CPU.
        kvasir_seg: Kvasir-SEG folder (``images/`` + ``kavsir_bboxes.json``) for the detector;
            None or absent = synthetic data.
        work: folder for data, caches and runs (default: a temporary one, removed after).
        only: run just these steps (names from ``STEP_NAMES``).
        tests: the checkout's GPU tests (``tests/gpu``) for the ``gpu_tests`` step (``pytest -m
            gpu``); None = that step reports that it had none.

    Returns:
        The results dict (also in ``out/results.json``).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + budget_s
    tmp = None if work else tempfile.TemporaryDirectory(prefix="gpu-check-")
    work_dir = Path(work) if work else Path(tmp.name)  # type: ignore[union-attr]
    work_dir.mkdir(parents=True, exist_ok=True)
    phases = [p for p in plan(dry_run, str(kvasir_seg) if kvasir_seg else None, os.cpu_count() or 2,
                              str(tests) if tests else None)
              if only is None or p.step in only]
    for name in {p.step for p in phases}:
        (out / f"{name}.log").unlink(missing_ok=True)  # phases append to their step's log
    results: dict[str, Any] = {"kind": "kvasir-ml gpu check", "format": 1, "dry_run": dry_run, "budget_s": budget_s,
                               "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "steps": {}}
    try:
        for i, phase in enumerate(phases):
            later = sum(p.share for p in phases[i + 1:]) * budget_s
            limit = deadline - time.monotonic() - later
            name = phase.step
            entry = results["steps"].setdefault(name, {"ok": True, "phases": {}})
            label = phase.params.get("phase", name)
            if name == "detector" and not dry_run:  # ultralytics stops by time; the rest is indexing and scoring
                phase.params["time_h"] = round(max(limit - DETECTOR_OVERHEAD_S, 20.0) / 3600, 5)
            if limit < phase.min_s:
                entry["phases"][label] = {"skipped": f"only {max(limit, 0):.0f} s left of the budget", "rc": None}
            else:
                run = _run_phase(phase, work_dir, out / f"{name}.log", limit)
                entry["phases"][label] = run
                if run["rc"] != 0:
                    entry["log_tail"] = _log_tail(out / f"{name}.log")
            from kvasir_ml.gpucheck.steps import step_file

            measured = step_file(work_dir, name)
            found = json.loads(measured.read_text()) if measured.is_file() else {}
            entry.update({k: v for k, v in found.items() if k != "ok"})
            entry["ok"] = bool(found.get("ok")) and all(ph.get("rc") == 0 for ph in entry["phases"].values())
            results["summary"] = summarize(results)
            results["elapsed_s"] = round(budget_s - (deadline - time.monotonic()), 1)
            atomic_write_json(out / "results.json", results)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return results


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers (and the issue's goals) from whatever steps have results."""
    steps = results["steps"]
    summary: dict[str, Any] = {}
    env = steps.get("env", {})
    summary["device"] = env["gpus"][0]["name"] if env.get("gpus") else ("cpu" if env else None)
    bench = steps.get("bench_train", {})
    for mode in ("eager", "compile"):
        r = bench.get(mode) or {}
        if "project_img_s" in r:
            summary[f"bench_{mode}"] = {k: r[k] for k in ("project_img_s", "bare_img_s", "ratio", "mfu_project",
                                                          "mfu_bare", "compile")}
    best = summary.get("bench_compile") or summary.get("bench_eager")
    if best and not results.get("dry_run"):
        summary["goals"] = {"ratio_ge_0.9": best["ratio"] >= 0.9, "project_img_s_ge_4000": best["project_img_s"] >= 4000}
    clf = steps.get("classifier", {}).get("resume")
    if clf:
        summary["classifier"] = {"resumed_in_new_process": steps["classifier"].get("ok", False),
                                 "img_s_per_epoch": clf["img_s_per_epoch"], "test_macro_ap": clf["test_macro_ap"]}
    det = steps.get("detector", {})
    if det.get("ap") is not None:
        summary["detector"] = {k: det.get(k) for k in ("ap", "ap50", "fps", "epochs", "model", "imgsz")}
    video = steps.get("video", {})
    if "end_to_end" in video:
        summary["video"] = {"fps_end_to_end": video["end_to_end"]["fps"], "fps_bare": video["bare"]["fps"],
                            "ratio": video["ratio"], "meets_30_fps": video.get("meets_goal")}
    tests = steps.get("gpu_tests", {})
    if "passed" in tests:
        summary["gpu_tests"] = {k: tests[k] for k in ("passed", "failed", "skipped", "failures")}
    summary["ok"] = {name: steps[name].get("ok", False) for name in steps}
    return summary


def table_rows(results: dict[str, Any]) -> list[str]:
    """The README's "Performance on a GPU" rows filled from a check's results (Markdown)."""
    summary = results.get("summary", {})

    def pair(key: str, fmt: str) -> str:
        vals = [summary.get(f"bench_{m}", {}).get(key) for m in ("eager", "compile")]
        return " / ".join(fmt.format(v) if v is not None else "—" for v in vals)

    clf, det = summary.get("classifier"), summary.get("detector")
    device = summary.get("device") or "?"
    return [
        f"| ResNet50 224 px bf16 channels_last, project img/s (eager / compiled) | ≥ 4,000 | {pair('project_img_s', '{:,.0f}')} |",
        f"| ratio to the bare loop (eager / compiled) | ≥ 0.9 | {pair('ratio', '{:.3f}')} |",
        f"| MFU, project (eager / compiled; FLOPs counted fwd+bwd) | — | {pair('mfu_project', '{:.1%}')} |",
        f"| classifier stopped + resumed in a new process (compiled) | completes | "
        f"{'yes' if clf and clf['resumed_in_new_process'] else 'no'} |",
        "| YOLO11s on Kvasir-SEG 512 px, time-bounded, from scratch: AP / AP50 / inference img/s | — | "
        + (f"{det['ap']:.3f} / {det['ap50']:.3f} / {det['fps']:.0f} ({det['epochs']} epochs) |" if det else "— |"),
        f"(device: {device})",
    ]
