"""The merge methods, one module each, every one described by a :class:`.spec.MergeMethod`.

All share one shape: ``theta* = theta + alpha * combine(tau_1, ..., tau_T)`` where
``tau_t = theta'_t - theta`` (float32), and differ in ``combine``:

====================  =====================================================================
``task_arithmetic``   ``sum_t tau_t``                                      (Ilharco et al.)
``breadcrumbs``       ``sum_t m_t(beta, gamma) * tau_t``                   (Davari & Belilovsky)
``average``           ``(1/T) sum_t tau_t`` with alpha fixed to 1, i.e. ``mean_t theta'_t``
``ties``              trim each tau_t to its top ``density`` share by |tau|, elect a sign per
                      entry from the summed trimmed mass, average the entries that agree
                      with it (disjoint mean)                               (Yadav et al.)
``breadcrumbs_ties``  TIES' sign election and disjoint mean over the breadcrumbs
                      ``m_t(beta, gamma) * tau_t`` instead of TIES' trim     (as in mergekit)
``dare``              ``sum_t (d_t * tau_t) / (1 - p)``, ``d_t`` Bernoulli(1 - p) per entry
                      (random drop-and-rescale)                            (Yu et al.)
``fisher``            ``sum_t w_t * tau_t``, ``w_t = F_t / sum_s F_s`` per entry, ``F_t`` the
                      diagonal Fisher of model t; alpha 1 is the Fisher-weighted mean of the
                      ``theta'_t`` (needs data: one Fisher per model)       (Matena & Raffel)
====================  =====================================================================

To add a method: write its module (the function and its ``SPEC``) and list the spec below.
"""

from . import average, breadcrumbs, breadcrumbs_ties, dare, fisher, task_arithmetic, ties
from .spec import MergeMethod

#: name -> spec, in the order tables and legends show them.
METHODS: dict[str, MergeMethod] = {spec.name: spec for spec in (
    task_arithmetic.SPEC, breadcrumbs.SPEC, average.SPEC, ties.SPEC, breadcrumbs_ties.SPEC, dare.SPEC, fisher.SPEC)}
