"""The paper's math: state dicts, task vectors ``tau = theta' - theta``, Breadcrumbs masks, the
merge methods and the paper's metric (normalized accuracy, eq. 3). Depends on nothing else in the
package; ``_accel`` holds the fast CPU selection behind :func:`.masks.breadcrumbs_mask`."""
