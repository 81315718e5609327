"""kvasir_ml.detection: YOLO detector for key findings, through ultralytics, offline.

* ``yolo_dataset`` canonical COCO file + split -> ultralytics dataset folder (links/copies/masked copies)
* ``config``   ``DetectorConfig`` (configs/detector_*.yaml)
* ``ultralytics_env`` offline-safe import and settings of ultralytics (what it would download, and why not)
* ``yolo``     ``load_yolo`` / ``resolve_weights``: local weights only, checked by ``safe_load`` first
* ``training`` ``YOLO(...).train`` with timing callbacks; checkpoints with our metadata
* ``scoring``  pycocotools AP next to ultralytics' mAP for one split
* ``detect``   ``run_detector`` / ``detect_arrays`` and COCO results JSON
* ``overlay``  ground truth vs prediction drawings
* ``run``      ``train_detector`` / ``train_detector_from_cli``: the whole run
"""
