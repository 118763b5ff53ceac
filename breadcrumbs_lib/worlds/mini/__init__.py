"""The offline ``mini`` world: eight generated tasks, their splits, and a small CLIP pretrained here."""
