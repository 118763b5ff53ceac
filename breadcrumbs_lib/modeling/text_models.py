"""The text model family: T5 encoder-decoders (Hugging Face ``transformers``) and their tokenizers.

The ``mini`` text world builds a tiny T5 from a config in ``model_configs/`` (``mini-T5-*.json``:
a ``transformers.T5Config`` without its vocabulary size, which the world's tokenizer gives) and a
byte-pair tokenizer trained here on the world's own corpus; the ``paper`` path reads ``t5-base``
or ``t5-small`` from a local folder.

T5 ties its input embeddings to its output layer: ``shared.weight``, ``encoder.embed_tokens.weight``,
``decoder.embed_tokens.weight`` and (with tied word embeddings) ``lm_head.weight`` are one tensor.
A task vector must count that tensor once, or every norm, cosine, global mask and TIES trim would
weigh the embedding four times: :func:`t5_weights` keeps the first name of each shared tensor and
:func:`load_t5_weights` ties the others back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from ..core.state_dicts import StateDict
from .models import MODEL_CONFIG_DIR

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
N_SENTINELS = 16
SENTINELS = tuple(f"<extra_id_{i}>" for i in range(N_SENTINELS))
SPECIAL_TOKENS = (PAD, EOS, UNK, *SENTINELS)  # ids 0, 1, 2, then the sentinels


class TextTokenizer:
    """A ``tokenizers.Tokenizer`` with T5's conventions: ``<pad>`` is 0, every sequence ends in
    ``</s>``, sentinels ``<extra_id_i>`` mark the spans to fill."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.token_to_id(PAD)
        self.eos_id = tokenizer.token_to_id(EOS)
        missing = [token for token in SPECIAL_TOKENS if tokenizer.token_to_id(token) is None]
        if missing:
            raise ValueError(f"tokenizer lacks the special tokens {missing}")

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> TextTokenizer:
        """A byte-pair tokenizer of ``vocab_size`` tokens learnt from ``texts`` (lower-cased,
        split at whitespace and punctuation); the same texts give the same tokenizer."""
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

        tokenizer = Tokenizer(models.BPE(unk_token=UNK))
        tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                           pre_tokenizers.Punctuation()])
        tokenizer.add_special_tokens(list(SPECIAL_TOKENS))  # kept whole when they appear in a prompt
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False)
        tokenizer.train_from_iterator(list(texts), trainer=trainer)
        return cls(tokenizer)

    @classmethod
    def from_json(cls, text: str) -> TextTokenizer:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_str(text))

    def to_json(self) -> str:
        return self.tokenizer.to_str()

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def token_id(self, token: str) -> int:
        index = self.tokenizer.token_to_id(token)
        if index is None:
            raise ValueError(f"token {token!r} is not in the vocabulary")
        return index

    def ids(self, text: str) -> list[int]:
        """The token ids of ``text``, without the closing ``</s>``."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def batch(self, texts: Sequence[str], max_length: int) -> Tensor:
        """``(len(texts), L)`` ids, each sequence cut to ``max_length - 1`` tokens, closed by
        ``</s>`` and padded with 0 to the longest (``L <= max_length``)."""
        return pad_sequences([self.ids(text)[:max_length - 1] + [self.eos_id] for text in texts], self.pad_id)


def pad_sequences(sequences: Sequence[Sequence[int]], pad_id: int = 0) -> Tensor:
    """Right-pad integer sequences into one ``(N, longest)`` tensor."""
    longest = max(len(sequence) for sequence in sequences)
    out = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        out[row, :len(sequence)] = torch.as_tensor(sequence, dtype=torch.long)
    return out


def text_model_config(name: str) -> dict:
    """The ``T5Config`` fields of ``model_configs/<name>.json``."""
    path = MODEL_CONFIG_DIR / f"{name}.json"
    if not path.exists():
        known = sorted(p.stem for p in MODEL_CONFIG_DIR.glob("mini-T5-*.json"))
        raise ValueError(f"unknown text model {name!r}; expected one of {known}")
    return json.loads(path.read_text())


def create_t5(name: str, vocab_size: int, *, seed: int):
    """A randomly initialised T5 of config ``name`` over ``vocab_size`` tokens, seeded."""
    from transformers import T5Config, T5ForConditionalGeneration

    # plain (eager) attention: at this size the fused kernel's set-up costs more than it saves
    # (docs/performance.md)
    config = T5Config(**text_model_config(name), vocab_size=vocab_size, pad_token_id=0, eos_token_id=1,
                      decoder_start_token_id=0, tie_word_embeddings=True, attn_implementation="eager")
    torch.manual_seed(seed)
    return T5ForConditionalGeneration(config).eval()


def t5_weights(model: torch.nn.Module) -> StateDict:
    """The model's floating-point weights, each shared tensor once (under its first name), as
    detached float copies: what a task vector of a T5 is taken over."""
    kept: StateDict = {}
    seen: set[int] = set()
    for name, tensor in model.state_dict(keep_vars=False).items():
        if not tensor.is_floating_point() or tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        kept[name] = tensor.detach().clone()
    return kept


def tied_names(model: torch.nn.Module) -> dict[str, str]:
    """``alias -> kept name`` for every state-dict entry that shares its tensor with an earlier one."""
    first: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, tensor in model.state_dict(keep_vars=False).items():
        pointer = tensor.data_ptr()
        if pointer in first:
            aliases[name] = first[pointer]
        else:
            first[pointer] = name
    return aliases


def load_t5_weights(model: torch.nn.Module, weights: Mapping[str, Tensor]) -> None:
    """Copy ``weights`` (as :func:`t5_weights` gives them) into ``model``: every kept name and
    shape must match; the tied aliases follow their tensor."""
    aliases = tied_names(model)
    expected = [name for name in model.state_dict() if name not in aliases]
    missing = [name for name in expected if name not in weights]
    unexpected = [name for name in weights if name not in expected]
    if missing or unexpected:
        raise ValueError(f"T5 weights do not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    result = model.load_state_dict(dict(weights), strict=False)
    left = [name for name in result.missing_keys if name not in aliases]
    if left:
        raise ValueError(f"T5 weights left {left[:5]} unset")
    model.tie_weights()


def save_tokenizer(tokenizer: TextTokenizer, path: Path) -> None:
    """Write the tokenizer's JSON atomically (a temporary name, then a rename)."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(tokenizer.to_json())
    temporary.replace(path)
