"""The glyph pool: hundreds of distinct, named classes, drawn deterministically, none of them a
look-alike of the eight tasks' glyphs."""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest

from breadcrumbs_lib.worlds.mini import glyph_pool as gp


def test_the_pool_holds_hundreds_of_named_distinct_classes():
    pool = gp.glyph_pool()
    assert len(pool) >= 1000
    assert len({g.char for g in pool}) == len({g.name for g in pool}) == len(pool)
    for glyph in pool:
        assert glyph.name == unicodedata.name(glyph.char).lower()
        assert glyph.fonts and not any("/cm" in font for font in glyph.fonts)
        assert ord(glyph.char) >= 0x80


def test_no_two_classes_and_no_task_glyph_share_a_shape():
    pool = gp.glyph_pool()[:400]
    shapes = np.stack([gp._shape(g.char, g.fonts[0]) for g in pool])
    coverage = gp._font_coverage()
    task_shapes = np.stack([gp._shape(c, coverage[ord(c)][0]) for c in gp._TASK_GLYPHS])
    between = np.sqrt(((shapes[:, None] - shapes[None]) ** 2).mean(-1))
    np.fill_diagonal(between, np.inf)
    assert between.min() >= gp._MIN_DISTANCE
    to_tasks = np.sqrt(((shapes[:, None] - task_shapes[None]) ** 2).mean(-1))
    assert to_tasks.min() >= gp._MIN_DISTANCE
    omicron = "greek capital letter omicron"  # the Latin O of the letters task, drawn again
    assert omicron not in {g.name for g in gp.glyph_pool()}


def test_drawing_is_deterministic_and_not_blank():
    glyph = gp.glyph_pool()[7]
    first = [gp.draw_glyph(np.random.default_rng(3), glyph) for _ in range(2)]
    other = gp.draw_glyph(np.random.default_rng(4), glyph)
    assert first[0].shape == (32, 32, 3) and first[0].dtype == np.uint8
    assert np.array_equal(first[0], first[1]) and not np.array_equal(first[0], other)
    assert first[0].std() > 10


def test_pool_corpus_names_a_seeded_share_of_its_classes():
    images, captions = gp.pool_corpus(20, 3, seed=0, named_share=0.7)
    assert images.shape == (60, 32, 32, 3) and len(captions) == 60
    names = [g.name for g in gp.pool_classes(20)]
    named = {name for name in names for caption in captions if gp.CONCEPT.format(name) in caption}
    assert len(named) == 14
    assert sum(gp.GENERIC in caption for caption in captions) == 3 * 6
    again, captions_again = gp.pool_corpus(20, 3, seed=0, named_share=0.7)
    assert np.array_equal(images, again) and captions == captions_again


def test_asking_for_more_classes_than_the_pool_has_is_refused():
    with pytest.raises(ValueError, match="the glyph pool has"):
        gp.pool_classes(len(gp.glyph_pool()) + 1)
