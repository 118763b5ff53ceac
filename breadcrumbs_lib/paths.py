"""Where the project keeps what it computes: the artifact cache and the outputs of runs.

Both live in the project folder by default (``data/cache/`` and ``outputs/``, ignored by git).
"""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE_DIR = PROJECT_ROOT / "data" / "cache"
OUTPUTS_DIR = PROJECT_ROOT / "outputs"


def output_dir(preset: str, root: str | Path = OUTPUTS_DIR) -> Path:
    """``outputs/<preset>/``: executed notebooks, figures, tables and the results store of a preset."""
    return Path(root) / preset
