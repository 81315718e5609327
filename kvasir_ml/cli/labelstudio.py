"""``kvasir-ml ls {serve,push,pull,convert,config,backend,connect,video}``: the Label Studio round trip.

The API key comes only from ``LABEL_STUDIO_API_KEY`` (and the URL from ``LABEL_STUDIO_URL``
or ``--url``); there is deliberately no flag for the key.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kvasir_ml.cli.common import add_command, add_device, add_group, add_trust_checkpoint, count


def _client(args: argparse.Namespace):
    from kvasir_ml.labelstudio.client import LSClient, connection_from_env

    return LSClient(connection_from_env(args.url), max_attempts=args.retries)


def _config(args: argparse.Namespace) -> int:
    from kvasir_ml.labelstudio.labeling_config import labeling_config_xml, write_labeling_config

    if args.out == "-":
        sys.stdout.write(labeling_config_xml())
    else:
        print(f"wrote {write_labeling_config(args.out)}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from kvasir_ml.labelstudio.server import LabelStudioServer

    def ready(server: LabelStudioServer) -> None:
        print(f"Label Studio is up at {server.url}  (login {server.username}, password in "
              f"{server.data_dir}/web_password)")
        print(f"  export LABEL_STUDIO_URL={server.url}")
        print(f"  export LABEL_STUDIO_API_KEY=$(cat {server.token_path})")
        print("Ctrl-C (or SIGTERM/SIGHUP) stops it", flush=True)

    server = LabelStudioServer(args.data_root, data_dir=args.data_dir, port=args.port)
    print(f"starting Label Studio on {server.url} (data root {server.data_root}) ... the first start migrates "
          "its database: ~35 s on an idle machine, 2-3 min on a busy one; restarts take ~5 s", flush=True)
    signum = server.serve(on_ready=ready)
    if signum:
        print(f"stopped (signal {signum})")
        return 0
    # Nobody asked it to stop: a crash or a kill from outside, not a clean end.
    print(f"error: Label Studio exited by itself; its log: {server.log_path}", file=sys.stderr)
    return 1


def _push(args: argparse.Namespace) -> int:
    from kvasir_ml.data.coco import load_canonical
    from kvasir_ml.data.image_root import image_root
    from kvasir_ml.labelstudio.expert import expert_version_for
    from kvasir_ml.labelstudio.push_models import push_with_predictions
    from kvasir_ml.labelstudio.sync import set_prelabeling_model

    client = _client(args)
    expert = None if args.no_expert_draft else expert_version_for(args.canonical)
    report = push_with_predictions(client, load_canonical(args.canonical), image_root(args.canonical, args.data_root),
                                   args.project, predictions_file=args.predictions, classifier=args.classifier,
                                   detector=args.detector, model_version=args.model_version, device=args.device,
                                   trust_detector=args.trust_checkpoint, conf=args.conf, max_boxes=args.max_boxes,
                                   batch_size=args.batch_size, expert_version=expert)
    print("\n".join(report.summary_lines()))
    prefill = report.model_version if args.prelabel and report.model_version else expert
    if prefill:
        before = set_prelabeling_model(client, report.project_id, prefill)
        print(f"prelabeling model of project {report.project_id} (pre-fills drafts): {before} -> {prefill}")
    return 0


def _backend(args: argparse.Namespace) -> int:
    import os

    from kvasir_ml.labelstudio.backend import Backend, make_backend_server
    from kvasir_ml.labelstudio.backend_server import ServerLimits, access_for, basic_auth_from_env
    from kvasir_ml.labelstudio.serving import ModelWatcher

    data_root = Path(args.data_root).resolve()
    if not data_root.is_dir():
        raise FileNotFoundError(f"--data-root {data_root} is not a folder")
    # checked before the models load: a backend that may not listen fails at once
    access = access_for(args.host, args.allowed_host, basic_auth_from_env(os.environ))
    limits = ServerLimits(max_tasks=args.max_tasks)
    load, current = _backend_models(args)
    backend = Backend(data_root, load(current), current.model_version)
    server = make_backend_server(backend, args.host, args.port, limits, access)
    watcher = ModelWatcher(backend, args.current_model, load).start() if args.current_model else None
    host, port = server.server_address[:2]
    print(f"kvasir-ml ML backend {current.model_version} on http://{host}:{port} (data root {data_root})")
    if watcher:
        print(f"  serves the model named in {args.current_model}; `kvasir-ml loop --current-model "
              f"{args.current_model}` switches it without a restart")
    print(f"  connect it: kvasir-ml ls connect --project NAME --backend-url http://{host}:{port}"
          + ("  (with the same BASIC_AUTH_USER / BASIC_AUTH_PASS: basic auth is on)" if access.basic_auth else ""))
    print("Ctrl-C stops it", flush=True)
    try:
        server.serve_forever()
    finally:
        if watcher:
            watcher.stop()
        server.server_close()
    return 0


def _backend_models(args: argparse.Namespace):
    """The backend's model loader and the model to start with: --classifier/--detector (also made
    current in --current-model when given), else the model the --current-model file names."""
    from kvasir_ml.labelstudio.backend import checkpoint_predict_fn
    from kvasir_ml.labelstudio.serving import CurrentModel, read_current_model, write_current_model
    from kvasir_ml.labelstudio.sync import model_version_for

    def load(current: CurrentModel):
        return checkpoint_predict_fn(current.classifier, current.detector, args.device, args.trust_checkpoint,
                                     conf=args.conf, max_boxes=args.max_boxes)

    if args.classifier or args.detector:
        for given in (args.classifier, args.detector):
            if given and not Path(given).is_file():
                raise FileNotFoundError(f"checkpoint {given} does not exist")
        current = CurrentModel(Path(args.classifier) if args.classifier else None,
                               Path(args.detector) if args.detector else None,
                               args.model_version or model_version_for(args.classifier, args.detector))
        if args.current_model:
            write_current_model(args.current_model, current.classifier, current.detector, current.model_version)
        return load, current
    if not args.current_model:
        raise ValueError("the ML backend needs --classifier and/or --detector, or --current-model FILE")
    return load, read_current_model(args.current_model)


def _connect(args: argparse.Namespace) -> int:
    from kvasir_ml.labelstudio.sync import connect_backend

    import os

    from kvasir_ml.labelstudio.backend_server import basic_auth_from_env

    ml_id = connect_backend(_client(args), args.project, args.backend_url, args.title,
                            basic_auth=basic_auth_from_env(os.environ))
    print(f"ML backend {args.backend_url} connected to project {args.project!r} (ML backend id {ml_id}); "
          "Label Studio now asks it for predictions of tasks opened without one, and on the data "
          "manager's Actions -> Retrieve Predictions")
    return 0


def _loop(args: argparse.Namespace) -> int:
    import os

    from kvasir_ml.labelstudio.backend_server import basic_auth_from_env
    from kvasir_ml.labelstudio.annotation_round import run_loop

    result = run_loop(_client(args), args.project, args.base, args.data_root, args.out, classifier=args.classifier,
                      detector=args.detector, classifier_overrides=args.classifier_set,
                      detector_overrides=args.detector_set, policy=args.policy, device=args.device, force=args.force,
                      expert_changes=args.expert_changes,
                      resume=args.resume, conf=args.conf, max_boxes=args.max_boxes, current_model=args.current_model,
                      backend_auth=basic_auth_from_env(os.environ))
    if result.resumed:
        print(f"resumed {args.out}: done before: {', '.join(result.resumed)}")
    if result.pull_report is not None:
        print("\n".join(result.pull_report.summary_lines()))
    if result.stopped:
        print(f"stopped: {result.stopped}")
        return 0
    print(f"new canonical version {result.canonical}")
    for kind, run in result.runs.items():
        print(f"fine-tuned {kind}: {run}")
    assert result.push_report is not None  # a turn that did not stop pushed
    print("\n".join(result.push_report.summary_lines()))
    print(f"prelabeling model of the project: {result.prelabel_before} -> {result.model_version}")
    for url, version in result.backends.items():
        print(f"ML backend {url} serves {version}" + ("" if version == result.model_version else
                                                      " (NOT the new model: start it with --current-model)"))
    print(f"wrote {Path(args.out) / 'loop.json'}")
    return 0


def _print_report(report, path: Path, report_path: Path | None, strict: bool) -> int:
    print("\n".join(report.summary_lines()))
    print(f"wrote {path} (report {report_path})")
    return 1 if strict and report.errors else 0


def _pull(args: argparse.Namespace) -> int:
    from kvasir_ml.labelstudio.sync import pull_project

    result = pull_project(_client(args), args.project, args.data_root, base_path=args.base, out_path=args.out,
                          policy=args.policy, skipped=args.skipped, save_export=args.save_export,
                          all_tasks=args.all_tasks, expert_changes=args.expert_changes,
                          export_wait_s=args.export_wait_s)
    if result.redo_view:
        print(f"rejected tasks are listed in the project's data-manager tab {result.redo_view!r}")
    if result.review_path:
        print(f"submissions that touch expert labels are listed in {result.review_path}")
    if result.path is None:
        print("\n".join(result.report.summary_lines()))
        print(f"{result.same_as} already holds this pull's result (pulled from this base before): no new version "
              "written" if result.same_as else f"nothing changed since {args.base}: no new version written")
        return 1 if args.strict and result.report.errors else 0
    return _print_report(result.report, result.path, result.report_path, args.strict)


def _convert(args: argparse.Namespace) -> int:
    from kvasir_ml.data.coco import load_canonical
    from kvasir_ml.labelstudio.from_export import export_to_canonical, load_export
    from kvasir_ml.labelstudio.versions import write_version

    if args.base and Path(args.out).resolve() == Path(args.base).resolve():
        raise ValueError(f"{args.out}: write the converted file as a new version, not over the base file")
    base = load_canonical(args.base) if args.base else None
    dataset, report = export_to_canonical(load_export(args.export), data_root=args.data_root, base=base,
                                          policy=args.policy, skipped=args.skipped, expert_changes=args.expert_changes)
    path, report_path = write_version(dataset, report, args.out)
    return _print_report(report, path, report_path, args.strict)


def _video_push(args: argparse.Namespace) -> int:
    from kvasir_ml.io import sha256_file
    from kvasir_ml.labelstudio.video_sync import push_video

    version = args.model_version or f"tracks-{sha256_file(args.tracks)[:12]}"
    rep = push_video(_client(args), args.video, args.tracks, args.data_root, args.project, version,
                     tolerance_pct=args.tolerance_pct, browser_copy=not args.no_browser_copy)
    if rep.transcoded:
        print(f"{args.video} does not play in browsers (MPEG-4 Part 2): the task shows the VP8 copy {rep.served}")
    print(f"project {rep.project_id}, task {rep.task_id} ({'created' if rep.created else 'existed'}); "
          f"{rep.n_tracks} tracks, {rep.n_boxes} boxes as {rep.n_keyframes} keyframes "
          f"({'added' if rep.prediction_created else 'already there'} as model_version {version!r})"
          + (f"; {rep.n_untracked} boxes without a track id left out" if rep.n_untracked else ""))
    return 0


def _video_pull(args: argparse.Namespace) -> int:
    from kvasir_ml.labelstudio.video_sync import pull_videos

    if args.stills and not args.data_root:
        raise ValueError("--stills reads the videos: give --data-root (the server's document root)")
    rep = pull_videos(_client(args), args.project, args.out, data_root=args.data_root,
                      stills_every=args.stills_every if args.stills else None)
    for path in rep.written:
        print(f"wrote {path}")
    if rep.stills:
        print(f"wrote {rep.stills} ({rep.n_stills} still frames)")
    for problem in rep.problems:
        print(problem, file=sys.stderr)
    if not rep.written and not rep.problems:
        print("no annotated video task in the project")
    return 1 if rep.errors else 0


def _add_conversion_options(p: argparse.ArgumentParser) -> None:
    from kvasir_ml.labelstudio.from_export import POLICIES, SKIPPED_POLICIES

    _add_policy(p, POLICIES)
    p.add_argument("--skipped", choices=SKIPPED_POLICIES, default="keep",
                   help="images whose annotations were all skipped: keep their previous state, or drop them")
    p.add_argument("--strict", action="store_true", help="exit with status 1 when any task had an error")
    p.add_argument("--expert-changes", choices=("review", "apply"), default="review",
                   help="submissions that remove, move (IoU < 0.9) or relabel the base file's labels/boxes, or "
                        "are an unedited model draft: review (default) keeps the base labels and lists the tasks; "
                        "apply takes them (and lists them)")


def _add_policy(p: argparse.ArgumentParser, policies) -> None:
    p.add_argument("--policy", choices=policies, default="latest",
                   help="which annotation wins when an image has several: latest or earliest non-cancelled, "
                        "ground-truth (the one flagged ground truth, else the latest) or unanimous (applied "
                        "only when all annotators agree)")


def _add_server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", metavar="URL", help="server URL (default: $LABEL_STUDIO_URL or http://127.0.0.1:8080); "
                   "the API key is read from $LABEL_STUDIO_API_KEY only")
    p.add_argument("--retries", type=count(1), default=4, metavar="N",
                   help="attempts per request when the server is down or slow")


def _add_models(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--classifier", metavar="CKPT", help=f"{what} classifier checkpoint (RUN_DIR/checkpoints/best.pt)")
    p.add_argument("--detector", metavar="CKPT", help=f"{what} detector checkpoint (RUN_DIR/checkpoints/best.pt)")


def _add_prelabel_options(p: argparse.ArgumentParser) -> None:
    from kvasir_ml.labelstudio.uncertainty import PRELABEL_CONF, PRELABEL_MAX_BOXES

    p.add_argument("--conf", type=_conf, default=PRELABEL_CONF, metavar="SCORE",
                   help="pre-annotation boxes below this detector score are not shown (0-1, or 'checkpoint' for "
                        "the threshold stored in the detector checkpoint; docs/labelstudio.md has the measurement)")
    p.add_argument("--max-boxes", type=count(1), default=PRELABEL_MAX_BOXES, metavar="N",
                   help="pre-annotation boxes per frame, the highest scores first")


def _conf(text: str) -> float | None:
    if text == "checkpoint":
        return None
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a score between 0 and 1")
    return value


def _add_current_model(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--current-model", metavar="FILE", help=help)


def register(sub: argparse._SubParsersAction) -> None:
    _register_ls(sub)
    _register_loop(sub)


_ENV = ("export LABEL_STUDIO_URL=http://127.0.0.1:8080 LABEL_STUDIO_API_KEY=...   "
        "# printed by `ls serve`; never a flag")


def _register_ls(sub: argparse._SubParsersAction) -> None:
    lsub = add_group(sub, "ls", dest="ls_command",
                     help="Label Studio: serve, push tasks with pre-annotations, pull annotations",
                     description="The Label Studio round trip: a local server, tasks with pre-annotations from "
                                 "the models, annotations back as the next canonical version "
                                 "(docs/labelstudio.md). The API key comes from $LABEL_STUDIO_API_KEY only.")

    p = add_command(lsub, "config", help="write the labeling config generated from the taxonomy", examples=[
        "kvasir-ml ls config --out annotations/labeling_config.xml",
        "kvasir-ml ls config --out -              # print it"])
    p.add_argument("--out", default="annotations/labeling_config.xml", metavar="FILE",
                   help="output file, or - for stdout")
    p.set_defaults(func=_config)

    p = add_command(lsub, "serve", help="run a local Label Studio on 127.0.0.1 (offline; Ctrl-C stops it)", examples=[
        "kvasir-ml ls serve --data-root data/synth --port 8080"],
        description="Run a local Label Studio on 127.0.0.1, offline (no update checks, no analytics). It prints "
                    "the URL and the API key's file to export; Ctrl-C (or SIGTERM/SIGHUP) stops it.")
    p.add_argument("--data-root", required=True, metavar="DIR",
                   help="folder the canonical file_names are relative to (served to the labeling page)")
    p.add_argument("--data-dir", default=".labelstudio", metavar="DIR",
                   help="server database folder (kept between runs; private: mode 0700, files 0600, git-ignored "
                        "by a .gitignore inside it)")
    p.add_argument("--port", type=int, default=8080, metavar="PORT", help="port on 127.0.0.1")
    p.set_defaults(func=_serve)

    p = add_command(lsub, "push", help="import a canonical file's images as tasks (idempotent), with pre-annotations",
                    examples=[
                        _ENV,
                        "kvasir-ml ls push data/synth/annotations.coco.json --project \"kvasir synth\" \\",
                        "    --classifier runs/ml-tiny/checkpoints/best.pt --detector runs/det-tiny/checkpoints/best.pt",
                        "kvasir-ml ls push data/synth/annotations.coco.json --project \"kvasir synth\" "
                        "--predictions preds.json --prelabel"],
                    description="Import a canonical file's images as tasks (keyed by file_name: re-running adds "
                                "only what is new), with pre-annotations from checkpoints or from a "
                                "`kvasir-ml predict` file, under one model_version per checkpoint pair.")
    p.add_argument("canonical", metavar="FILE", help="canonical COCO file")
    p.add_argument("--project", required=True, metavar="PROJECT", help="project id or title (created if the title is new)")
    p.add_argument("--data-root", metavar="DIR", help="image root (default: the canonical file's folder)")
    p.add_argument("--predictions", metavar="FILE", help="pre-annotations: a JSON (or .jsonl) file written by "
                   "`kvasir-ml predict`")
    _add_models(p, "pre-annotate with this")
    add_device(p)
    p.add_argument("--model-version", metavar="NAME",
                   help="name of the pre-annotations (default: derived from the checkpoints' hashes)")
    p.add_argument("--batch-size", type=count(1), default=1000, metavar="N", help="tasks per bulk import request")
    p.add_argument("--prelabel", action="store_true",
                   help="make the model's predictions the project's prelabeling model (they pre-fill drafts "
                        "instead of the expert draft)")
    p.add_argument("--no-expert-draft", action="store_true",
                   help="do not push the canonical labels as each task's expert draft (by default they are, "
                        "and pre-fill the drafts annotators edit; the model's predictions stay a separate tab)")
    _add_prelabel_options(p)
    add_trust_checkpoint(p)
    _add_server_options(p)
    p.set_defaults(func=_push)

    p = add_command(lsub, "backend", help="serve the models as a Label Studio ML backend (predictions on demand)",
                    examples=[
                        "kvasir-ml ls backend --classifier runs/ml-tiny/checkpoints/best.pt --data-root data/synth "
                        "--port 9090",
                        "kvasir-ml ls connect --project \"kvasir synth\" --backend-url http://127.0.0.1:9090   "
                        "# then register it"])
    _add_models(p, "predict with this")
    p.add_argument("--data-root", required=True, metavar="DIR",
                   help="the Label Studio server's document root (task images)")
    p.add_argument("--host", default="127.0.0.1", metavar="HOST",
                   help="address to listen on (default: loopback only; beyond loopback needs basic auth: "
                        "BASIC_AUTH_USER and BASIC_AUTH_PASS in the environment)")
    p.add_argument("--port", type=int, default=9090, metavar="PORT", help="port to listen on")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="a host name Label Studio uses in the backend URL, besides loopback and --host "
                        "(repeatable; requests whose Host header names another host are refused)")
    p.add_argument("--max-tasks", type=count(1), default=100, metavar="N",
                   help="most tasks in one prediction request (default 100; more: refused with 413)")
    add_device(p)
    p.add_argument("--model-version", metavar="NAME",
                   help="name of its predictions (default: derived from the checkpoints' hashes)")
    _add_current_model(p, "current-model file: serve the model it names and switch (hot reload) whenever "
                          "`kvasir-ml loop --current-model FILE` rewrites it; with --classifier/--detector those "
                          "are written into it first")
    _add_prelabel_options(p)
    add_trust_checkpoint(p)
    p.set_defaults(func=_backend)

    p = add_command(lsub, "connect", help="register a running ML backend with a project", examples=[
        "kvasir-ml ls connect --project \"kvasir synth\" --backend-url http://127.0.0.1:9090"])
    p.add_argument("--project", required=True, metavar="PROJECT", help="project id or title")
    p.add_argument("--backend-url", required=True, metavar="URL", help="the backend's URL as the Label Studio "
                   "server sees it, e.g. http://127.0.0.1:9090")
    p.add_argument("--title", metavar="NAME", help="name shown in the project's Model settings (default: kvasir-ml)")
    _add_server_options(p)
    p.set_defaults(func=_connect)

    p = add_command(lsub, "pull", help="export annotations and write them as the next canonical version", examples=[
        "kvasir-ml ls pull --project \"kvasir synth\" --base data/synth/annotations.coco.json",
        "    # -> data/synth/annotations.v2.coco.json (+ .report.json); the base file is never touched"],
        description="Export the project's annotations (snapshot export) and write them as the next canonical "
                    "version beside --base, with a report of what changed, conflicts between annotators and "
                    "every rejected task. Nothing is written when nothing changed.")
    p.add_argument("--project", required=True, metavar="PROJECT", help="project id or title")
    p.add_argument("--base", required=True, metavar="FILE", help="the previous canonical file (kept unchanged)")
    p.add_argument("--out", metavar="FILE", help="output file (default: next free <name>.vN.coco.json beside --base)")
    p.add_argument("--data-root", metavar="DIR", help="image root (default: the base file's folder)")
    p.add_argument("--save-export", action="store_true", help="keep the raw Label Studio export beside the output")
    p.add_argument("--all-tasks", action="store_true",
                   help="pull every task, not only annotated/skipped ones (the others from the task listing; "
                        "slower; full counts in the report)")
    p.add_argument("--export-wait-s", type=float, default=900.0, metavar="S",
                   help="longest time Label Studio may take to build a snapshot export (default 900: ~10x the "
                        "83 s a 100k-task project takes; an export whose answer is lost is found and polled, "
                        "then retried with backoff)")
    _add_conversion_options(p)
    _add_server_options(p)
    p.set_defaults(func=lambda a: _pull(_default_root(a, a.base)))

    p = add_command(lsub, "convert", help="convert a Label Studio JSON export file (no server needed)", examples=[
        "kvasir-ml ls convert export.json --out labels.coco.json --data-root data/synth",
        "kvasir-ml ls convert export.json --out data/synth/annotations.v2.coco.json --data-root data/synth \\",
        "    --base data/synth/annotations.coco.json --strict"])
    p.add_argument("export", metavar="FILE", help="Label Studio JSON export (list of tasks)")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="canonical COCO file to write (an existing one is kept as a backup)")
    p.add_argument("--data-root", metavar="DIR", help="image root: checks images exist and reads sizes")
    p.add_argument("--base", metavar="FILE", help="previous canonical file: unannotated images keep their state")
    _add_conversion_options(p)
    p.set_defaults(func=_convert)

    _register_video(lsub)


def _register_video(lsub: argparse._SubParsersAction) -> None:
    vsub = add_group(lsub, "video", dest="ls_video_command",
                     help="video tasks: push a video with its tracks as keyframes, pull corrected tracks",
                     description="Video tasks: a video with its tracked boxes (`kvasir-ml video predict`'s "
                                 "frames.jsonl) as VideoRectangle keyframes, so annotators correct tracks instead "
                                 "of drawing every frame; the corrected tracks back as per-frame boxes "
                                 "(docs/labelstudio.md).")
    p = add_command(vsub, "push", help="create a video task with the tracks as VideoRectangle pre-annotations",
                    examples=[_ENV,
                              "kvasir-ml ls video push data/videos/proc1/video.mp4 --tracks runs/vid1/frames.jsonl "
                              "\\",
                              "    --data-root data/videos --project \"videos 25fps\""],
                    description="Create the video's task (once; keyed by its path under --data-root) with one "
                                "VideoRectangle region per track id of --tracks, reduced to keyframes where "
                                "linear interpolation would miss the tracked box by more than --tolerance-pct. "
                                "A new project gets the video labeling config at the video's frame rate; one "
                                "project holds videos of one rate.")
    p.add_argument("video", metavar="VIDEO", help="the video file, under --data-root")
    p.add_argument("--tracks", required=True, metavar="FILE", help="frames.jsonl of `kvasir-ml video predict` "
                   "(boxes with track ids)")
    p.add_argument("--project", required=True, metavar="PROJECT", help="project id or title (created if new)")
    p.add_argument("--data-root", required=True, metavar="DIR",
                   help="the server's document root (LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT); the video is "
                        "served from a sub-folder of it")
    p.add_argument("--tolerance-pct", type=float, default=1.0, metavar="PCT",
                   help="largest interpolation miss between keyframes, percent of the frame (0: keep every "
                        "frame where the box moves non-linearly)")
    p.add_argument("--model-version", metavar="NAME", help="name of the pre-annotations (default: "
                   "tracks-<hash of the frames file>; one prediction per name)")
    p.add_argument("--no-browser-copy", action="store_true",
                   help="push the video as it is even when browsers cannot play its codec (by default an "
                        "MPEG-4 Part 2 video, what OpenCV writes, is shown through a VP8 copy <name>.browser.webm)")
    _add_server_options(p)
    p.set_defaults(func=_video_push)

    p = add_command(vsub, "pull", help="write corrected tracks as per-frame boxes (and still frames for training)",
                    examples=["kvasir-ml ls video pull --project \"videos 25fps\" --out data/video-labels",
                              "kvasir-ml ls video pull --project \"videos 25fps\" --out data/video-labels --stills "
                              "--stills-every 5 --data-root data/videos"],
                    description="For each annotated video task, write OUT/<video path>.frames.jsonl: one line "
                                "per frame with the boxes and track ids, interpolated between keyframes as "
                                "Label Studio shows them. --stills also extracts every k-th frame into "
                                "OUT/stills/ with a canonical file OUT/stills.coco.json. A task that cannot be "
                                "converted is named on stderr and the exit status is 1.")
    p.add_argument("--project", required=True, metavar="PROJECT", help="project id or title")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (existing frame logs are backed up)")
    p.add_argument("--stills", action="store_true", help="also write still frames and their canonical file")
    p.add_argument("--stills-every", type=count(1), default=5, metavar="N", help="every N-th frame as a still")
    p.add_argument("--data-root", metavar="DIR", help="the server's document root (needed by --stills)")
    _add_server_options(p)
    p.set_defaults(func=_video_pull)


def _register_loop(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "loop", help="one turn of the annotation loop: pull -> new version -> fine-tune -> push "
                    "predictions under a new model_version -> make it the project's prelabeling model", examples=[
                        "kvasir-ml loop --project \"kvasir synth\" --base data/synth/annotations.coco.json "
                        "--out runs/loop-1 \\",
                        "    --classifier runs/ml-tiny/checkpoints/best.pt --detector runs/det-tiny/checkpoints/best.pt \\",
                        "    --classifier-set optim.epochs=3 --detector-set train.epochs=10"])
    p.add_argument("--project", required=True, metavar="PROJECT", help="project id or title")
    p.add_argument("--base", required=True, metavar="FILE",
                   help="canonical version the previous models were trained on (kept)")
    p.add_argument("--data-root", metavar="DIR",
                   help="image root = the server's document root (default: the base file's folder)")
    p.add_argument("--out", required=True, metavar="DIR", help="new folder: classifier/ and detector/ runs, loop.json")
    _add_models(p, "previous")
    p.add_argument("--classifier-set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="overrides of the previous classifier run's config (e.g. optim.epochs=3)")
    p.add_argument("--detector-set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="overrides of the previous detector run's config (e.g. train.epochs=10)")
    add_device(p, "where the new models predict")
    p.add_argument("--force", action="store_true", help="retrain even when no annotation changed")
    p.add_argument("--expert-changes", choices=("review", "apply"), default="review",
                   help="as for `ls pull`: review (default) keeps the base labels of tasks whose submission removes, "
                        "moves or relabels them (listed in the report); apply takes them")
    p.add_argument("--resume", action="store_true",
                   help="finish the turn in --out that stopped part-way (same arguments): finished steps are not "
                        "run again")
    _add_current_model(p, "current-model file of the ML backend (`ls backend --current-model FILE`): point it at "
                          "the new models, and wait until the connected backends serve them")
    _add_prelabel_options(p)
    from kvasir_ml.labelstudio.from_export import POLICIES

    _add_policy(p, POLICIES)
    _add_server_options(p)
    p.set_defaults(func=lambda a: _loop(_default_root(a, a.base)))


def _default_root(args: argparse.Namespace, near: str) -> argparse.Namespace:
    if not args.data_root:
        args.data_root = str(Path(near).parent)
    return args
