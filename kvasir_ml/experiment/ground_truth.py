"""What the comparison's test numbers were scored against (``eval.ground_truth`` of its runs)."""

from __future__ import annotations

from typing import Any, Sequence

from kvasir_ml.results_schema import GroundTruth, MetricsFile


def ground_truth_summary(metrics: Sequence[MetricsFile]) -> dict[str, Any]:
    """``{"kinds": [...], "n_test_images": [...], "same": bool}`` over classifier runs'
    metrics.json (runs written before the switch existed were scored on folder labels)."""
    runs = [m for m in metrics if m.kind == "classifier"]
    truths = [(m.ground_truth or GroundTruth(), m.n_images.get("test", 0)) for m in runs]
    kinds = sorted({gt.kind for gt, _ in truths})
    counts = sorted({gt.n_test_images if gt.n_test_images is not None else n for gt, n in truths})
    left_out = sorted({gt.n_test_left_out for gt, _ in truths})
    return {"kinds": kinds, "n_test_images": counts, "n_test_left_out": left_out,
            "same": len(kinds) <= 1 and len(counts) <= 1}


def ground_truth_sentence(summary: dict[str, Any] | None) -> str:
    """One sentence for comparison.md: which labels test was scored against, on how many images."""
    if not summary or not summary.get("kinds"):
        return ""
    if not summary["same"]:
        return (f"Ground truth: MIXED ({', '.join(summary['kinds'])} labels on {summary['n_test_images']} test "
                "images): not like for like!")
    kind, n = summary["kinds"][0], summary["n_test_images"][0]
    if kind == "verified":
        left = summary["n_test_left_out"][0] if summary["n_test_left_out"] else 0
        return (f"Ground truth: verified labels (independent annotators, `kvasir-ml verify`) on {n} test images; "
                f"{left} unverified test images left out.")
    return f"Ground truth: folder labels (each image's source-class label set) on {n} test images."
