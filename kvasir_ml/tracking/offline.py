"""Decode W&B offline run files (``.wandb``) in process, without a network.

wandb keeps an offline run's config, history and summary only inside the binary transaction
log ``offline-run-*/run-<id>.wandb``: a LevelDB-style log (7-byte ``:W&B`` header, 32 KiB
blocks, records with a CRC-32 + length + type header and fragment types full/first/middle/
last) whose payloads are ``wandb_internal_pb2.Record`` protobufs. wandb 0.31 has no public
Python reader (``wandb leet inspect --summary --json`` is a Go binary that prints only the
summary), so this module decodes the log itself with wandb's own protobuf classes. The
tracker uses it to wait until a finished run's file is complete; the tests use it
(``tests/wandb_offline.py``) to read back what a run logged.
"""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path
from typing import Any, Iterator

_HEADER = struct.Struct("<4sHB")  # ident, magic, version
_RECORD = struct.Struct("<IHB")  # crc32, payload length, fragment type
_BLOCK_BYTES = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


class OfflineRunError(ValueError):
    """A path holds no readable W&B offline run; the message names the file and the problem."""


def iter_records(wandb_file: str | Path) -> Iterator[Any]:
    """Yield the ``Record`` protobufs of a ``.wandb`` file in order.

    A truncated tail (a run still writing, or killed) ends the iteration quietly.

    Raises:
        OfflineRunError: not a W&B log, or a complete record whose checksum does not match.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(wandb_file).read_bytes()
    if len(data) < _HEADER.size or _HEADER.unpack_from(data)[:2] != (b":W&B", 0xBEE1):
        raise OfflineRunError(f"{wandb_file}: not a W&B transaction log (bad header)")
    pos, parts = _HEADER.size, []
    while pos + _RECORD.size <= len(data):
        left = _BLOCK_BYTES - pos % _BLOCK_BYTES
        if left < _RECORD.size:  # block trailer too small for a header: zero padding
            pos += left
            continue
        crc, length, kind = _RECORD.unpack_from(data, pos)
        if kind == 0 and length == 0:  # zero-filled rest of a block
            pos += left
            continue
        payload = data[pos + _RECORD.size: pos + _RECORD.size + length]
        if len(payload) < length:
            return  # truncated tail
        if zlib.crc32(payload, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != crc:
            raise OfflineRunError(f"{wandb_file}: checksum mismatch in record at byte {pos}")
        pos += _RECORD.size + length
        parts.append(payload)
        if kind in (_FULL, _LAST):
            record = pb.Record()  # type: ignore[attr-defined]  # generated protobuf module: no stubs
            record.ParseFromString(b"".join(parts))
            parts = []
            yield record
        elif kind not in (_FIRST, _MIDDLE):
            raise OfflineRunError(f"{wandb_file}: unknown fragment type {kind} at byte {pos}")


def wait_until_closed(wandb_file: str | Path, timeout_s: float = 10.0, poll_s: float = 0.05) -> bool:
    """Wait until a run's log holds its ``exit`` record.

    ``run.finish()`` returns before wandb's service has flushed and closed the file (it does so
    asynchronously, within about a second); readers that start right away see a header only.

    Returns:
        True when the exit record is there, False after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if any(r.WhichOneof("record_type") == "exit" for r in iter_records(wandb_file)):
                return True
        except (OSError, OfflineRunError):
            pass  # not there yet, or caught mid-write
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)
