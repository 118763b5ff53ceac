"""The paper's math: state dicts, task vectors ``tau = theta' - theta``, Breadcrumbs masks and
the merge methods. Depends on nothing else in the package; ``_accel`` holds the fast CPU
selection behind :func:`.masks.breadcrumbs_mask`."""
