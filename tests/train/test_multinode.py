"""docs/multinode.md, its local part for real: two torchrun agents (two "nodes" of one process
each) meet over the c10d rendezvous on localhost and train the tiny classifier through the CLI
(CPU, gloo), sharing one run folder and cache as nodes share a file system."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kvasir_ml.train.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_meet_over_c10d_and_train_one_run(tmp_path):
    endpoint = f"127.0.0.1:{_free_port()}"
    out, cache = tmp_path / "runs" / "ml-2nodes", tmp_path / "cache"
    # the command of docs/multinode.md, one agent per "node"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
           "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", "kvasir-test",
           "-m", "kvasir_ml", "train", "classifier", "--config", str(REPO / "configs" / "classifier_multilabel_tiny.yaml"),
           "--out", str(out), f"data.cache_dir={cache}", "data.synthetic_n=48", "data.image_size_px=32",
           "model.inset_mode=masked", "optim.epochs=1", "runtime.batch_size=8", "runtime.progress=false",
           "tracking.mode=disabled"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    logs = [tmp_path / f"node{k}.log" for k in range(2)]  # files, not pipes: a full pipe would stall a rank
    nodes = [subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT) for log in logs]
    try:
        for node in nodes:
            node.wait(timeout=300)
    finally:
        for node in nodes:
            node.kill()
    for node, log in zip(nodes, logs):
        assert node.returncode == 0, log.read_text()[-4000:]
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ckpt["world_size"] == 2 and ckpt["epoch"] == 1
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [h["world_size"] for h in history] == [2]
    # the one run folder was written once (rank 0) and the shared cache holds the decoded images
    assert sorted(p.name for p in (out / "checkpoints").glob("*.pt")) == ["best.pt", "last.pt"]
    assert any(cache.rglob("*.npy"))
