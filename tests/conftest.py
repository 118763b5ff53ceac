"""Test configuration: the hypothesis profile and shared fixtures (helpers live in helpers.py)."""

from __future__ import annotations

import pytest
from helpers import finetune_of, small_model
from hypothesis import settings

settings.register_profile("default", deadline=None, max_examples=60, derandomize=True)
settings.load_profile("default")


@pytest.fixture
def base_and_finetuned():
    base = small_model(0)
    return base, [finetune_of(base, seed) for seed in (1, 2, 3)]
