"""The notebooks' runtime (:func:`start`, :class:`Notebook`), what they show (:mod:`.analysis`,
:mod:`.plots`) and the papermill runner (:mod:`.runner`, ``python -m breadcrumbs_lib.workbook.runner``)."""

from .notebook import Notebook, markdown_table, start

__all__ = ["Notebook", "markdown_table", "start"]
