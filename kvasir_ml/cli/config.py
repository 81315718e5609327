"""``kvasir-ml config {show,sync}``: read a resolved config (its ``base:`` chain merged in) with
its documentation; keep ``configs/`` generated from the models."""

from __future__ import annotations

import argparse
from pathlib import Path

from kvasir_ml.cli.common import add_command, add_group, add_overrides
from kvasir_ml.configdoc import CONFIG_KINDS


def _show(args: argparse.Namespace) -> int:
    from kvasir_ml.configdoc import show_config

    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config and not Path(config).exists():
        config, overrides = None, [config, *overrides]  # `--kind K key=value`: no file, only overrides
    print(show_config(config, overrides, kind=args.kind), end="")
    return 0


def _sync(args: argparse.Namespace) -> int:
    from kvasir_ml.configdoc import sync_configs

    if not Path(args.folder).is_dir():
        raise FileNotFoundError(f"--folder {args.folder}: no such folder (run from the checkout, or name "
                                "the folder that holds the config files)")
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
    cmds = add_group(sub, "config", dest="config_command",
                     help="show a resolved config with every key documented; regenerate configs/",
                     description="Configs are pydantic models; their field descriptions are the one source of "
                                 "the documentation that `config show` prints and `config sync` writes into "
                                 "configs/*.yaml.")
    p = add_command(cmds, "show", help="print the resolved config whole (bases merged in): every key, its value, "
                    "type and description, as YAML that loads as a config",
                    examples=["kvasir-ml config show configs/classifier_multilabel_tiny.yaml optim.lr=3e-4",
                              "kvasir-ml config show configs/classifier_singlelabel_resnet50.yaml  # a variant, whole",
                              "kvasir-ml config show detector_tiny.yaml                # a shipped config, by name",
                              "kvasir-ml config show --kind detector train.epochs=3    # defaults + an override"])
    p.add_argument("config", nargs="?", metavar="CONFIG",
                   help="YAML file or a shipped config's name (e.g. classifier_multilabel_tiny.yaml); "
                        "leave out with --kind for the model's defaults")
    add_overrides(p, help="overrides, as for `train` (dotted keys, YAML values); marked [set] in the output")
    p.add_argument("--kind", choices=sorted(CONFIG_KINDS),
                   help="config model to use (default: the file's `kind:` key; needed for a file without "
                        "one, such as a run folder's config.yaml)")
    p.set_defaults(func=_show)
    p = add_command(cmds, "sync", help="regenerate configs/*.yaml from the models' descriptions "
                    "(headers and values kept)",
                    examples=["kvasir-ml config sync                # after changing a config model",
                              "kvasir-ml config sync --check        # exit 1 if any file is stale (CI)"])
    p.add_argument("--folder", default="configs", metavar="DIR",
                   help="folder of config files (the *.yaml with a `kind:` key, their own or a base's)")
    p.add_argument("--check", action="store_true", help="only list stale files; exit 1 if any")
    p.set_defaults(func=_sync)
