"""Real English text that ships with Python itself: the documentation strings of the standard library.

The text world reads no file it did not find on this machine and downloads nothing. Its sentences
come from two sources inside the running interpreter's standard library:

* the docstrings of modules, classes and functions of a fixed list of packages, grouped into five
  **areas** (``mail``, ``web``, ``files``, ``numbers``, ``text``) by the package they document; these
  carry the ``topic`` task's labels and the material of the other tasks;
* the language reference that ``help()`` shows (``pydoc_data.topics``), about 460,000 characters
  of prose with no area, which only the pretraining corpus reads.

Source files are parsed with :mod:`ast`, never imported. The sentences depend on the Python
version (a docstring changes between releases), so :func:`corpus_digest` goes into every cache key
that depends on them.
"""

from __future__ import annotations

import ast
import hashlib
import re
import sysconfig
from collections import Counter
from functools import lru_cache
from pathlib import Path

#: Bumped whenever what the text world makes of the same sentences changes (part of its cache keys).
TEXT_DATA_VERSION = 3

#: The standard-library packages and modules whose docstrings make up each area.
AREAS: dict[str, tuple[str, ...]] = {
    "mail": ("email", "smtplib.py", "imaplib.py", "poplib.py", "mailbox.py"),
    "web": ("http", "urllib", "html", "xmlrpc", "wsgiref", "ftplib.py"),
    "files": ("os.py", "shutil.py", "pathlib.py", "tarfile.py", "zipfile", "glob.py", "tempfile.py", "filecmp.py",
              "fileinput.py"),
    "numbers": ("_pydecimal.py", "fractions.py", "statistics.py", "random.py", "numbers.py"),
    "text": ("textwrap.py", "difflib.py", "re", "string.py", "gettext.py", "locale.py", "codecs.py"),
}

MIN_WORDS, MAX_WORDS = 6, 30
# sentences with code in them (prompts, reprs, assignments, brackets, calls, dotted names) or elided
# text are left out
_CODE = re.compile(r"[<>{}\[\]=|`$\\]|\.\.\.|::|\w\(|\w\.\w|^\W")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def clean_sentences(text: str) -> list[str]:
    """Split prose into sentences and keep those of ``MIN_WORDS``-``MAX_WORDS`` words with no code
    in them, lower-cased, in order, without repeats."""
    kept: list[str] = []
    seen: set[str] = set()
    for paragraph in re.split(r"\n\s*\n", text):
        flat = re.sub(r"\s+", " ", paragraph).strip()
        for sentence in _SENTENCE_END.split(flat):
            words = sentence.split()
            if not MIN_WORDS <= len(words) <= MAX_WORDS or not sentence.endswith(".") or _CODE.search(sentence):
                continue
            sentence = sentence.lower()
            if sentence not in seen:
                seen.add(sentence)
                kept.append(sentence)
    return kept


def _stdlib() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _docstrings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    nodes = [node for node in ast.walk(tree) if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                                                  ast.AsyncFunctionDef))]
    return [doc for doc in (ast.get_docstring(node) for node in nodes) if doc]


@lru_cache(maxsize=1)
def area_sentences() -> dict[str, tuple[str, ...]]:
    """Each area's sentences, in a fixed order (files sorted by path, docstrings in tree order); a
    sentence found in two areas is dropped from both, so an area's label is never ambiguous."""
    root = _stdlib()
    found: dict[str, list[str]] = {}
    for area, items in AREAS.items():
        paths: list[Path] = []
        for item in items:
            target = root / item
            paths += sorted(target.rglob("*.py")) if target.is_dir() else [target] if target.exists() else []
        if not paths:
            raise RuntimeError(f"text world: none of {items} found under {root} (area {area!r})")
        found[area] = clean_sentences("\n\n".join(doc for path in paths for doc in _docstrings(path)))
    counts = Counter(sentence for sentences in found.values() for sentence in set(sentences))
    return {area: tuple(s for s in sentences if counts[s] == 1) for area, sentences in found.items()}


@lru_cache(maxsize=1)
def reference_sentences() -> tuple[str, ...]:
    """The sentences of the language reference (``pydoc_data.topics``), topics in sorted order."""
    from pydoc_data.topics import topics

    return tuple(clean_sentences("\n\n".join(topics[name] for name in sorted(topics))))


def corpus_digest() -> str:
    """A short hash of every sentence the text world can read: part of its cache keys."""
    digest = hashlib.sha256()
    for area, sentences in sorted(area_sentences().items()):
        digest.update(area.encode())
        digest.update("\n".join(sentences).encode())
    digest.update("\n".join(reference_sentences()).encode())
    return digest.hexdigest()[:12]
