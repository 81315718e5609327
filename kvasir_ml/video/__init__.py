"""Endoscopy video: decoding and encoding (``io``), synthetic videos with per-frame ground
truth (``synth``), per-frame prediction with tracking and temporal smoothing (``predict``,
``tracks``, ``smoothing``), outputs (``render``) and scoring against ground truth
(``evaluate``). See docs/video.md."""
