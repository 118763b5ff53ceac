"""Presets: the offline ``mini`` setting that runs on this CPU, and the paper's real ``paper`` setting.

Both share every piece of code downstream (model wrapper, head builder, fine-tuning loop,
evaluation, merging); a preset only says which models, which tasks, and how much training.
Model sizes are named after the paper's CLIP models in both presets: ``"B-32"``, ``"B-16"``,
``"L-14"`` (in ``mini`` they are small analogues with the same ordering of scale).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..modeling.fisher import FisherConfig
from ..modeling.training import OptimConfig
from .mini.data import MINI_DATA_VERSION
from .mini.many_tasks import POOL_SIZE, many_task_names
from .mini.tasks import MINI_TASKS
from .paper.imagenet_tasks import imagenet_task_names
from .paper.tasks import PAPER_TASKS
from .text.corpus import TEXT_DATA_VERSION, corpus_digest
from .text.tasks import TEXT_TASKS

SIZES = ("B-32", "B-16", "L-14")


@dataclass(frozen=True)
class MiniPretraining:
    """How the ``mini`` foundation model is pretrained (contrastively, on generated captions)."""

    corpus_per_class: int = 120
    named_share: float = 0.7  # share of each task's classes that the corpus names (see pretraining_corpus)
    pool_classes: int = 0  # classes of the glyph pool (worlds.mini.glyph_pool) added to the corpus, beyond the tasks'
    pool_per_class: int = 10  # images of each of those classes
    optim: OptimConfig = OptimConfig(steps=1000, batch_size=256, lr=2e-3, weight_decay=0.1, warmup_steps=100)

    def data_version(self) -> int:
        """What identifies the generated data besides this recipe: part of the foundation's cache key."""
        return MINI_DATA_VERSION


@dataclass(frozen=True)
class TextPretraining:
    """How the ``mini`` text foundation (a tiny T5) is pretrained: span corruption on the text
    world's corpus (:func:`.text.build.pretraining_corpus`).

    The corpus is the language reference and the ``train`` pool's sentences, plus
    ``captions_per_class`` captions of each class of each task (a task's prompt with its answer
    written in); a share ``answer_share`` of the captions is shown with exactly the answer hidden
    (the question a prompt asks), the rest are span-corrupted like any text. A caption's sentence is
    never one that a task's split uses for fine-tuning, validation or test."""

    vocab_size: int = 4096
    # 30, not 150: with fewer captions the prompted foundation knows the tasks less and fine-tuning
    # has more to teach (docs/presets.md, row T14)
    captions_per_class: int = 30
    answer_share: float = 0.5
    max_length: int = 96  # tokens per sequence, pretraining and fine-tuning
    optim: OptimConfig = OptimConfig(steps=1500, batch_size=128, lr=3e-3, weight_decay=0.01, warmup_steps=150)

    def data_version(self) -> str:
        """The text world's version and a digest of every sentence it reads (docstrings change
        between Python releases): part of the foundation's cache key."""
        return f"{TEXT_DATA_VERSION}-{corpus_digest()}"


@dataclass(frozen=True)
class ScaleStudy:
    """What the scale study of notebook 06 merges by default on a preset: ``sizes``, the model
    sizes compared (``None``: the run's own size only), and ``subsets_per_size``, the seeded
    sample of subsets per number of tasks (``None``: every subset)."""

    sizes: tuple[str, ...] | None = None
    subsets_per_size: int | None = 8


@dataclass(frozen=True)
class Preset:
    """What a run uses: tasks (in the order that subsets and prefixes follow: Table 1's for
    ``paper``, the world's own for ``mini``), model per size, training recipe."""

    name: str
    tasks: tuple[str, ...]
    model_names: dict[str, str]
    finetune: OptimConfig
    split_sizes: dict[str, int] = field(default_factory=dict)  # mini: images per class per split
    pretraining: MiniPretraining | TextPretraining | None = None  # generated worlds: how their foundation is made
    world: str = "mini"  # which world builds it: "mini", "text" (generated here), "paper" or "paper-text" (worlds.prepare)
    fisher: FisherConfig = FisherConfig()  # how Fisher merging estimates each model's Fisher
    scale_study: ScaleStudy = ScaleStudy()  # notebook 06's defaults: one size and 8 subsets a size, affordable on a CPU

    @property
    def generated(self) -> bool:
        """Whether this world is generated here (its foundation pretrained by ``pretraining``),
        rather than read from published checkpoints and datasets."""
        return self.pretraining is not None

    def model_name(self, size: str) -> str:
        if size not in self.model_names:
            raise ValueError(f"unknown model size {size!r} for preset {self.name!r}; expected one of {list(self.model_names)}")
        return self.model_names[size]


MINI = Preset(
    name="mini",
    tasks=tuple(MINI_TASKS),
    model_names={size: f"mini-ViT-{size}" for size in SIZES},
    # the paper's recipe (AdamW, wd 0.1, cosine, 10% warm-up, batch 128), scaled to a tiny model:
    # 2000 -> 800 steps, lr 1e-5 -> 1e-3 (docs/fidelity-levers.md: what other recipes gave)
    finetune=OptimConfig(steps=800, batch_size=128, lr=1e-3, weight_decay=0.1, warmup_steps=80),
    # val and test sized for the paired bootstrap of issue 14 (400 and 500 images per task)
    split_sizes={"train": 300, "val": 40, "test": 50},
    pretraining=MiniPretraining(),
)

PAPER = Preset(
    name="paper",
    tasks=tuple(PAPER_TASKS),
    model_names={size: f"ViT-{size}" for size in SIZES},
    # section 4.1: AdamW, lr 1e-5, weight decay 0.1, batch 128, 2000 iterations, cosine, 200 warm-up steps
    finetune=OptimConfig(steps=2000, batch_size=128, lr=1e-5, weight_decay=0.1, warmup_steps=200, grad_clip=1.0),
    world="paper",
    scale_study=ScaleStudy(sizes=SIZES, subsets_per_size=None),  # Fig. 4: the three CLIP sizes, every subset
)

# A small, fast variant of ``mini`` for smoke tests of the notebooks (nbval in CI): four quick tasks,
# a short pretraining and fine-tuning on a few images per class. Its numbers mean little; it only
# has to run every step for real, quickly.
SMOKE = Preset(
    name="smoke",
    tasks=("digits", "textures", "signs", "land_cover"),
    model_names=MINI.model_names,
    finetune=OptimConfig(steps=120, batch_size=64, lr=3e-3, weight_decay=0.1, warmup_steps=12),
    split_sizes={"train": 40, "val": 8, "test": 8},
    fisher=FisherConfig(examples=32),
    pretraining=MiniPretraining(corpus_per_class=8, optim=OptimConfig(steps=60, batch_size=128, lr=2e-3,
                                                                      weight_decay=0.1, warmup_steps=6)),
)

# The many-task world (the paper's 200 ImageNet tasks of 5 classes, in miniature): the glyph pool cut
# into tasks of five classes (worlds.mini.many_tasks) on a foundation whose corpus describes the
# pool, each task fine-tuned with a short recipe (a fifth of mini's steps at half its batch, on 60
# images per class). ``many-smoke`` is its smoke variant: the smoke preset's pretraining recipe with the
# pool added (one image per class), six tasks.
MANY = Preset(
    name="many",
    tasks=many_task_names(),
    model_names=MINI.model_names,
    finetune=OptimConfig(steps=150, batch_size=64, lr=1e-3, weight_decay=0.1, warmup_steps=15),
    split_sizes={"train": 60, "val": 20, "test": 20},
    pretraining=replace(MINI.pretraining, pool_classes=POOL_SIZE),
)
MANY_SMOKE = replace(
    MANY, name="many-smoke", tasks=many_task_names(6),
    finetune=OptimConfig(steps=20, batch_size=32, lr=3e-3, weight_decay=0.1, warmup_steps=2),
    split_sizes={"train": 8, "val": 4, "test": 4},
    pretraining=replace(SMOKE.pretraining, pool_classes=POOL_SIZE, pool_per_class=1),
)

# The paper's many-task sequence: ImageNet-1k cut into 200 tasks of five classes (worlds.paper.imagenet_tasks).
# The paper does not state this run's fine-tuning recipe; here it is section 4.1's, for a quarter of
# its 2,000 steps (a task has about 5,800 training images: 500 steps of 128 are 11 epochs).
PAPER_MANY = replace(PAPER, name="paper-many", tasks=imagenet_task_names(),
                     finetune=replace(PAPER.finetune, steps=500, warmup_steps=50))

# The text world (issue 17: the paper's language experiment, in miniature): a tiny T5 pretrained here by
# span corruption on Python's own documentation, four prompted classification tasks (worlds.text.tasks),
# every weight fine-tuned with AdamW (T5's usual recipe uses Adafactor; AdamW keeps one optimiser for
# both modalities). Its one model size is named after T5's "small".
TEXT = Preset(
    name="text",
    tasks=tuple(TEXT_TASKS),
    model_names={"small": "mini-T5-small"},
    # fresh prompts, not epochs, teach the tiny T5 (docs/presets.md, rows T0 and T9-T11): 2,000 per
    # class, each seen 2.6 (topic) to 6.4 (paraphrase) times in 400 steps; topic's smallest pool, the
    # "text" area's 171 training sentences, makes 14,535 pairs (its 43 val and 71 test ones 903, 2,485)
    finetune=OptimConfig(steps=400, batch_size=64, lr=1e-3, weight_decay=0.1, warmup_steps=40),
    # per class; 200 test prompts (2,600 in all) so that the paired bootstrap can tell a 3-point gap
    split_sizes={"train": 2000, "val": 40, "test": 200},
    pretraining=TextPretraining(),
    world="text",
)
TEXT_SMOKE = replace(
    TEXT, name="text-smoke",
    finetune=OptimConfig(steps=15, batch_size=32, lr=3e-3, weight_decay=0.1, warmup_steps=2),
    split_sizes={"train": 12, "val": 6, "test": 6},
    fisher=FisherConfig(examples=16),
    pretraining=TextPretraining(vocab_size=512, captions_per_class=8,
                                optim=OptimConfig(steps=30, batch_size=64, lr=3e-3, weight_decay=0.01, warmup_steps=3)),
)

# The paper's language experiment on real models and data (worlds.paper.text_tasks): t5-small or
# t5-base from a local folder, AG News, SST-2, RTE and MRPC. The paper does not give this run's
# recipe; here AdamW (as for the vision models, instead of T5's usual Adafactor), lr 1e-4, batch 32,
# 2,000 steps with 10% warm-up. Never run here (no GPU, no data offline).
PAPER_TEXT = Preset(
    name="paper-text",
    tasks=tuple(TEXT_TASKS),
    model_names={"small": "t5-small", "base": "t5-base"},
    finetune=OptimConfig(steps=2000, batch_size=32, lr=1e-4, weight_decay=0.0, warmup_steps=200),
    world="paper-text",
)

PRESETS = {"mini": MINI, "paper": PAPER, "smoke": SMOKE, "many": MANY, "many-smoke": MANY_SMOKE,
           "paper-many": PAPER_MANY, "text": TEXT, "text-smoke": TEXT_SMOKE, "paper-text": PAPER_TEXT}


@dataclass(frozen=True)
class RunWorlds:
    """The worlds that one workbook run (``make run ARGS="--preset NAME"``) uses besides its own
    preset's eight tasks (notebooks 1-8 and 11): ``many_tasks``, the task sequence of notebook 9,
    and ``text``, the language tasks of notebook 10."""

    many_tasks: Preset
    text: Preset


#: The presets a workbook run can take, and the other worlds each one's notebooks use.
RUNS = {
    "mini": RunWorlds(many_tasks=MANY, text=TEXT),
    "paper": RunWorlds(many_tasks=PAPER_MANY, text=PAPER_TEXT),
    "smoke": RunWorlds(many_tasks=MANY_SMOKE, text=TEXT_SMOKE),
}


def run_worlds(preset: str) -> RunWorlds:
    """The worlds of a run of ``preset`` (one of :data:`RUNS`)."""
    if preset not in RUNS:
        raise ValueError(f"no workbook run for preset {preset!r}; expected one of {sorted(RUNS)}")
    return RUNS[preset]


def many_task_preset(preset: str, n_tasks: int | None = None) -> Preset:
    """The many-task world that goes with a run of ``preset``: its first ``n_tasks`` tasks, in the
    order they are merged (all of them when ``n_tasks`` is None or more than the world has: the
    smoke world has six, the others 200)."""
    world = run_worlds(preset).many_tasks
    if n_tasks is not None and n_tasks < 1:
        raise ValueError(f"n_tasks must be at least 1, got {n_tasks}")
    return world if n_tasks is None else replace(world, tasks=world.tasks[:n_tasks])


def text_preset(preset: str) -> Preset:
    """The text world that goes with a run of ``preset`` (``mini``: the tiny T5 trained here;
    ``smoke``: its smoke variant; ``paper``: t5-small / t5-base on the four datasets)."""
    return run_worlds(preset).text


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]
