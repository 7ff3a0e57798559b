"""Figure of the half-set precision estimate (:mod:`atomtomo.half_sets`)."""

from __future__ import annotations

import numpy as np

from ._io import atomic_path


def plot_half_sets(result: dict, path, *, length_unit: str = "", title: str | None = None):
    """Two panels: the even and odd reconstructions seen along z (matched pairs joined, the
    unmatched ringed) and the histogram of the matched pairs' distances with the tolerance.
    Written atomically to ``path`` (any format Matplotlib writes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    even, odd, pairs = result["even"].positions, result["odd"].positions, result["pairs"]
    unit = f" ({length_unit})" if length_unit else ""
    fig, (ax, hx) = plt.subplots(1, 2, figsize=(9, 4), constrained_layout=True,
                                 gridspec_kw={"width_ratios": [1.3, 1]})
    ax.scatter(even[:, 0], even[:, 1], s=14, c="tab:blue", label=f"even ({len(even)})")
    ax.scatter(odd[:, 0], odd[:, 1], s=14, c="tab:orange", marker="x", label=f"odd ({len(odd)})")
    if len(pairs):
        seg = np.stack([even[pairs[:, 0], :2], odd[pairs[:, 1], :2]], axis=1)
        from matplotlib.collections import LineCollection

        ax.add_collection(LineCollection(seg, colors="k", linewidths=0.8))
    for pos, used in ((even, pairs[:, 0] if len(pairs) else []),
                      (odd, pairs[:, 1] if len(pairs) else [])):
        lone = np.setdiff1d(np.arange(len(pos)), used)
        if len(lone):
            ax.scatter(pos[lone, 0], pos[lone, 1], s=70, facecolors="none", edgecolors="r",
                       linewidths=0.8)
    ax.set_aspect("equal")
    ax.set_xlabel("x" + unit)
    ax.set_ylabel("y" + unit)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(f"{result['n_matched']} matched, fraction {result['fraction']:.2f} "
                 "(red: unmatched)", fontsize=9)
    dist = np.asarray(result["distances"])
    tol = result["tolerance"]
    hx.hist(dist, bins=np.linspace(0, tol, 21), color="0.4")
    hx.axvline(result["rms"], color="tab:red", label=f"rms {result['rms']:.3g}")
    hx.set_xlabel("distance of matched pairs" + unit)
    hx.set_ylabel("pairs")
    hx.legend(fontsize=8)
    hx.set_title(f"tolerance {tol:.3g} ({result['tolerance_rule']})", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format=str(path).rsplit(".", 1)[-1])
    plt.close(fig)
