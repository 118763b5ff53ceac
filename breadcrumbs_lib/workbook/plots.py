"""The workbook's figures (matplotlib + seaborn). Each function returns a new figure; the
notebooks show it and save it with :meth:`.notebook.Notebook.save_figure`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from ..core.methods import METHODS
from ..worlds.presets import SIZES

sns.set_theme(style="whitegrid", context="notebook")
#: Each merge method's colour (its spec's), keyed by the display name that legends show.
METHOD_COLORS = {spec.display_name: spec.color for spec in METHODS.values()}


def _display_methods(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its ``method`` column in the methods' display names (legends read them)."""
    if "method" not in frame:
        return frame
    return frame.assign(method=frame["method"].map(lambda name: METHODS[name].display_name if name in METHODS else name))


def _palette(frame: pd.DataFrame, hue: str) -> tuple[list[str] | None, Mapping[str, object] | None]:
    """``(hue_order, palette)``: methods in their fixed colours; model sizes smallest first
    (B-32, B-16, L-14) on a light-to-dark scale; anything else left to seaborn."""
    if hue == "method":
        return None, METHOD_COLORS
    if hue == "size":
        order = sorted(frame["size"].unique(), key=lambda size: SIZES.index(size) if size in SIZES else len(SIZES))
        return order, dict(zip(order, sns.color_palette("crest", n_colors=len(order))))
    return None, None


def loss_curves(curves: Mapping[str, Sequence[float]], title: str, *, smooth: int = 20) -> Figure:
    """Training loss per step of each named curve, with a running mean over ``smooth`` steps."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, curve in curves.items():
        values = pd.Series(curve, dtype=float)
        ax.plot(values.rolling(smooth, min_periods=1).mean(), label=name)
    ax.set(xlabel="step", ylabel="loss", title=title)
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    return fig


def accuracy_bars(table: pd.DataFrame, title: str) -> Figure:
    """Grouped bars: ``table`` has one row per task and one column per model (accuracy in [0, 1])."""
    long = table.reset_index(names="task").melt(id_vars="task", var_name="model", value_name="accuracy")
    fig, ax = plt.subplots(figsize=(9, 4))
    sns.barplot(long, x="task", y="accuracy", hue="model", ax=ax)
    ax.set(ylim=(0, 1), title=title, xlabel="")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def magnitude_histograms(deltas: Mapping[str, Tensor], cuts: Mapping[str, tuple[float, float]], title: str) -> Figure:
    """Histogram of ``log10 |tau|`` per tensor, with the Breadcrumbs cut points drawn on it."""
    fig, axes = plt.subplots(1, len(deltas), figsize=(4.2 * len(deltas), 3.4), squeeze=False)
    for ax, (name, delta) in zip(axes[0], deltas.items()):
        magnitudes = delta.detach().abs().reshape(-1).numpy()
        ax.hist(np.log10(magnitudes[magnitudes > 0]), bins=80, color="tab:gray")
        low, high = cuts[name]
        for value, label, color in ((low, "beta cut", "tab:blue"), (high, "gamma cut", "tab:red")):
            if 0 < value < np.inf:
                ax.axvline(np.log10(value), color=color, label=label)
        ax.set(title=name, xlabel="log10 |tau|")
        ax.title.set_fontsize("small")
    axes[0][0].legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def kept_share(table: pd.DataFrame, title: str) -> Figure:
    """The share of each tensor's entries that the mask keeps (one bar per tensor)."""
    fig, ax = plt.subplots(figsize=(10, 3.5))
    ax.bar(range(len(table)), table["kept_share"], color="tab:orange")
    ax.set(xlabel="tensor (in state-dict order)", ylabel="share kept", ylim=(0, 1), title=title)
    fig.tight_layout()
    return fig


def masked_matrix(delta: Tensor, mask: Tensor, title: str) -> Figure:
    """A weight matrix of tau with the masked entries blank: left all of tau, right what is kept."""
    values = delta.detach().float().numpy()
    limit = float(np.quantile(np.abs(values), 0.99)) or 1.0
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, shown, name in ((axes[0], values, "tau"), (axes[1], np.where(mask.numpy(), values, np.nan), "m * tau")):
        image = ax.imshow(shown, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest", aspect="auto")
        ax.set(title=name, xticks=[], yticks=[])
    fig.colorbar(image, ax=axes, shrink=0.8)
    fig.suptitle(title)
    return fig


def heatmaps(matrices: Mapping[str, pd.DataFrame], title: str, *, vmin: float | None = None,
             vmax: float | None = None) -> Figure:
    """Side-by-side annotated heatmaps of square task x task matrices, on one colour scale: from
    ``vmin`` to ``vmax``, by default the least and the greatest entry of all the matrices."""
    values = np.concatenate([np.asarray(matrix, dtype=float).ravel() for matrix in matrices.values()])
    vmin = float(np.nanmin(values)) if vmin is None else vmin
    vmax = float(np.nanmax(values)) if vmax is None else vmax
    fig, axes = plt.subplots(1, len(matrices), figsize=(6.5 * len(matrices), 5.5), squeeze=False)
    for ax, (name, matrix) in zip(axes[0], matrices.items()):
        sns.heatmap(matrix, annot=True, fmt=".2f", cmap="viridis", vmin=vmin, vmax=vmax, ax=ax, square=True,
                    annot_kws={"fontsize": "x-small"})
        ax.set(title=name)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def subsets_by_size(best: pd.DataFrame, title: str, *, hue: str = "method") -> Figure:
    """Fig. 2 / 4 in kind: one point per subset (its score against its number of tasks), and the
    mean per number of tasks as a line, per ``hue``."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    best = _display_methods(best)
    order, palette = _palette(best, hue)
    sns.stripplot(best, x="n_tasks", y="score", hue=hue, hue_order=order, palette=palette, dodge=True, alpha=0.45,
                  size=3.5, ax=ax, native_scale=True)
    means = best.groupby([hue, "n_tasks"])["score"].mean().reset_index()
    sns.lineplot(means, x="n_tasks", y="score", hue=hue, hue_order=order, palette=palette, marker="o", ax=ax,
                 legend=False)
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle=":")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="number of tasks merged", ylabel="normalized accuracy", title=title)
    fig.tight_layout()
    return fig


def means_by_size(best: pd.DataFrame, title: str) -> Figure:
    """Fig. 4 in kind, both methods: the mean score per number of tasks, one colour per model size
    and one line style per method."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    means = _display_methods(best.groupby(["size", "method", "n_tasks"])["score"].mean().reset_index())
    order, palette = _palette(means, "size")
    styles = [name for name in METHOD_COLORS if name in set(means["method"])]  # the specs' order
    sns.lineplot(means, x="n_tasks", y="score", hue="size", hue_order=order, palette=palette, style="method",
                 style_order=styles, marker="o", ax=ax)
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle=":")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="number of tasks merged", ylabel="mean normalized accuracy", title=title)
    fig.tight_layout()
    return fig


def validation_free(result: pd.DataFrame, title: str) -> Figure:
    """Fig. 3 in kind: score against the number of tasks, one line per (method, tasks tuned on)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    labelled = _display_methods(result).assign(tuned=lambda f: "tuned on " + f["tuned_on"].astype(str))
    sns.lineplot(labelled, x="n_tasks", y="score", hue="method", style="tuned", palette=METHOD_COLORS, marker="o", ax=ax)
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle=":")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="number of tasks merged", ylabel="normalized accuracy (observed tasks)", title=title)
    fig.tight_layout()
    return fig


def sequence_curves(curves: pd.DataFrame, title: str, *, tuned_on: int, zero_shot: pd.Series | None = None) -> Figure:
    """The many-task curve: mean normalized accuracy of the tasks merged so far against their
    number, one line per method; a dotted line where the settings were chosen (``tuned_on``) and,
    if given, the zero-shot foundation's score on the same tasks (``zero_shot``, by number of tasks)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(_display_methods(curves), x="n_tasks", y="score", hue="method", palette=METHOD_COLORS, marker="o",
                 ax=ax)
    if zero_shot is not None:
        ax.plot(zero_shot.index, zero_shot.values, color="grey", linestyle="--", label="zero-shot foundation")
        ax.legend()
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle=":")
    ax.axvline(tuned_on, color="grey", linewidth=0.8, linestyle=":")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="number of tasks merged", ylabel="normalized accuracy (tasks merged so far)", title=title)
    fig.tight_layout()
    return fig


def pairs_scatter(outcomes: pd.DataFrame, title: str) -> Figure:
    """Fig. 5 in kind: each merged pair as a point (normalized accuracy on its first and second
    task), per method; the upper-right quadrant beats both fine-tuned models."""
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    sns.scatterplot(_display_methods(outcomes), x="first", y="second", hue="method", palette=METHOD_COLORS, ax=ax)
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle=":")
    ax.axvline(1.0, color="black", linewidth=0.8, linestyle=":")
    ax.set(xlabel="normalized accuracy, first task", ylabel="normalized accuracy, second task", title=title)
    fig.tight_layout()
    return fig


def ablation_violins(scores: pd.DataFrame, title: str, *, by: str = "variant",
                     order: Sequence[str] | None = None) -> Figure:
    """Fig. 6 in kind: the distribution of scores over a grid per ``by`` value (in ``order``,
    default first seen), the best on top."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    order = list(order or dict.fromkeys(scores[by]))
    sns.violinplot(scores, x=by, y="score", order=order, cut=0, inner="point", ax=ax)
    top = scores.groupby(by)["score"].max()
    for position, name in enumerate(order):
        ax.annotate(f"{100 * top[name]:.1f}", (position, top[name]), textcoords="offset points", xytext=(0, 6),
                    ha="center", fontsize="small")
    ax.set(xlabel="", ylabel="normalized accuracy", title=title)
    fig.tight_layout()
    return fig


def cost_bars(costs: pd.DataFrame, title: str) -> Figure:
    """Seconds to build a merge and to add one task, per method (its colour), one panel each;
    ``costs`` has a ``where`` column (e.g. measured on ``mini`` / estimated for ``paper``) that
    separates the bar groups. Log scale: the methods differ by orders of magnitude."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, column in zip(axes, ["seconds to build", "seconds to add one"]):
        sns.barplot(_display_methods(costs), x="where", y=column, hue="method", palette=METHOD_COLORS, ax=ax)
        ax.set(yscale="log", xlabel="", ylabel="seconds (log scale)", title=column)
        ax.get_legend().remove()
    axes[-1].legend(*axes[0].get_legend_handles_labels(), fontsize="small", loc="upper left", bbox_to_anchor=(1, 1))
    fig.suptitle(title)
    fig.tight_layout()
    return fig
