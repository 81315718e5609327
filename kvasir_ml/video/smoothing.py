"""Temporal smoothing of per-frame label scores, and what it does to alerts.

Per label, the calibrated score ``s_t`` is smoothed by an exponential moving average whose
weight follows the time between processed frames, ``a = 1 - exp(-dt / tau_s)`` (the same
time constant whatever the frame rate or ``--every``), and the alert follows a hysteresis
rule: it switches on when the average reaches ``on`` and off only when it falls below
``off`` (< ``on``). By default ``on`` is the label's threshold tuned on val for the still
classifier (stored in the checkpoint) and ``off = off_ratio * on``: a frame-wise decision
that crosses the threshold back and forth no longer toggles the alert. The raw decision
(``s_t >= threshold``) is kept alongside for comparison.

Scores of decisions against ground truth: ``flicker_per_min`` (decision changes per minute)
and ``detection_delay`` (frames from the start of each ground-truth episode of a label to the
first frame of that episode with the decision on).
"""

from __future__ import annotations

import math
from typing import Sequence

from pydantic import Field

from kvasir_ml.config import StrictModel


class SmoothingConfig(StrictModel):
    """Temporal smoothing of label scores (EMA + hysteresis)."""

    tau_s: float = Field(0.4, ge=0.0, description="EMA time constant in seconds; 0 = no averaging")
    off_ratio: float = Field(0.6, gt=0.0, le=1.0, description="the alert switches off below off_ratio * the "
                                                              "label's on-threshold (1 = no hysteresis)")
    on_thresholds: dict[str, float] = Field({}, description="per-label on-thresholds; labels not named use the "
                                                            "checkpoint's val-tuned thresholds")


class LabelSmoother:
    """EMA + hysteresis for every label of one video; ``update`` once per processed frame, in order.

    Args:
        thresholds: per-label on-thresholds (the checkpoint's, or ``cfg.on_thresholds``).
        cfg: the smoothing settings.
    """

    def __init__(self, thresholds: dict[str, float], cfg: SmoothingConfig):
        self.on = {k: float(cfg.on_thresholds.get(k, v)) for k, v in thresholds.items()}
        self.off = {k: v * cfg.off_ratio for k, v in self.on.items()}
        self.tau_s = cfg.tau_s
        self.ema: dict[str, float] = {}
        self.alert = {k: False for k in self.on}
        self._last_t: float | None = None

    def update(self, time_s: float, scores: dict[str, float]) -> tuple[dict[str, float], list[str]]:
        """The smoothed scores and the labels whose alert is on after this frame."""
        dt = 0.0 if self._last_t is None else max(0.0, time_s - self._last_t)
        self._last_t = time_s
        a = 1.0 if self.tau_s == 0 or not self.ema else 1.0 - math.exp(-dt / self.tau_s)
        for name, s in scores.items():
            prev = self.ema.get(name, s)
            e = prev + a * (s - prev)
            self.ema[name] = e
            if name in self.on:
                if self.alert[name]:
                    self.alert[name] = e >= self.off[name]
                else:
                    self.alert[name] = e >= self.on[name]
        return dict(self.ema), [k for k, on in self.alert.items() if on]


def count_changes(decisions: Sequence[bool]) -> int:
    """How many times a decision sequence switches (on->off or off->on)."""
    return sum(1 for a, b in zip(decisions, decisions[1:]) if a != b)


def flicker_per_min(decisions: Sequence[bool], duration_s: float) -> float:
    """Decision changes per minute of video."""
    return 60.0 * count_changes(decisions) / duration_s if duration_s > 0 else 0.0


def episodes(present: Sequence[bool]) -> list[tuple[int, int]]:
    """Maximal runs of True: ``[(start, end_exclusive)]``."""
    runs, start = [], None
    for i, p in enumerate(present):
        if p and start is None:
            start = i
        elif not p and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(present)))
    return runs


def detection_delays(truth: Sequence[bool], decisions: Sequence[bool]) -> list[int | None]:
    """Per ground-truth episode: frames from its first frame to the first frame with the
    decision on inside the episode (None = never on during the episode: missed)."""
    delays: list[int | None] = []
    for start, end in episodes(truth):
        hit = next((i for i in range(start, end) if decisions[i]), None)
        delays.append(None if hit is None else hit - start)
    return delays
