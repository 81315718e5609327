"""Issue 19, data and config cases: each silent wrong result or crash is now a named error or a
reported skip (multi-page TIFFs, files rewritten while indexed, fold files, Kvasir-SEG box
files, duplicate keys in YAML/JSON, tiny frames, non-finite floats and bad seeds) and killing
``data index`` takes its pool workers with it."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kvasir_ml.config import ConfigError, load_config
from kvasir_ml.data.coco import CanonicalDataset, load_canonical
from kvasir_ml.data.images import MIN_FRAME_SIDE_PX, ImageError, image_size, load_rgb
from kvasir_ml.data.sources import index_kvasir_seg, index_kvasir_v2, probe_image
from kvasir_ml.data.splits import SplitError, make_splits, read_fold_file, split_from_hyperkvasir_folds
from kvasir_ml.io import DuplicateKeyError, loads_yaml, read_json
from kvasir_ml.inference.combined import _predict_chunk
from kvasir_ml.taxonomy import TaxonomyError, load_taxonomy
from kvasir_ml.train.config import ClassifierConfig

REPO = Path(__file__).resolve().parents[2]


def _frame(path: Path, size=(64, 48), seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(60, 200, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def _problems(result, path: str) -> dict[str, str]:
    return {p.severity: p.reason for p in result.problems if p.path == path}


def test_multi_page_tiff_is_refused_not_read_from_its_blank_first_page(tmp_path):
    root = tmp_path / "kvasir-v2"
    frame = Image.open(_frame(tmp_path / "frame.png", size=(64, 48)))
    blank = Image.new("RGB", frame.size)
    (root / "polyps").mkdir(parents=True)
    blank.save(root / "polyps" / "pages.tif", save_all=True, append_images=[frame])
    frame.save(root / "polyps" / "single.tif")  # the positive control: one page is fine
    assert Image.open(root / "polyps" / "pages.tif").n_frames == 2
    for read in (load_rgb, image_size):
        with pytest.raises(ImageError, match=r"pages.tif: refused: a multi-page TIFF with 2 pages"):
            read(root / "polyps" / "pages.tif")
    result = index_kvasir_v2(root, workers=0)
    assert [img["file_name"] for img in result.dataset.images] == ["polyps/single.tif"]
    assert "multi-page TIFF with 2 pages" in _problems(result, "polyps/pages.tif")["error"]


@pytest.mark.parametrize("how", ["replaced", "rewritten in place"])
def test_a_file_rewritten_while_indexed_gets_size_and_hash_from_one_version(tmp_path, how):
    versions = [_frame(tmp_path / f"v{i}.png", size=size, seed=i) for i, size in enumerate([(64, 48), (96, 80)])]
    size_by_sha = {hashlib.sha256(v.read_bytes()).hexdigest(): Image.open(v).size for v in versions}
    contents = [v.read_bytes() for v in versions]
    target, scratch = tmp_path / "frame.png", tmp_path / "scratch.png"
    target.write_bytes(contents[0])
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            if how == "replaced":  # an editor or a sync tool: write aside, rename over
                scratch.write_bytes(contents[i % 2])
                os.replace(scratch, target)
            else:
                target.write_bytes(contents[i % 2])

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    outcomes = []
    try:
        for _ in range(80):
            probe = probe_image(str(target))
            if probe.error is None:
                assert size_by_sha[probe.content_sha256] == (probe.width, probe.height), "size and hash of two versions"
                outcomes.append("consistent")
            else:  # a reported skip naming why (changed while read, caught half-written or truncated)
                assert any(why in probe.error for why in ("changed while being read", "cannot decode", "empty")), probe.error
                outcomes.append("skipped")
    finally:
        stop.set()
        thread.join()
    # a writer that never pauses may keep every probe a skip: once it stops, the file reads whole
    settled = probe_image(str(target))
    assert settled.error is None and size_by_sha[settled.content_sha256] == (settled.width, settled.height)
    assert len(outcomes) == 80


def _fold_file(path: Path, rows: list[tuple[str, int]]) -> Path:
    path.write_text("file-name;class-name;split-index\n" + "".join(f"{n};polyps;{f}\n" for n, f in rows),
                    encoding="utf-8")
    return path


def test_fold_file_with_an_unknown_fold_or_an_image_in_two_folds_is_refused(tmp_path):
    good = [(f"{i}.jpg", i % 2) for i in range(6)]
    assert len(read_fold_file(_fold_file(tmp_path / "2_fold_split.csv", good))) == 6
    with pytest.raises(SplitError, match=r"2_fold_split.csv: 1 image\(s\) in a fold outside the file's folds "
                                         r"\(the file name says 2 folds, 0..1\), e.g. '7.jpg' \(line 8: fold 7\)"):
        read_fold_file(_fold_file(tmp_path / "2_fold_split.csv", good + [("7.jpg", 7)]))
    with pytest.raises(SplitError, match=r"folds.csv: .*fold 2 is empty\), e.g. '7.jpg' \(line 8: fold 7\)"):
        read_fold_file(_fold_file(tmp_path / "folds.csv", good + [("7.jpg", 7)]))  # no count in the name
    with pytest.raises(SplitError, match=r"listed more than once .*'3.jpg' on lines 5 \(fold 1\) and 8 \(fold 0\)"):
        read_fold_file(_fold_file(tmp_path / "2_fold_split.csv", good + [("3.jpg", 0)]))
    ds = CanonicalDataset.new("hyperkvasir")
    labels = load_taxonomy().labels_for("hyperkvasir", "polyps")
    for name, _ in good:
        ds.add_image(f"lower-gi/polyps/{name}", 64, 48, labels, "hyperkvasir", "polyps")
    folds = _fold_file(tmp_path / "2_fold_split.csv", good)
    assert len(split_from_hyperkvasir_folds(ds, folds, val_fold=1).splits["val"]) == 3
    with pytest.raises(SplitError, match=r"the val fold 3 is not in the file \(its folds: \[0, 1\]\)"):
        split_from_hyperkvasir_folds(ds, folds, val_fold=3)
    with pytest.raises(SplitError, match="both 1"):
        split_from_hyperkvasir_folds(ds, folds, val_fold=1, test_fold=1)


def _kvasir_seg(root: Path, boxes_json: str) -> Path:
    _frame(root / "images" / "a.jpg", size=(64, 48))
    mask = np.zeros((48, 64), dtype=np.uint8)
    mask[10:30, 20:44] = 255
    (root / "masks").mkdir(parents=True)
    Image.fromarray(mask).save(root / "masks" / "a.png")
    (root / "kavsir_bboxes.json").write_text(boxes_json, encoding="utf-8")
    return root


def test_kvasir_seg_empty_bbox_list_takes_the_mask_and_a_duplicate_key_is_refused(tmp_path):
    root = _kvasir_seg(tmp_path / "seg", '{"a": {"height": 48, "width": 64, "bbox": []}}')
    result = index_kvasir_seg(root, workers=0)
    assert [a["bbox"] for a in result.dataset.annotations] == [[20.0, 10.0, 24.0, 20.0]]
    assert result.dataset.annotations[0]["box_origin"] == "mask"
    assert 'lists no box for this polyp image ("bbox": []); boxes derived from its mask' in \
        _problems(result, "images/a.jpg")["warning"]
    dup = ('{"a": {"height": 48, "width": 64, "bbox": [{"xmin": 1, "ymin": 1, "xmax": 9, "ymax": 9}]},\n'
           ' "a": {"height": 48, "width": 64, "bbox": []}}')
    root = _kvasir_seg(tmp_path / "dup", dup)
    with pytest.raises(DuplicateKeyError, match=r"dup/kavsir_bboxes.json: duplicate key 'a'"):
        index_kvasir_seg(root, workers=0)


def test_duplicate_keys_are_refused_in_configs_overrides_taxonomies_and_json_files(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("optim:\n  epochs: 50\ndata:\n  split_seed: 1\noptim:\n  lr: 0.01\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"cfg.yaml: line 5: duplicate key 'optim' \(first on line 1\)"):
        load_config(ClassifierConfig, cfg)
    with pytest.raises(ConfigError, match=r"override 'optim={lr: 1, lr: 2}': line 1: duplicate key 'lr'"):
        load_config(ClassifierConfig, None, ["optim={lr: 1, lr: 2}"])
    taxonomy = tmp_path / "taxonomy.yaml"
    text = (REPO / "annotations" / "taxonomy.yaml").read_text(encoding="utf-8")
    taxonomy.write_text(text + "\nversion: 99\n", encoding="utf-8")
    with pytest.raises(TaxonomyError, match=r"taxonomy.yaml: line \d+: duplicate key 'version'"):
        load_taxonomy(taxonomy)
    assert loads_yaml("base: &b {a: 1, b: 2}\nx:\n  <<: *b\n  a: 3\n", "merge") == {
        "base": {"a": 1, "b": 2}, "x": {"a": 3, "b": 2}}  # a merge key may still be overridden
    canonical = tmp_path / "canonical.json"
    canonical.write_text('{"info": {}, "images": [{"id": 1, "id": 2}], "annotations": [], "categories": []}')
    for read in (read_json, load_canonical):
        with pytest.raises(ValueError, match=r"canonical.json: duplicate key 'id'"):
            read(canonical)


def test_frames_smaller_than_the_minimum_are_named_by_index_and_predict(tmp_path):
    root = tmp_path / "kvasir-v2"
    _frame(root / "polyps" / "strip.png", size=(5, 1))
    _frame(root / "polyps" / "edge.png", size=(MIN_FRAME_SIDE_PX, MIN_FRAME_SIDE_PX))  # exactly the minimum: kept
    result = index_kvasir_v2(root, workers=0)
    assert [img["file_name"] for img in result.dataset.images] == ["polyps/edge.png"]
    assert f"frame is 5x1 px, smaller than the minimum of {MIN_FRAME_SIDE_PX} px a side" in \
        _problems(result, "polyps/strip.png")["error"]
    entries = _predict_chunk([root / "polyps" / "strip.png", root / "polyps" / "edge.png"], None, None)
    assert "frame is 5x1 px" in entries[0]["error"] and entries[0]["image"].endswith("strip.png")
    assert "error" not in entries[1] and entries[1]["width"] == MIN_FRAME_SIDE_PX


@pytest.mark.parametrize("override, named", [
    ("optim.lr=.inf", r"optim.lr: Input should be a finite number  \[from override 'optim.lr=.inf'\]"),
    ("optim.lr=.nan", r"optim.lr: Input should be a finite number"),
    ("data.split_seed=100000000000000000000000", r"data.split_seed: Input should be less than or equal to 4294967295"),
    ("data.split_seed=1e23", r"data.split_seed: Input should be a valid integer"),
    ("runtime.seed=-1", r"runtime.seed: Input should be greater than or equal to 0"),
])
def test_non_finite_floats_and_unusable_seeds_are_named_in_the_config(override, named):
    with pytest.raises(ConfigError, match=named):
        load_config(ClassifierConfig, REPO / "configs" / "classifier_multilabel_tiny.yaml", [override])


def test_make_splits_names_an_unusable_seed():
    ds = CanonicalDataset.new("synthetic")
    for seed in (10**23, -1, 1.5):
        with pytest.raises(SplitError, match=rf"split seed {seed!r} is not an integer from 0 to 4294967295"):
            make_splits(ds, seed)


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killing_data_index_takes_its_pool_workers_with_it(tmp_path, sig):
    frame = _frame(tmp_path / "frame.jpg", size=(1920, 1080))  # ~0.1 s a probe: the pool is busy for seconds
    (tmp_path / "v2" / "polyps").mkdir(parents=True)
    for i in range(96):
        os.link(frame, tmp_path / "v2" / "polyps" / f"{i}.jpg")
    proc = subprocess.Popen([sys.executable, "-m", "kvasir_ml", "data", "index", "kvasir-v2", str(tmp_path / "v2"),
                             "--out", str(tmp_path / "out.json"), "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(workers) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
            workers = _children(proc.pid)
        assert len(workers) == 2, f"the index never started its 2 workers (exit {proc.poll()})"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        deadline = time.monotonic() + 30  # a bound for a busy machine, not a timing claim
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), f"pool workers {workers} outlived the killed index"
        assert not (tmp_path / "out.json").exists()
        if sig == signal.SIGTERM:
            assert proc.returncode == 128 + signal.SIGTERM and "terminated (signal 15)" in err, err
    finally:
        for pid in [proc.pid, *workers]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
