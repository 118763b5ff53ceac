"""Models and what runs them: CLIP models from open_clip and the frozen-head image classifier,
image tensors and batches, the training loops, evaluation, devices and bf16 autocast."""
