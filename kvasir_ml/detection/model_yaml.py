"""Model descriptions (ultralytics model YAMLs) checked before ultralytics builds from them.

ultralytics' ``parse_model`` (``ultralytics/nn/tasks.py``, 8.4.x) turns strings of the model
description into code. Every path, and the rule here that closes it:

* ``activation``: ``eval(act)`` (arbitrary Python). -> parsed with ``ast``, never evaluated:
  only ``nn.<Name>(...)`` / ``torch.nn.<Name>(...)`` with ``<Name>`` in ``ACTIVATIONS`` and
  plain number/bool arguments.
* module names (row field 3): ``getattr(torch.nn, m[3:])`` for ``nn.*``,
  ``getattr(torchvision.ops, m[16:])`` for ``torchvision.ops.*``, otherwise
  ``globals()[m]`` of ``ultralytics.nn.tasks`` -- a namespace that also holds functions which
  load files (``load_checkpoint``: an unrestricted unpickle, i.e. code), then *called* with the
  row's arguments. -> only ``nn.Module`` classes defined in ``torch.nn.modules``,
  ``torchvision.ops`` or ``ultralytics.nn.modules``; ``TorchVision`` is refused too (it fetches
  torchvision weights: a download).
* string arguments (row field 4): ``locals()[a]`` when ``a`` names a variable of
  ``parse_model`` (``d``, ``ch``, ``layers``, ...), else ``ast.literal_eval(a)``. -> of those
  variable names only ``nc`` and ``kpt_shape`` (what ultralytics' own YAMLs use); other
  strings stay literals or plain words (``"nearest"``).

Everything else a description holds is data that nothing evaluates. ``check_model_description``
applies these rules to a dict (from a file, or the ``yaml`` a detector checkpoint carries);
``check_model_yaml_file`` resolves a model YAML the way ultralytics does and checks it.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from kvasir_ml.detection.ultralytics_env import WeightsError, ensure_ultralytics

# torch.nn activations a model description may name (torch.nn.modules.activation, element-wise).
ACTIVATIONS = frozenset({
    "SiLU", "ReLU", "ReLU6", "LeakyReLU", "GELU", "Hardswish", "Hardsigmoid", "Mish", "ELU", "SELU", "CELU",
    "PReLU", "Sigmoid", "Tanh", "Softplus", "Hardtanh", "Identity",
})
# parse_model variables a string argument may name (ultralytics' own YAMLs use these two).
ARG_NAMES = frozenset({"nc", "kpt_shape"})
# Layers that fetch or read files when built.
REFUSED_MODULES = {"TorchVision": "it loads torchvision models and weights (a download)"}
_LAYER_MODULE_PREFIXES = ("torch.nn.modules.", "torchvision.ops.", "ultralytics.nn.modules.")
MAX_STRING_CHARS = 200


class UnsafeModelDescriptionError(WeightsError):
    """A model description holds a string ultralytics would evaluate outside the allow-list."""


def _refuse(where: str, field: str, why: str) -> UnsafeModelDescriptionError:
    return UnsafeModelDescriptionError(f"model description {where} is refused: {field}: {why} (ultralytics would "
                                       "evaluate or call it; kvasir_ml/detection/model_yaml.py lists what is allowed)")


def _literal_number(node: ast.AST) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        node = node.operand
    return isinstance(node, ast.Constant) and isinstance(node.value, (int, float, bool))


def check_activation(act: Any, where: str) -> None:
    """``activation``: ``nn.<Name>(numbers)`` with ``<Name>`` in ``ACTIVATIONS`` (or empty)."""
    if not act:  # parse_model only reads a truthy value
        return
    if not isinstance(act, str) or len(act) > MAX_STRING_CHARS:
        raise _refuse(where, "activation", f"{str(act)[:80]!r} is not a torch.nn activation call")
    try:
        call = ast.parse(act.strip(), mode="eval").body
    except SyntaxError:
        call = None
    allowed = f"one of nn.{{{', '.join(sorted(ACTIVATIONS))}}}(...) with number arguments"
    if not isinstance(call, ast.Call):
        raise _refuse(where, "activation", f"{act!r} is not {allowed}")
    func, chain = call.func, list[str]()
    while isinstance(func, ast.Attribute):
        chain.insert(0, func.attr)
        func = func.value
    chain.insert(0, func.id if isinstance(func, ast.Name) else "?")
    ok_call = chain[:-1] in (["nn"], ["torch", "nn"]) and chain[-1] in ACTIVATIONS
    ok_args = all(_literal_number(a) for a in call.args) and all(
        kw.arg is not None and _literal_number(kw.value) for kw in call.keywords)
    if not (ok_call and ok_args):
        raise _refuse(where, "activation", f"{act!r} is not {allowed}")


def _layer_class(name: str) -> type | None:
    """The class ``parse_model`` would look ``name`` up as, if it is an allowed layer."""
    import torch

    if name.startswith("nn."):
        obj = getattr(torch.nn, name[3:], None)
    elif name.startswith("torchvision.ops."):
        import torchvision

        obj = getattr(torchvision.ops, name[16:], None)
    else:
        from ultralytics.nn import tasks

        obj = vars(tasks).get(name)
    if isinstance(obj, type) and issubclass(obj, torch.nn.Module) and obj.__module__.startswith(_LAYER_MODULE_PREFIXES):
        return obj
    return None


def _parse_model_variables() -> frozenset[str]:
    from ultralytics.nn.tasks import parse_model

    code = parse_model.__code__
    return frozenset(code.co_varnames + code.co_cellvars)


def _check_row(row: Any, field: str, where: str, variables: frozenset[str]) -> None:
    if not isinstance(row, (list, tuple)) or len(row) != 4:
        raise _refuse(where, field, "a layer row must be [from, number, module, args]")
    f, n, module, args = row
    if not (isinstance(f, int) or (isinstance(f, list) and f and all(isinstance(x, int) for x in f))) \
            or isinstance(f, bool):
        raise _refuse(where, f"{field}[0] (from)", f"{f!r} is not a layer index or a list of them")
    if not isinstance(n, int) or isinstance(n, bool):
        raise _refuse(where, f"{field}[1] (number)", f"{n!r} is not an integer")
    if not isinstance(module, str) or len(module) > MAX_STRING_CHARS:
        raise _refuse(where, f"{field}[2] (module)", f"{str(module)[:80]!r} is not a module name")
    if module in REFUSED_MODULES:
        raise _refuse(where, f"{field}[2] (module)", f"{module!r} is not allowed: {REFUSED_MODULES[module]}")
    if _layer_class(module) is None:
        raise _refuse(where, f"{field}[2] (module)", f"{module!r} is not a layer of torch.nn, torchvision.ops "
                      "or ultralytics.nn.modules")
    if not isinstance(args, list):
        raise _refuse(where, f"{field}[3] (args)", "must be a list")
    for j, arg in enumerate(args):
        if not isinstance(arg, str):
            continue
        if len(arg) > MAX_STRING_CHARS:
            raise _refuse(where, f"{field}[3][{j}] (args)", f"a {len(arg)}-character string")
        if arg in variables and arg not in ARG_NAMES:
            raise _refuse(where, f"{field}[3][{j}] (args)", f"{arg!r} names a variable of ultralytics' "
                          f"parse_model (only {', '.join(sorted(ARG_NAMES))} may be named)")


def check_model_description(d: Any, where: str) -> None:
    """Refuse a model description (a parsed model YAML) that ultralytics would evaluate as code.

    Args:
        d: the description (``yaml_model_load``'s dict, or a checkpoint model's ``yaml``).
        where: what to name in the error (the file, and the entry inside a checkpoint).

    Raises:
        UnsafeModelDescriptionError: naming ``where`` and the field.
    """
    ensure_ultralytics()
    if not isinstance(d, dict):
        raise _refuse(where, "(top level)", f"a model description is a mapping, not {type(d).__name__}")
    check_activation(d.get("activation"), where)
    variables = _parse_model_variables()
    for part in ("backbone", "head"):
        rows = d.get(part)
        if not isinstance(rows, list):
            raise _refuse(where, part, "missing or not a list of layer rows")
        for i, row in enumerate(rows):
            _check_row(row, f"{part}[{i}]", where, variables)


def check_model_yaml_file(arch: str | Path) -> dict[str, Any]:
    """Resolve a model YAML as ultralytics will (a local file, else one shipped with
    ultralytics, e.g. ``yolov8n.yaml``) and check it.

    Returns:
        The description ultralytics will build from.

    Raises:
        WeightsError: a URL (nothing is downloaded) or a YAML that does not exist or cannot be read.
        UnsafeModelDescriptionError: see ``check_model_description``.
    """
    ensure_ultralytics()
    from ultralytics.nn.tasks import yaml_model_load

    text = str(arch)
    if "://" in text:
        raise WeightsError(f"model YAML {text!r}: a URL; nothing is downloaded, give a local file")
    try:
        d = yaml_model_load(text)
    except Exception as exc:  # noqa: BLE001 — FileNotFoundError, YAML errors: all "cannot be read"
        raise WeightsError(f"model YAML {text!r} cannot be read: {type(exc).__name__}: {exc}") from None
    check_model_description(d, text)
    return d
