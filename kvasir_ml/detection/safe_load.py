"""Opening ultralytics checkpoints without running code they carry.

An ultralytics ``.pt`` file is a pickle of the model object, and ultralytics opens it with
``torch.load(weights_only=False)``: a crafted file runs whatever it likes (``os.system`` in
a ``__reduce__``) the moment it is opened, before any error. So no detector checkpoint
reaches ultralytics before ``check_detector_checkpoint`` has unpickled it with torch's
restricted (``weights_only=True``) unpickler and this allow-list:

* layer classes — ``nn.Module`` subclasses defined in ``torch.nn.modules.*``,
  ``ultralytics.nn.modules.*`` or ``ultralytics.nn.tasks`` — each behind a stand-in that
  lets the pickle create an *empty* instance and restore its attributes (how pickle rebuilds
  any ``nn.Module``) but refuses to *call* the class, so no ``__init__`` runs with
  arguments chosen by the file (a model class's ``__init__`` may read or fetch a YAML);
* ``IterableSimpleNamespace`` (training arguments of older checkpoints, built empty the
  same way), numpy scalars and dtypes, and ``getattr`` limited to a layer's ``forward``.

Everything else — any other global, any function call — fails, and the file is refused
with ``UnsafeCheckpointError`` naming it and what it asked for. A file that passes holds
only tensors, containers and layers, so ultralytics' own load of the same bytes performs the
same harmless steps. Every checkpoint ultralytics writes (so every detector this project
trains) passes; ``trust=True`` (``--trust-checkpoint``, ``model.trust_weights``) skips the
check for other files the user vouches for.

The model description a checkpoint carries (``model.yaml``: ultralytics rebuilds the model
from it when training from the weights or resuming, and ``eval()``s its ``activation``) is
checked too, by ``model_yaml.check_model_description``; a resume's ``train_args`` by
``check_resume_args``.

Why not a sha256 manifest of the checkpoints this project trained: whoever hands you a
checkpoint can hand you its manifest too, so a manifest beside the file proves nothing,
while the check above holds for any file, wherever it came from.
"""

from __future__ import annotations

import importlib
import pickle
import secrets
from pathlib import Path
from typing import Any

from kvasir_ml.detection.model_yaml import check_model_description
from kvasir_ml.detection.ultralytics_env import WeightsError, ensure_ultralytics

_LAYER_PACKAGES = ("torch.nn.modules", "ultralytics.nn.modules")
_MODEL_MODULES = ("ultralytics.nn.tasks",)
_NAMESPACE_NAMES = ("ultralytics.utils.IterableSimpleNamespace", "ultralytics.yolo.utils.IterableSimpleNamespace")
_NUMPY_SCALAR_NAMES = ("numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar")
TRUST_HINT = ("if you trust this file (e.g. a detector trained with another tool), pass --trust-checkpoint "
              "(training: model.trust_weights=true)")


class UnsafeCheckpointError(WeightsError):
    """A detector checkpoint would run code (or needs classes outside the allow-list) when loaded."""


class _NoCall(type):
    """Metaclass of the stand-ins: calling one (pickle's REDUCE) is refused or builds an empty object."""

    _zero_arg_call: bool  # class attributes of each stand-in (_stand_in)
    _target: Any  # a class (type.__new__'s overloads do not fit target.__new__(target))
    _target_name: str

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs or not cls._zero_arg_call:
            raise pickle.UnpicklingError(f"the checkpoint calls {cls._target_name}(...) with arguments of its own; "
                                         "constructor calls are not allowed")
        return cls._target.__new__(cls._target)


def _stand_in(target: Any, name: str, zero_arg_call: bool = False) -> type:
    """A class pickle's NEWOBJ can instantiate (giving an empty ``target``) but REDUCE cannot call."""

    def __new__(cls, *args: Any) -> Any:
        if args:
            raise pickle.UnpicklingError(f"the checkpoint creates {name} with arguments; not allowed")
        return target.__new__(target)

    return _NoCall(f"Safe{target.__name__}", (), {"__new__": __new__, "_target": target, "_target_name": name,
                                                  "_zero_arg_call": zero_arg_call})


def _restricted_getattr(obj: Any, name: str) -> Any:
    """``getattr`` as pickled in some ultralytics checkpoints (``Detect.forward``), nothing more."""
    import torch

    if isinstance(obj, torch.nn.Module) and name in ("forward", "forward_fuse"):
        return getattr(type(obj), name).__get__(obj)
    raise pickle.UnpicklingError(f"the checkpoint calls getattr({type(obj).__name__}, {name!r}); not allowed")


def _layer_class(full_name: str) -> type | None:
    """The ``nn.Module`` class a checkpoint names, if it is an allowed layer or model class."""
    import torch

    module_name, _, attr = full_name.rpartition(".")
    allowed = module_name in _MODEL_MODULES or any(
        module_name == pkg or module_name.startswith(pkg + ".") for pkg in _LAYER_PACKAGES)
    if not allowed:
        return None
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    obj = getattr(module, attr, None)
    if isinstance(obj, type) and issubclass(obj, torch.nn.Module) and obj.__module__ == module_name:
        return obj
    return None


def _allow_list(names: set[str]) -> tuple[list[Any], list[str]]:
    """Entries for ``torch.serialization.safe_globals`` and the names that are refused."""
    import numpy as np

    from ultralytics.utils import IterableSimpleNamespace

    # The real classes are registered under a name no file can guess, so BUILD accepts
    # their instances while a GLOBAL by their real name only ever yields the stand-in.
    secret = f"kvasir_ml_allowed_{secrets.token_hex(16)}"
    entries: list[Any] = [(_restricted_getattr, "builtins.getattr")]
    refused = []
    for name in sorted(names):
        cls = _layer_class(name)
        if cls is not None:
            entries += [(_stand_in(cls, name), name), (cls, f"{secret}.{name}")]
        elif name in _NAMESPACE_NAMES:
            entries += [(_stand_in(IterableSimpleNamespace, name, zero_arg_call=True), name),
                        (IterableSimpleNamespace, f"{secret}.{name}")]
        elif name in _NUMPY_SCALAR_NAMES:
            entries.append((np.float64(0).__reduce__()[0], name))
        elif name == "numpy.dtype":
            entries.append(np.dtype)
        elif name.startswith("numpy.dtypes.") and isinstance(getattr(np.dtypes, name.rpartition(".")[2], None), type):
            entries.append((getattr(np.dtypes, name.rpartition(".")[2]), name))
        elif name != "builtins.getattr":
            refused.append(name)
    return entries, refused


def _entry_name(entry: Any) -> str:
    return entry[1] if isinstance(entry, tuple) else f"{entry.__module__}.{entry.__qualname__}"


def load_detector_checkpoint(path: str | Path) -> dict[str, Any]:
    """Unpickle an ultralytics checkpoint with the restricted unpickler and the allow-list.

    Returns:
        The checkpoint dict (``model``, ``ema``, ``train_args``, ...; ``kvasir_ml`` when this
        project wrote it), identical to what ultralytics' own load gives.

    Raises:
        WeightsError: the file does not exist. UnsafeCheckpointError: it asks for globals or
            calls outside the allow-list, or is not a torch checkpoint at all.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"detector checkpoint {path} does not exist")
    ensure_ultralytics()  # the layer classes are imported from it, offline
    try:
        names = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # noqa: BLE001 — not a zip checkpoint; the restricted load below says what it is
        names = set()
    entries, refused = _allow_list(names)
    if refused:
        raise UnsafeCheckpointError(
            f"detector checkpoint {path} is refused: loading it would use {', '.join(refused[:8])}"
            f"{' ...' if len(refused) > 8 else ''}, which a model file never needs (it may run code); {TRUST_HINT}")
    # Only our stand-ins may answer to the names this file uses (ultralytics' own opt-in safe
    # mode registers the real classes process-wide); everything else registered stays.
    saved = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals([e for e in saved if _entry_name(e) not in names])
    try:
        with torch.serialization.safe_globals(entries):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 — UnpicklingError, RuntimeError, zip errors: all mean "refused"
        text = str(exc)  # torch wraps the unpickler's reason in a long generic explanation
        reason = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else text
        reason = reason.strip().splitlines()[0][:300] if reason.strip() else type(exc).__name__
        raise UnsafeCheckpointError(f"detector checkpoint {path} is refused: it cannot be loaded safely "
                                    f"({type(exc).__name__}: {reason}); {TRUST_HINT}") from None
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(saved)
    model = ckpt.get("model") if isinstance(ckpt, dict) else None
    if model is None and isinstance(ckpt, dict):
        model = ckpt.get("ema")  # ultralytics' mid-training last.pt keeps the model as the EMA
    if not isinstance(model, torch.nn.Module):
        raise UnsafeCheckpointError(f"detector checkpoint {path} is not an ultralytics checkpoint (no model inside)")
    _check_descriptions(ckpt, path)
    return ckpt


def _check_descriptions(ckpt: dict[str, Any], path: Path) -> None:
    """The model YAML each model of the checkpoint carries: ultralytics builds a new model from
    it (``parse_model``, which evaluates its strings) when training from the weights or resuming,
    and copies it into every checkpoint it writes."""
    for key in ("model", "ema"):
        model = ckpt.get(key)
        if model is not None and hasattr(model, "yaml"):
            check_model_description(model.yaml, f"{path} ({key}.yaml)")


def check_resume_args(ckpt: dict[str, Any], path: Path) -> None:
    """The training arguments an ultralytics resume takes from ``last.pt`` (``train_args``).

    A resume restores them wholesale, and ``distill_model`` names a teacher ``.pt`` that
    ultralytics then opens unrestricted (code). This project never trains with a teacher, so
    a checkpoint naming one is refused. (Where a resume writes is not taken from the file:
    ``training.fit`` passes ``save_dir``.)

    Raises:
        UnsafeCheckpointError: naming the file and the argument.
    """
    args = ckpt.get("train_args") or {}
    args = args if isinstance(args, dict) else vars(args)
    if args.get("distill_model"):
        raise UnsafeCheckpointError(f"detector checkpoint {path} is refused: train_args.distill_model "
                                    f"{str(args['distill_model'])[:120]!r} would be loaded unchecked on resume "
                                    "(this project never trains with a teacher)")


def check_detector_checkpoint(path: str | Path, trust: bool = False) -> None:
    """Refuse a detector checkpoint that could run code when ultralytics opens it, or whose
    model YAML holds strings ultralytics would evaluate (``model_yaml``).

    Args:
        path: the ``.pt`` file.
        trust: skip the check (the user vouches for the file).

    Raises:
        WeightsError / UnsafeCheckpointError / UnsafeModelDescriptionError: see ``load_detector_checkpoint``.
    """
    if not trust:
        load_detector_checkpoint(path)
