"""Near-duplicates by perceptual hash: copies of a frame are found and never straddle splits."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kvasir_ml.data.coco import load_canonical
from kvasir_ml.data.images import ImageError
from kvasir_ml.data.near_duplicates import (
    DEFAULT_MAX_DISTANCE,
    close_pairs,
    near_duplicate_groups,
    perceptual_hash,
)
from kvasir_ml.data.splits import SPLIT_NAMES, make_splits

# Same-frame pairs of real Kvasir-SEG, verified by eye and by ORB + RANSAC (>= 60 inliers) over
# all 499,500 pairs (docs/near_duplicates.md): a consecutive-frame pair and re-exports whose
# position-map panel is green in one copy and blacked out (with another crop) in the other.
KVASIR_SEG_SAME_FRAME = [
    ("cju886ryxnsl50801r93jai7q", "cju8amfdtqi4x09871tygrgqe"),
    ("cju30bmab08bi0835mvlr6e0r", "cju77k828z46w0871r0avuoo9"),
    ("cju76lsehyia10987u54vn8rb", "cju772304yw5t0818vbw8kkjf"),
    ("cju2i6acqvo6l0799u20fift8", "cjz14qsk2wci60794un9ozwmw"),
    ("cju77g99iyxc00817zqi2ppor", "cjyztzaqtrv430848l8xgcerw"),
    ("cju5y4hgqmk0i08180rjhbwvp", "cjyzlw7f9faqr070129au64sq"),
    ("cju33za6l2qy70988jhrlp2ev", "cjyzjzssvd8pq0838f4nolj5l"),
    ("cju5jx7jzf7c90871c2i9aiov", "cjyzl833ndne80838pzuq6ila"),
]


def _pair_split(split, a: str, b: str) -> tuple[str, str]:
    where = {f: name for name in SPLIT_NAMES for f in split.splits[name]}
    return where[a], where[b]


def test_close_pairs_equals_brute_force():
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, 300, dtype=np.int64).astype(np.uint64)
    hashes[7] = hashes[3] ^ np.uint64(0b1011)  # 3 bits apart
    got = set(close_pairs(hashes, 20))
    want = {(i, j, bin(int(hashes[i]) ^ int(hashes[j])).count("1")) for i in range(300) for j in range(i + 1, 300)
            if bin(int(hashes[i]) ^ int(hashes[j])).count("1") <= 20}
    assert got == want and (3, 7, 3) in got


def test_copies_of_a_synthetic_frame_are_grouped_and_kept_in_one_split(synth_dir, tmp_path):
    ds = load_canonical(synth_dir / "annotations.coco.json")
    src = synth_dir / ds.images[5]["file_name"]
    img = Image.open(src)
    (tmp_path / "images").mkdir()
    for name, copy in {"q40.jpg": img, "small.jpg": img.resize((img.width * 3 // 4, img.height * 3 // 4))}.items():
        copy.save(tmp_path / "images" / name, quality=40)
    import shutil

    for entry in ds.images:  # the originals, next to the copies
        shutil.copy(synth_dir / entry["file_name"], tmp_path / entry["file_name"])
    for name in ("q40.jpg", "small.jpg"):
        orig = ds.images[5]
        ds.add_image(f"images/{name}", orig["width"], orig["height"], orig["labels"], orig["source"],
                     orig["source_class"], content_sha256=name)
    near = near_duplicate_groups([i["file_name"] for i in ds.images], tmp_path)
    copies = sorted([ds.images[5]["file_name"], "images/q40.jpg", "images/small.jpg"])
    assert copies in near.info["groups"]
    # unrelated synthetic frames are not tied to each other
    assert near.info["n_images_grouped"] == 3 and near.info["max_distance"] == DEFAULT_MAX_DISTANCE
    for seed in range(3):
        split = make_splits(ds, seed=seed, fractions=(0.6, 0.2, 0.2), near_duplicates=near)
        assert len({_pair_split(split, copies[0], c)[1] for c in copies}) == 1
        assert split.info["near_duplicates"]["groups"] == near.info["groups"]


def test_unreadable_image_names_the_file(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ImageError, match="bad.jpg"):
        perceptual_hash(tmp_path / "bad.jpg")
    with pytest.raises(ValueError, match="0-64"):
        near_duplicate_groups([], tmp_path, max_distance=65)


@pytest.fixture(scope="module")
def kvasir_seg(shared_data):
    from kvasir_ml.data.sources.kvasir_seg import index_kvasir_seg

    root = shared_data / "kvasir-seg"
    ds = index_kvasir_seg(root).dataset
    return ds, root, near_duplicate_groups([img["file_name"] for img in ds.images], root)


@pytest.mark.realdata
def test_real_kvasir_seg_near_duplicates_never_straddle_splits(kvasir_seg):
    ds, _, near = kvasir_seg
    stem = {f.split("/")[-1].rsplit(".", 1)[0]: f for f in (img["file_name"] for img in ds.images)}
    pairs = {(a, b) for a, b, _ in near.info["pairs"]}
    for a, b in KVASIR_SEG_SAME_FRAME:  # the measured same-frame pairs are found
        assert (stem[a], stem[b]) in pairs or (stem[b], stem[a]) in pairs, (a, b)
    assert max(len(g) for g in near.info["groups"]) <= 6  # no chaining into large groups
    straddled_without = 0
    for seed in range(5):
        split = make_splits(ds, seed=seed, near_duplicates=near)
        for a, b, _ in near.info["pairs"]:
            sa, sb = _pair_split(split, a, b)
            assert sa == sb, (seed, a, b)
        plain = make_splits(ds, seed=seed)
        straddled_without += sum(len(set(_pair_split(plain, a, b))) > 1 for a, b, _ in near.info["pairs"])
    assert straddled_without > 0  # the grouping is what keeps them together


@pytest.mark.realdata
def test_real_frames_re_encoded_or_resized_stay_within_the_threshold(kvasir_seg, tmp_path):
    ds, root, _ = kvasir_seg
    worst = 0
    for img in ds.images[::50]:
        original = Image.open(root / img["file_name"]).convert("RGB")
        h0 = perceptual_hash(root / img["file_name"])
        for k, (copy, quality) in enumerate([(original, 50), (original.resize((original.width * 7 // 10,
                                                                                original.height * 7 // 10)), 90)]):
            path = tmp_path / f"{k}.jpg"
            copy.save(path, quality=quality)
            worst = max(worst, bin(perceptual_hash(path) ^ h0).count("1"))
    assert worst <= DEFAULT_MAX_DISTANCE // 2
