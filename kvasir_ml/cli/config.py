"""``kvasir-ml config {show,sync}``: read a resolved config with its documentation; keep
``configs/`` generated from the models."""

from __future__ import annotations

import argparse

from kvasir_ml.configdoc import CONFIG_KINDS


def _show(args: argparse.Namespace) -> int:
    from kvasir_ml.configdoc import show_config

    print(show_config(args.config, args.overrides, kind=args.kind), end="")
    return 0


def _sync(args: argparse.Namespace) -> int:
    from kvasir_ml.configdoc import sync_configs

    stale = sync_configs(args.folder, check=args.check)
    verb = "out of date" if args.check else "rewritten"
    for path in stale:
        print(f"{verb}: {path}")
    if args.check and stale:
        print("run `kvasir-ml config sync` to regenerate them from the config models")
        return 1
    print(f"{len(stale)} config file(s) {verb}" if stale else "configs are in sync with the models")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    config = sub.add_parser("config", help="show a resolved config with every key documented; regenerate configs/",
                            description=__doc__)
    cmds = config.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    p = cmds.add_parser(
        "show", help="print the resolved config: every key, its value, type and description",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  kvasir-ml config show configs/classifier_multilabel_tiny.yaml optim.lr=3e-4\n"
               "  kvasir-ml config show --kind detector        # the defaults")
    p.add_argument("config", nargs="?", metavar="CONFIG",
                   help="YAML file or a shipped config's name (e.g. classifier_multilabel_tiny.yaml)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides, as for `train`; marked [set]")
    p.add_argument("--kind", choices=sorted(CONFIG_KINDS),
                   help="config model to use (default: from the file name, <kind>_*.yaml, or its contents)")
    p.set_defaults(func=_show)
    p = cmds.add_parser(
        "sync", help="regenerate configs/*.yaml from the models' descriptions (headers and values kept)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--folder", default="configs", metavar="DIR", help="folder of <kind>_*.yaml files")
    p.add_argument("--check", action="store_true", help="only list stale files; exit 1 if any")
    p.set_defaults(func=_sync)
