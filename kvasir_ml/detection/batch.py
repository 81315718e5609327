"""The detector on a stream of same-size frames, without ultralytics' per-call machinery.

``YOLO.predict`` sets up its source loader, profilers and one ``Results`` object per frame at
every call; for a tiny model on small frames that Python work costs as much as the network.
``BatchDetector`` runs the same steps, taken from ultralytics' own ``DetectionPredictor``,
once per batch: its ``LetterBox`` (``pre_transform``), the network that predictor loaded
(``AutoBackend``, Conv+BN fused), its ``non_max_suppression`` on the whole batch and
``scale_boxes`` back to frame pixels. Boxes are those of ``detect.detect_arrays`` (tested).

The work is split so a pipeline can make the input in another thread or process:
``prepare`` (pure CPU, numpy: mask, letterbox, stack) and ``__call__`` (the network and NMS).
Frames stay RGB throughout: ultralytics flips its BGR input to RGB before the network, and
letterboxing does not depend on channel order.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from kvasir_ml.data.inset import mask_inset
from kvasir_ml.detection.detect import Detection, checkpoint_meta
from kvasir_ml.detection.yolo import ultralytics_device
from kvasir_ml.detection.yolo_dataset import inset_mask_box
from kvasir_ml.geometry import xyxy_px_to_xywh_px


class BatchDetector:
    """A loaded detector (``load_yolo``) as a batch function: RGB frames of one size -> boxes.

    Args:
        model: the ``YOLO`` model.
        device: ``auto`` | ``cpu`` | ``cuda[:N]``.
        conf: confidence threshold; None = the checkpoint's ``predict_conf``.
        iou, max_det: NMS IoU threshold and boxes kept per frame (as ``detect_arrays``).
    """

    def __init__(self, model, device: str = "auto", conf: float | None = None, iou: float = 0.7,
                 max_det: int = 100):
        meta = checkpoint_meta(model)
        self.names, self.inset_mode, self.imgsz = meta["box_class_names"], meta["inset_mode"], meta["imgsz"]
        self.conf = float(meta["predict_conf"] if conf is None else conf)
        self.iou, self.max_det = iou, max_det
        # One call through YOLO.predict builds ultralytics' predictor (AutoBackend, fused
        # layers, device, warm-up); its network and letterbox settings are used from here on.
        model.predict(np.zeros((self.imgsz, self.imgsz, 3), np.uint8), imgsz=self.imgsz, conf=self.conf, iou=iou,
                      max_det=max_det, device=ultralytics_device(device), verbose=False)
        self.predictor = model.predictor
        self.end2end = bool(getattr(self.predictor.model, "end2end", False))

    def prepare(self, rgbs: Sequence[np.ndarray], insets: Sequence[Any] | None = None) -> np.ndarray:
        """The network's input batch, ``(N, h, w, 3)`` uint8 RGB letterboxed, with the inset masked
        when the model was trained so (``insets``: ``InsetResult`` per frame, else detected here)."""
        frames = []
        for i, rgb in enumerate(rgbs):
            entry = {"inset": insets[i].state, "inset_box": insets[i].box_xywh_px} if insets is not None else {}
            box = inset_mask_box(entry, rgb, self.inset_mode)
            frames.append(mask_inset(rgb, box) if box is not None else rgb)
        return np.stack(self.predictor.pre_transform(frames))

    @torch.no_grad()
    def __call__(self, batch: np.ndarray, frame_shape: tuple[int, ...]) -> list[list[Detection]]:
        """Boxes per frame for a ``prepare``d batch of frames of ``frame_shape`` (H, W[, 3]),
        ``{"class", "score", "xywh_px"}`` sorted by score, in the frame's pixels."""
        from ultralytics.utils import nms, ops

        pred = self.predictor
        im = torch.from_numpy(batch).to(pred.device).permute(0, 3, 1, 2).contiguous()
        im = (im.half() if pred.model.fp16 else im.float()).div_(255)
        kept = nms.non_max_suppression(pred.inference(im), self.conf, self.iou, None, False, max_det=self.max_det,
                                       nc=0, end2end=self.end2end)
        out = []
        for boxes in kept:
            boxes[:, :4] = ops.scale_boxes((im.shape[2], im.shape[3]), boxes[:, :4], (frame_shape[0], frame_shape[1]))
            dets = [{"class": self.names[int(cls)], "score": round(score, 5),
                     "xywh_px": [round(v, 2) for v in xyxy_px_to_xywh_px(xyxy)]}
                    for *xyxy, score, cls in boxes[:, :6].cpu().tolist()]
            out.append(sorted(dets, key=lambda d: -d["score"]))
        return out

    def detect(self, rgbs: Sequence[np.ndarray], insets: Sequence[Any] | None = None) -> list[list[Detection]]:
        """``prepare`` and the network in one call (frames of one size)."""
        return self(self.prepare(rgbs, insets), rgbs[0].shape) if len(rgbs) else []
