"""nbval checks each notebook as a user would run it with smoke parameters: papermill injects
``runner.SMOKE_PARAMETERS`` (the small ``smoke`` preset, sweeps in-process) into a copy of every
notebook, in ``notebooks/_smoke/`` (rewritten at each test run, not versioned), and nbval executes
and checks those copies. The stored notebooks themselves are not collected: papermill-style
parameter injection is the only way a run changes them."""

from pathlib import Path

from breadcrumbs_lib.workbook.runner import notebooks, prepare_smoke_copies

HERE = Path(__file__).parent

collect_ignore = [path.name for path in notebooks(HERE)]
prepare_smoke_copies(HERE / "_smoke", HERE)
