"""Reconstruction with unknown image formation: atom width, intensity scale and background.

A measured tilt series is ``y = s * A_sigma(x) + b`` (spec section 3) with ``sigma``, ``s`` and a
smooth background ``b >= 0`` per projection unknown (the file says "auto"). The atoms and the
imaging parameters are estimated by alternation, around any reconstruction method:

1. initial estimates from the data alone (:mod:`atomtomo.imaging`): the background as the
   largest linear-per-projection model under the data, ``sigma`` from the narrowest resolved
   peaks, ``s`` from the quantum of the peaks' integrals, chosen with the atom count that the
   projections' support and the bond length suggest;
2. reconstruct the atoms from the corrected data ``(y - b) / s`` with the given ``solve``
   (a full search in the first round; from the previous atoms in the later ones);
3. given the atoms, refit: ``s`` (one per species where several species are present; the
   file's species weights are the start) and ``b`` by one exact NNLS, ``sigma`` by a bounded
   1-D minimisation of the residual with ``s`` and ``b`` refitted at each trial;
4. repeat 2-3 until the parameters change by less than ``tol`` (relative) or ``rounds``
   reconstructions have run.

The parameters the file or the caller fixes stay fixed. :func:`reconstruct_imaging` takes the
solve function, so any method (and any search budget) can be used inside.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .. import imaging
from ..configuration import DEFAULT_SPECIES
from ..errors import InputError
from ..forward import ForwardModel
from ..tiltseries import AUTO, TiltSeries
from .problem import Problem, Reconstruction

#: Reconstructions at most (the first plus refinements).
DEFAULT_ROUNDS = 3
#: Stop when no parameter changes by more than this (relative).
DEFAULT_TOL = 0.01
#: The atoms are too crowded when their median nearest-neighbour distance is below this many
#: bond lengths: the intensity of one atom was taken too small (see :func:`crowding`).
CROWDED = 0.85
#: Residual rms in noise standard deviations above which the atoms do not explain the data.
RESIDUAL_LIMIT = 1.5
#: Factors of the intensity scale tried afresh when they do not (the first estimate errs low).
SCALE_TRIALS = (1.15, 1.3, 1.5)


@dataclass
class Imaging:
    """Image-formation parameters of a tilt series.

    ``atom_intensity[k]`` is the integrated intensity (data units x length^(ndim-1)) of one atom
    of species ``k``; ``intensity_scale`` that of weight 1 (``atom_intensity[k] = scale * w_k``).
    ``background`` is ``None`` (none) or an array of the projections' shape.
    """

    sigma: float
    intensity_scale: float
    species_weights: dict
    background: np.ndarray | None = None
    sources: dict = field(default_factory=dict)

    @property
    def atom_intensity(self) -> dict:
        return {k: self.intensity_scale * w for k, w in self.species_weights.items()}

    def corrected(self, data) -> np.ndarray:
        """``(y - b) / s``: the data in the units of the model of spec section 2."""
        bg = 0.0 if self.background is None else self.background
        return (np.asarray(data, float) - bg) / self.intensity_scale

    def summary(self) -> dict:
        """Flat record for the output's comment line."""
        out = {"atom_sigma": round(self.sigma, 6),
               "intensity_scale": float(f"{self.intensity_scale:.6g}"),
               "imaging": ", ".join(f"{k} {v}" for k, v in self.sources.items())}
        if len(self.species_weights) > 1:
            out["atom_intensity"] = {k: float(f"{v:.6g}") for k, v in self.atom_intensity.items()}
        if self.background is None:
            out["background"] = "none"
        else:
            per = self.background.reshape(len(self.background), -1).mean(axis=1)
            out["background"] = "fitted"
            out["background_mean"] = float(f"{per.mean():.4g}")
            out["background_range"] = [float(f"{per.min():.4g}"), float(f"{per.max():.4g}")]
        return out


def _weights(ts: TiltSeries) -> dict:
    return dict(ts.species_weights) if ts.species_weights else {DEFAULT_SPECIES: 1.0}


def resolve(ts: TiltSeries, sigma=None, intensity_scale=None, background=None):
    """The effective setting of each parameter: a number, ``"auto"`` or (background) ``"none"``;
    the command line (arguments here) overrides the file."""
    sig = ts.atom_sigma if sigma is None else sigma
    if sig is None:
        raise InputError('the tilt series has no atom_sigma attribute: pass --sigma S or '
                         '--sigma auto')
    scale = ts.intensity_scale if intensity_scale is None else intensity_scale
    scale = 1.0 if scale is None else scale
    bg = ts.background if background is None else background
    bg = "none" if bg is None else bg
    return sig, scale, bg


def needs_fit(ts: TiltSeries, sigma=None, intensity_scale=None, background=None) -> bool:
    """True when any image-formation parameter is unknown (``"auto"``)."""
    return AUTO in resolve(ts, sigma, intensity_scale, background)


def initial_imaging(ts: TiltSeries, sigma=None, intensity_scale=None, background=None, *,
                    bond_length=None, degree: int = imaging.BACKGROUND_DEGREE) -> Imaging:
    """Initial estimates from the data alone for what is "auto"; the rest as given."""
    sig, scale, bg_mode = resolve(ts, sigma, intensity_scale, background)
    data = np.asarray(ts.projections, float)
    geo = ts.geometry
    sources = {}
    bg = None
    if bg_mode == AUTO:
        margin = 2.5 * (ts.noise_std if ts.noise_std else imaging.estimate_noise_std(data))
        # A straight line per projection at first: a curved one would rise into dense regions.
        bg = imaging.baseline(data, degree=min(1, degree), margin=margin)
        sources["background"] = "estimated"
    signal = data - (0.0 if bg is None else bg)
    if sig == AUTO:
        sig = imaging.estimate_sigma(signal, geo.pixel_size)
        sources["sigma"] = "estimated"
    else:
        sources["sigma"] = "given"
    weights = _weights(ts)
    if scale == AUTO:
        bond = ts.bond_length if bond_length is None else bond_length
        count = None
        if bond:
            # the support polytope's measure bounds the count from above, its largest
            # inscribed ellipsoid's (about) from below; the quantum is sought between
            per = imaging.PACKING[geo.ndim] / bond ** geo.ndim
            count = [imaging.support_measure(signal, geo, bond, kind=kind) * per
                     for kind in ("inscribed", "hull")]
        mean_w = float(np.mean(list(weights.values())))
        scale = imaging.estimate_scale(signal, geo.pixel_size, sig, weight=mean_w,
                                       expected_count=count)
        sources["intensity_scale"] = "estimated"
    else:
        sources["intensity_scale"] = "given"
    return Imaging(float(sig), float(scale), weights, bg, sources)


def species_parts(geometry, sigma, config, species) -> np.ndarray:
    """Projections of each species' atoms with unit weight: ``(n_species, *data_shape)``."""
    model = ForwardModel(geometry, sigma)
    names = np.asarray(config.species)
    out = []
    for k in species:
        pos = config.positions[names == k]
        out.append(model.project(pos, np.ones(len(pos))) if len(pos)
                   else np.zeros(geometry.data_shape))
    return np.asarray(out)


def refine_imaging(ts: TiltSeries, config, current: Imaging, unknown, *,
                   degree: int = imaging.BACKGROUND_DEGREE, min_per_species: int = 3) -> Imaging:
    """Refit the unknown parameters given atoms ``config`` (see the module docstring)."""
    data = np.asarray(ts.projections, float)
    geo = ts.geometry
    weights = dict(current.species_weights)
    present = [k for k in weights if np.sum(np.asarray(config.species) == k) > 0]
    per_species = ("intensity_scale" in unknown and len(present) > 1 and all(
        np.sum(np.asarray(config.species) == k) >= min_per_species for k in present))
    groups = present if per_species else [None]

    def parts(sig):
        p = species_parts(geo, sig, config, present)
        if per_species:
            return p
        w = np.array([weights[k] for k in present])
        return np.einsum("k,k...->...", w, p)[None]

    fixed = None if "intensity_scale" in unknown else np.full(len(groups),
                                                               current.intensity_scale)
    use_bg = current.background is not None
    sig = current.sigma
    if "sigma" in unknown:
        sig, scales, bg = imaging.fit_sigma(data, parts, sig, background=use_bg, degree=degree,
                                            scales=fixed)
    else:
        scales, bg = imaging.fit_scale_background(data, parts(sig), background=use_bg,
                                                  degree=degree, scales=fixed)
    if "background" not in unknown:
        bg = current.background
    if per_species:
        # the overall scale: intensity per unit weight, averaged over the atoms present
        counts = np.array([np.sum(np.asarray(config.species) == k) for k in present])
        w = np.array([weights[k] for k in present])
        scale = float(np.sum(counts * scales) / np.sum(counts * w))
        if scale > 0:
            for k, t in zip(present, scales):
                weights[k] = float(t / scale) if t > 0 else weights[k]
    else:
        scale = float(scales[0])
    if not scale > 0:  # the atoms explain nothing: keep the previous scale
        scale = current.intensity_scale
    sources = {k: ("fitted" if v == "estimated" else v) for k, v in current.sources.items()}
    return Imaging(float(sig), scale, weights, None if bg is None else np.asarray(bg), sources)


def crowding(config, bond_length) -> float | None:
    """Median nearest-neighbour distance of ``config`` in bond lengths (None when undefined).

    The intensity quantum is ambiguous up to a factor (``n`` atoms of ``s`` or ``2n`` of
    ``s / 2`` give the same projections); given atoms, the scale refit cannot leave such a
    fixed point, but the atoms' spacing can: with the quantum too small the reconstruction holds
    too many atoms, packed closer than the material's bond length. The median is robust to a few
    close pairs (defects, noise).
    """
    from scipy.spatial import cKDTree

    if not bond_length or config.n_atoms < 4:
        return None
    d, _ = cKDTree(config.positions).query(config.positions, k=2)
    return float(np.median(d[:, 1]) / bond_length)


def problem_for(ts: TiltSeries, params: Imaging, *, bond_length=None) -> Problem:
    """The reconstruction problem of the corrected data ``(y - b) / s`` at ``params``."""
    bond = ts.bond_length if bond_length is None else bond_length
    return Problem(
        model=ForwardModel(ts.geometry, params.sigma),
        data=params.corrected(ts.projections),
        box=ts.domain,
        species_weights=dict(params.species_weights),
        bond_length=None if bond is None else float(bond),
        noise_std=None if ts.noise_std is None else float(ts.noise_std) / params.intensity_scale,
        ground_truth=ts.ground_truth,
        length_unit=ts.length_unit,
    )


def _change(old: Imaging, new: Imaging, data_scale: float) -> float:
    c = max(abs(new.sigma - old.sigma) / old.sigma,
            abs(new.intensity_scale - old.intensity_scale) / old.intensity_scale)
    for k, w in old.species_weights.items():
        c = max(c, abs(new.species_weights.get(k, w) - w) / w)
    if old.background is not None and new.background is not None:
        c = max(c, float(np.max(np.abs(new.background - old.background))) / data_scale)
    return c


def reconstruct_imaging(ts: TiltSeries, solve, *, sigma=None, intensity_scale=None,
                        background=None, bond_length=None, rounds: int = DEFAULT_ROUNDS,
                        tol: float = DEFAULT_TOL, degree: int = imaging.BACKGROUND_DEGREE,
                        progress=None) -> tuple[Reconstruction, Problem]:
    """Reconstruct ``ts`` with its unknown image-formation parameters (module docstring).

    Parameters
    ----------
    ts : TiltSeries
    solve : callable
        ``solve(problem, previous) -> Reconstruction``: any reconstruction method with its
        options bound. ``previous`` is ``None`` in the first round and the atoms of the last
        round after it, so that the refinement rounds can be a local polish from them (the
        parameters change little there) instead of a new global search.
    sigma, intensity_scale : float or "auto", optional
        Override the file's ``atom_sigma`` / ``intensity_scale``.
    background : "none" or "auto", optional
        Overrides the file's ``background``.
    bond_length : float, optional
        Overrides the file's.
    rounds : int
        Reconstructions at most (>= 1).
    tol : float
        Relative change of the parameters below which the alternation stops.
    degree : int
        Degree of the background polynomials per detector axis.
    progress : callable, optional
        Called with a one-line message after each step.

    Returns
    -------
    recon : Reconstruction
        The last reconstruction; its ``info`` gains the parameters (``atom_sigma``,
        ``intensity_scale``, ``background``, ...), ``imaging_rounds`` and ``imaging_history``.
    problem : Problem
        The problem at the final parameters (the corrected data).
    """
    if int(rounds) < 1:
        raise InputError(f"rounds must be >= 1, got {rounds}")
    start = time.perf_counter()
    say = progress or (lambda message: None)
    sig, scale, bg_mode = resolve(ts, sigma, intensity_scale, background)
    unknown = {name for name, v in (("sigma", sig), ("intensity_scale", scale),
                                    ("background", bg_mode)) if v == AUTO}
    params = initial_imaging(ts, sigma, intensity_scale, background, bond_length=bond_length,
                             degree=degree)
    say(f"initial estimates: sigma {params.sigma:.4g}, intensity scale "
        f"{params.intensity_scale:.4g}" + ("" if params.background is None else
                                           f", background mean {params.background.mean():.4g}"))
    data_scale = float(np.ptp(ts.projections)) or 1.0
    history = [_record(params, "initial")]
    recon = problem = config = None
    bond = ts.bond_length if bond_length is None else bond_length
    restart = False
    for r in range(int(rounds)):
        problem = problem_for(ts, params, bond_length=bond_length)
        recon = solve(problem, None if restart else config)
        config = recon.configuration
        if config.n_atoms == 0 or not unknown:
            break
        new = refine_imaging(ts, config, params, unknown, degree=degree)
        packing = crowding(config, bond) if "intensity_scale" in unknown else None
        restart = packing is not None and packing < CROWDED
        if restart:
            # too many atoms for the material: the quantum is too small by about the ratio of
            # the atom counts, (bond / spacing)^ndim; solve afresh at the corrected scale
            new.intensity_scale *= packing ** -ts.ndim
            say(f"round {r + 1}: the atoms are packed at {packing:.2f} bond lengths: the "
                f"intensity of one atom was too small; scale x {packing ** -ts.ndim:.2f}, "
                "solving afresh")
        change = _change(params, new, data_scale)
        history.append(_record(new, f"after round {r + 1}", n_atoms=config.n_atoms,
                               change=change))
        say(f"round {r + 1}: {config.n_atoms} atoms; refitted sigma {new.sigma:.4g}, intensity "
            f"scale {new.intensity_scale:.4g} (change {100 * change:.2g} %)")
        if (change < tol and not restart) or r == int(rounds) - 1:
            # The last reconstruction was made at ``params``; the refit given its atoms is the
            # better estimate (within ``tol`` of them when converged): report it.
            params = new
            break
        params = new
    if "intensity_scale" in unknown and config is not None and config.n_atoms > 0:
        recon, problem, params = _scale_trials(ts, solve, recon, problem, params, unknown,
                                               history, degree=degree, bond_length=bond_length,
                                               say=say)
    info = recon.info
    info.update(params.summary())
    info["imaging_rounds"] = len([h for h in history if h["stage"] != "initial"]) or 1
    info["imaging_history"] = history
    info["runtime_s"] = round(time.perf_counter() - start, 3)
    recon.info = info
    return recon, problem


def residual_ratio(ts: TiltSeries, params: Imaging, config, noise_std=None) -> float:
    """RMS of ``y - s sum_k w_k p_k(config) - b`` over the noise standard deviation (the
    file's, else :func:`imaging.estimate_noise_std`): about 1 when the atoms explain the data."""
    data = np.asarray(ts.projections, float)
    noise = noise_std or ts.noise_std or imaging.estimate_noise_std(data)
    if not noise or config.n_atoms == 0:
        return float("inf")
    names = list(params.species_weights)
    parts = species_parts(ts.geometry, params.sigma, config, names)
    model = np.einsum("k,k...->...", np.array([params.atom_intensity[k] for k in names]), parts)
    r = data - model - (0.0 if params.background is None else params.background)
    return float(np.sqrt(np.mean(r * r)) / noise)


def _scale_trials(ts, solve, recon, problem, params, unknown, history, *, degree, bond_length,
                  say):
    """When the atoms leave more than ``RESIDUAL_LIMIT`` noise levels unexplained, solve afresh
    at larger intensity scales (``SCALE_TRIALS``) and keep the result that explains the data
    best. Only with the file's ``noise_std``. The first estimate of the scale is biased low
    (the support suggests too many atoms) and a reconstruction at too small a quantum holds
    too many atoms, which the refit given them confirms; the residual does not: the wrong
    configuration does not explain the data (a random lattice, 3 angles: 3.6 noise levels at
    31 atoms for 24, 0.99 for the true atoms)."""
    if not ts.noise_std:
        # the noise estimated from the data is a lower bound (measured stacks are often
        # denoised): every result would look unexplained and pay for three more solves
        return recon, problem, params
    ratio = residual_ratio(ts, params, recon.configuration)
    if not ratio > RESIDUAL_LIMIT:
        return recon, problem, params
    say(f"the atoms leave {ratio:.2f} noise levels of residual: trying larger intensity scales "
        f"x {', '.join(f'{f:g}' for f in SCALE_TRIALS)}")
    best = (ratio, recon, problem, params)
    base = params.intensity_scale
    for factor in SCALE_TRIALS:
        trial = Imaging(params.sigma, base * factor, dict(params.species_weights),
                        params.background, dict(params.sources))
        prob = problem_for(ts, trial, bond_length=bond_length)
        rec = solve(prob, None)
        if rec.configuration.n_atoms == 0:
            continue
        new = refine_imaging(ts, rec.configuration, trial, unknown, degree=degree)
        r = residual_ratio(ts, new, rec.configuration)
        history.append(_record(new, f"scale trial x {factor:g}",
                               n_atoms=rec.configuration.n_atoms, residual_ratio=r))
        say(f"scale x {factor:g}: {rec.configuration.n_atoms} atoms, refitted intensity scale "
            f"{new.intensity_scale:.4g}, residual {r:.2f} noise levels")
        if r < best[0]:
            best = (r, rec, prob, new)
        if r <= RESIDUAL_LIMIT:
            break
    return best[1], best[2], best[3]


def _record(params: Imaging, stage: str, **extra) -> dict:
    rec = {"stage": stage, "sigma": float(f"{params.sigma:.6g}"),
           "intensity_scale": float(f"{params.intensity_scale:.6g}")}
    if len(params.species_weights) > 1:
        rec["species_weights"] = {k: round(v, 4) for k, v in params.species_weights.items()}
    if params.background is not None:
        rec["background_mean"] = float(f"{params.background.mean():.4g}")
    rec.update({k: (round(v, 4) if isinstance(v, float) else v) for k, v in extra.items()})
    return rec
