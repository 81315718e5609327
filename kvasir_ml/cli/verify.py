"""``kvasir-ml verify {create,pull}``: verified ground truth from independent annotators.

The API key comes only from ``LABEL_STUDIO_API_KEY`` (the URL from ``LABEL_STUDIO_URL`` or
``--url``), as for ``kvasir-ml ls``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kvasir_ml.cli.common import add_command, add_group, count


def _client(args: argparse.Namespace):
    from kvasir_ml.labelstudio.client import LSClient, connection_from_env

    return LSClient(connection_from_env(args.url), max_attempts=args.retries)


def _create(args: argparse.Namespace) -> int:
    from kvasir_ml.data.coco import load_canonical
    from kvasir_ml.data.splits import load_split
    from kvasir_ml.labelstudio.verify import create_verification_project, sample_from_split

    dataset = load_canonical(args.canonical)
    splits = ("test", "val") if args.include_val else ("test",)
    images = sample_from_split(dataset, load_split(args.split), args.n, splits, args.seed)
    if not images:
        raise ValueError(f"{args.split}: the {'/'.join(splits)} split(s) hold no images to verify")
    from kvasir_ml.data.image_root import image_root

    data_root = image_root(args.canonical, args.data_root)
    report = create_verification_project(_client(args), images, data_root, args.project, args.annotators,
                                         description=f"kvasir-ml verification of {Path(args.canonical).name} "
                                                     f"({'/'.join(splits)} of {Path(args.split).name}, seed {args.seed})")
    print("\n".join(report.summary_lines()))
    print(f"each task needs {args.annotators} annotators: invite them to the project; each labels through "
          "'Label All Tasks' (the overlap settings hand every task to that many people)")
    return 0


def _pull(args: argparse.Namespace) -> int:
    from kvasir_ml.labelstudio.verify_pull import create_adjudication_project, pull_verification

    client = _client(args)
    adjudication = args.adjudication_project or f"{args.project} (adjudication)"
    from kvasir_ml.labelstudio.sync import find_project

    use_adjudication = args.adjudicate and find_project(client, adjudication) is not None
    result = pull_verification(client, args.project, args.base, args.out,
                               adjudication=adjudication if use_adjudication else None,
                               iou_threshold=args.iou, min_annotators=args.min_annotators)
    print("\n".join(result.summary_lines()))
    if result.reused:
        print(f"no new answers since {result.path} (same base, same verified content): nothing written")
    else:
        print(f"wrote {result.path} (report {result.report_path}); the base file is unchanged")
    if args.adjudicate and result.report["open"]:
        from kvasir_ml.data.image_root import image_root

        data_root = image_root(args.base, args.data_root)
        pid, n_new = create_adjudication_project(client, result.report["open"], data_root, adjudication)
        print(f"adjudication project {adjudication!r} ({pid}): {n_new} new task(s); once adjudicated, run this "
              "pull again with --adjudicate")
    elif result.report["open"]:
        print(f"{len(result.report['open'])} image(s) stay unverified (ties); --adjudicate sends them to an "
              "adjudication project")
    return 0


def _add_server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", metavar="URL", help="server URL (default: $LABEL_STUDIO_URL or http://127.0.0.1:8080); "
                   "the API key is read from $LABEL_STUDIO_API_KEY only")
    p.add_argument("--retries", type=count(1), default=4, metavar="N",
                   help="attempts per request when the server is down or slow")


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    vsub = add_group(sub, "verify", dest="verify_command",
                     help="verified ground truth: independent yes/no answers by 2+ annotators, agreement, "
                          "adjudication, a new canonical version",
                     description="Verified ground truth (docs/labelstudio.md, Verification): a Label Studio project "
                                 "from a stratified sample of the test images, every label a yes/no question, "
                                 "boxes drawn, nothing pre-filled, each task answered by 2+ annotators; the pull "
                                 "measures agreement (Cohen's kappa, Krippendorff's alpha, box IoU) and writes the "
                                 "verified labels with provenance as the next canonical version.")
    p = add_command(vsub, "create", help="create a verification project from a stratified sample of the test split",
                    examples=["kvasir-ml verify create data/kvasir-v2.coco.json --split runs/exp/split.json "
                              "--project \"kvasir verify\" --n 200",
                              "kvasir-ml verify create data/kvasir-v2.coco.json --split runs/exp/split.json "
                              "--project \"kvasir verify\" --n 300 --include-val --annotators 3"])
    p.add_argument("canonical", metavar="FILE", help="canonical COCO file the split was made from")
    p.add_argument("--split", required=True, metavar="FILE", help="split.json (the run's or experiment's frozen split)")
    p.add_argument("--project", required=True, metavar="PROJECT",
                   help="project title (created; re-running adds only images without a task)")
    p.add_argument("--n", type=count(1), default=200, metavar="N",
                   help="images to sample, spread evenly over the source classes (or label sets)")
    p.add_argument("--include-val", action="store_true", help="sample from the val split too")
    p.add_argument("--annotators", type=count(2), default=2, metavar="N", help="independent annotations per task")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="sampling seed (same seed and files: same sample)")
    p.add_argument("--data-root", metavar="DIR", help="image root = the server's document root (default: the "
                                                      "canonical file's folder)")
    _add_server_options(p)
    p.set_defaults(func=_create)

    p = add_command(vsub, "pull", help="measure agreement and write the verified labels as the next canonical version",
                    examples=["kvasir-ml verify pull --project \"kvasir verify\" --base data/kvasir-v2.coco.json",
                              "    # -> data/kvasir-v2.v2.coco.json (+ .report.json with kappa/alpha per label)",
                              "kvasir-ml verify pull --project \"kvasir verify\" --base data/kvasir-v2.coco.json "
                              "--adjudicate"])
    p.add_argument("--project", required=True, metavar="PROJECT", help="verification project id or title")
    p.add_argument("--base", required=True, metavar="FILE",
                   help="the canonical file the sample came from (kept unchanged)")
    p.add_argument("--out", metavar="FILE", help="output file (default: next free <name>.vN.coco.json beside --base)")
    p.add_argument("--adjudicate", action="store_true",
                   help="settle ties with the adjudication project's answers, and put the images still tied into it "
                        "(created on first use)")
    p.add_argument("--adjudication-project", metavar="PROJECT",
                   help="title of the adjudication project (default: '<project> (adjudication)')")
    p.add_argument("--iou", type=_fraction, default=0.5, metavar="IOU",
                   help="two annotators' boxes of one class mark the same object from this IoU on")
    p.add_argument("--min-annotators", type=count(2), default=2, metavar="N",
                   help="answers an image needs before it can be verified")
    p.add_argument("--data-root", metavar="DIR", help="image root (default: the base file's folder)")
    _add_server_options(p)
    p.set_defaults(func=_pull)
