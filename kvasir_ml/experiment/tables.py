"""Markdown tables of a comparison: the controlled multi- vs single-label table, the inset
ablation, TTA rows, paired differences with their intervals, and the detector.

Used by ``comparison.md`` and printed by the CLIs (``metrics_table``). Numbers are those of
``comparison.json`` rounded to 3 decimals.
"""

from __future__ import annotations

from typing import Any, Sequence

from kvasir_ml.evaluation.bootstrap import seed_differences
from kvasir_ml.evaluation.verdict import TOO_FEW_SEEDS
from kvasir_ml.results_schema import Aggregate, ComparisonFile, PairedSection, Variant, as_comparison

METRIC_TITLES = {"macro_ap": "macro AP", "micro_ap": "micro AP", "macro_f1": "macro F1",
                 "subset_accuracy": "subset acc.", "top1": "top-1", "mcc": "MCC",
                 "coco_ap": "COCO AP", "coco_ap50": "AP50", "coco_ap75": "AP75",
                 "ultralytics_map50": "ultralytics mAP50", "ultralytics_map50_95": "ultralytics mAP50-95"}


def fmt(agg: Aggregate | None, digits: int = 3) -> str:
    """``mean ± std`` of an ``Aggregate`` (``mean`` alone for one seed, ``–`` if undefined)."""
    if agg is None or agg.mean is None:
        return "–"
    text = f"{agg.mean:.{digits}f}"
    return text if agg.std is None else f"{text} ± {agg.std:.{digits}f}"


def fmt_diff(res: dict[str, Any] | None, digits: int = 3) -> str:
    """``+d [lo, hi]`` of a paired result (the seed-aware interval); ``*`` marks a verdict (the
    interval excludes zero with enough seeds), ``†`` too few seeds for a verdict."""
    if not res or res.get("diff") is None:
        return "–"
    text = f"{res['diff']:+.{digits}f}"
    mark = "*" if res.get("star") else ("†" if res.get("verdict") == TOO_FEW_SEEDS else "")
    ci = res.get("ci95")
    if not ci:
        return text + mark
    return f"{text} [{ci[0]:+.{digits}f}, {ci[1]:+.{digits}f}]{mark}"


def verdict_table(comparison: ComparisonFile, *sections: str) -> list[str]:
    """Markdown lines: per pair and metric, the effect, its seed-aware interval, the seeds per side,
    the seeds per side needed to detect the stated effect at 80 % power, and the verdict."""
    pairs, keys = _pairs_and_keys(comparison, sections)
    rows = []
    for name, res in pairs.items():
        for k in keys:
            r = res.get(k)
            if not r or r.get("diff") is None:
                continue
            ci = r.get("ci95")
            needed = r.get("seeds_needed")
            rows.append([name.replace("-vs-", " − "), METRIC_TITLES.get(k, k), f"{r['diff']:+.3f}",
                         f"[{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "–",
                         "/".join(str(n) for n in r.get("n_seeds") or []) or "?",
                         ("> 1000" if needed is None and ci else str(needed) if needed else "–"),
                         str(r.get("verdict", "")) + (" *" if r.get("star") else "")])
    if not rows:
        return []
    effect = next((r.get("effect") for res in pairs.values() for r in res.values() if r and r.get("effect")), None)
    return md_table(["pair", "metric", "effect", "95% CI", "seeds", f"seeds needed (±{effect})" if effect else
                     "seeds needed", "verdict"], rows)


def aa_line(comparison: ComparisonFile) -> list[str]:
    """One line: the A/A control's false-``*`` rate (or why it was not measured)."""
    aa = comparison.aa_control
    if not aa:
        return []
    if not aa.get("cells"):
        return [f"A/A control: {aa.get('note', 'not measured')}", ""]
    return [f"A/A control (each variant's seeds split in halves of {aa['seeds_per_side']}, half against half; "
            f"every `*` there is false): **{aa['starred']} of {aa['cells']} cells starred "
            f"({aa['rate']:.1%})**; a trustworthy `*` needs this at or below 5 %.", ""]


def variants_of(comparison: ComparisonFile, kind: str) -> list[Variant]:
    return comparison.variants_of(kind)


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _pair_variants(comparison: ComparisonFile, section: str) -> list[str]:
    names: list[str] = []
    for key in comparison.section(section):
        names += [n for n in key.split("-vs-") if n not in names]
    return names


def classifier_table(comparison: ComparisonFile, names: Sequence[str] | None = None, key: str = "test",
                     suffix: str = "", chance: bool = True) -> list[str]:
    """Markdown lines: classifier variants (all, or ``names``) x metrics (mean ± std) from
    each variant's ``key`` section (``test`` or ``test_tta``), then a chance row."""
    classifiers = [v for v in variants_of(comparison, "classifier") if (names is None or v.name in names)
                   and v.scored(key) is not None]
    if not classifiers:
        return []
    keys = comparison.metrics
    rows = [[v.name + suffix, str(v.n_seeds), *(fmt((v.scored(key) or {}).get(k)) for k in keys)] for v in classifiers]
    levels = comparison.chance
    if chance and levels:
        rows.append(["*chance*", "", *(f"*{levels[k]:.3f}*" if levels.get(k) is not None else "" for k in keys)])
    return md_table(["variant", "seeds", *(METRIC_TITLES.get(k, k) for k in keys)], rows)


def _pairs_and_keys(comparison: ComparisonFile, sections: Sequence[str]) -> tuple[PairedSection, list[str]]:
    """The pairs of the comparison's ``sections`` and their metrics, the comparison's order first."""
    pairs = {k: v for section in sections for k, v in comparison.section(section).items()}
    keys = list(dict.fromkeys(k for res in pairs.values() for k in res))
    return pairs, [k for k in comparison.metrics if k in keys] + [k for k in keys if k not in comparison.metrics]


def _pair_rows(comparison: ComparisonFile, sections: Sequence[str], first: str, cell) -> list[str]:
    pairs, keys = _pairs_and_keys(comparison, sections)
    rows = [[name.replace("-vs-", " − "), *(cell(res.get(k)) for k in keys)] for name, res in pairs.items()]
    return md_table([first, *(METRIC_TITLES.get(k, k) for k in keys)], rows)


def paired_table(comparison: ComparisonFile, *sections: str) -> list[str]:
    """Markdown lines: one row per pair of the ``comparison[section]``s, ``diff [95% CI]`` per metric."""
    if not _pairs_and_keys(comparison, sections)[0]:
        return []
    return _pair_rows(comparison, sections, "difference", fmt_diff)


def seed_table(comparison: ComparisonFile, *sections: str) -> list[str]:
    """Markdown lines: per pair and metric, the lowest and highest per-seed difference (the
    runs of one seed on the full test set); empty unless some pair has two seeds in common."""
    pairs, _ = _pairs_and_keys(comparison, sections)
    if not any(len(seed_differences(r)) >= 2 for res in pairs.values() for r in res.values()):
        return []

    def cell(res: dict[str, Any] | None) -> str:
        seeds = seed_differences(res)
        return f"{min(seeds):+.3f} … {max(seeds):+.3f}" if seeds else "–"

    return _pair_rows(comparison, sections, "difference, per seed", cell)


def detector_table(comparison: ComparisonFile) -> list[str]:
    """Markdown lines: detector variants x COCO/ultralytics metrics (mean ± std)."""
    detectors = variants_of(comparison, "detector")
    if not detectors:
        return []
    keys = comparison.detector_metrics
    return md_table(["detector", "seeds", *(METRIC_TITLES.get(k, k) for k in keys)],
                    [[v.name, str(v.n_seeds), *(fmt(v.test.get(k)) for k in keys)] for v in detectors])


def _sections(comparison: ComparisonFile) -> list[tuple[str, list[str], tuple[str, ...]]]:
    """(title, variant table, its paired sections of ``comparison``) of each part of the report that has content."""
    controlled = _pair_variants(comparison, "paired")
    ablation = [n for n in _pair_variants(comparison, "inset_ablation")]
    shown = set(controlled) | set(ablation)
    rest = [v.name for v in variants_of(comparison, "classifier") if v.name not in shown]
    out: list[tuple[str, list[str], tuple[str, ...]]] = []
    if controlled:
        design = comparison.design
        title = ("Multi-label vs single-label, controlled (same inset mode, budget and selection rule)"
                 if design.get("controlled", True) else
                 "Multi-label vs single-label, UNCONTROLLED (the runs differ in more than the task; no verdict)")
        out.append((title, classifier_table(comparison, controlled), ("paired",)))
    if ablation:
        out.append(("Inset ablation (what the inset adds within one task; not a multi- vs single-label result)",
                    classifier_table(comparison, ablation, chance=False), ("inset_ablation",)))
    if rest or not out:
        out.append(("Test metrics" if not out else "Other variants (not paired)",
                    classifier_table(comparison, rest if out else None), ()))
    tta = classifier_table(comparison, key="test_tta", suffix=" +TTA", chance=False)
    if tta:
        out.append(("Test-time augmentation (8 dihedral views; reported apart, never mixed into the rows above)",
                    tta, ("paired_tta", "inset_ablation_tta")))
    return out


def section_lines(comparison: ComparisonFile | dict[str, Any], level: str = "##") -> list[str]:
    """Every classifier section (variant table, then its paired differences) as Markdown lines."""
    comparison = as_comparison(comparison)
    lines: list[str] = []
    for title, table, sections in _sections(comparison):
        lines += [f"{level} {title}", "", *table, ""]
        paired = paired_table(comparison, *sections)
        if paired:
            lines += ["Difference (first − second) with its seed-aware 95% interval (retraining and test "
                      "images); `*`: the interval excludes 0 with enough seeds a side; `†`: too few seeds "
                      "for a verdict.", "", *paired, "", *verdict_table(comparison, *sections), ""]
        seeds = seed_table(comparison, *sections)
        if seeds:
            lines += ["The same difference per seed (seed i of each side, full test set), lowest … highest: how "
                      "far retraining moves it (the seed-aware interval above includes this spread).", "",
                      *seeds, ""]
    return lines + aa_line(comparison)


def metrics_table(comparison: ComparisonFile | dict[str, Any]) -> str:
    """The headline tables (Markdown, also printed by the CLIs): classifier sections, then detectors.

    ``comparison``: a ``ComparisonFile`` or ``compare_runs``' dict (validated here)."""
    comparison = as_comparison(comparison)
    lines = section_lines(comparison, level="###")
    det = detector_table(comparison)
    if det:
        lines += ["### Detector (test)", "", *det]
    return "\n".join(lines).strip()
