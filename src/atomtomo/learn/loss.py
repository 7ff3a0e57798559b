r"""The training loss: a multi-scale Gaussian-kernel distance between weighted point sets.

For the true atoms ``t`` (weights 1) and the predicted candidates ``p`` with weights ``w``, and a
Gaussian kernel :math:`k_s(a, b) = \exp(-|a - b|^2 / (2 s^2))`, the squared distance between the
two measures in the kernel's feature space (maximum mean discrepancy) is

.. math::

    D_s = \mathbf{1}^\top K_s(t, t) \mathbf{1} - 2\, \mathbf{1}^\top K_s(t, p)\, w
          + w^\top K_s(p, p)\, w \;\ge 0,

zero exactly when the two weighted sets coincide. DeepLoco (Boyd et al. 2018) sums it over a few
widths: wide kernels pull candidates towards atoms from afar and fix the count; narrow ones
make the positions precise. The widths here are fractions of each sample's lattice spacing, and
the sum is divided by the number of true atoms so that large and small samples weigh alike.

Batches pad the true atoms to a common count with a mask (padded atoms have weight 0).
"""

from __future__ import annotations

from . import require_torch

#: Kernel widths, in lattice spacings.
DEFAULT_SCALES = (0.05, 0.1, 0.2, 0.4)


def _gram(a, b, inv_two_s2):
    """``exp(-|a_i - b_j|^2 / (2 s^2))`` for every scale: ``(B, S, n, m)``."""
    torch = require_torch()
    # |a|^2 + |b|^2 - 2 a.b by one batched product (the difference tensor is 4x slower).
    d2 = (a.square().sum(-1)[:, :, None] + b.square().sum(-1)[:, None, :]
          - 2 * torch.bmm(a, b.transpose(1, 2))).clamp(min=0)
    return torch.exp(-d2[:, None] * inv_two_s2[:, :, None, None])


def kernel_distance(pred_positions, pred_weights, true_positions, true_mask=None, spacing=None,
                    scales=DEFAULT_SCALES, reduction="mean"):
    """Multi-scale Gaussian-kernel (MMD) distance between predicted and true atoms.

    Parameters
    ----------
    pred_positions : tensor (B, K, d)
    pred_weights : tensor (B, K)
        Confidence weights of the candidates.
    true_positions : tensor (B, M, d)
        True atoms, padded to a common ``M``.
    true_mask : tensor (B, M), optional
        1 for real atoms, 0 for padding (default: all real).
    spacing : tensor (B,) or float, optional
        Lattice spacing of each sample; the kernel widths are ``scales * spacing`` (default 1:
        ``scales`` are absolute widths).
    scales : sequence of float
        Kernel widths in units of ``spacing``.
    reduction : {"mean", "none"}
        Mean over the batch or one value per sample.

    Returns
    -------
    tensor
        ``sum_s D_s / max(n_true, 1)``, per sample or averaged.
    """
    torch = require_torch()
    dtype = pred_positions.dtype
    b = pred_positions.shape[0]
    if true_mask is None:
        true_mask = torch.ones(true_positions.shape[:2], dtype=dtype)
    wt = true_mask.to(dtype)
    wp = pred_weights
    if spacing is None:
        spacing = torch.ones(b, dtype=dtype)
    spacing = torch.as_tensor(spacing, dtype=dtype).reshape(-1).expand(b)
    s = spacing[:, None] * torch.as_tensor(scales, dtype=dtype)[None, :]  # (B, S)
    inv = 0.5 / s.square()
    ktt = torch.einsum("bm,bsmn,bn->b", wt, _gram(true_positions, true_positions, inv), wt)
    ktp = torch.einsum("bm,bsmk,bk->b", wt, _gram(true_positions, pred_positions, inv), wp)
    kpp = torch.einsum("bk,bskl,bl->b", wp, _gram(pred_positions, pred_positions, inv), wp)
    per_sample = (ktt - 2 * ktp + kpp) / wt.sum(1).clamp(min=1.0)
    return per_sample.mean() if reduction == "mean" else per_sample
