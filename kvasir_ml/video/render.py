"""What ``video predict`` makes of its frame log: annotated frames, the per-video summary of
findings and tracks, the timeline plot, and the W&B run. Everything except ``annotate_frame``
reads ``frames.jsonl`` line by line, so a long video is never held in memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np


# Track colours (RGB), cycled by track id.
_COLOURS = ((255, 196, 0), (0, 200, 255), (255, 64, 160), (120, 255, 80), (255, 128, 0), (180, 120, 255))


def iter_frame_log(path: str | Path) -> Iterator[dict[str, Any]]:
    """The entries of a ``frames.jsonl``, one at a time.

    Raises:
        ValueError: a line that is not JSON (the message names the file and line).
    """
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{n}: not a JSON line ({exc.msg})") from None


def annotate_frame(rgb: np.ndarray, entry: dict[str, Any]) -> np.ndarray:
    """A copy of the frame with its boxes (track id, class, score), the current alerts and the inset state."""
    import cv2

    img = np.ascontiguousarray(rgb.copy())
    h, w = img.shape[:2]
    scale = max(0.35, min(w, h) / 600)
    for b in entry.get("boxes", []):
        x, y, bw, bh = (int(round(v)) for v in b["xywh_px"])
        tid = b.get("track_id")
        colour = _COLOURS[(tid or 0) % len(_COLOURS)] if tid is not None else (200, 200, 200)
        cv2.rectangle(img, (x, y), (x + bw, y + bh), colour, max(1, int(2 * scale)))
        text = f"{'#' + str(tid) + ' ' if tid is not None else ''}{b['class']} {b['score']:.2f}"
        cv2.putText(img, text, (x, max(10, y - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.9 * scale, colour, 1, cv2.LINE_AA)
    alerts = entry.get("alerts")
    lines = [f"t={entry['time_s']:.2f}s  inset={entry['inset']['state']}"]
    if alerts is not None:
        lines.append("ALERT: " + ", ".join(alerts) if alerts else "no finding")
    bar = int(22 * scale * len(lines)) + 4
    img[h - bar:] = (img[h - bar:] * 0.35).astype(np.uint8)
    for i, line in enumerate(lines):
        colour = (255, 80, 80) if line.startswith("ALERT") else (235, 235, 235)
        cv2.putText(img, line, (4, h - bar + int(20 * scale * (i + 1))), cv2.FONT_HERSHEY_SIMPLEX, 0.9 * scale,
                    colour, 1, cv2.LINE_AA)
    return img


def _episodes_s(times: list[float], on: list[bool]) -> list[tuple[float, float]]:
    """Runs of frames with the alert on: ``[(first frame time, last frame time)]``."""
    out, start, last = [], None, 0.0  # last: set with start
    for t, o in zip(times, on):
        if o:
            start = t if start is None else start
            last = t
        elif start is not None:
            out.append((start, last))
            start = None
    if start is not None:
        out.append((start, last))
    return out


def summarize(frames_path: str | Path, fps_processed: float) -> dict[str, Any]:
    """Per-video summary from ``frames.jsonl``.

    Returns:
        ``{"duration_s", "findings": [{label, first_seen_s, last_seen_s, alert_s, n_alerts, max_score}],
        "tracks": [{track_id, class, first_seen_s, last_seen_s, n_frames, max_score}],
        "longest_track": {...} | None}``; findings (smoothed alerts) and tracks sorted by first appearance.
    """
    step_s = 1.0 / fps_processed if fps_processed > 0 else 0.0
    times: list[float] = []
    alert_on: dict[str, list[bool]] = {}
    max_score: dict[str, float] = {}
    tracks: dict[int, dict[str, Any]] = {}
    for entry in iter_frame_log(frames_path):
        t = float(entry["time_s"])
        times.append(t)
        for name, score in entry.get("labels", {}).items():
            max_score[name] = max(max_score.get(name, 0.0), score)
            alert_on.setdefault(name, [False] * (len(times) - 1)).append(name in entry.get("alerts", []))
        for b in entry.get("boxes", []):
            tid = b.get("track_id")
            if tid is None:
                continue
            tr = tracks.setdefault(tid, {"track_id": tid, "class": b["class"], "first_seen_s": t, "n_frames": 0,
                                         "max_score": 0.0})
            tr["last_seen_s"] = t
            tr["n_frames"] += 1
            tr["max_score"] = round(max(tr["max_score"], b["score"]), 5)
    findings = []
    for name, on in alert_on.items():
        eps = _episodes_s(times, on)
        if eps:
            findings.append({"label": name, "first_seen_s": round(eps[0][0], 3), "last_seen_s": round(eps[-1][1], 3),
                             "alert_s": round(sum(b - a + step_s for a, b in eps), 3), "n_alerts": len(eps),
                             "max_score": round(max_score[name], 5)})
    track_list = sorted(tracks.values(), key=lambda tr: (tr["first_seen_s"], tr["track_id"]))
    longest = max(track_list, key=lambda tr: tr["n_frames"], default=None)
    return {"duration_s": round(times[-1] + step_s, 3) if times else 0.0,
            "findings": sorted(findings, key=lambda f: f["first_seen_s"]), "tracks": track_list,
            "longest_track": longest}


def plot_timeline(frames_path: str | Path, png_path: str | Path, thresholds: dict[str, Any] | None = None,
                  max_labels: int = 6) -> Path | None:
    """Per-finding score over time (raw, smoothed, alert shaded) and tracked boxes per frame.

    Labels shown: those that ever alerted, then the highest-scoring others, ``max_labels`` at most.
    Returns the PNG path, or None when the log has no label scores and no boxes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times, n_tracked = [], []
    raw: dict[str, list[float]] = {}
    smooth: dict[str, list[float]] = {}
    alerts: dict[str, list[bool]] = {}
    for entry in iter_frame_log(frames_path):
        times.append(entry["time_s"])
        for name, s in entry.get("labels", {}).items():
            raw.setdefault(name, []).append(s)
            smooth.setdefault(name, []).append(entry["smoothed"][name])
            alerts.setdefault(name, []).append(name in entry.get("alerts", []))
        n_tracked.append(sum(1 for b in entry.get("boxes", []) if b.get("track_id") is not None))
    if not times or (not raw and not any(n_tracked)):
        return None
    order = sorted(raw, key=lambda n: (not any(alerts[n]), -max(raw[n])))[:max_labels]
    fig, axes = plt.subplots(len(order) + 1, 1, figsize=(10, 1.6 * (len(order) + 1)), sharex=True, squeeze=False)
    t = np.asarray(times)
    for ax, name in zip(axes[:, 0], order):
        ax.plot(t, raw[name], lw=0.7, color="0.55", label="frame score")
        ax.plot(t, smooth[name], lw=1.6, color="tab:blue", label="smoothed")
        ax.fill_between(t, 0, 1, where=np.asarray(alerts[name]), color="tab:red", alpha=0.18, step="post",
                        label="alert")
        if thresholds:
            ax.axhline(thresholds["on"].get(name, np.nan), color="tab:red", lw=0.8, ls="--")
            ax.axhline(thresholds["off"].get(name, np.nan), color="tab:orange", lw=0.8, ls=":")
        ax.set_ylim(0, 1)
        ax.set_ylabel(name, rotation=0, ha="right", fontsize=8)
    axes[0, 0].legend(loc="upper right", fontsize=7, ncol=3)
    axes[-1, 0].step(t, n_tracked, where="post", color="tab:green")
    axes[-1, 0].set_ylabel("tracked\nboxes", rotation=0, ha="right", fontsize=8)
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    png_path = Path(png_path)
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return png_path


def log_to_tracker(cfg, out_dir: Path, summary: dict[str, Any]) -> None:
    """The timeline, the per-frame smoothed scores and the summary to W&B (``cfg``: a ``TrackingConfig``)."""
    from kvasir_ml.tracking import make_tracker

    tracker = make_tracker(cfg, out_dir, f"video-{Path(summary['video']).stem}", "video-predict",
                           {k: summary[k] for k in ("video", "every", "tracker", "smoothing")}, ["video"])
    try:
        for entry in iter_frame_log(out_dir / "frames.jsonl"):
            row = {f"smoothed/{k}": v for k, v in entry.get("smoothed", {}).items()}
            row["tracked_boxes"] = sum(1 for b in entry.get("boxes", []) if b.get("track_id") is not None)
            tracker.log(row, step=int(entry["frame"]))
        if (out_dir / "timeline.png").is_file():
            tracker.image("timeline", out_dir / "timeline.png", caption="score over time; shaded = smoothed alert")
        tracker.table("findings", ["label", "first_seen_s", "last_seen_s", "alert_s", "n_alerts", "max_score"],
                      [[f[k] for k in ("label", "first_seen_s", "last_seen_s", "alert_s", "n_alerts", "max_score")]
                       for f in summary["findings"]])
        tracker.summary({"fps_processed": summary["fps_processed"], "frames_processed": summary["frames_processed"],
                         "n_tracks": len(summary["tracks"]), "n_findings": len(summary["findings"])})
    finally:
        tracker.finish()
