"""Broden format primitives: cells, label PNG encoding, and the md5 split rule against the real index."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from realdata import real_data
from unitscope.broden.format import decode_labels, encode_labels, format_cell, parse_cell, split_of



def test_parse_cell_mixes_filenames_and_label_numbers() -> None:
    assert parse_cell("ade20k/a_part_1.png;ade20k/a_part_2.png") == ["ade20k/a_part_1.png", "ade20k/a_part_2.png"]
    assert parse_cell("314;194") == [314, 194]
    assert parse_cell("") == []
    assert parse_cell(float("nan")) == []
    assert parse_cell("12;;") == [12]
    assert parse_cell(format_cell(["x.png", 7])) == ["x.png", 7]


def test_label_png_encoding_is_r_plus_256_g() -> None:
    labels = np.array([[0, 1, 255], [256, 1197, 65535]])
    rgb = encode_labels(labels)
    assert rgb[1, 1].tolist() == [1197 % 256, 1197 // 256, 0]
    assert rgb[1, 0].tolist() == [0, 1, 0]
    np.testing.assert_array_equal(decode_labels(rgb), labels)
    with pytest.raises(ValueError, match="65535"):
        encode_labels(np.array([[65536]]))


def test_split_rule_reproduces_the_real_broden_index() -> None:
    rows = pd.read_csv(real_data("broden-meta/index_ade20k_slice.csv"), usecols=["image", "split"])
    assert len(rows) == 2224 and set(rows["split"]) == {"train", "val"}  # tests/data/broden-meta/SOURCE.md
    assert (rows["image"].map(split_of) == rows["split"]).all()
