"""The locator network: a SIRT image in, a fixed set of weighted candidate atoms out.

DeepLoco-style (Boyd et al. 2018): a few convolutions and two stride-2 steps take the ``G x G``
image (``G = 64``) to a coarse ``G/c x G/c`` feature map (``c = 4``: 16 x 16 cells); dilated
residual convolutions widen the receptive field (with few angles an atom's evidence is spread
along streaks across the image); a 1 x 1 head gives, per cell and per candidate slot, an offset
inside the cell (sigmoid) and a confidence weight in [0, 1] (sigmoid). The candidates are thus
local: each can only sit in (a slightly enlarged copy of) its own cell.

Coordinates are in the *unit box* ``[-0.5, 0.5]^2``: image axis 0 is ``x``, axis 1 is ``y``
(``image[i, j]`` is the pixel centred at ``(x_i, y_j)``), as in
:class:`atomtomo.solvers.grid.PixelGrid`. :mod:`atomtomo.learn.locator` maps the problem's box
onto the unit box and back.

This module imports :mod:`torch`; import it only where torch is needed.
"""

from __future__ import annotations

from . import require_torch

torch = require_torch()
nn = torch.nn

#: Default architecture. ``cell`` is the downsampling factor (a power of 2).
DEFAULT_ARCHITECTURE = {
    "grid": 64,
    "cell": 4,
    "channels": [16, 32, 48],
    "dilations": [1, 2, 4],
    "per_cell": 1,
    "overlap": 0.25,
}


class _Residual(nn.Module):
    """``x + conv(relu(conv(x)))`` with a dilated first convolution."""

    def __init__(self, channels, dilation):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        return torch.relu(x + self.conv2(torch.relu(self.conv1(x))))


class LocatorNet(nn.Module):
    """Image ``(B, 1, G, G)`` -> candidates: positions ``(B, K, 2)`` in the unit box and
    weights ``(B, K)`` in [0, 1], ``K = (G / cell)^2 * per_cell``.

    Parameters
    ----------
    grid : int
        Side ``G`` of the input image, a multiple of ``cell``.
    cell : int
        Side of one candidate cell in pixels (a power of 2: one stride-2 stage per factor 2).
    channels : (int, int, int)
        Widths of the full-resolution stem, of the intermediate stages and of the coarse map.
    dilations : sequence of int
        Dilations of the residual blocks on the coarse map.
    per_cell : int
        Candidate slots per cell.
    overlap : float
        How far, in cells, a candidate may reach beyond its cell on each side (so that an atom
        on a cell border does not need a saturated sigmoid).
    """

    def __init__(self, grid=64, cell=4, channels=(16, 32, 48), dilations=(1, 2, 4),
                 per_cell=1, overlap=0.25):
        super().__init__()
        n_down = int(cell).bit_length() - 1
        if cell < 1 or 2 ** n_down != cell or grid % cell:
            raise ValueError(f"cell must be a power of 2 dividing grid, got cell={cell}, grid={grid}")
        self.grid, self.cell, self.per_cell, self.overlap = int(grid), int(cell), int(per_cell), float(overlap)
        c0, c1, c2 = channels
        layers = [nn.Conv2d(1, c0, 3, padding=1), nn.ReLU()]
        width = c0
        for k in range(n_down):
            out = c2 if k == n_down - 1 else c1
            layers += [nn.Conv2d(width, out, 3, stride=2, padding=1), nn.ReLU()]
            width = out
        self.body = nn.Sequential(*layers, *[_Residual(width, int(d)) for d in dilations])
        self.head = nn.Conv2d(width, 3 * self.per_cell, 1)
        # Start with low confidence everywhere: the kernel loss then first learns where atoms are.
        with torch.no_grad():
            self.head.bias[2::3].fill_(-2.0)
        n = self.grid // self.cell
        centres = (torch.arange(n, dtype=torch.float32) + 0.5) / n - 0.5
        cx, cy = torch.meshgrid(centres, centres, indexing="ij")
        self.register_buffer("cell_centres", torch.stack([cx, cy], -1).reshape(1, n * n, 1, 2),
                             persistent=False)

    @property
    def n_candidates(self) -> int:
        return (self.grid // self.cell) ** 2 * self.per_cell

    def forward(self, image):
        if image.ndim == 3:
            image = image[:, None]
        out = self.head(self.body(image))  # (B, 3 P, n, n)
        b, _, n, _ = out.shape
        out = out.reshape(b, self.per_cell, 3, n * n).permute(0, 3, 1, 2)  # (B, n*n, P, 3)
        reach = 0.5 + self.overlap
        offset = (2 * torch.sigmoid(out[..., :2]) - 1) * (reach / n)
        positions = (self.cell_centres + offset).reshape(b, -1, 2)
        weights = torch.sigmoid(out[..., 2]).reshape(b, -1)
        return positions, weights


def build_network(architecture: dict | None = None) -> LocatorNet:
    """A :class:`LocatorNet` from an architecture dict (missing keys: :data:`DEFAULT_ARCHITECTURE`)."""
    arch = dict(DEFAULT_ARCHITECTURE)
    arch.update(architecture or {})
    return LocatorNet(arch["grid"], arch["cell"], tuple(arch["channels"]), tuple(arch["dilations"]),
                      arch["per_cell"], arch["overlap"])


def count_parameters(net) -> int:
    return int(sum(p.numel() for p in net.parameters()))
