"""The eight offline classification tasks of the ``mini`` preset, one per dataset of the paper.

Each task mirrors one of the paper's datasets in kind and is drawn from real image material that
ships inside installed packages, varied procedurally: scikit-learn's handwritten digits,
scikit-image's sample photographs and textures, matplotlib's fonts. Every image is a
deterministic function of ``(task, split, index, seed)``; nothing is downloaded.

=================  ===========  =============================================================
mini task          paper        what an image is
=================  ===========  =============================================================
``digits``         MNIST        a scikit-learn handwritten digit, upscaled and jittered
``house_numbers``  SVHN         a font-rendered digit with neighbours cut off, on clutter
``textures``       DTD          photographed (brick, grass, gravel) or drawn textures
``signs``          GTSRB        traffic-sign-like symbols, jittered, on busy backgrounds
``land_cover``     EuroSAT      land-cover patches seen from above
``aerial_scenes``  RESISC45     aerial scenes with man-made structures
``photo_objects``  SUN397       crops of scikit-image's photographs (scenes and objects)
``letters``        Cars         confusable capital letters in many fonts (fine-grained)
=================  ===========  =============================================================

Sources that are photographs are kept apart between training and testing: digits by source
image, photographed textures by image rows, photo crops by (partly overlapping) image columns.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

IMAGE_SIZE = 32  # pixels per side of every mini image
_CANVAS = 64  # images are drawn at this size, then downsampled (anti-aliasing)
SPLITS = ("train", "val", "test")

Generator = Callable[[np.random.Generator, int, str], np.ndarray]


@dataclass(frozen=True)
class MiniTask:
    """A task: its class names, the prompt templates of its zero-shot head, the phrase its images
    are described by in the pretraining corpus, and its generator."""

    name: str
    paper_dataset: str
    classnames: tuple[str, ...]
    templates: tuple[str, ...]
    concept: str  # how a caption names a class, e.g. "a {} traffic sign"
    generic: str  # how a caption describes an image without naming its class, e.g. "a road sign"
    draw: Generator  # (rng, label, split) -> uint8 image (IMAGE_SIZE, IMAGE_SIZE, 3)
    stream: int | None = None  # seeds the task's own random stream (None: the sum of its name's code points)

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    @property
    def stream_key(self) -> int:
        """What keeps this task's images apart from every other task's in :func:`generate`: its
        ``stream``, or for the eight tasks (which predate the field, and whose images must not
        change) the sum of the code points of their names, distinct among the eight."""
        return sum(map(ord, self.name)) if self.stream is None else self.stream


# --------------------------------------------------------------------------------- materials
@functools.lru_cache(maxsize=1)
def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images.astype(np.float32) / 16.0, digits.target.astype(np.int64)


@functools.lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    """A scikit-image sample photograph as float32 RGB in [0, 1] (shipped with the package)."""
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)(), dtype=np.float32)
    image = image / 255.0 if image.max() > 1.0 else image
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


@functools.lru_cache(maxsize=1)
def _font_paths() -> tuple[str, ...]:
    """TrueType fonts shipped with matplotlib (varied families and styles)."""
    import matplotlib

    folder = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf")
    wanted = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSerif.ttf",
              "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
              "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "cmr10.ttf", "cmss10.ttf",
              "cmtt10.ttf"]
    return tuple(os.path.join(folder, name) for name in wanted if os.path.exists(os.path.join(folder, name)))


@functools.lru_cache(maxsize=256)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


# --------------------------------------------------------------------------------- drawing helpers
def _colour(rng: np.random.Generator, low: int = 0, high: int = 256) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(low, high, size=3))


def _contrasting(rng: np.random.Generator, background: tuple[int, int, int]) -> tuple[int, int, int]:
    luminance = sum(background) / 3
    return _colour(rng, 0, 90) if luminance > 128 else _colour(rng, 165, 256)


def _finish(canvas: Image.Image, rng: np.random.Generator, noise: float = 6.0, blur: float = 0.0) -> np.ndarray:
    """Downsample a drawing to IMAGE_SIZE, with optional blur and pixel noise."""
    if blur > 0:
        canvas = canvas.filter(ImageFilter.GaussianBlur(blur))
    image = np.asarray(canvas.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR), dtype=np.float32)
    image = image + rng.normal(0.0, noise, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _from_float(image: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(image * 255.0, 0, 255).astype(np.uint8))


def _smooth_noise(rng: np.random.Generator, cells: int, size: int = _CANVAS) -> np.ndarray:
    """Value noise in [0, 1]: a random ``cells x cells`` grid, bicubically upsampled."""
    grid = (rng.random((cells, cells)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(grid).resize((size, size), Image.BICUBIC), dtype=np.float32) / 255.0


def _tinted(gray: np.ndarray, rng: np.random.Generator, low: int = 40, high: int = 256) -> np.ndarray:
    """A [0, 1] gray image coloured between two random colours."""
    dark, light = np.array(_colour(rng, 0, low)), np.array(_colour(rng, low, high))
    return (dark + gray[..., None] * (light - dark)) / 255.0


def _paste_rotated(canvas: Image.Image, sprite: Image.Image, angle: float, center: tuple[float, float]) -> None:
    sprite = sprite.rotate(angle, resample=Image.BILINEAR, expand=True)
    canvas.paste(sprite, (int(center[0] - sprite.width / 2), int(center[1] - sprite.height / 2)), sprite)


def _glyph(text: str, font_path: str, size: int, colour: tuple[int, int, int]) -> Image.Image:
    """``text`` rendered on a transparent sprite, cropped to its ink."""
    font = _font(font_path, size)
    left, top, right, bottom = font.getbbox(text)
    sprite = Image.new("RGBA", (right - left + 4, bottom - top + 4), (0, 0, 0, 0))
    ImageDraw.Draw(sprite).text((2 - left, 2 - top), text, font=font, fill=colour + (255,))
    return sprite


def _cluttered_background(rng: np.random.Generator) -> Image.Image:
    base = _tinted(_smooth_noise(rng, int(rng.integers(2, 6))), rng)
    canvas = _from_float(base)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(2, 6))):
        x, y = rng.integers(0, _CANVAS, size=2)
        w, h = rng.integers(6, 30, size=2)
        draw.rectangle([x, y, x + w, y + h], fill=_colour(rng))
    return canvas.filter(ImageFilter.GaussianBlur(1.5))


# --------------------------------------------------------------------------------- digits (MNIST)
def _draw_digit(rng: np.random.Generator, label: int, split: str) -> np.ndarray:
    images, targets = _sklearn_digits()
    pool = np.flatnonzero(targets == label)
    part = {"train": pool[: int(0.6 * len(pool))], "val": pool[int(0.6 * len(pool)): int(0.7 * len(pool))],
            "test": pool[int(0.7 * len(pool)):]}[split]
    source = images[part[rng.integers(len(part))]]
    sprite = Image.fromarray((source * 255).astype(np.uint8)).resize((40, 40), Image.BILINEAR).convert("L")
    sprite = sprite.rotate(float(rng.uniform(-10, 10)), resample=Image.BILINEAR, expand=True)
    scale = rng.uniform(0.85, 1.1)
    sprite = sprite.resize((int(sprite.width * scale), int(sprite.height * scale)), Image.BILINEAR)
    canvas = Image.new("L", (_CANVAS, _CANVAS), 0)
    offset = rng.integers(-4, 5, size=2)
    canvas.paste(sprite, (int(32 - sprite.width / 2 + offset[0]), int(32 - sprite.height / 2 + offset[1])))
    return _finish(canvas.convert("RGB"), rng, noise=4.0)


# --------------------------------------------------------------------------------- house numbers (SVHN)
def _draw_house_number(rng: np.random.Generator, label: int, split: str) -> np.ndarray:
    canvas = _cluttered_background(rng)
    fonts = _font_paths()
    background = tuple(int(c) for c in np.asarray(canvas).reshape(-1, 3).mean(0))
    colour = _contrasting(rng, background)
    size = int(rng.integers(34, 44))
    font = fonts[rng.integers(len(fonts))]
    spacing = rng.uniform(0.7, 0.9) * size
    for offset, digit in ((-spacing, rng.integers(10)), (spacing, rng.integers(10)), (0.0, label)):
        if offset and rng.random() < 0.5:
            continue  # often a neighbour is missing
        sprite = _glyph(str(digit), font, size if not offset else int(0.85 * size), colour)
        _paste_rotated(canvas, sprite, float(rng.uniform(-8, 8)), (32 + offset + rng.uniform(-2, 2), 32 + rng.uniform(-3, 3)))
    return _finish(canvas, rng, noise=5.0, blur=float(rng.uniform(0, 0.6)))


# --------------------------------------------------------------------------------- textures (DTD)
def _photo_texture(name: str, rng: np.random.Generator, split: str) -> np.ndarray:
    photo = _photo(name)[..., 0]
    height = photo.shape[0]
    rows = {"train": (0, int(0.7 * height)), "val": (int(0.7 * height), int(0.8 * height)),
            "test": (int(0.8 * height), height)}[split]
    side = int(rng.integers(40, 90))
    side = min(side, rows[1] - rows[0])
    top = int(rng.integers(rows[0], rows[1] - side + 1))
    left = int(rng.integers(0, photo.shape[1] - side + 1))
    crop = np.asarray(Image.fromarray((photo[top:top + side, left:left + side] * 255).astype(np.uint8))
                      .resize((_CANVAS, _CANVAS), Image.BILINEAR), dtype=np.float32) / 255.0
    return crop


def _pattern(kind: str, rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:_CANVAS, 0:_CANVAS].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    u = x * math.cos(angle) + y * math.sin(angle)
    v = -x * math.sin(angle) + y * math.cos(angle)
    period = rng.uniform(7, 16)
    if kind == "striped":
        return (np.sin(2 * math.pi * u / period) > 0).astype(np.float32)
    if kind == "checkered":
        return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    if kind == "dotted":
        du, dv = (u % period) - period / 2, (v % period) - period / 2
        return (du**2 + dv**2 < (period * rng.uniform(0.18, 0.3)) ** 2).astype(np.float32)
    if kind == "zigzagged":
        tri = np.abs((v / period) % 2 - 1) * period
        return (np.sin(2 * math.pi * (u + tri) / period) > 0).astype(np.float32)
    if kind == "grid":
        width = rng.uniform(1.5, 3)
        return (((u % period) < width) | ((v % period) < width)).astype(np.float32)
    if kind == "wavy":
        return (np.sin(2 * math.pi * (u + 4 * np.sin(2 * math.pi * v / (3 * period))) / period) > 0).astype(np.float32)
    if kind == "blotchy":
        return (_smooth_noise(rng, int(rng.integers(4, 9))) > 0.5).astype(np.float32)
    raise ValueError(f"unknown pattern {kind!r}")


_TEXTURES = ("brick", "grass", "gravel", "striped", "checkered", "dotted", "zigzagged", "grid", "wavy", "blotchy")


def _draw_texture(rng: np.random.Generator, label: int, split: str) -> np.ndarray:
    kind = _TEXTURES[label]
    gray = _photo_texture(kind, rng, split) if kind in ("brick", "grass", "gravel") else _pattern(kind, rng)
    image = _from_float(_tinted(gray, rng, low=int(rng.integers(60, 140))))
    return _finish(image, rng, noise=5.0, blur=float(rng.uniform(0, 0.8)))


# --------------------------------------------------------------------------------- signs (GTSRB)
_SIGNS = ("speed limit 30", "speed limit 50", "speed limit 70", "stop", "yield", "no entry",
          "turn left", "turn right", "priority road", "general caution")
_RED, _WHITE, _BLUE, _YELLOW, _BLACK = (200, 20, 30), (245, 245, 245), (20, 60, 180), (250, 200, 20), (15, 15, 15)


def _sign_sprite(kind: str, rng: np.random.Generator, split: str) -> Image.Image:
    size = 48
    sprite = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(sprite)
    box = [2, 2, size - 3, size - 3]
    fonts = _font_paths()
    font = fonts[rng.integers(len(fonts))]
    if kind.startswith("speed limit"):
        draw.ellipse(box, fill=_RED)
        draw.ellipse([8, 8, size - 9, size - 9], fill=_WHITE)
        glyph = _glyph(kind.split()[-1], font, 18, _BLACK)
        sprite.paste(glyph, (size // 2 - glyph.width // 2, size // 2 - glyph.height // 2), glyph)
    elif kind == "stop":
        points = [(size / 2 + 22 * math.cos(math.pi / 8 + k * math.pi / 4), size / 2 + 22 * math.sin(math.pi / 8 + k * math.pi / 4)) for k in range(8)]
        draw.polygon(points, fill=_RED)
        glyph = _glyph("STOP", font, 11, _WHITE)
        sprite.paste(glyph, (size // 2 - glyph.width // 2, size // 2 - glyph.height // 2), glyph)
    elif kind == "yield":
        draw.polygon([(2, 6), (size - 3, 6), (size / 2, size - 3)], fill=_RED)
        draw.polygon([(11, 11), (size - 12, 11), (size / 2, size - 14)], fill=_WHITE)
    elif kind == "no entry":
        draw.ellipse(box, fill=_RED)
        draw.rectangle([9, size / 2 - 4, size - 10, size / 2 + 4], fill=_WHITE)
    elif kind in ("turn left", "turn right"):
        draw.ellipse(box, fill=_BLUE)
        direction = -1 if kind == "turn left" else 1
        c = size / 2
        draw.rectangle([c - 3, c - 2, c + 3, c + 14], fill=_WHITE)
        draw.rectangle([min(c, c + direction * 10), c - 5, max(c, c + direction * 10), c + 1], fill=_WHITE)
        tip = c + direction * 16
        draw.polygon([(tip, c - 2), (c + direction * 8, c - 10), (c + direction * 8, c + 6)], fill=_WHITE)
    elif kind == "priority road":
        draw.polygon([(size / 2, 1), (size - 2, size / 2), (size / 2, size - 2), (1, size / 2)], fill=_WHITE)
        draw.polygon([(size / 2, 9), (size - 10, size / 2), (size / 2, size - 10), (9, size / 2)], fill=_YELLOW)
    elif kind == "general caution":
        draw.polygon([(size / 2, 3), (size - 3, size - 6), (2, size - 6)], fill=_RED)
        draw.polygon([(size / 2, 13), (size - 12, size - 11), (11, size - 11)], fill=_WHITE)
        draw.rectangle([size / 2 - 2, 20, size / 2 + 2, 31], fill=_BLACK)
        draw.rectangle([size / 2 - 2, 34, size / 2 + 2, 37], fill=_BLACK)
    return sprite


def _draw_sign(rng: np.random.Generator, label: int, split: str) -> np.ndarray:
    canvas = _cluttered_background(rng)
    sprite = _sign_sprite(_SIGNS[label], rng, split)
    scale = rng.uniform(0.7, 1.2)
    sprite = sprite.resize((int(48 * scale), int(48 * scale)), Image.BILINEAR)
    _paste_rotated(canvas, sprite, float(rng.uniform(-12, 12)), tuple(32 + rng.uniform(-5, 5, size=2)))
    image = np.asarray(canvas, dtype=np.float32) * rng.uniform(0.6, 1.15)  # lighting
    return _finish(Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)), rng, noise=6.0, blur=float(rng.uniform(0, 1.0)))


# --------------------------------------------------------------------------------- land cover (EuroSAT)
_LAND = ("annual crop land", "forest", "herbaceous vegetation", "highway or road", "industrial buildings",
         "pasture land", "permanent crop land", "residential buildings", "river", "sea or lake")


def _field(rng: np.random.Generator, green: tuple[float, float], cells: int = 6) -> np.ndarray:
    noise = _smooth_noise(rng, cells)
    base = np.array([rng.uniform(40, 90), rng.uniform(*green), rng.uniform(30, 70)])
    return base[None, None, :] * (0.75 + 0.5 * noise[..., None])


def _draw_land(rng: np.random.Generator, label: int, split: str) -> np.ndarray:
    kind = _LAND[label]
    y, x = np.mgrid[0:_CANVAS, 0:_CANVAS].astype(np.float32)
    if kind == "annual crop land":
        angle = rng.uniform(0, math.pi)
        u = x * math.cos(angle) + y * math.sin(angle)
        bands = np.floor(u / rng.uniform(6, 12)) % 3
        palette = np.array([[170, 160, 70], [90, 140, 60], [150, 120, 80]], dtype=np.float32)
        image = palette[bands.astype(int)] * (0.9 + 0.2 * _smooth_noise(rng, 8)[..., None])
    elif kind == "forest":
        image = _field(rng, (60, 95), cells=16) * (0.55 + 0.45 * _smooth_noise(rng, 20)[..., None])
    elif kind == "herbaceous vegetation":
        image = _field(rng, (120, 170), cells=10) * np.array([1.2, 1.0, 0.8])
    elif kind == "pasture land":
        image = _field(rng, (150, 190), cells=3)
    elif kind == "sea or lake":
        image = np.array([rng.uniform(10, 40), rng.uniform(50, 90), rng.uniform(110, 170)]) * (0.85 + 0.3 * _smooth_noise(rng, 4)[..., None])
    else:
        image = _field(rng, (110, 160))
        canvas = _from_float(image / 255.0)
        draw = ImageDraw.Draw(canvas)
        if kind == "highway or road":
            angle = rng.uniform(0, math.pi)
            c, d = np.array([32, 32]) + rng.uniform(-10, 10, 2), np.array([math.cos(angle), math.sin(angle)])
            draw.line([tuple(c - 60 * d), tuple(c + 60 * d)], fill=(120, 120, 125), width=int(rng.integers(5, 9)))
        elif kind == "river":
            t = np.linspace(-10, 74, 40)
            phase, amplitude = rng.uniform(0, 6), rng.uniform(4, 12)
            points = [(float(s), float(32 + amplitude * math.sin(s / 10 + phase))) for s in t]
            if rng.random() < 0.5:
                points = [(py, px) for px, py in points]
            draw.line(points, fill=(30, 70, 140), width=int(rng.integers(5, 10)))
        elif kind in ("industrial buildings", "residential buildings", "permanent crop land"):
            step = {"industrial buildings": 22, "residential buildings": 11, "permanent crop land": 7}[kind]
            jitter = rng.integers(0, step, size=2)
            for gx in range(-step, _CANVAS, step):
                for gy in range(-step, _CANVAS, step):
                    px, py = gx + jitter[0], gy + jitter[1]
                    if kind == "industrial buildings":
                        draw.rectangle([px, py, px + 17, py + 13], fill=_colour(rng, 150, 210))
                    elif kind == "residential buildings":
                        draw.rectangle([px, py, px + 6, py + 6], fill=(int(rng.integers(150, 220)), 90, 80))
                    else:
                        draw.ellipse([px, py, px + 4, py + 4], fill=(40, int(rng.integers(80, 120)), 40))
        image = np.asarray(canvas, dtype=np.float32)
    return _finish(Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)), rng, noise=6.0, blur=0.6)


# --------------------------------------------------------------------------------- aerial scenes (RESISC45)
_AERIAL = ("airport", "baseball diamond", "beach", "bridge", "circular farmland", "harbor", "parking lot",
           "roundabout", "storage tanks", "tennis court")


def _draw_aerial(rng: np.random.Generator, label: int, split: str) -> np.ndarray:
    kind = _AERIAL[label]
    canvas = _from_float(_field(rng, (100, 150)) / 255.0)
    draw = ImageDraw.Draw(canvas)
    c = 32 + rng.uniform(-6, 6, size=2)
    if kind == "airport":
        draw.rectangle([0, c[1] - 6, 64, c[1] + 6], fill=(90, 90, 95))
        for sx in range(0, 64, 8):
            draw.line([(sx, c[1]), (sx + 4, c[1])], fill=_WHITE, width=1)
        draw.rectangle([c[0] - 12, c[1] + 12, c[0] + 12, c[1] + 20], fill=(170, 170, 175))
    elif kind == "baseball diamond":
        draw.polygon([(c[0], c[1] - 16), (c[0] + 16, c[1]), (c[0], c[1] + 16), (c[0] - 16, c[1])], fill=(170, 120, 70))
        draw.polygon([(c[0], c[1] - 9), (c[0] + 9, c[1]), (c[0], c[1] + 9), (c[0] - 9, c[1])], fill=(60, 150, 60))
    elif kind == "beach":
        shore = int(rng.integers(20, 44))
        draw.rectangle([0, 0, 64, shore], fill=(220, 200, 150))
        draw.rectangle([0, shore + 6, 64, 64], fill=(30, 90, 160))
        draw.rectangle([0, shore, 64, shore + 6], fill=(230, 235, 240))
    elif kind == "bridge":
        draw.rectangle([0, c[1] - 12, 64, c[1] + 12], fill=(30, 70, 140))
        draw.rectangle([c[0] - 4, 0, c[0] + 4, 64], fill=(150, 150, 150))
    elif kind == "circular farmland":
        for _ in range(int(rng.integers(2, 5))):
            px, py, r = *rng.uniform(8, 56, size=2), rng.uniform(9, 16)
            draw.ellipse([px - r, py - r, px + r, py + r], fill=_colour(rng, 60, 200))
    elif kind == "harbor":
        draw.rectangle([0, 0, 64, 64], fill=(30, 80, 150))
        for k in range(int(rng.integers(3, 6))):
            px = 6 + 12 * k
            draw.rectangle([px, 0, px + 3, 40], fill=(200, 200, 200))
            draw.rectangle([px + 5, 10 + k * 5, px + 8, 20 + k * 5], fill=_WHITE)
    elif kind == "parking lot":
        draw.rectangle([4, 4, 60, 60], fill=(80, 80, 85))
        for gx in range(6, 58, 6):
            for gy in range(8, 56, 12):
                if rng.random() < 0.7:
                    draw.rectangle([gx, gy, gx + 3, gy + 7], fill=_colour(rng))
    elif kind == "roundabout":
        draw.ellipse([c[0] - 18, c[1] - 18, c[0] + 18, c[1] + 18], fill=(110, 110, 115))
        draw.ellipse([c[0] - 9, c[1] - 9, c[0] + 9, c[1] + 9], fill=(70, 140, 60))
        draw.line([(0, c[1]), (c[0] - 18, c[1])], fill=(110, 110, 115), width=6)
    elif kind == "storage tanks":
        draw.rectangle([0, 0, 64, 64], fill=(140, 140, 135))
        for _ in range(int(rng.integers(3, 7))):
            px, py, r = *rng.uniform(8, 56, size=2), rng.uniform(5, 9)
            draw.ellipse([px - r, py - r, px + r, py + r], fill=(235, 235, 230), outline=(90, 90, 90))
    elif kind == "tennis court":
        draw.rectangle([c[0] - 14, c[1] - 22, c[0] + 14, c[1] + 22], fill=(50, 120, 90))
        draw.rectangle([c[0] - 11, c[1] - 19, c[0] + 11, c[1] + 19], outline=_WHITE)
        draw.line([(c[0] - 14, c[1]), (c[0] + 14, c[1])], fill=_WHITE)
    canvas = canvas.rotate(float(rng.choice([0, 90, 180, 270])))
    return _finish(canvas, rng, noise=6.0, blur=0.5)


# --------------------------------------------------------------------------------- photo objects (SUN397)
_PHOTOS = (("astronaut", "astronaut"), ("camera", "photographer"), ("chelsea", "cat"), ("coffee", "cup of coffee"),
           ("coins", "coins"), ("horse", "horse"), ("moon", "moon"), ("rocket", "rocket"),
           ("page", "printed page"), ("hubble_deep_field", "galaxies"))


def _draw_photo(rng: np.random.Generator, label: int, split: str) -> np.ndarray:
    photo = _photo(_PHOTOS[label][0])
    height, width = photo.shape[:2]
    # training crops come from the left 80% of each photograph, validation and test crops from the right 65%
    cols = {"train": (0, int(0.8 * width)), "val": (int(0.35 * width), width), "test": (int(0.35 * width), width)}[split]
    side = int(min(height, cols[1] - cols[0]) * rng.uniform(0.45, 1.0))
    top = int(rng.integers(0, height - side + 1))
    left = int(rng.integers(cols[0], cols[1] - side + 1))
    crop = _from_float(photo[top:top + side, left:left + side]).resize((_CANVAS, _CANVAS), Image.BILINEAR)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
    image = np.asarray(crop, dtype=np.float32) * rng.uniform(0.7, 1.2, size=3)  # colour cast
    return _finish(Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)), rng, noise=5.0)


# --------------------------------------------------------------------------------- letters (Cars)
_LETTERS = ("B", "C", "D", "E", "F", "G", "O", "P", "Q", "R")


def _draw_letter(rng: np.random.Generator, label: int, split: str) -> np.ndarray:
    background = _colour(rng)
    canvas = Image.new("RGB", (_CANVAS, _CANVAS), background)
    fonts = _font_paths()
    sprite = _glyph(_LETTERS[label], fonts[rng.integers(len(fonts))], int(rng.integers(36, 46)), _contrasting(rng, background))
    _paste_rotated(canvas, sprite, float(rng.uniform(-8, 8)), tuple(32 + rng.uniform(-4, 4, size=2)))
    return _finish(canvas, rng, noise=8.0, blur=float(rng.uniform(0, 0.7)))


# --------------------------------------------------------------------------------- the registry
def _templates(*patterns: str) -> tuple[str, ...]:
    return tuple(patterns)


MINI_TASKS: dict[str, MiniTask] = {
    task.name: task
    for task in (
        MiniTask("digits", "MNIST", tuple(str(d) for d in range(10)),
                 _templates('a photo of the number: "{}".', "a handwritten digit {}."),
                 "the handwritten digit {}", "a handwritten digit", _draw_digit),
        MiniTask("house_numbers", "SVHN", tuple(str(d) for d in range(10)),
                 _templates('a street sign of the number: "{}".', "a house number {}."),
                 "the house number {}", "a house number", _draw_house_number),
        MiniTask("textures", "DTD", _TEXTURES,
                 _templates("a photo of a {} texture.", "a photo of a {} pattern."),
                 "a {} surface", "a surface", _draw_texture),
        MiniTask("signs", "GTSRB", _SIGNS,
                 _templates('a zoomed in photo of a "{}" traffic sign.', "a photo of a {} sign."),
                 "a {} road sign", "a road sign", _draw_sign),
        MiniTask("land_cover", "EuroSAT", _LAND,
                 _templates("a centered satellite photo of {}.", "a satellite photo of {}."),
                 "{} seen from space", "land seen from space", _draw_land),
        MiniTask("aerial_scenes", "RESISC45", _AERIAL,
                 _templates("satellite imagery of {}.", "an aerial photo of a {}."),
                 "a {} seen from above", "a place seen from above", _draw_aerial),
        MiniTask("photo_objects", "SUN397", tuple(name for _, name in _PHOTOS),
                 _templates("a photo of a {}.", "a cropped photo of a {}."),
                 "a {}", "a photograph", _draw_photo),
        MiniTask("letters", "Cars", tuple(f"letter {c}" for c in _LETTERS),
                 _templates("a photo of the {}.", "a picture of a {} in some font."),
                 "the {} written in a font", "a letter written in a font", _draw_letter),
    )
}


def generate(task: MiniTask, split: str, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` images of every class of ``task`` for ``split``: uint8 ``(N, 32, 32, 3)``
    images and int64 labels, class-interleaved, deterministic in ``(task, split, seed)``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    rng = np.random.default_rng([seed, SPLITS.index(split), task.stream_key])
    labels = np.tile(np.arange(task.num_classes), per_class)
    images = np.stack([task.draw(rng, int(label), split) for label in labels])
    return images, labels.astype(np.int64)


#: Generic caption frames of the pretraining corpus; ``{}`` is a task's concept phrase.
CAPTION_FRAMES = ("{}", "a picture of {}", "an image showing {}", "{}, small picture", "here is {}", "look: {}")


def pretraining_corpus(per_class: int, seed: int, named_share: float) -> tuple[np.ndarray, list[str]]:
    """Image-caption pairs for pretraining the ``mini`` foundation.

    ``per_class`` images of every class of every task, drawn from the training sources with
    another seed than the task splits. Like a web corpus, which names only some fine-grained
    classes, the captions name the class of a seeded ``named_share`` of each task's classes
    (in words different from the zero-shot prompts); images of the other classes get a generic
    caption that names the task's domain only. The foundation thus sees every kind of image,
    but can recognise only some classes zero-shot.
    """
    rng = np.random.default_rng([seed, 7919])
    images, captions = [], []
    for task in MINI_TASKS.values():
        named = set(rng.permutation(task.num_classes)[: math.ceil(named_share * task.num_classes)].tolist())
        task_images, labels = generate(task, "train", per_class, seed + 7919)
        images.append(task_images)
        for label in labels:
            phrase = task.concept.format(task.classnames[label]) if label in named else task.generic
            captions.append(CAPTION_FRAMES[rng.integers(len(CAPTION_FRAMES))].format(phrase))
    return np.concatenate(images), captions
