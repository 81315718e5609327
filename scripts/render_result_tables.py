"""Regenerate the result tables in docs/ from benchmarks/results/*.json.

    .venv/bin/python scripts/render_result_tables.py           # rewrite the generated blocks
    .venv/bin/python scripts/render_result_tables.py --check   # exit 1 if a page is out of date

A generated block sits between ``<!-- BEGIN GENERATED: NAME -->`` and ``<!-- END GENERATED: NAME -->``
in a docs page; everything outside the markers is hand-written. Blocks: ``benchmarks``
(docs/benchmarks.md: one row per results file), ``controls`` (docs/results.md: the positive,
negative and A/A controls) and ``gpu`` (docs/gpu-check.md: the GPU check's results files).
A results file without its own formatter still gets a row (its top-level numbers), so a new
benchmark shows up the first time the tables are rendered.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PAGES = {"benchmarks": "docs/benchmarks.md", "controls": "docs/results.md", "gpu": "docs/gpu-check.md"}


def _ci(ci: list[float] | None) -> str:
    return "[{:+.3f}, {:+.3f}]".format(*ci) if ci else "[no interval]"


def _num(v: Any) -> str:
    return f"{v:,.3g}" if isinstance(v, float) else str(v)


def _train(d: dict) -> str:
    return "; ".join(f"{r['device']}: {r['project_img_s']} vs bare {r['bare_img_s']} img/s (ratio {r['ratio']})"
                     for r in d["runs"])


def _loader(d: dict) -> str:
    return (f"{d['loader_img_s']:,.0f} img/s at {d['image_size']} px, batch {d['batch_size']}, {d['workers']} workers "
            f"(load {d['load_avg_1min']})")


def _data(d: dict) -> str:
    return (f"naive PIL {d['naive_pil_img_s']:,.0f} / cold cache {d['cache_cold_img_s']:,.0f} / warm cache "
            f"{d['cache_warm_img_s']:,.0f} img/s at {d['size_px']} px (load {d['machine']['load_avg_1min']})")


def _labelstudio(d: dict) -> str:
    return "; ".join(f"{r['n_tasks']:,} tasks: push {r['push_s']} s, pull {r['pull_s']} s"
                     + (f", pull all {r['pull_all_s']} s" if r.get("pull_all_s") is not None else "")
                     for r in d["results"])


def _backend(d: dict) -> str:
    return (f"one task {d['one_task_median_s']} s, {d['batch']} tasks {d['batch_median_s']} s "
            f"({d['http_and_conversion_overhead_s']} s HTTP + conversion), models loaded in {d['load_s']} s")


def _prelabel(d: dict) -> str:
    return f"defaults chosen: conf {d['defaults']['conf']}, at most {d['defaults']['max_boxes']} boxes per frame"


def _label_errors(d: dict) -> str:
    parts = []
    if "labels" in d:
        lab = d["labels"]
        parts.append(f"labels precision@n {lab['precision_at_n']:.2f}, recall@2n {lab['recall_at_2n']:.2f} "
                     f"({lab['n_injected']} injected)")
    box = d["boxes"]
    parts.append(f"boxes precision@n {box['precision_at_n']:.2f}, recall@2n {box['recall_at_2n']:.2f} "
                 f"({box['n_injected']} injected)")
    return f"{d['dataset']}, {d['n_images']} images: " + "; ".join(parts)


def _labelstudio_scale(d: dict) -> str:
    rows = [*d["results"], *d.get("results_100k", [])] if isinstance(d.get("results_100k"), list) else [*d["results"]]
    if isinstance(d.get("results_100k"), dict):
        rows.append(d["results_100k"])
    return "; ".join(f"{r['n_tasks']:,} tasks through the CLI: push {r['push_s']} s + pull all {r.get('pull_all_s')} s, "
                     f"peak RSS {r['peak_rss_mb']} MB" for r in rows)


def _predict(d: dict) -> str:
    r = d["repeat"]
    runs = d.get("runs_ratio_this_box")
    return (f"{r['n_images']} images: stream {r['stream_img_s']} vs bare forward {r['bare_img_s']} img/s "
            f"(ratio {r['ratio']}), peak RSS {r['peak_rss_mb']:.0f} MB (load {r['load_avg_1m']})"
            + (f"; ratios of {len(runs)} runs {min(runs)}-{max(runs)}, median {_median(runs):.3f}" if runs else ""))


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    return (s[(len(s) - 1) // 2] + s[len(s) // 2]) / 2


def _video(d: dict) -> str:
    r = d["result"]
    runs = d.get("runs_600_frames_ratio")
    return (f"{r['frames']} frames {r['frame_size_px'][0]}x{r['frame_size_px'][1]}: end to end "
            f"{r['end_to_end']['fps']:.0f} vs bare {r['bare']['fps']:.0f} fps (ratio {r['ratio']}; load {r['load_avg_1m']})"
            + (f"; ratios of {len(runs)} runs: {', '.join(str(x) for x in runs)}" if runs else ""))


def _controls_row(d: dict) -> str:
    p, n, aa = d["positive"], d["negative"], d["aa"]
    return (f"positive {p['diff']:+.3f} {_ci(p['ci95'])} ({'pass' if p['passed'] else 'FAIL'}), negative "
            f"{n['diff']:+.3f} {_ci(n['ci95'])}, single AP {n['single_macro_ap']:.3f} "
            f"({'pass' if n['passed'] else 'FAIL'}), A/A {aa['starred']}/{aa['cells']} starred; "
            f"{d['wall_time_s']:.0f} s wall")


def _generic(d: Any) -> str:
    if not isinstance(d, dict):
        return "see the file"
    nums = [f"{k} {_num(v)}" for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return ", ".join(nums[:5]) or "see the file"


# file name -> (command, what it measures, formatter)
KNOWN: dict[str, tuple[str, str, Callable[[dict], str]]] = {
    "bench_train_cpu.json": ("scripts/bench_train.py --json", "classifier training img/s through the project "
                             "pipeline vs a bare PyTorch loop, same process", _train),
    "bench_loader_cpu.json": ("scripts/bench_data.py --loader-only --json", "the train loader alone (warm cache)",
                              _loader),
    "bench_data_cpu.json": ("scripts/bench_data.py --json", "data path img/s: naive PIL, cold and warm cache", _data),
    "bench_labelstudio_cpu.json": ("scripts/bench_labelstudio.py --n N --all-tasks --json",
                                   "push and pull N tasks with predictions against a local Label Studio", _labelstudio),
    "bench_backend_cpu.json": ("scripts/bench_backend.py --json", "the ML backend's /predict over HTTP", _backend),
    "bench_prelabel_conf_cpu.json": ("scripts/bench_prelabel_conf.py --json", "pre-annotation boxes per frame vs conf / max boxes",
                                     _prelabel),
    "bench_label_errors_cpu.json": ("scripts/bench_label_errors.py --json", "label-error discovery on injected noise",
                                    _label_errors),
    "bench_label_errors_kvasir_seg_cpu.json": ("scripts/bench_label_errors.py --kvasir-seg DIR --json",
                                               "box-error discovery on real Kvasir-SEG with injected noise",
                                               _label_errors),
    "bench_labelstudio_scale_cpu.json": ("scripts/bench_labelstudio.py --n N --all-tasks --json",
                                         "push + full pull through the CLI at scale", _labelstudio_scale),
    "bench_predict_cpu.json": ("scripts/bench_predict.py --json", "streaming predict vs a bare forward pass, "
                               "same process", _predict),
    "bench_video_cpu.json": ("scripts/bench_video.py --json", "video predict end to end vs a bare forward", _video),
    "positive_control_cpu.json": ("scripts/bench_positive_control.py --json",
                                  "positive, negative and A/A controls of the comparison", _controls_row),
}


def benchmarks_block(results: Path = RESULTS) -> str:
    rows = ["| results file | command | measures | measured |", "|---|---|---|---|"]
    for path in sorted(results.glob("*.json")):
        if path.name.startswith("gpu_check_"):
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        command, what, fmt = KNOWN.get(path.name, ("", "", _generic))
        try:
            measured = fmt(data)
        except (KeyError, TypeError, IndexError):
            measured = _generic(data)
        rows.append(f"| `{path.name}` | `{command}` | {what} | {measured} |" if command
                    else f"| `{path.name}` | | | {measured} |")
    return "\n".join(rows)


def controls_block(results: Path = RESULTS) -> str:
    path = results / "positive_control_cpu.json"
    if not path.is_file():
        return "Not yet measured."
    d = json.loads(path.read_text(encoding="utf-8"))
    rows = ["| control | multi-label | single-label | difference [95% CI, seeds + images] | verdict | "
            "effect / seed SD | criterion | result |", "|---|---|---|---|---|---|---|---|"]
    criteria = {"positive": "* and effect >= 3 seed SDs", "negative": "no * and single-label AP <= 0.95"}
    for kind in ("positive", "negative"):
        r = d[kind]
        ratio = f"{r['effect_over_seed_sd']:.1f}" if r.get("effect_over_seed_sd") is not None else "?"
        rows.append(f"| {kind} | {r['multilabel']:.3f} | {r['singlelabel']:.3f} | {r['diff']:+.3f} {_ci(r['ci95'])}"
                    f"{'*' if r['star'] else ''} | {r['verdict']} | {ratio} | {criteria[kind]} | "
                    f"{'pass' if r['passed'] else 'FAIL'} |")
    aa = d["aa"]
    rate = f"{aa['rate']:.1%}" if aa.get("rate") is not None else "?"
    rows.append(f"| A/A (half the seeds vs the other half) | | | {aa['starred']} of {aa['cells']} cells starred ({rate}) "
                f"| | | <= 5 % over >= 40 cells | {'pass' if aa['passed'] else 'FAIL'} |")
    sizes = d["settings"].get("sizes", {})
    lines = ["\n".join(rows), ""]
    for kind, s in sizes.items():
        lines.append(f"- {kind}: {s['n_images']} images, {s['image_size_px']} px, {s['epochs']} epochs, finding "
                     f"contrast {s['finding_contrast']}")
    m = d.get("machine", {})
    lines.append(f"- seeds {d['settings']['seeds']}, {d['settings']['n_resamples']} resamples; {d['wall_time_s']:.0f} s "
                 f"wall, {d.get('cpu_s', 0):.0f} s training CPU; {m.get('cpu_count', '?')} CPU cores, load "
                 f"{m.get('load_avg_1min_before', '?')} before / {m.get('load_avg_1min_after', '?')} after")
    for kind in ("positive", "negative"):
        per = d[kind]["per_label_ap"]
        lines.append(f"- {kind}, AP per label (multi / single): " + ", ".join(
            f"{lbl} {v['multilabel']:.3f} / {v['singlelabel']:.3f}" for lbl, v in per.items()))
    return "\n".join(lines)


def gpu_block(results: Path = RESULTS) -> str:
    files = sorted(results.glob("gpu_check_*.json"))
    if not files:
        return "Not yet measured on a GPU: no `benchmarks/results/gpu_check_<device>.json` yet."
    rows = ["| results file | step | status | numbers |", "|---|---|---|---|"]
    for path in files:
        data = json.loads(path.read_text(encoding="utf-8"))
        for name, step in (data.get("steps") or {}).items():
            status = step.get("status", "?") if isinstance(step, dict) else "?"
            rows.append(f"| `{path.name}` | {name} | {status} | {_generic(step.get('result', step) if isinstance(step, dict) else step)} |")
    return "\n".join(rows)


BLOCKS: dict[str, Callable[[], str]] = {"benchmarks": benchmarks_block, "controls": controls_block, "gpu": gpu_block}


def render(text: str, name: str, body: str) -> str:
    """``text`` with the block ``name`` replaced by ``body``."""
    pattern = re.compile(rf"(<!-- BEGIN GENERATED: {name} -->\n).*?(<!-- END GENERATED: {name} -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"no generated block {name!r} (markers <!-- BEGIN/END GENERATED: {name} -->)")
    return pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text)


def stale_pages(write: bool) -> list[str]:
    """Pages whose generated blocks differ from the results (rewritten when ``write``)."""
    stale = []
    for name, page in PAGES.items():
        path = REPO / page
        text = path.read_text(encoding="utf-8")
        new = render(text, name, BLOCKS[name]())
        if new != text:
            stale.append(page)
            if write:
                path.write_text(new, encoding="utf-8")
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if a page is out of date")
    args = parser.parse_args(argv)
    stale = stale_pages(write=not args.check)
    for page in stale:
        print(f"{page}: {'out of date (run scripts/render_result_tables.py)' if args.check else 'rewritten'}")
    return 1 if (stale and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
