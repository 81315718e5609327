"""``kvasir-ml review {suspects,push}``: rank likely label errors, send the top ones to Label Studio.

Corrections come back with ``kvasir-ml ls pull ... --expert-changes apply`` (see docs/review.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kvasir_ml.cli.common import add_command, add_group, add_overrides, count

DETECTOR_PREFIX = "detector."


def _suspects(args: argparse.Namespace) -> int:
    from kvasir_ml.data.coco import load_canonical
    from kvasir_ml.io import atomic_write_json
    from kvasir_ml.review.oof import add_class_view, collect_oof, run_kfold
    from kvasir_ml.review.suspects import rank_suspects

    canonical, out = Path(args.canonical), Path(args.out)
    ds = load_canonical(canonical)
    if args.runs:
        if args.overrides:
            raise ValueError("config overrides apply to k-fold training; --runs uses finished runs as they are")
        oof = collect_oof(ds, args.runs)
        if oof.label_scores is not None and not args.no_class_view:
            add_class_view(oof, ds, Path(args.root) if args.root else canonical.parent, args.class_view_folds, args.seed)
    else:
        det = [o[len(DETECTOR_PREFIX):] for o in args.overrides if o.startswith(DETECTOR_PREFIX)]
        cls = [o for o in args.overrides if not o.startswith(DETECTOR_PREFIX)]
        work = Path(args.work) if args.work else out.with_name(out.name.removesuffix(".json") + ".oof")
        oof = run_kfold(canonical, work, k=args.n_folds, root=args.root, classifier_config=args.config,
                        classifier_overrides=cls, detector_config=None if args.no_boxes else args.detector_config,
                        detector_overrides=det, seed=args.seed,
                        class_view_folds=None if args.no_class_view else args.class_view_folds)
        print(f"out-of-fold runs in {work}")
    suspects = rank_suspects(ds, oof)
    atomic_write_json(out, suspects, keep_backup=True)
    flagged = sum(s["flagged"] for s in suspects)
    print(f"wrote {out}: {len(suspects)} suspects over {len({s['file_name'] for s in suspects})} images "
          f"({flagged} flagged by cleanlab), most likely error first")
    for s in suspects[:args.show]:
        print(f"  {s['score']:.3f} {s['kind']:<13} {s['file_name']}: given {s['given']} -> suggested {s['suggested']}")
    return 0


def _push(args: argparse.Namespace) -> int:
    from kvasir_ml.cli.labelstudio import _client
    from kvasir_ml.io import read_json
    from kvasir_ml.review.project import push_review

    suspects = read_json(args.suspects)
    if not isinstance(suspects, list):
        raise ValueError(f"{args.suspects}: expected a list of suspects (kvasir-ml review suspects --out)")
    from kvasir_ml.data.image_root import image_root

    root = image_root(args.canonical, args.data_root)
    pushed = push_review(_client(args), suspects, args.canonical, root, args.project, args.top, args.min_score)
    print("\n".join(pushed.push_lines))
    print(f"review project {pushed.project_id}: {len(pushed.file_names)} images, given labels as the draft "
          f"({pushed.expert_version}), the suggestion as prediction 'review-suggestion'; pull the corrections with\n"
          f"  kvasir-ml ls pull --project {pushed.project_id} --base {args.canonical} --expert-changes apply")
    return 0


class _Intermixed(argparse.ArgumentParser):
    """Positionals on both sides of the options (``CANONICAL --out F ... key=value``): plain
    argparse binds every positional at the first run of them, leaving later overrides unmatched."""

    _inside = False

    def parse_known_args(self, args=None, namespace=None):
        if self._inside:
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False


def register(sub: argparse._SubParsersAction) -> None:
    from kvasir_ml.cli.labelstudio import _add_server_options

    group = add_group(sub, "review", dest="kind", help="find likely label errors and review them in Label Studio")
    p = add_command(group, "suspects", help="rank likely label errors from out-of-fold predictions (cleanlab)",
                    examples=[
                        "kvasir-ml review suspects data/synth/annotations.coco.json --out suspects.json --n-folds 4",
                        "kvasir-ml review suspects data/synth/annotations.coco.json --out suspects.json \\",
                        "    optim.epochs=8 detector.train.epochs=15       # longer fold runs",
                        "kvasir-ml review suspects data/synth/annotations.coco.json --out suspects.json \\",
                        "    --runs runs/cls-fold0 runs/cls-fold1          # finished runs that cover every image"],
                    description="Train the classifier (and the detector, when the file has boxes) once per fold, "
                                "each fold's images scored by the models that did not train on them, then rank "
                                "image labels (cleanlab multi-label) and boxes (cleanlab object detection: missing, "
                                "spurious, badly placed, wrong class). Writes a JSON list sorted by score, most "
                                "likely error first: {file_name, kind, score, given, suggested, flagged}.")
    p.__class__ = _Intermixed
    p.add_argument("canonical", metavar="FILE", help="canonical annotation file whose labels are checked")
    p.add_argument("--out", required=True, metavar="FILE", help="suspects JSON to write (an old one is backed up)")
    p.add_argument("--root", metavar="DIR", help="image folder (default: the canonical file's folder)")
    p.add_argument("--n-folds", type=count(2), default=5, metavar="N",
                   help="k of the k-fold training (named apart from `data split --folds FILE`, a fold file)")
    p.add_argument("--config", default="classifier_multilabel_tiny.yaml", metavar="CONFIG",
                   help="classifier config of the fold runs")
    p.add_argument("--detector-config", default="detector_tiny.yaml", metavar="CONFIG",
                   help="detector config of the fold runs")
    p.add_argument("--no-boxes", action="store_true", help="check image labels only (no detector runs)")
    p.add_argument("--work", metavar="DIR",
                   help="fold splits and run folders (default: <out>.oof beside --out; finished folds are reused)")
    p.add_argument("--runs", nargs="+", metavar="RUN",
                   help="finished classifier/detector run folders whose test splits cover every image, "
                        "instead of k-fold training")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="fold assignment seed")
    p.add_argument("--class-view-folds", type=count(2), default=5, metavar="N",
                   help="k of the class view that ranks image labels: out-of-fold source-class probabilities "
                        "of a logistic regression on image descriptors (seconds per fold)")
    p.add_argument("--no-class-view", action="store_true",
                   help="rank image labels by the classifier's multi-label view only")
    p.add_argument("--show", type=count(0), default=5, metavar="N", help="print the top N suspects")
    add_overrides(p, help="classifier config overrides (optim.epochs=8); prefix detector. for the detector's "
                          "(detector.train.epochs=15)")
    p.set_defaults(func=_suspects)

    p = add_command(group, "push", help="send the top suspects to a Label Studio review project", examples=[
        "kvasir-ml review push suspects.json data/synth/annotations.coco.json --project \"synth review\" --top 50",
        "kvasir-ml ls pull --project \"synth review\" --base data/synth/annotations.coco.json --expert-changes apply"],
        description="The top images of a suspects file become tasks with the given labels as the pre-filled "
                    "draft and the suggested correction as a separate prediction; the most likely error is "
                    "served first. Pull the corrections with `kvasir-ml ls pull --expert-changes apply`.")
    p.add_argument("suspects", metavar="FILE", help="suspects JSON from `kvasir-ml review suspects`")
    p.add_argument("canonical", metavar="FILE", help="the canonical file the suspects were computed on")
    p.add_argument("--project", required=True, metavar="PROJECT", help="review project title or id (created if absent)")
    p.add_argument("--top", type=count(1), default=50, metavar="N", help="images to review")
    p.add_argument("--min-score", type=float, default=0.5, metavar="S",
                   help="suspects at least this likely are applied to the suggestion")
    p.add_argument("--data-root", metavar="DIR", help="image root = the server's document root "
                   "(default: the canonical file's folder)")
    _add_server_options(p)
    p.set_defaults(func=_push)
