"""Video tasks in Label Studio: push a video with its tracks as ``VideoRectangle`` pre-annotations,
pull the corrected tracks back as per-frame boxes (and, optionally, still-frame canonical entries).

The video is served like the stills: a local-files URL relative to the server's document root
(``data_root``), covered by a local-files storage on its top folder. The task data carries
what pull needs to read the keyframes without the file: ``fps``, ``n_frames``, ``width``, ``height``.
Keyframe semantics and the reduction live in ``video_tracks`` (pure, no server).
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from kvasir_ml.labelstudio.client import LabelStudioError, LSClient
from kvasir_ml.labelstudio.labeling_config import IMAGE_KEY, VIDEO_NAME, video_labeling_config_xml
from kvasir_ml.labelstudio.convert import (
    ConvertError, Problem, image_key_from_task_data, image_url, resolve_in_root, safe_relative_path,
)
from kvasir_ml.labelstudio.video_tracks import (
    DEFAULT_TOLERANCE_PCT, VideoFrame, frame_log_from_tracks, keyframes_from_track, region_from_track,
    tracks_from_frame_log, tracks_from_result,
)
from kvasir_ml.taxonomy import Taxonomy, load_taxonomy

log = logging.getLogger(__name__)

FRAMES_SUFFIX = ".frames.jsonl"
STILLS_DIR = "stills"
STILLS_CANONICAL = "stills.coco.json"


@dataclass
class VideoPushReport:
    project_id: int
    task_id: int
    created: bool
    n_tracks: int = 0
    n_keyframes: int = 0
    n_boxes: int = 0
    n_untracked: int = 0
    prediction_created: bool = False
    served: str | None = None  # the video the task shows (a WebM copy when the source is not browser-playable)
    transcoded: bool = False


@dataclass
class VideoPullReport:
    project_id: int
    written: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    stills: str | None = None
    n_stills: int = 0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


def _project_fps(label_config: str) -> float | None:
    match = re.search(rf'<Video\b[^>]*\bname="{VIDEO_NAME}"[^>]*\bframerate="([0-9.]+)"', label_config or "")
    return float(match.group(1)) if match else None


def ensure_video_project(client: LSClient, project: str | int, fps: float, taxonomy: Taxonomy) -> tuple[int, bool]:
    """The project (by id or title), created with the video labeling config if absent.

    Raises:
        LabelStudioError: the project exists but is not a video project of this frame rate
            (Label Studio reads the rate from the config: a video of another rate would be
            labelled on the wrong frames).
    """
    from kvasir_ml.labelstudio.sync import find_project

    pid = find_project(client, project)
    if pid is None:
        created = client.call(f"create project {project!r}", client.sdk.projects.create, idempotent=False,
                              title=str(project), label_config=video_labeling_config_xml(fps, taxonomy))
        return int(created.id), True
    have = _project_fps(client.call(f"get project {pid}", client.sdk.projects.get, id=pid).label_config)
    if have is None or abs(have - fps) > 1e-6:
        raise LabelStudioError(f"project {project!r} (id {pid}) is " + (
            f"a video project at {have} fps; this video runs at {fps} fps: push it into a project of its rate"
            if have is not None else "not a video project (no <Video framerate>): push videos into their own project"))
    return pid, False


def prediction_from_frame_log(entries: Iterable[dict[str, Any]], video: VideoFrame, model_version: str, where: str,
                              tolerance_pct: float = DEFAULT_TOLERANCE_PCT) -> tuple[dict[str, Any], VideoPushReport]:
    """One Label Studio prediction: a ``videorectangle`` region per track id, keyframes reduced.

    Boxes without a track id are left out (counted in the report). The frame step (``every``
    of ``video predict``) is the smallest gap between logged frames: wider gaps end a track's run.
    """
    seen: list[int] = []

    def tap() -> Iterator[dict[str, Any]]:  # the frame indices on the way past (the entries stream)
        for entry in entries:
            yield entry
            seen.append(entry["frame"])  # checked by tracks_from_frame_log before it asks for the next

    tracks, untracked = tracks_from_frame_log(tap(), where)
    frames = sorted(set(seen))
    step = min((b - a for a, b in zip(frames, frames[1:])), default=1)
    outside = [f for f in frames if f >= video.n_frames]
    if outside:
        raise ConvertError(f"{where}: frame {outside[0]} lies outside the video ({video.n_frames} frames)")
    report = VideoPushReport(0, 0, False, n_untracked=untracked)
    regions, scores = [], []
    for tid in sorted(tracks):
        t = tracks[tid]
        kfs = keyframes_from_track(t["frames"], t["boxes_px"], video, tolerance_pct, max_step=step)
        score = sum(t["scores"]) / len(t["scores"]) if t["scores"] else None
        regions.append(region_from_track(tid, Counter(t["classes"]).most_common(1)[0][0], kfs, video, score))
        scores += t["scores"]
        report.n_tracks += 1
        report.n_keyframes += len(kfs)
        report.n_boxes += len(t["frames"])
    pred: dict[str, Any] = {"result": regions, "model_version": model_version}
    if scores:
        pred["score"] = round(sum(scores) / len(scores), 5)
    return pred, report


def push_video(client: LSClient, video_path: str | Path, frames_path: str | Path, data_root: str | Path,
               project: str | int, model_version: str, tolerance_pct: float = DEFAULT_TOLERANCE_PCT,
               taxonomy: Taxonomy | None = None, browser_copy: bool = True) -> VideoPushReport:
    """Create the video's task (once: keyed by its path under ``data_root``) with the tracks of
    ``frames_path`` as a prediction of ``model_version`` (added once per version).

    Label Studio plays the video in the browser, which cannot decode MPEG-4 Part 2 (``mp4v``,
    what OpenCV's wheels write, ``video predict``'s and ``video synth``'s MP4s included). Such a
    video is re-encoded frame for frame into ``<name>.browser.webm`` beside it (VP8; made once,
    the source is never touched) and the task shows that copy; ``data.source_video`` keeps the
    source, which pull reads for still frames. ``browser_copy=False`` pushes the file as it is.

    Raises:
        ValueError / ConvertError: the video is not under ``data_root`` or not in a sub-folder, or the
            frame log is bad. LabelStudioError: the server cannot serve it, or the project is of another rate.
        VideoError: the video cannot be read.
    """
    from kvasir_ml.labelstudio.sync import check_image_served, ensure_local_storage
    from kvasir_ml.video.io import probe_video

    taxonomy = taxonomy or load_taxonomy()
    root = Path(data_root).resolve()
    path = Path(video_path).resolve()
    if root not in path.parents:
        raise ValueError(f"{video_path}: the video must lie under the server's document root {root}")
    info = probe_video(path)
    source_key = path.relative_to(root).as_posix()
    served, transcoded = _browser_playable(path, browser_copy)
    key = served.relative_to(root).as_posix()
    video = VideoFrame(info.fps, info.n_frames, info.width, info.height)
    from kvasir_ml.video.render import iter_frame_log  # the one frames.jsonl reader

    pred, report = prediction_from_frame_log(iter_frame_log(frames_path), video, model_version, str(frames_path),
                                             tolerance_pct)
    unknown = sorted({r["value"]["labels"][0] for r in pred["result"]} - set(taxonomy.box_class_names))
    if unknown:
        raise ConvertError(f"{frames_path}: box classes {unknown} are not the taxonomy's {taxonomy.box_class_names}")
    pid, created = ensure_video_project(client, project, info.fps, taxonomy)
    ensure_local_storage(client, pid, root, [key])
    check_image_served(client, root, key)
    report.project_id, report.served, report.transcoded = pid, key, transcoded
    task = next((t for t in client.list_tasks(pid) if _task_key(t) == key), None)
    if task is None:
        data = {VIDEO_NAME: image_url(key), IMAGE_KEY: key, "fps": info.fps, "n_frames": info.n_frames,
                "width": info.width, "height": info.height, "source_video": source_key}
        resp = client.post_json(f"import video task {key!r} into project {pid}", f"api/projects/{pid}/import",
                                [{"data": data, "predictions": [pred]}], params={"return_task_ids": "true"})
        report.task_id, report.created, report.prediction_created = int(resp["task_ids"][0]), True, True
        return report
    report.task_id = int(task["id"])
    rows = client.call(f"list predictions of task {task['id']}", client.sdk.predictions.list, task=task["id"])
    if not any(p.model_version == model_version for p in rows):
        client.post_json(f"add prediction to task {task['id']}", f"api/projects/{pid}/import/predictions",
                         [{"task": task["id"], **pred}])
        report.prediction_created = True
    return report


def _browser_playable(path: Path, browser_copy: bool) -> tuple[Path, bool]:
    """The file to serve: ``path`` itself, or its WebM copy (made now when missing or older)."""
    from kvasir_ml.video.io import BROWSER_FOURCCS, transcode_webm, video_fourcc

    if not browser_copy or video_fourcc(path) in BROWSER_FOURCCS:
        return path, False
    copy = path.with_name(path.name + ".browser.webm")
    if copy.exists() and copy.stat().st_mtime >= path.stat().st_mtime:
        return copy, False
    log.info("%s: codec %s does not play in browsers; writing the VP8 copy %s", path, video_fourcc(path), copy)
    transcode_webm(path, copy)
    return copy, True


def _task_key(task: dict[str, Any]) -> str | None:
    try:
        return image_key_from_task_data(task.get("data") or {})
    except ConvertError:
        return None


def video_of_task(task: dict[str, Any]) -> VideoFrame:
    """The video facts a pushed task carries.

    Raises:
        ConvertError: the task data lacks them (not a task ``push_video`` made).
    """
    data = task.get("data") or {}
    try:
        video = VideoFrame(float(data["fps"]), int(data["n_frames"]), int(data["width"]), int(data["height"]))
    except (KeyError, TypeError, ValueError):
        raise ConvertError(f"task {task.get('id')}: data lacks fps/n_frames/width/height (not pushed by "
                           "`kvasir-ml ls video push`)") from None
    if video.fps <= 0 or min(video.n_frames, video.width, video.height) <= 0:
        raise ConvertError(f"task {task.get('id')}: bad video facts in its data: {video}")
    return video


def _latest_annotation(task: dict[str, Any]) -> dict[str, Any] | None:
    done = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    return max(done, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id") or 0),
               default=None)


def pull_videos(client: LSClient, project: str | int, out_dir: str | Path, data_root: str | Path | None = None,
                stills_every: int | None = None, taxonomy: Taxonomy | None = None) -> VideoPullReport:
    """Write each annotated video task's corrected tracks as per-frame boxes.

    For a task of ``folder/clip.mp4`` (its ``source_video``) it writes ``out_dir/folder/clip.mp4.frames.jsonl`` (one line
    per video frame, ``frame_log_from_tracks``; an existing file is backed up first). The latest
    submitted (not cancelled) annotation of a task wins.

    Args:
        stills_every: also extract every k-th frame of each video into ``out_dir/stills/`` with
            a canonical file ``out_dir/stills.coco.json`` (its boxes; labels implied by the boxes),
            for training. Needs ``data_root`` (the server's document root) to read the videos.

    Returns:
        The report: files written, and a ``Problem`` per task that could not be converted (its
        frame log is not written; the message names the task and what is wrong).
    """
    from kvasir_ml.io import atomic_write_text, backup_existing
    from kvasir_ml.labelstudio.sync import export_snapshot, find_project

    taxonomy = taxonomy or load_taxonomy()
    if stills_every is not None and (stills_every < 1 or data_root is None):
        raise ValueError("stills need stills_every >= 1 and the data root the videos lie under")
    pid = find_project(client, project)
    if pid is None:
        raise LabelStudioError(f"no Label Studio project {project!r}")
    out = Path(out_dir)
    report = VideoPullReport(pid)
    pulled: list[tuple[str, VideoFrame, list[dict[str, Any]]]] = []
    for task in export_snapshot(client, pid, {"annotated": "only"}):
        key = _task_key(task)
        annotation = _latest_annotation(task)
        if annotation is None:
            continue
        try:
            if key is None:
                raise ConvertError(f"task {task.get('id')}: data has no video key ({IMAGE_KEY!r} or a local-files URL)")
            video = video_of_task(task)
            source = (task.get("data") or {}).get("source_video") or key
            source = safe_relative_path(source if isinstance(source, str) else "", "data.source_video")
            tracks = tracks_from_result(annotation.get("result"), video, taxonomy.box_class_names, task.get("id"))
        except ConvertError as exc:
            report.problems.append(Problem(task.get("id"), "bad-video-annotation", str(exc), file_name=key))
            continue
        path = out / (source + FRAMES_SUFFIX)
        path.parent.mkdir(parents=True, exist_ok=True)
        backup_existing(path)
        lines = (json.dumps(entry) for entry in frame_log_from_tracks(tracks, video))
        atomic_write_text(path, "\n".join(lines) + "\n")
        report.written.append(str(path))
        pulled.append((source, video, tracks))
    if stills_every is not None and pulled:
        assert data_root is not None  # checked on entry
        report.stills, report.n_stills = write_stills(pulled, Path(data_root), out, stills_every, taxonomy)
    return report


def write_stills(pulled: list[tuple[str, VideoFrame, list[dict[str, Any]]]], data_root: Path, out: Path,
                 every: int, taxonomy: Taxonomy) -> tuple[str, int]:
    """Every ``every``-th frame of each pulled video as a JPEG under ``out/stills/`` and one
    canonical file ``out/stills.coco.json`` (file names relative to ``out``) with their boxes.

    Returns:
        ``(canonical path, number of stills)``.
    """
    from PIL import Image

    from kvasir_ml.data.coco import CanonicalDataset
    from kvasir_ml.video.io import iter_frames

    label_of = {box.name: box.label for box in taxonomy.box_classes}
    ds = CanonicalDataset.new("video", "still frames of corrected Label Studio video tracks", taxonomy)
    for key, video, tracks in pulled:
        for index, _, rgb in iter_frames(resolve_in_root(data_root, key), every=every):
            if index >= video.n_frames:
                break
            name = f"{STILLS_DIR}/{key}/frame_{index:06d}.jpg"
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb).save(out / name, quality=95)
            boxes = [(t["class"], t["boxes"][index], t["track_id"]) for t in tracks if index in t["boxes"]]
            labels = [lab for lab in taxonomy.label_names if lab in {label_of[c] for c, _, _ in boxes}]
            iid = ds.add_image(name, rgb.shape[1], rgb.shape[0], labels, "video", None, video=key, frame=index,
                               labels_from="boxes")
            for cls, box, tid in boxes:
                ds.add_box(iid, cls, box, track_id=tid)
    path = out / STILLS_CANONICAL
    ds.save(path)
    return str(path), len(ds.images)
