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

import functools

from . import require_torch

#: Kernel widths, in lattice spacings.
DEFAULT_SCALES = (0.05, 0.1, 0.2, 0.4)
#: Smallest exponent evaluated (see :func:`_gram`).
_EXPONENT_FLOOR = 50.0


def _gram(a, b, inv_two_s2):
    """``exp(-|a_i - b_j|^2 / (2 s^2))`` for every scale: ``(B, S, n, m)`` (no autograd)."""
    torch = require_torch()
    # |a|^2 + |b|^2 - 2 a.b by one batched product (the difference tensor is 4x slower).
    d2 = (a.square().sum(-1)[:, :, None] + b.square().sum(-1)[:, None, :]
          - 2 * torch.bmm(a, b.transpose(1, 2))).clamp_(min=0)
    # The exponent is clamped: exp(-50) ~ 2e-22 is zero for the loss, and far pairs would
    # otherwise underflow to denormals, which make exp several times slower.
    g = d2[:, None] * (-inv_two_s2)[:, :, None, None]
    return g.clamp_(min=-_EXPONENT_FLOOR).exp_()


def _scale_sum(k, coeff):
    """``sum_s coeff[b, s] K[b, s]``: (B, S, n, m), (B, S) -> (B, n, m)."""
    b, s, n, m = k.shape
    return (coeff[:, None, :] @ k.reshape(b, s, n * m)).reshape(b, n, m)


@functools.cache
def _kernel_distance_function():
    """The distance as a :class:`torch.autograd.Function` with a hand-written backward pass.

    Autograd through the Gram tensors would keep and revisit several ``(B, S, K, K)``
    intermediates; the analytic gradient needs only the kernels themselves:

    * ``dD/dw_p = 2 (K_pp w_p - K_tp^T w_t)``,
    * ``dD/dp_k = -4 w_k sum_s c_s [p_k (K_pp w_p)_k - (K_pp (w_p p))_k
      - p_k (K_tp^T w_t)_k + (K_tp^T (w_t t))_k]`` with ``c_s = 1 / (2 s^2)``.
    """
    torch = require_torch()

    class KernelDistance(torch.autograd.Function):
        @staticmethod
        def forward(ctx, p, wp, t, wt, c):
            with torch.no_grad():
                kpp, ktp, ktt = _gram(p, p, c), _gram(t, p, c), _gram(t, t, c)
                ones = torch.ones_like(c)
                kpp_sum, ktp_sum = _scale_sum(kpp, ones), _scale_sum(ktp, ones)
                tt = (wt[:, None, :] @ _scale_sum(ktt, ones) @ wt[:, :, None]).reshape(-1)
                kpp_w = (kpp_sum @ wp[:, :, None])[..., 0]  # (B, K)
                ktp_w = (ktp_sum.transpose(1, 2) @ wt[:, :, None])[..., 0]  # (B, K)
                value = tt - 2 * (ktp_w * wp).sum(1) + (kpp_w * wp).sum(1)
            ctx.save_for_backward(p, wp, t, wt, kpp, ktp, c, kpp_w, ktp_w)
            return value

        @staticmethod
        def backward(ctx, grad):
            p, wp, t, wt, kpp, ktp, c, kpp_w, ktp_w = ctx.saved_tensors
            grad_wp = grad_p = None
            if ctx.needs_input_grad[1]:
                grad_wp = 2 * (kpp_w - ktp_w) * grad[:, None]
            if ctx.needs_input_grad[0]:
                kpp_c = _scale_sum(kpp, c)
                ktp_c = _scale_sum(ktp, c).transpose(1, 2)  # (B, K, M)
                a = kpp_c @ wp[:, :, None] - ktp_c @ wt[:, :, None]  # (B, K, 1)
                b = kpp_c @ (wp[:, :, None] * p) - ktp_c @ (wt[:, :, None] * t)  # (B, K, d)
                grad_p = -4 * (wp * grad[:, None])[:, :, None] * (p * a - b)
            return grad_p, grad_wp, None, None, None

    return KernelDistance


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
        ``sum_s D_s / max(n_true, 1)``, per sample or averaged; differentiable in the
        predicted positions and weights.
    """
    torch = require_torch()
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    dtype = pred_positions.dtype
    b = pred_positions.shape[0]
    true_positions = true_positions.to(dtype)
    if true_mask is None:
        true_mask = torch.ones(true_positions.shape[:2], dtype=dtype)
    wt = true_mask.to(dtype)
    if spacing is None:
        spacing = torch.ones(b, dtype=dtype)
    spacing = torch.as_tensor(spacing, dtype=dtype).reshape(-1).expand(b)
    s = spacing[:, None] * torch.as_tensor(scales, dtype=dtype)[None, :]  # (B, S)
    c = 0.5 / s.square()
    value = _kernel_distance_function().apply(pred_positions, pred_weights.to(dtype),
                                              true_positions, wt, c)
    per_sample = value / wt.sum(1).clamp(min=1.0)
    return per_sample.mean() if reduction == "mean" else per_sample
