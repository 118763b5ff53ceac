"""A pool of about two thousand image classes: the symbols that matplotlib's fonts can draw.

Every class is one Unicode character (a Greek or Cyrillic letter, an arrow, a mathematical
operator, a chess piece, a braille pattern, ...) named by its Unicode name ("greek small letter
psi", "black chess knight"). An image of a class is that character drawn in one of the packaged
fonts that cover it, in random colours, size, angle and place, on a random background: the same
material and the same kind of variation as the ``letters`` and ``house_numbers`` tasks, at the
scale of hundreds of classes.

The pool serves two purposes: a broader pretraining corpus for the foundation (concepts beyond
the eight tasks, see :func:`pool_corpus`) and the many-task world of 5-class tasks cut from it.

Which characters form the pool is fixed (no seed): candidates are the letters, digits and symbols
covered by the fonts, taken in order of how many fonts draw them, and a candidate joins only if
its normalized shape (as the first font that covers it draws it) differs from every class already
in the pool and from every glyph of the eight tasks (so "greek capital letter omicron", which looks like the Latin ``O`` of ``letters``,
is left out). The pool follows from the fonts that matplotlib ships (and Pillow's FreeType), so
another version of either may give another pool; ``tests/test_glyph_pool.py`` checks its
properties, not its contents.
"""

from __future__ import annotations

import functools
import math
import os
import unicodedata
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .tasks import (_CANVAS, CAPTION_FRAMES, _cluttered_background, _colour, _contrasting, _finish, _font,
                    _font_paths, _from_float, _glyph, _paste_rotated, _pattern, _smooth_noise, _tinted)

_SHAPE_SIDE = 12  # side of the normalized rendering that two candidates are compared on
_MIN_DISTANCE = 0.22  # root-mean-square difference of two normalized renderings below which they count as one shape
_CATEGORIES = ("Lu", "Ll", "Lo", "Nd", "No", "Sm", "So", "Sc")  # letters, digits and symbols (Unicode categories)
_TASK_GLYPHS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # drawn by the eight tasks: kept out of the pool, with look-alikes


@dataclass(frozen=True)
class GlyphClass:
    """One class of the pool: a character, its Unicode name in lower case, the fonts that draw it."""

    char: str
    name: str
    fonts: tuple[str, ...]


@functools.lru_cache(maxsize=1)
def glyph_pool() -> tuple[GlyphClass, ...]:
    """Every class of the pool, in a fixed order (most widely covered characters first)."""
    coverage = _font_coverage()
    taken = [_shape(char, coverage[ord(char)][0]) for char in _TASK_GLYPHS]
    candidates = sorted((cp for cp in coverage if _is_candidate(cp)), key=lambda cp: (-len(coverage[cp]), cp))
    pool: list[GlyphClass] = []
    kept = np.empty((len(taken) + len(candidates), _SHAPE_SIDE**2), dtype=np.float32)
    kept[: len(taken)] = taken
    count = len(taken)
    for cp in candidates:
        char = chr(cp)
        shape = _shape(char, coverage[cp][0])
        if shape.std() < 0.05:  # blank or nearly so at this size
            continue
        if np.sqrt(((kept[:count] - shape) ** 2).mean(axis=1)).min() < _MIN_DISTANCE:
            continue
        kept[count] = shape
        count += 1
        pool.append(GlyphClass(char, unicodedata.name(char).lower(), coverage[cp]))
    return tuple(pool)


def pool_classes(count: int) -> tuple[GlyphClass, ...]:
    """The first ``count`` classes of the pool."""
    pool = glyph_pool()
    if not 0 <= count <= len(pool):
        raise ValueError(f"the glyph pool has {len(pool)} classes; asked for {count}")
    return pool[:count]


#: How the pretraining corpus names a pool class, and how it describes one without naming it.
CONCEPT, GENERIC = "the character {}", "a character in some font"


def pool_corpus(count: int, per_class: int, seed: int, named_share: float) -> tuple[np.ndarray, list[str]]:
    """Image-caption pairs of the first ``count`` pool classes, ``per_class`` images each, for the
    foundation's pretraining corpus (see :func:`.tasks.pretraining_corpus`, whose caption frames
    and naming rule it follows: a seeded ``named_share`` of the classes is named, the others get
    the generic caption)."""
    classes = pool_classes(count)
    rng = np.random.default_rng([seed, 104729])
    named = set(rng.permutation(count)[: math.ceil(named_share * count)].tolist())
    images, captions = [], []
    for _ in range(per_class):
        for index, glyph in enumerate(classes):
            images.append(draw_glyph(rng, glyph))
            phrase = CONCEPT.format(glyph.name) if index in named else GENERIC
            captions.append(CAPTION_FRAMES[rng.integers(len(CAPTION_FRAMES))].format(phrase))
    return np.stack(images) if images else np.zeros((0, 32, 32, 3), np.uint8), captions


def draw_glyph(rng: np.random.Generator, glyph: GlyphClass) -> np.ndarray:
    """One uint8 ``(32, 32, 3)`` image of ``glyph``: a random font among those that draw it,
    random colours, size, angle and offset, on one of four kinds of background."""
    canvas = _background(rng)
    mean = tuple(int(c) for c in np.asarray(canvas).reshape(-1, 3).mean(0))
    font = glyph.fonts[rng.integers(len(glyph.fonts))]
    sprite = _glyph(glyph.char, font, int(rng.integers(32, 46)), _contrasting(rng, mean))
    longest = max(sprite.width, sprite.height)
    if longest > 52:  # very wide characters are shrunk to fit the canvas
        sprite = sprite.resize((max(1, sprite.width * 52 // longest), max(1, sprite.height * 52 // longest)),
                               Image.BILINEAR)
    _paste_rotated(canvas, sprite, float(rng.uniform(-12, 12)), tuple(32 + rng.uniform(-5, 5, size=2)))
    return _finish(canvas, rng, noise=6.0, blur=float(rng.uniform(0, 0.7)))


def _background(rng: np.random.Generator) -> Image.Image:
    kind = rng.integers(4)
    if kind == 0:
        return Image.new("RGB", (_CANVAS, _CANVAS), _colour(rng))
    if kind == 1:
        return _from_float(_tinted(_smooth_noise(rng, int(rng.integers(2, 8))), rng))
    if kind == 2:
        return _cluttered_background(rng)
    pattern = _pattern(("striped", "checkered", "dotted", "grid")[rng.integers(4)], rng)
    return _from_float(_tinted(0.3 + 0.4 * pattern, rng))  # a faint pattern, so that the glyph stands out


@functools.lru_cache(maxsize=1)
def _font_coverage() -> dict[int, tuple[str, ...]]:
    """Code point -> the packaged fonts whose character map covers it (in :func:`_font_paths` order)."""
    from fontTools.ttLib import TTFont

    coverage: dict[int, list[str]] = {}
    for path in _font_paths():
        if os.path.basename(path).startswith("cm"):
            continue  # the Computer Modern fonts map code points to TeX's glyphs, not to Unicode's characters
        with TTFont(path, lazy=True) as font:
            for cp in font.getBestCmap():
                coverage.setdefault(cp, []).append(path)
    return {cp: tuple(paths) for cp, paths in coverage.items()}


def _is_candidate(cp: int) -> bool:
    char = chr(cp)
    if cp < 0x80 or unicodedata.category(char) not in _CATEGORIES:
        return False
    try:
        unicodedata.name(char)
    except ValueError:
        return False
    return unicodedata.combining(char) == 0


def _shape(char: str, font_path: str) -> np.ndarray:
    """``char`` drawn white on black, cropped to its ink, centred in a square and scaled to
    ``_SHAPE_SIDE x _SHAPE_SIDE``, flattened to values in [0, 1]: its shape, with size and place removed."""
    font = _font(font_path, 40)
    left, top, right, bottom = font.getbbox(char)
    image = Image.new("L", (max(1, right - left) + 4, max(1, bottom - top) + 4), 0)
    ImageDraw.Draw(image).text((2 - left, 2 - top), char, font=font, fill=255)
    box = image.getbbox()
    if box is None:
        return np.zeros(_SHAPE_SIDE * _SHAPE_SIDE, dtype=np.float32)
    ink = image.crop(box)
    side = max(ink.width, ink.height)
    square = Image.new("L", (side, side), 0)
    square.paste(ink, ((side - ink.width) // 2, (side - ink.height) // 2))
    small = np.asarray(square.resize((_SHAPE_SIDE, _SHAPE_SIDE), Image.BILINEAR), dtype=np.float32) / 255.0
    return small.reshape(-1)
