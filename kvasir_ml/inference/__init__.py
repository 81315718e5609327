"""kvasir_ml.inference: classifier + detector + inset over image files, the ``kvasir-ml predict`` path.

* ``combined`` — ``Predictor`` / ``predict_images``: one entry per image (labels, boxes, inset),
  through ``train.classify`` and ``detection.detect``.
* ``stream``   — ``predict_to_jsonl``: a whole archive as JSON Lines, bounded memory, resumable.
* ``bench``    — streaming predict against a bare forward pass (``scripts/bench_predict.py``).
"""
