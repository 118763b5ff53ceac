"""nbval runs every notebook here in the smoke configuration: nbval cannot inject papermill
parameters, so the switch is an environment variable that ``workbook.start`` reads (the kernels
nbval starts inherit it)."""

import os

from breadcrumbs_lib.workbook.notebook import SMOKE_ENV

os.environ[SMOKE_ENV] = "1"
