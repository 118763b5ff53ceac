"""The worlds a study runs in: presets (``mini``, ``paper``, ``smoke``), each world's tasks and
data (``mini/``: generated offline; ``paper/``: CLIP and the eight vision datasets), and the
:class:`.workbench.Workbench` that :func:`.prepare.prepare` builds or loads from the cache."""
