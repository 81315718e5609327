"""kvasir_ml.labelstudio: the Label Studio round trip.

* ``labeling_config`` — labeling config generated from the taxonomy (annotations/labeling_config.xml).
* ``convert`` — pure converters: canonical boxes/labels <-> Label Studio results and tasks.
* ``from_export`` — a JSON export (list of tasks) -> a new canonical version, with a report.
* ``client``  — SDK wrapper: bounded retries, clear and redacted errors.
* ``server``  — start/stop a local offline server (development, tests, benchmarks).
* ``sync``    — push (idempotent, batched, with pre-annotations) and pull (snapshot export).

See docs/labelstudio.md.
"""
