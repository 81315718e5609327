"""``video predict``'s decoding in a forked process, its batches handed over through a few
shared-memory slots reused in turn.

A DataLoader worker moves every tensor of every batch into a new shared-memory file and passes
its descriptor over a socket; for a batch of small frames that costs as much CPU as decoding
them. Here the slots are mapped once, before the fork (an anonymous shared ``mmap``, so
``/dev/shm``'s size does not limit them), the process writes a batch into a free slot, and only
the slot number and the frames' metadata cross a pipe. The consumer gives a slot back
(``release``) once nothing reads its pixels any more: after the annotated MP4 has its frames.

Linux only (fork: the classifier's input function is a closure, which a spawned process cannot
unpickle); elsewhere ``video predict`` decodes in a thread.
"""

from __future__ import annotations

import mmap
import pickle
import multiprocessing as mp
import traceback
from typing import Any, Iterator

import numpy as np
import torch

N_SLOTS = 4  # batches in flight: one being decoded, one queued, one in the models, one being encoded
_POLL_S = 0.5


class DecodeProcessError(RuntimeError):
    """The decode process failed or died (the message carries its error)."""


class _Slots:
    """``n_slots`` x ``batch`` frames' worth of each array of a batch item, in one shared mapping."""

    def __init__(self, sample: dict[str, Any], batch: int, n_slots: int):
        """``sample``: one frame's arrays by key (``rgb``, ``det``, ``cls.<key>``), their shapes and dtypes."""
        self.specs = {k: (tuple(v.shape), np.dtype(v.dtype)) for k, v in sample.items()}
        self.batch, self.n_slots = batch, n_slots
        sizes = {k: int(np.prod(shape)) * dtype.itemsize for k, (shape, dtype) in self.specs.items()}
        per_slot = sum(sizes.values()) * batch
        self._map = mmap.mmap(-1, max(1, per_slot * n_slots))  # MAP_SHARED | MAP_ANONYMOUS: kept across fork
        self.views: list[dict[str, np.ndarray]] = []
        offset = 0
        for _ in range(n_slots):
            slot = {}
            for k, (shape, dtype) in self.specs.items():
                slot[k] = np.frombuffer(self._map, dtype, batch * int(np.prod(shape)), offset).reshape((batch, *shape))
                offset += sizes[k] * batch
            self.views.append(slot)

    def write(self, slot: int, arrays: dict[str, np.ndarray]) -> None:
        for k, arr in arrays.items():
            shape, _ = self.specs[k]
            if tuple(arr.shape[1:]) != shape:
                raise DecodeProcessError(f"{k}: a frame of shape {tuple(arr.shape[1:])} where the video's "
                                         f"first frame gave {shape} (does the frame size change mid-video?)")
            self.views[slot][k][:len(arr)] = arr


def _flat(item: dict[str, Any]) -> dict[str, np.ndarray]:
    """A ``_DecodedBatches`` item's arrays by key (``cls.<key>`` for the classifier's inputs)."""
    arrays = {"rgb": item["rgb"].numpy()}
    if item["det"] is not None:
        arrays["det"] = item["det"].numpy()
    for k, v in (item["cls"] or {}).items():
        arrays[f"cls.{k}"] = v.numpy()
    return arrays


def _produce(source, slots: _Slots, free: Any, ready: Any) -> None:
    """The decode process: each batch of ``source`` into a free slot, then its number and metadata to ``ready``."""
    try:
        torch.set_num_threads(1)  # its torch ops (resizing the classifier's inputs) are tiny; the cores are the models'
        for item in source:
            slot = free.get()
            if slot is None:  # the consumer stopped
                return
            slots.write(slot, _flat(item))
            ready.send(("batch", slot, len(item["meta"]), item["meta"], item["decode_s"]))
        ready.send(("done",))
    except BaseException as exc:  # noqa: BLE001 — handed to the consumer
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        try:
            pickle.loads(pickle.dumps(exc))  # one that does not round-trip would hide the error in the parent
            payload: BaseException | None = exc
        except Exception:  # noqa: BLE001 — then its text only
            payload = None
        ready.send(("error", payload, text))


class ForkedDecoder:
    """Batches of a ``_DecodedBatches`` source from a forked process, as that source yields them
    (``{"meta", "rgb", "cls", "det", "decode_s"}``, tensors viewing a shared slot) plus ``"slot"``.

    Fork it before starting any thread (``start``): a fork while another thread holds a lock
    leaves that lock held in the child. Iterate it from any one thread; ``release(slot)`` each
    batch when done with its pixels; ``close`` always (it stops a process still running).
    """

    def __init__(self, source, sample: dict[str, Any], batch: int, n_slots: int = N_SLOTS):
        ctx = mp.get_context("fork")
        self.slots = _Slots(sample, batch, n_slots)
        # A SimpleQueue and a pipe: no feeder thread, so this process has no thread of its own at the fork.
        self._free = ctx.SimpleQueue()
        self._ready, ready_send = ctx.Pipe(duplex=False)
        for slot in range(n_slots):
            self._free.put(slot)
        self._proc = ctx.Process(target=_produce, args=(source, self.slots, self._free, ready_send),
                                 name="video-decode", daemon=True)

    def start(self) -> "ForkedDecoder":
        self._proc.start()
        return self

    def __enter__(self) -> "ForkedDecoder":
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()

    def release(self, slot: int) -> None:
        self._free.put(slot)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            msg = self._get()
            if msg[0] == "done":
                return
            if msg[0] == "error":
                exc, text = msg[1], msg[2]
                raise (exc if isinstance(exc, Exception) else DecodeProcessError(f"video decoding failed: {text}"))
            _, slot, n, meta, decode_s = msg
            views = self.slots.views[slot]
            cls = {k[4:]: torch.from_numpy(v[:n]) for k, v in views.items() if k.startswith("cls.")}
            yield {"meta": meta, "rgb": torch.from_numpy(views["rgb"][:n]), "cls": cls or None,
                   "det": torch.from_numpy(views["det"][:n]) if "det" in views else None,
                   "decode_s": decode_s, "slot": slot}

    def _get(self) -> tuple:
        """The next message; a process that died without one is an error, not a hang."""
        while not self._ready.poll(_POLL_S):
            if not self._proc.is_alive() and not self._ready.poll(0):
                return self._died()
        try:
            return self._ready.recv()
        except EOFError:  # the pipe's other end closed: the process is gone
            return self._died()

    def _died(self) -> tuple:
        self._proc.join(timeout=2)
        raise DecodeProcessError(f"the video decode process died (exit code {self._proc.exitcode})")

    def stop_process(self) -> None:
        """Stop the process if still running and wait for it; a reader waiting in ``__iter__``
        then gets ``DecodeProcessError`` (its pipe closes) instead of waiting for ever."""
        if self._proc.pid is None or self._proc.exitcode is not None:
            return
        try:
            self._free.put(None)
        except (OSError, ValueError):
            pass
        self._proc.join(timeout=2)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout=2)

    def close(self) -> None:
        """``stop_process``, then close the pipes (call it once no thread reads this any more)."""
        self.stop_process()
        self._free.close()
        self._ready.close()

