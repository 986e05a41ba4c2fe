"""LangSplat language_features files: global ids across levels, empty masks, stems, bad files."""

import numpy as np
import pytest

from csgaussian.preprocess.features import (
    LEVELS,
    mask_id_dtype,
    read_features,
    read_view,
    view_stem,
    write_view,
)
from csgaussian.types import DataError

H, W, D = 5, 6, 8


def unit_rows(count: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(count, D)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def level_ids(count: int, seed: int) -> np.ndarray:
    """[H, W] local ids using every id 0..count-1 once at least, plus -1 holes."""
    ids = np.random.default_rng(seed).permutation(np.arange(H * W) % (count + 1)) - 1
    return ids.reshape(H, W)


def write_example(folder, stem="view", counts=(2, 3, 1, 4), seed=0):
    """Write one view; returns its per-level local ids and features."""
    ids = [level_ids(c, seed + k) for k, c in enumerate(counts)]
    feats = [unit_rows(c, seed + 10 + k) for k, c in enumerate(counts)]
    write_view(folder, stem, ids, feats)
    return ids, feats


def test_write_uses_global_ids_and_read_returns_each_level(tmp_path):
    ids, feats = write_example(tmp_path)
    seg = np.load(tmp_path / "view_s.npy")
    rows = np.load(tmp_path / "view_f.npy")
    assert seg.dtype == np.float32 and seg.shape == (4, H, W)
    assert rows.dtype == np.float32 and rows.shape == (10, D)
    offsets = [0, 2, 5, 6]
    for level, offset in enumerate(offsets):
        expected = np.where(ids[level] >= 0, ids[level] + offset, -1)
        np.testing.assert_array_equal(seg[level], expected)
    np.testing.assert_array_equal(rows, np.concatenate(feats))
    for level, name in enumerate(LEVELS):
        masks = read_view(tmp_path, "view", name)
        assert masks.stem == "view" and masks.ids.dtype == np.int8
        np.testing.assert_array_equal(masks.ids, ids[level])
        np.testing.assert_array_equal(masks.features, feats[level])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["view_f.npy", "view_s.npy"]


def test_read_a_hand_made_langsplat_file(tmp_path):
    """A file as LangSplat writes it: masks 0-1 default, 2-4 subpart, 5 part, 6-7 whole."""
    seg = -np.ones((4, 2, 3), np.float32)
    seg[0] = [[0, 1, 1], [0, 0, -1]]
    seg[1] = [[2, 3, 4], [2, 3, 4]]
    seg[2] = [[5, 5, 5], [5, -1, -1]]
    seg[3] = [[6, 6, 7], [7, 7, 7]]
    rows = unit_rows(8, seed=5)
    np.save(tmp_path / "frame_00001_s.npy", seg)
    np.save(tmp_path / "frame_00001_f.npy", rows)
    masks = read_view(tmp_path, "frame_00001", "subpart")
    np.testing.assert_array_equal(masks.ids, [[0, 1, 2], [0, 1, 2]])
    np.testing.assert_array_equal(masks.features, rows[2:5])
    whole = read_view(tmp_path, "frame_00001", "whole")
    np.testing.assert_array_equal(whole.ids, [[0, 0, 1], [1, 1, 1]])
    np.testing.assert_array_equal(whole.features, rows[6:8])


def test_empty_masks_are_dropped_keeping_order(tmp_path):
    seg = -np.ones((4, 2, 3), np.float32)
    seg[:3] = np.arange(3)[:, None, None]  # masks 0..2 are levels default, subpart, part
    seg[3] = [[3, 3, 5], [6, 6, -1]]  # whole has masks 3..6, mask 4 lost every pixel
    rows = unit_rows(7, seed=6)
    np.save(tmp_path / "v_s.npy", seg)
    np.save(tmp_path / "v_f.npy", rows)
    masks = read_view(tmp_path, "v", "whole")
    np.testing.assert_array_equal(masks.ids, [[0, 0, 1], [2, 2, -1]])
    np.testing.assert_array_equal(masks.features, rows[[3, 5, 6]])


def test_views_are_matched_by_stem_not_position(tmp_path):
    _, feats_a = write_example(tmp_path, "frame_a", seed=1)
    _, feats_b = write_example(tmp_path, "frame_b", seed=2)
    for order in (["frame_a", "frame_b"], ["frame_b", "frame_a"]):
        masks = read_features(tmp_path, order, level="part")
        assert list(masks) == order
        np.testing.assert_array_equal(masks["frame_a"].features, feats_a[2])
        np.testing.assert_array_equal(masks["frame_b"].features, feats_b[2])
    assert view_stem("images/frame_b.jpg") == "frame_b"
    assert view_stem("scene/r_001.depth.png") == "r_001"


def test_missing_views_are_named_in_one_error(tmp_path):
    write_example(tmp_path, "frame_a")
    with pytest.raises(DataError, match="no features for view.* frame_x, frame_y") as info:
        read_features(tmp_path, ["frame_a", "frame_x", "frame_y"])
    assert str(tmp_path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(DataError, match="folder is missing"):
        read_features(tmp_path / "absent", ["frame_a"])


def _wrong_s_shape(folder):
    np.save(folder / "view_s.npy", np.zeros((3, H, W), np.float32))


def _id_out_of_range(folder):
    seg = np.load(folder / "view_s.npy")
    seg[1, 0, 0] = 10  # the file has rows 0..9
    np.save(folder / "view_s.npy", seg)


def _id_below_no_mask(folder):
    seg = np.load(folder / "view_s.npy")
    seg[0, 0, 0] = -2
    np.save(folder / "view_s.npy", seg)


def _fractional_id(folder):
    seg = np.load(folder / "view_s.npy")
    seg[2, 1, 1] = 0.5
    np.save(folder / "view_s.npy", seg)


def _level_ids_overlap(folder):
    seg = np.load(folder / "view_s.npy")
    seg[3, 0, 0] = 0  # an id of level default on the whole plane
    np.save(folder / "view_s.npy", seg)


def _inf_feature(folder):
    rows = np.load(folder / "view_f.npy")
    rows[0, 0] = np.inf
    np.save(folder / "view_f.npy", rows)


def _nan_feature(folder):
    rows = np.load(folder / "view_f.npy")
    rows[9, 3] = np.nan  # a row of another level than the one read
    np.save(folder / "view_f.npy", rows)


def _wrong_f_shape(folder):
    np.save(folder / "view_f.npy", np.zeros(10, np.float32))


def _missing_features(folder):
    (folder / "view_f.npy").unlink()


def _not_npy(folder):
    (folder / "view_s.npy").write_bytes(b"not a numpy file")


@pytest.mark.parametrize(
    ("damage", "file", "problem"),
    [
        (_wrong_s_shape, "view_s.npy", r"shape \[4, H, W\], got \[3, 5, 6\]"),
        (_id_out_of_range, "view_s.npy", "mask id 10 but view_f.npy has only 10 rows"),
        (_id_below_no_mask, "view_s.npy", "below -1"),
        (_fractional_id, "view_s.npy", "integer-valued"),
        (_nan_feature, "view_f.npy", "NaN"),
        (_inf_feature, "view_f.npy", "NaN or inf"),
        (_level_ids_overlap, "view_s.npy", "level whole uses mask id 0"),
        (_wrong_f_shape, "view_f.npy", r"shape \[N, D\], got \[10\]"),
        (_missing_features, "view_f.npy", "missing"),
        (_not_npy, "view_s.npy", "unreadable"),
    ],
)
def test_malformed_files_raise_one_line_naming_the_file(tmp_path, damage, file, problem):
    write_example(tmp_path)
    damage(tmp_path)
    with pytest.raises(DataError, match=problem) as info:
        read_features(tmp_path, ["view"], level="default")
    message = str(info.value)
    assert message.startswith(str(tmp_path / file) + ":") and "\n" not in message


def test_write_view_refuses_inconsistent_input(tmp_path):
    ids, feats = [level_ids(2, k) for k in range(4)], [unit_rows(2, k) for k in range(4)]
    with pytest.raises(ValueError, match="4 levels"):
        write_view(tmp_path, "v", ids[:3], feats[:3])
    with pytest.raises(ValueError, match="ids must lie in -1..0"):
        write_view(tmp_path, "v", ids, feats[:3] + [feats[3][:1]])
    with pytest.raises(ValueError, match="must be \\[H, W\\]"):
        write_view(tmp_path, "v", ids[:3] + [ids[3][:2]], feats)
    with pytest.raises(ValueError, match="unknown mask level 'large'"):
        read_view(tmp_path, "v", "large")
    assert not any(tmp_path.iterdir())


def test_masks_are_resized_to_the_image_nearest_and_lost_masks_dropped(tmp_path):
    """A 2x4 file read for a 4x8 image repeats each id over 2x2 pixels; read for a 1x2 image
    keeps one id per 2x2 block (pixel centres), and a mask without a pixel left is dropped."""
    seg = -np.ones((4, 2, 4), np.float32)
    seg[3] = [[0, 0, 1, 1], [2, -1, 1, 3]]
    rows = unit_rows(4, seed=7)
    np.save(tmp_path / "v_s.npy", seg)
    np.save(tmp_path / "v_f.npy", rows)
    up = read_features(tmp_path, ["v"], "whole", sizes={"v": (4, 8)})["v"]
    np.testing.assert_array_equal(up.ids, np.kron([[0, 0, 1, 1], [2, -1, 1, 3]], np.ones((2, 2))))
    np.testing.assert_array_equal(up.features, rows)
    down = read_view(tmp_path, "v", "whole", size=(1, 2))
    assert down.ids.shape == (1, 2)
    kept = [int(np.flatnonzero((rows == f).all(1))[0]) for f in down.features]
    assert len(kept) == len(np.unique(down.ids[down.ids >= 0]))  # every kept mask has a pixel
    assert set(kept) < {0, 1, 2, 3}
    same = read_view(tmp_path, "v", "whole", size=(2, 4))
    np.testing.assert_array_equal(same.ids, seg[3])


def test_mask_ids_are_kept_in_the_smallest_signed_type():
    assert mask_id_dtype(0) == np.int8 and mask_id_dtype(128) == np.int8
    assert mask_id_dtype(129) == np.int16 and mask_id_dtype(32768) == np.int16
    assert mask_id_dtype(32769) == np.int32


def test_many_masks_keep_their_ids_in_sixteen_bits(tmp_path):
    """300 masks (SAM makes hundreds) read as int16 with every id and the -1 holes intact."""
    count = 300
    ids = np.arange(H * 60 * W) % (count + 1) - 1  # -1 and every id 0..299
    ids = ids.reshape(H * 10, W * 6)
    feats = unit_rows(count, seed=3)
    write_view(tmp_path, "v", [ids] * len(LEVELS), [feats] * len(LEVELS))
    masks = read_view(tmp_path, "v", "whole")
    assert masks.ids.dtype == np.int16
    np.testing.assert_array_equal(masks.ids, ids)
    np.testing.assert_array_equal(masks.features, feats)
