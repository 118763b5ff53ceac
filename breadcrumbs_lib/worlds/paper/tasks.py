"""The paper's eight datasets: class counts, split sizes (Table 1), class names and CLIP prompts.

Prompt templates are those of CLIP's zero-shot evaluation, which Ilharco et al. and the paper use
to build the frozen heads. Class names of MNIST, SVHN, EuroSAT and GTSRB are fixed here (CLIP's
readable names); those of Cars, DTD, RESISC45 and SUN397 come from the dataset files themselves
(cleaned of underscores) and are checked against the expected count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: SUN397's class paths start with a one-letter folder: "/a/abbey".
_LETTER_FOLDER = re.compile(r"^/[a-z]/")


@dataclass(frozen=True)
class PaperTask:
    """One of the paper's datasets."""

    name: str
    num_classes: int
    split_sizes: tuple[int, int, int]  # (train, validation, test) as in the paper's Table 1
    templates: tuple[str, ...]
    classnames: tuple[str, ...] | None = None  # None: read from the dataset
    slash_in_names: bool = False  # a "/" in a dataset's class name is part of the name (Cars' "C/V")

    def __post_init__(self) -> None:
        if self.classnames is not None and len(self.classnames) != self.num_classes:
            raise ValueError(f"{self.name}: {len(self.classnames)} class names for {self.num_classes} classes")


_DIGITS = tuple(str(d) for d in range(10))

_EUROSAT = ("annual crop land", "forest", "brushland or shrubland", "highway or road",
            "industrial buildings or commercial buildings", "pasture land", "permanent crop land",
            "residential buildings or homes or apartments", "river", "lake or sea")

_GTSRB = (
    "red and white circle 20 kph speed limit", "red and white circle 30 kph speed limit",
    "red and white circle 50 kph speed limit", "red and white circle 60 kph speed limit",
    "red and white circle 70 kph speed limit", "red and white circle 80 kph speed limit",
    "end / de-restriction of 80 kph speed limit", "red and white circle 100 kph speed limit",
    "red and white circle 120 kph speed limit", "red and white circle red car and black car no passing",
    "red and white circle red truck and black car no passing", "red and white triangle road intersection warning",
    "white and yellow diamond priority road", "red and white upside down triangle yield right-of-way", "stop",
    "empty red and white circle", "red and white circle no truck entry",
    "red circle with white horizonal stripe no entry", "red and white triangle with exclamation mark warning",
    "red and white triangle with black left curve approaching warning",
    "red and white triangle with black right curve approaching warning",
    "red and white triangle with black double curve approaching warning",
    "red and white triangle rough / bumpy road warning", "red and white triangle car skidding / slipping warning",
    "red and white triangle with merging / narrow lanes warning",
    "red and white triangle with person digging / construction / road work warning",
    "red and white triangle with traffic light approaching warning",
    "red and white triangle with person walking warning", "red and white triangle with child and person walking warning",
    "red and white triangle with bicyle warning", "red and white triangle with snowflake / ice warning",
    "red and white triangle with deer warning", "white circle with gray strike bar no speed limit",
    "blue circle with white right turn arrow mandatory", "blue circle with white left turn arrow mandatory",
    "blue circle with white forward arrow mandatory", "blue circle with white forward or right turn arrow mandatory",
    "blue circle with white forward or left turn arrow mandatory", "blue circle with white keep right arrow mandatory",
    "blue circle with white keep left arrow mandatory", "blue circle with white arrows indicating a traffic circle",
    "white circle with gray strike bar indicating no passing for cars has ended",
    "white circle with gray strike bar indicating no passing for trucks has ended",
)


def _frames(frames: tuple[str, ...], articles: tuple[str, ...] = ("", "a ", "the ")) -> tuple[str, ...]:
    """Every frame with every article before the class name: ``"aerial photo of {}."`` ->
    ``"aerial photo of {}."``, ``"aerial photo of a {}."``, ``"aerial photo of the {}."``."""
    return tuple(frame.replace("{}", article + "{}") for article in articles for frame in frames)


PAPER_TASKS: dict[str, PaperTask] = {
    task.name: task
    for task in (
        PaperTask("Cars", 196, (7330, 814, 8041), (
            "a photo of a {}.", "a photo of the {}.", "a photo of my {}.", "i love my {}!", "a photo of my dirty {}.",
            "a photo of my clean {}.", "a photo of my new {}.", "a photo of my old {}."), slash_in_names=True),
        PaperTask("DTD", 47, (3384, 376, 1880), _frames(
            ("a photo of {} texture.", "a photo of {} pattern.", "a photo of {} thing.", "a photo of {} object."),
            ("a ", "the "))),
        PaperTask("EuroSAT", 10, (21600, 2700, 2700), _frames(("a centered satellite photo of {}.",)), _EUROSAT),
        PaperTask("GTSRB", 43, (23976, 2664, 12630), (
            'a zoomed in photo of a "{}" traffic sign.', 'a centered photo of a "{}" traffic sign.',
            'a close up photo of a "{}" traffic sign.'), _GTSRB),
        PaperTask("MNIST", 10, (55000, 5000, 10000), ('a photo of the number: "{}".',), _DIGITS),
        PaperTask("RESISC45", 45, (17010, 1890, 6300), _frames(
            ("satellite imagery of {}.", "aerial imagery of {}.", "satellite photo of {}.", "aerial photo of {}.",
             "satellite view of {}.", "aerial view of {}."))),
        PaperTask("SUN397", 397, (17865, 1985, 19850), ("a photo of a {}.", "a photo of the {}.")),
        PaperTask("SVHN", 10, (68257, 5000, 26032), ('a photo of the number: "{}".',), _DIGITS),
    )
}


def clean_classname(raw: str, *, slash_in_names: bool = False) -> str:
    """A readable class name from a dataset's folder or label: SUN397's one-letter folder dropped
    (``"/a/abbey"`` -> ``"abbey"``), underscores and, unless ``slash_in_names``, slashes read as
    spaces: ``"apartment_building/outdoor"`` -> ``"apartment building outdoor"`` (its sub-scene
    kept, so that indoor and outdoor scenes stay apart), ``"baseball_diamond"`` -> ``"baseball
    diamond"``; with ``slash_in_names`` (Cars), ``"Ram C/V Cargo Van Minivan 2012"`` stays whole."""
    name = _LETTER_FOLDER.sub("", raw.strip())
    if not slash_in_names:
        name = name.replace("/", " ")
    return " ".join(name.replace("_", " ").split())
