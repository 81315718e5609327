"""Near-duplicates at scale: hashes cached by content, chains of video frames reported and cut."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from kvasir_ml.data.coco import CanonicalDataset
from kvasir_ml.data.linkage import components, cut_large_groups, groups_from_labels
from kvasir_ml.data.near_duplicates import close_pair_arrays, near_duplicate_groups
from kvasir_ml.data.split_audit import audit_given_split
from kvasir_ml.data.splits import SPLIT_NAMES, make_splits
from kvasir_ml.data.video_frames import plan_scenes, write_video_frames


def test_a_chain_is_cut_at_its_weakest_links_first():
    # 0-1-...-9, links with these distances; 20-21 a pair of its own
    dist = np.array([2, 3, 9, 1, 2, 1, 8, 2, 3, 0], dtype=np.uint8)
    ii, jj = np.r_[np.arange(9), 20], np.r_[np.arange(1, 10), 21]
    groups = groups_from_labels(components(25, ii, jj))
    assert [g.tolist() for g in groups] == [list(range(10)), [20, 21]]
    pieces, cuts = cut_large_groups(groups, ii, jj, dist, max_images=4)
    assert sorted(cuts) == [(2, 3, 9), (6, 7, 8)]  # the two largest distances, nothing else
    assert sorted(p.tolist() for p in pieces) == [[0, 1, 2], [3, 4, 5, 6], [7, 8, 9], [20, 21]]
    with pytest.raises(ValueError, match=">= 2"):
        cut_large_groups(groups, ii, jj, dist, max_images=1)


def test_blocked_comparison_matches_brute_force_with_tiny_blocks(monkeypatch):
    import kvasir_ml.data.near_duplicates as nd

    monkeypatch.setattr(nd, "_BLOCK_BYTES", 8 * 16 * 50)  # 16-row blocks: many blocks and block edges
    rng = np.random.default_rng(1)
    h = rng.integers(0, 2**63, 200, dtype=np.int64).astype(np.uint64)
    h[150:160] = h[3] ^ np.uint64(0b111)  # a pair across blocks, and identical hashes
    ii, jj, dd = close_pair_arrays(h, 14)
    got = set(zip(ii.tolist(), jj.tolist(), dd.tolist()))
    want = {(i, j, bin(int(h[i] ^ h[j])).count("1")) for i in range(200) for j in range(i + 1, 200)
            if bin(int(h[i] ^ h[j])).count("1") <= 14}
    assert got == want and (3, 150, 3) in got and (150, 151, 0) in got


def test_hashes_are_cached_by_content_and_computed_by_workers(synth_dir, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(synth_dir, root)
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*.jpg"))
    assert len(names) >= 64  # enough for the process pool (2 chunks)
    first = near_duplicate_groups(names, root, cache_dir=tmp_path / "cache", workers=2)
    assert first.stats["n_hashed"] == len(names) and first.stats["n_cached"] == 0
    again = near_duplicate_groups(list(reversed(names)), root, cache_dir=tmp_path / "cache", workers=0)
    assert again.stats == {**again.stats, "n_hashed": 0, "n_cached": len(names)}
    assert again.info["groups"] == first.info["groups"]
    # a copy under another name is a hit; an edited file is a miss
    shutil.copy(root / names[0], root / "copy.jpg")
    Image.open(root / names[1]).rotate(90).save(root / names[1])
    third = near_duplicate_groups([*names, "copy.jpg"], root, cache_dir=tmp_path / "cache", workers=0)
    assert third.stats["n_hashed"] == 1 and third.stats["n_cached"] == len(names)
    assert sorted([names[0], "copy.jpg"]) in third.info["groups"]


def test_a_corrupt_image_is_named_from_a_worker(tmp_path):
    for k in range(80):
        Image.new("RGB", (64, 48), (k, 90, 80)).save(tmp_path / f"{k:02d}.jpg")
    (tmp_path / "41.jpg").write_bytes(b"not a jpeg")
    from kvasir_ml.data.images import ImageError

    with pytest.raises(ImageError, match="41.jpg"):
        near_duplicate_groups([f"{k:02d}.jpg" for k in range(80)], tmp_path, cache_dir=tmp_path / "c", workers=2)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """60 frames: a 20-frame video run, a few short runs, single frames (Kvasir v2 layout)."""
    root = tmp_path_factory.mktemp("video")
    scenes = write_video_frames(root, 60, seed=3, workers=0, chain_share=1 / 3, run_share=0.3, max_run=4)
    ds = CanonicalDataset.new("kvasir-v2")
    for path in sorted(root.rglob("*.jpg")):
        cls = path.parent.name
        ds.add_image(str(path.relative_to(root)), 720, 576, [], "kvasir-v2", cls, content_sha256=path.name)
    return root, ds, scenes


def test_video_runs_chain_into_one_group_that_is_named(video):
    root, ds, scenes = video
    chain = max(scenes, key=lambda s: s.n_frames)
    assert chain.n_frames == 20 and plan_scenes(60, 3, chain_share=1 / 3, run_share=0.3, max_run=4) == scenes
    near = near_duplicate_groups([i["file_name"] for i in ds.images], root, workers=0)
    info = near.info
    assert info["largest_group"] == info["largest_group_uncut"] >= 20  # the whole run, frames ends ~30 bits apart
    assert info["large_groups"][0]["n_images"] == info["largest_group"]
    assert info["large_groups"][0]["first_file"].startswith(chain.class_name)
    assert info["cut_links"] == [] and info["n_pairs"] == len(info["pairs"])


def test_a_capped_chain_is_cut_and_its_straddling_links_are_reported(video):
    root, ds, _ = video
    names = [i["file_name"] for i in ds.images]
    near = near_duplicate_groups(names, root, max_group_images=6, workers=0)
    info = near.info
    assert info["largest_group"] <= 6 < info["largest_group_uncut"]
    assert info["cut_links"] and all(d <= info["max_distance"] for _, _, d in info["cut_links"])
    straddled = 0
    for seed in range(3):
        split = make_splits(ds, seed=seed, fractions=(0.5, 0.25, 0.25), near_duplicates=near)
        where = {f: name for name in SPLIT_NAMES for f in split.splits[name]}
        for group in info["groups"]:  # pieces stay whole
            assert len({where[f] for f in group}) == 1
        across = split.info["near_duplicates"]["cut_links_across_splits"]
        assert across == [[a, b, d, where[a], where[b]] for a, b, d in info["cut_links"] if where[a] != where[b]]
        straddled += len(across)
        # the audit of this split, given back, joins the pieces again and reports the same straddles
        record = audit_given_split(ds, split, root, info["max_distance"])
        assert (record["n_straddling"] > 0) == bool(across)
        for a, b, *_ in across:
            assert any({a, b} <= set(g["files"]) for g in record["groups"])
    assert straddled > 0  # a cap does let near-duplicates straddle: that is why they are reported
