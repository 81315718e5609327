"""Two trainings into one run folder: the second is refused naming the first (issue 19).

The holder is a real second process that takes the lock through ``kvasir_ml.runlock``; it is
then SIGKILLed, which leaves its lock file behind: a stale lock that the next training takes
over.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kvasir_ml.cli import main as cli_main
from kvasir_ml.runlock import RunLockedError, lock_path, run_lock
from kvasir_ml.taxonomy import load_taxonomy
from kvasir_ml.train.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]
ML_TINY = REPO / "configs" / "classifier_multilabel_tiny.yaml"
DET_TINY = REPO / "configs" / "detector_tiny.yaml"
_HOLD = ("import sys, time\nfrom kvasir_ml.runlock import run_lock\n"
         "with run_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(300)\n")


@pytest.fixture
def holder(tmp_path):
    """A second process holding the lock of ``tmp_path / 'run'``."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield out, proc
    finally:
        proc.kill()
        proc.wait()


def test_a_second_training_into_a_locked_run_folder_is_refused_naming_the_holder(holder, capsys):
    out, proc = holder
    for kind, config in (("classifier", ML_TINY), ("detector", DET_TINY)):
        rc = cli_main(["train", kind, "--config", str(config), "--out", str(out), "tracking.mode=disabled"])
        err = capsys.readouterr().err
        assert rc == 2 and f"pid {proc.pid} on {socket.gethostname()}" in err and "is in use by another training" in err
        assert not out.exists()  # nothing written: no split.json of the second run
    assert json.loads(lock_path(out).read_text())["pid"] == proc.pid  # the holder's lock is untouched


def test_a_stale_lock_of_a_killed_training_is_taken_over_and_the_run_completes(holder, synth_dir, tmp_path, caplog):
    out, proc = holder
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert lock_path(out).is_file()  # left behind by the kill
    caplog.set_level(logging.WARNING, logger="kvasir_ml.runlock")
    rc = cli_main(["train", "classifier", "--config", str(ML_TINY), "--out", str(out), "tracking.mode=disabled",
                   f"data.canonical={synth_dir / 'annotations.coco.json'}", "optim.epochs=1",
                   f"data.cache_dir={tmp_path / 'cache'}", "model.inset_mode=raw", "data.image_size_px=32"])
    assert rc == 0
    assert f"taking over a stale lock (pid {proc.pid} on" in caplog.text
    assert not lock_path(out).exists()  # released at the end
    assert load_checkpoint(out / "checkpoints" / "best.pt")["taxonomy_version"] == load_taxonomy().version


def test_a_lock_written_on_another_host_is_never_taken_over(tmp_path):
    out = tmp_path / "run"
    lock_path(out).write_text(json.dumps({"pid": 4242, "host": "gpu-node-7", "started_utc": "2026-01-01T00:00:00"}))
    with pytest.raises(RunLockedError, match=r"another host \(pid 4242 on gpu-node-7.*delete the lock file"):
        with run_lock(out):
            pass
    assert lock_path(out).is_file()
