"""kvasir_ml.labelstudio: the Label Studio round trip.

* ``labeling_config`` — labeling config generated from the taxonomy (annotations/labeling_config.xml).
* ``convert`` — pure converters: canonical boxes/labels <-> Label Studio results and tasks.
* ``from_export`` — a JSON export (list of tasks) -> a new canonical version, with a report.
* ``client``  — SDK wrapper: bounded retries, clear and redacted errors.
* ``server``  — start/stop a local offline server (development, tests, benchmarks).
* ``sync``    — push (idempotent, batched, with pre-annotations) and pull (snapshot export).
* ``video_tracks`` — pure: tracked boxes <-> ``VideoRectangle`` keyframes (Label Studio's interpolation).
* ``video_sync``   — video tasks: push a video with its tracks, pull corrected tracks per frame.

See docs/labelstudio.md.
"""
