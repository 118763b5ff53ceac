"""The paper's world: open_clip's pretrained CLIP models and the eight vision datasets of Table 1."""
