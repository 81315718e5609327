"""The GPU check's steps. Each runs in its own process (``python -m kvasir_ml.gpucheck.steps
NAME WORK PARAMS_JSON``) so a crash, a hang or a CUDA error in one costs only that step; it
writes ``WORK/steps/NAME.json`` as its parts finish, so even a step killed at its time limit
leaves what it had measured.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from kvasir_ml.results_schema import read_metrics

Save = Callable[[dict[str, Any]], None]


def step_file(work: Path, name: str) -> Path:
    return work / "steps" / f"{name}.json"


def _saver(path: Path) -> Save:
    """Merge ``update`` into the step's JSON file (atomic rename), keeping earlier parts."""
    def save(update: dict[str, Any]) -> None:
        from kvasir_ml.io import atomic_write_json

        current = json.loads(path.read_text()) if path.is_file() else {}
        atomic_write_json(path, {**current, **update})
    return save


def synthetic_dataset(work: Path, n: int) -> Path:
    """``WORK/synth-<n>/annotations.coco.json``, synthesized once and shared by the steps."""
    from kvasir_ml.data.synth import synthesize

    folder = work / f"synth-{n}"
    canonical = folder / "annotations.coco.json"
    if not canonical.is_file():  # written last: a folder without it is an interrupted synthesis
        synthesize(folder, n=n, seed=0, overwrite=True)
    return canonical


def _gib(n_bytes: float) -> float:
    return round(n_bytes / 2**30, 2)


def env_step(p: dict[str, Any], save: Save) -> None:
    """What the host is: Python, torch/CUDA, GPU(s), driver, memory, /dev/shm, packages."""
    import importlib.metadata as md

    import torch

    from kvasir_ml.train.bench import peak_tflops

    shm = os.statvfs("/dev/shm") if Path("/dev/shm").is_dir() else None
    tmp = shutil.disk_usage(p["work"])
    info: dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "ram_gib": _gib(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")),
        "dev_shm_gib": _gib(shm.f_frsize * shm.f_blocks) if shm else None,
        "dev_shm_free_gib": _gib(shm.f_frsize * shm.f_bavail) if shm else None,
        "work_disk_free_gib": _gib(tmp.free), "torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
        "torch_cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
    }
    versions: dict[str, str | None] = {}
    for dist in ("torchvision", "numpy", "pydantic", "pydantic-core", "typing-extensions", "iterative-stratification",
                 "scikit-learn", "ultralytics", "pycocotools", "polars", "opencv-python-headless", "opencv-python",
                 "wandb", "pillow"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    info["packages"] = versions
    gpus = []
    for i in range(torch.cuda.device_count()):
        prop = torch.cuda.get_device_properties(i)
        gpus.append({"name": prop.name, "memory_gib": _gib(prop.total_memory), "capability": f"{prop.major}.{prop.minor}",
                     "multiprocessors": prop.multi_processor_count,
                     "peak_bf16_tflops": peak_tflops(torch.device("cuda", i))})
    info["gpus"] = gpus
    if torch.cuda.is_available():
        info["bf16_supported"] = torch.cuda.is_bf16_supported()
        free, total = torch.cuda.mem_get_info()
        info["gpu0_free_gib"], info["gpu0_total_gib"] = _gib(free), _gib(total)
    # torch.compile's Triton builds a small C launcher at first use: it needs a C compiler.
    info["c_compiler"] = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            query = "name,driver_version,memory.total,power.limit,clocks.max.sm,temperature.gpu"
            out = subprocess.run([smi, f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=15)
            info["nvidia_smi"] = out.stdout.strip().splitlines()
        except (OSError, subprocess.SubprocessError) as exc:
            info["nvidia_smi"] = f"failed: {exc}"
    from kvasir_ml.gpucheck import shm_bytes_per_worker

    shm_need = p["workers"] * shm_bytes_per_worker(p["batch"], p["size_px"])
    info["dev_shm_needed_gib_estimate"] = _gib(shm_need)
    save({**info, "ok": True})


def bench_train_step(p: dict[str, Any], save: Save) -> None:
    """Project vs bare training img/s and MFU, eager and compiled (``kvasir_ml.train.bench``)."""
    from kvasir_ml.train.bench import bench_config, train_throughput

    work = Path(p["work"])
    canonical = synthetic_dataset(work, p["n_images"])
    ok = True
    for mode in p["modes"]:
        start = time.perf_counter()
        cfg = bench_config(p["size_px"], p["batch"], p["workers"], p["n_images"], device=p["device"], arch=p["arch"],
                           inset_mode=p["inset_mode"], bf16=p["bf16"], channels_last=p["channels_last"],
                           cache_dir=str(work / "cache"), canonical=str(canonical))
        warmup = p["warmup_compile"] if mode == "compile" else p["warmup"]
        try:
            result = train_throughput(cfg, work / f"bench-{mode}", p["steps"], warmup, compile_=mode == "compile")
            result["seconds"] = round(time.perf_counter() - start, 1)
        except Exception as exc:  # keep the other mode's numbers; the log has the traceback
            import traceback

            traceback.print_exc()
            result, ok = {"error": f"{type(exc).__name__}: {exc}"}, False
        save({mode: result})
    save({"ok": ok})


# No near-duplicate grouping by perceptual hash (imagehash does not travel to offline hosts):
# a speed and pipeline check needs no such split.
NO_PHASH = "data.near_duplicate_max_distance=null"


def _classifier_overrides(p: dict[str, Any], canonical: Path) -> list[str]:
    return [NO_PHASH, f"data.canonical={canonical}", f"data.cache_dir={Path(p['work']) / 'cache'}",
            f"data.image_size_px={p['size_px']}", "data.fractions=[0.8,0.1,0.1]", f"model.arch={p['arch']}",
            f"model.branch_size_px={p['branch_px']}", "model.weights=none", f"optim.epochs={p['epochs']}",
            "optim.warmup_epochs=0", "optim.lr_find=false", f"runtime.device={p['device']}",
            f"runtime.compile={str(p['compile']).lower()}", f"runtime.amp={str(p['bf16']).lower()}",
            f"runtime.channels_last={str(p['channels_last']).lower()}", f"runtime.workers={p['workers']}",
            f"runtime.batch_size={p['batch']}", f"runtime.threads={p['threads']}", "runtime.progress=false",
            "tracking.mode=disabled"]


def classifier_step(p: dict[str, Any], save: Save) -> None:
    """Multi-label ResNet50 on synthetic data: phase ``first`` stops after ``stop_after``
    epochs (as if killed), phase ``resume`` continues it in a new process."""
    from kvasir_ml.train.checkpoint import load_checkpoint
    from kvasir_ml.train.config import load_classifier_config
    from kvasir_ml.train.run import train_classifier

    work, phase = Path(p["work"]), p["phase"]
    cfg = load_classifier_config(None, _classifier_overrides(p, synthetic_dataset(work, p["n_images"])))
    run_dir = work / "classifier-run"
    start = time.perf_counter()
    if phase == "first":
        train_classifier(cfg, run_dir, stop_after_epoch=p["stop_after"])
        last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
        save({"first": {"seconds": round(time.perf_counter() - start, 1), "epochs_done": int(last["epoch"]),
                        "history": last["history"]}})
        return
    train_classifier(cfg, run_dir, resume=True)
    metrics = read_metrics(run_dir / "metrics.json")
    epochs = [h["epoch"] for h in metrics.history]
    resumed_ok = epochs == list(range(1, p["epochs"] + 1))
    save({"resume": {"seconds": round(time.perf_counter() - start, 1), "epochs": epochs,
                     "img_s_per_epoch": [round(h["img_s"], 1) for h in metrics.history],
                     "train_loss_per_epoch": [round(h["train_loss"], 4) for h in metrics.history],
                     "test_macro_ap": metrics.scored("test").macro_ap, "val_macro_ap": metrics.scored("val").macro_ap,
                     "n_images": metrics.n_images},
          "note": "the first epoch of each process includes torch.compile (FX graph cache shared with bench_train)",
          "config": {k: p[k] for k in ("arch", "size_px", "batch", "epochs", "stop_after", "compile", "bf16",
                                       "channels_last", "workers", "n_images")},
          "ok": resumed_ok})


def detector_step(p: dict[str, Any], save: Save) -> None:
    """YOLO on Kvasir-SEG (synthetic data when the folder is absent), time-bounded, scored
    with pycocotools on the test split (AP, AP50) and timed (inference img/s)."""
    from kvasir_ml.config import load_config
    from kvasir_ml.detection.config import DetectorConfig
    from kvasir_ml.detection.run import train_detector

    work = Path(p["work"])
    overrides = [NO_PHASH, f"model.arch={p['arch']}", f"train.imgsz={p['imgsz']}", f"train.batch={p['batch']}",
                 f"train.workers={p['workers']}", f"train.device={p['device']}", f"train.epochs={p['epochs']}",
                 f"train.cache={p['cache']}", "train.plots=false", "train.deterministic=false",
                 f"train.warmup_epochs={p['warmup_epochs']}", "data.inset_mode=detected",
                 "data.fractions=[0.8,0.08,0.12]", "eval.n_overlays=2", f"eval.batch={p['batch']}",
                 "tracking.mode=disabled", "tracking.log_model=false"]
    if p.get("time_h"):
        overrides.append(f"train.time_h={p['time_h']}")
    data_dir = Path(p["kvasir_seg"]) if p.get("kvasir_seg") else None
    if data_dir is not None and (data_dir / "images").is_dir():
        from kvasir_ml.data.sources import index_kvasir_seg

        index = index_kvasir_seg(data_dir)
        canonical = work / "kvasir-seg.coco.json"
        index.dataset.save(canonical)
        overrides += [f"data.canonical={canonical}", f"data.root={data_dir.resolve()}"]
        source = {"data": str(data_dir), "n_images": len(index.dataset.images), "index_problems": len(index.problems)}
    else:
        overrides += ["data.canonical=synthetic", f"data.synthetic_n={p['synthetic_n']}"]
        source = {"data": "synthetic (no Kvasir-SEG folder given or found)"}
    save({"source": source})
    start = time.perf_counter()
    run_dir = train_detector(load_config(DetectorConfig, None, overrides), work / "detector-run")
    metrics = read_metrics(run_dir / "metrics.json")
    test = metrics.scored("test")
    save({"seconds": round(time.perf_counter() - start, 1), "ap": test.coco_ap, "ap50": test.coco_ap50,
          "ap75": test.coco_ap75, "fps": test.get("inference_img_s"), "scored_with": "pycocotools, test split",
          "epochs": len(metrics.history), "epoch_time_s_mean": metrics.epoch_time_s_mean,
          "val_ap": metrics.scored("val").coco_ap, "n_images": metrics.n_images, "model": metrics.model,
          "imgsz": metrics.imgsz, "device": metrics.device, "time_h": p.get("time_h"),
          "note": "from scratch (no pretrained weights travel), time-bounded: a pipeline and speed check, "
                  "not the benchmark's accuracy", "ok": test.coco_ap is not None})


def _video_step(p: dict[str, Any], save: Save) -> None:
    from kvasir_ml.video.bench import video_step  # end to end vs bare forward: docs/video.md

    video_step(p, save)


def gpu_tests_step(p: dict[str, Any], save: Save) -> None:
    """The checkout's tests marked ``gpu`` (``pytest -m gpu`` on ``p["tests"]``, e.g. tests/gpu):
    warm-up -> unfreeze with inductor compile on CUDA, eval on CUDA; counts and failures saved."""
    import xml.etree.ElementTree as ET

    tests = Path(p["tests"]) if p.get("tests") else None
    if tests is None or not tests.exists():
        save({"ok": False, "error": f"no tests at {tests} (the check runs them from a checkout)"})
        return
    junit = Path(p["work"]) / "gpu-tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
           str(tests)]
    root = tests if tests.is_dir() else tests.parent
    while root.parent != root and not (root / "pyproject.toml").is_file():  # the checkout's pytest settings
        root = root.parent
    rc = subprocess.run(cmd, cwd=root).returncode
    counts: dict[str, Any] = {"rc": rc, "passed": 0, "failed": 0, "skipped": 0, "failures": []}
    if junit.is_file():
        for case in ET.parse(junit).getroot().iter("testcase"):
            outcome = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
            key = "failed" if outcome in ("failure", "error") else outcome
            counts[key] += 1
            if key == "failed":
                counts["failures"].append(f"{case.get('classname')}::{case.get('name')}")
    save({"ok": rc == 0 and counts["failed"] == 0, **counts})


STEPS = {"env": env_step, "bench_train": bench_train_step, "classifier": classifier_step, "detector": detector_step,
         "gpu_tests": gpu_tests_step, "video": _video_step}


class HostOnlyImports:
    """Wraps a meta-path finder so that a dry run sees only the GPU host's packages: top-level
    modules outside the standard library and ``allowed`` are not found (``import`` raises
    ModuleNotFoundError, ``importlib.util.find_spec`` gives None), as on the host.
    ``KVASIR_HOST_MODULES`` names the list: the host's modules + those of ``.device/wheels``."""

    def __init__(self, inner: Any, allowed: set[str]):
        self.inner, self.allowed = inner, allowed

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        top = name.partition(".")[0]
        if (top in self.allowed or top in sys.stdlib_module_names or top == "kvasir_ml"
                or top.startswith("_sysconfigdata")):  # the interpreter's own build data
            return self.inner.find_spec(name, path, target)
        return None

    def find_distributions(self, *args: Any, **kwargs: Any) -> Any:
        """Package metadata stays visible (importlib.metadata asks the meta-path finders)."""
        find = getattr(self.inner, "find_distributions", None)
        return find(*args, **kwargs) if find else iter(())

    def invalidate_caches(self) -> None:
        if hasattr(self.inner, "invalidate_caches"):
            self.inner.invalidate_caches()


def simulate_host_imports(module_list: Path) -> None:
    """Install ``HostOnlyImports`` around every path-based finder (built-in and frozen
    modules are the interpreter's own)."""
    import importlib.machinery as im

    allowed = set(module_list.read_text().split())
    # An editable install's finder (setuptools' __editable__ hook) maps package names to some
    # checkout; the host has none: the package must be importable as run.sh installed it.
    finders = [f for f in sys.meta_path if not type(f).__module__.startswith("__editable__")
               and not getattr(f, "__module__", "").startswith("__editable__")]
    sys.meta_path[:] = [f if f in (im.BuiltinImporter, im.FrozenImporter) else HostOnlyImports(f, allowed)
                        for f in finders]
    print(f"imports limited to the GPU host's packages ({module_list})", flush=True)


def main(argv: list[str]) -> int:
    name, work, params = argv[0], Path(argv[1]), json.loads(argv[2])
    if os.environ.get("KVASIR_HOST_MODULES"):
        simulate_host_imports(Path(os.environ["KVASIR_HOST_MODULES"]))
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(work / "ultralytics-config"))
    if params.get("threads"):
        import torch

        torch.set_num_threads(params["threads"])
    STEPS[name]({**params, "work": str(work)}, _saver(step_file(work, name)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
