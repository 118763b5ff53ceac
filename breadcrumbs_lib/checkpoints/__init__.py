"""Model files on disk: reading published checkpoints one tensor at a time, and the streaming
merge behind the ``breadcrumbs-merge`` command.

* :mod:`.safetensors_files`: the safetensors format, read and written tensor by tensor;
* :mod:`.clip_names`: a CLIP image tower's names in Hugging Face ``transformers`` and in
  ``open_clip``, both ways (:func:`hf_clip_vision_to_open_clip`, :func:`open_clip_to_hf_clip_vision`);
* :mod:`.sources`: :func:`open_checkpoint` (safetensors, sharded Hugging Face folders, torch
  state dicts, open_clip files), :func:`read_checkpoint` (all of one, in memory) and
  :func:`align_keys` (prefixes that wrap the same weights);
* :mod:`.streaming`: :func:`plan_merge` checks a merge and lays out its output,
  :func:`run_merge` writes it, with peak memory bounded by a few tensors.
"""

from .clip_names import hf_clip_vision_to_open_clip, open_clip_to_hf_clip_vision
from .sources import Checkpoint, KeyMap, align_keys, open_checkpoint, read_checkpoint
from .streaming import MergePlan, ModelInput, plan_merge, run_merge

__all__ = ["Checkpoint", "KeyMap", "MergePlan", "ModelInput", "align_keys", "hf_clip_vision_to_open_clip",
           "open_checkpoint", "open_clip_to_hf_clip_vision", "plan_merge", "read_checkpoint", "run_merge"]
