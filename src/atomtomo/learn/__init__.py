"""A learned atom locator: a small convolutional network reads atom positions off SIRT images.

DeepLoco-style (Boyd, Jonas, Babcock & Recht 2018, "DeepLoco: fast 3D localization microscopy
using neural networks"): the network sees a reconstructed image and outputs a fixed set of
candidate atoms -- one per cell of a coarse feature map, each an offset inside its cell and a
confidence weight -- trained with a multi-scale Gaussian-kernel distance between the weighted
candidate set and the true atoms, on data simulated on the fly by the project's own phantoms,
projector and SIRT.

Modules: :mod:`.network` (the net), :mod:`.loss` (the kernel distance), :mod:`.data` (simulated
training samples), :mod:`.train` (:func:`~atomtomo.learn.train.train_locator`) and
:mod:`.locator` (inference, :func:`~atomtomo.learn.locator.reconstruct_learned`, shipped models
and the F1-against-angles experiment).

PyTorch is optional (``pip install atomtomo[learn]``): nothing here imports it until a function
needs it, so ``import atomtomo`` and ``import atomtomo.learn`` work without it.
"""

from __future__ import annotations

from ..errors import InputError


def require_torch():
    """Import and return :mod:`torch`, or raise :class:`InputError` saying how to install it."""
    try:
        import torch
    except ImportError:
        raise InputError(
            "the learned locator needs PyTorch: install atomtomo[learn] (pip install 'atomtomo[learn]')"
        ) from None
    return torch


def __getattr__(name):
    # Lazy re-exports: importing them pulls in numpy/scipy code only, torch stays lazy.
    if name in ("reconstruct_learned", "list_shipped_models", "select_model", "f1_against_angles",
                "merge_candidates", "load_model"):
        from . import locator

        return getattr(locator, name)
    if name == "train_locator":
        from .train import train_locator

        return train_locator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "f1_against_angles",
    "list_shipped_models",
    "load_model",
    "merge_candidates",
    "reconstruct_learned",
    "require_torch",
    "select_model",
    "train_locator",
]
