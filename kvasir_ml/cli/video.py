"""``kvasir-ml video synth | predict | evaluate``: endoscopy video in, frame log, annotated
video, timeline and scores out (library: ``kvasir_ml.video``)."""

from __future__ import annotations

import argparse
import json

from kvasir_ml.cli.common import add_command, add_device, add_group, add_tracking_mode, add_trust_checkpoint, count


def _synth(args: argparse.Namespace) -> int:
    from kvasir_ml.video.synth import synthesize_video

    truth = synthesize_video(args.out, seed=args.seed, n_frames=args.frames, fps=args.fps,
                             frame_size_px=(args.width, args.height), n_polyps=args.polyps)
    print(f"wrote {truth.parent / 'video.mp4'} and {truth}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from kvasir_ml.config import TrackingConfig
    from kvasir_ml.video.predict import predict_video
    from kvasir_ml.video.smoothing import SmoothingConfig

    tracking = TrackingConfig(mode=args.tracking_mode) if args.tracking_mode != "disabled" else None
    summary = predict_video(args.video, args.out, args.classifier, args.detector, every=args.every,
                            batch_frames=args.batch, device=args.device, trust_detector=args.trust_checkpoint,
                            tracker=args.tracker, smoothing=SmoothingConfig(tau_s=args.tau_s, off_ratio=args.off_ratio),
                            start_s=args.start_s, end_s=args.end_s, annotate=not args.no_video, tracking=tracking)
    print(f"{summary['frames_processed']} frames at {summary['fps_processed']} fps -> {args.out} "
          "(frames.jsonl, annotated.mp4, timeline.png, summary.json)")
    for f in summary["findings"]:
        print(f"  {f['label']}: {f['first_seen_s']}-{f['last_seen_s']} s, {f['n_alerts']} alert(s)")
    if summary["longest_track"]:
        t = summary["longest_track"]
        print(f"  longest track #{t['track_id']} ({t['class']}): {t['n_frames']} frames from {t['first_seen_s']} s")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from kvasir_ml.io import atomic_write_json
    from kvasir_ml.video.evaluate import evaluate_video

    result = evaluate_video(args.frames, args.truth, iou_min=args.iou_min)
    if args.out:
        atomic_write_json(args.out, result, keep_backup=True)
        print(f"wrote {args.out}")
    else:
        print(json.dumps(result, indent=1))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    group = add_group(sub, "video", help="endoscopy video: synthetic videos, per-frame prediction, scoring",
                      dest="video_command")
    p = add_command(group, "synth", help="a synthetic endoscopy video with per-frame ground truth", examples=[
        "kvasir-ml video synth --out videos/synth0 --seed 0 --frames 150"],
        description="The scope pans and zooms over a synthetic colon scene; polyps enter and leave the view, "
                    "with motion blur, specular flashes and inset state changes. Writes video.mp4 and "
                    "ground_truth.json (per frame: labels, boxes with object ids, inset state).")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (same seed: same frames and ground truth)")
    p.add_argument("--frames", type=count(2), default=150, metavar="N", help="number of frames")
    p.add_argument("--fps", type=float, default=15.0, metavar="FPS", help="frames per second")
    p.add_argument("--width", type=count(64), default=256, metavar="PX", help="frame width in pixels (even)")
    p.add_argument("--height", type=count(64), default=224, metavar="PX", help="frame height in pixels (even)")
    p.add_argument("--polyps", type=int, default=2, metavar="N", help="polyps in the scene (0-6)")
    p.set_defaults(func=_synth)

    p = add_command(group, "predict", help="labels, tracked boxes and smoothed alerts for every frame of a video",
                    examples=["kvasir-ml video predict videos/synth0/video.mp4 --classifier runs/ml-tiny/checkpoints/best.pt \\",
                              "    --detector runs/det-tiny/checkpoints/best.pt --out videos/synth0/pred --every 2"],
                    description="Decodes the video (in a thread, overlapped with inference), runs the classifier "
                                "and the detector on every k-th frame with the inset handled per frame as for "
                                "stills, gives boxes track ids (ultralytics' ByteTrack or BoT-SORT) and smooths "
                                "label scores (EMA + hysteresis). Writes frames.jsonl (streamed), annotated.mp4, "
                                "timeline.png and summary.json (findings first/last seen, tracks).")
    p.add_argument("video", metavar="VIDEO", help="video file (anything OpenCV's FFmpeg decodes)")
    p.add_argument("--classifier", metavar="CKPT", help="classifier checkpoint (RUN_DIR/checkpoints/best.pt)")
    p.add_argument("--detector", metavar="CKPT", help="detector checkpoint (RUN_DIR/checkpoints/best.pt)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (an existing frames.jsonl is backed up)")
    p.add_argument("--every", type=count(1), default=1, metavar="K", help="process every k-th frame")
    p.add_argument("--batch", type=count(1), default=32, metavar="N", help="frames per inference batch")
    p.add_argument("--start-s", type=float, default=0.0, metavar="S", help="start time in seconds (seek)")
    p.add_argument("--end-s", type=float, default=None, metavar="S", help="end time in seconds (default: the end)")
    p.add_argument("--tracker", choices=("bytetrack", "botsort"), default="bytetrack",
                   help="box tracker (botsort compensates camera motion, slower)")
    p.add_argument("--tau-s", type=float, default=0.4, metavar="S", help="EMA time constant of the label scores in seconds")
    p.add_argument("--off-ratio", type=float, default=0.6, metavar="R",
                   help="an alert switches off below off_ratio x its on-threshold (the val-tuned threshold)")
    p.add_argument("--no-video", action="store_true", help="skip the annotated MP4")
    add_trust_checkpoint(p)
    add_device(p)
    add_tracking_mode(p)
    p.set_defaults(func=_predict)

    p = add_command(group, "evaluate", help="flicker, detection delay and MOT metrics against ground truth",
                    examples=["kvasir-ml video evaluate videos/synth0/pred/frames.jsonl videos/synth0/ground_truth.json"],
                    description="Raw vs smoothed decisions per label (decision changes per minute, frames from a "
                                "finding's first appearance to its alert) and MOT metrics (motmetrics: MOTA, IDF1, "
                                "ID switches) of the tracked boxes.")
    p.add_argument("frames", metavar="FRAMES_JSONL", help="frames.jsonl from video predict")
    p.add_argument("truth", metavar="GROUND_TRUTH", help="ground_truth.json from video synth")
    p.add_argument("--iou-min", type=float, default=0.3, metavar="IOU", help="IoU a tracked box needs to match a ground-truth box")
    p.add_argument("--out", metavar="FILE", help="write the JSON here instead of stdout")
    p.set_defaults(func=_evaluate)
