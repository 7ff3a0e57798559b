"""Tilt series: measured or simulated projections with their geometry (spec section 3).

A :class:`TiltSeries` is what a tilt-series HDF5 file holds: the projections, the detector
geometry, what is known about the atoms (width, species weights, bond length, domain) and,
for simulated data, the ground truth and the noise that was added.

* :func:`read_tiltseries` / :func:`write_tiltseries`: the HDF5 format of spec section 3. The
  reader checks every field and turns every problem into a one-line
  :class:`~atomtomo.errors.InputError`; the writer is atomic.
* :func:`simulate_tiltseries`: project a configuration with the analytic forward model and add
  noise (:mod:`atomtomo.noise`).
* :func:`import_mrc`, :func:`import_tiff`: measured stacks (one image per angle) from the
  formats microscopes write; :func:`import_aet`: measured AET tilt series in the MATLAB layout of the published
  AET data sets (e.g. the amorphous Ta film).
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._checks import box_array, check_data_scale, check_memory, short_repr
from ._io import atomic_path
from .configuration import Configuration
from .errors import InputError, first_line
from .geometry import Geometry

#: Value of the root attribute ``atomtomo_format`` that marks a tilt-series file.
FORMAT_NAME = "tiltseries"
#: The file-format version this module reads and writes.
FORMAT_VERSION = 1

# Root attributes and datasets with a meaning in spec section 3; everything else is kept as is.
_KNOWN_ATTRS = {
    "atomtomo_format", "format_version", "ndim", "pixel_size", "length_unit", "atom_sigma",
    "species_weights", "box", "bond_length", "noise_model", "noise_std", "intensity_scale",
    "background",
}
#: Value of ``atom_sigma`` / ``intensity_scale`` / ``background`` meaning "unknown: estimate it".
AUTO = "auto"
_KNOWN_DATASETS = {
    "projections", "angles", "detector_directions", "detector_frames",
    "ground_truth/positions", "ground_truth/species",
}


@dataclass
class TiltSeries:
    """Projections plus everything needed to interpret them.

    Attributes mirror the HDF5 fields of spec section 3. ``attrs`` keeps root attributes this
    module does not know, and ``extra`` datasets it does not know (HDF5 path -> array), so that a
    read-then-write round trip loses nothing but the attributes of unknown datasets and groups.
    """

    projections: np.ndarray  # geometry.data_shape
    geometry: Geometry
    atom_sigma: float | str | None = None  # a width, "auto" (estimate it) or None (not given)
    species_weights: dict | None = None  # None = one species of weight 1
    box: np.ndarray | None = None  # (ndim, 2); None = geometry.default_box()
    bond_length: float | None = None
    length_unit: str = ""
    noise_model: str | None = None
    noise_std: float | None = None
    ground_truth: Configuration | None = None
    intensity_scale: float | str | None = None  # data units per model unit; "auto"; None = 1
    background: str | None = None  # "none" or "auto" (smooth unknown background); None = "none"
    attrs: dict = field(default_factory=dict)  # any other root attributes, kept on round trip
    extra: dict = field(default_factory=dict)  # any other datasets, HDF5 path -> array

    @property
    def ndim(self) -> int:
        return self.geometry.ndim

    @property
    def domain(self) -> np.ndarray:
        """The reconstruction box: ``box`` if given, else the detector's span."""
        return self.geometry.default_box() if self.box is None else np.asarray(self.box, float)

    @property
    def imaging_unknowns(self) -> list:
        """Names of the image-formation parameters the file marks "auto" (to be estimated)."""
        return [name for name, value in (("atom_sigma", self.atom_sigma),
                                         ("intensity_scale", self.intensity_scale),
                                         ("background", self.background)) if value == AUTO]

    @property
    def angles(self) -> np.ndarray:
        """Tilt angles in radians (for general directions: the equivalent single-axis angles)."""
        return _equivalent_angles(self.geometry)

    def validate(self) -> TiltSeries:
        """Check the fields against each other; raise :class:`InputError` if they disagree."""
        _check_tiltseries(self, "tilt series")
        return self


# ---------------------------------------------------------------------------------------------
# checks shared by the reader, the writer and the importers
# ---------------------------------------------------------------------------------------------
def _scalar(value, name, where, *, positive=True, allow_zero=False) -> float:
    """A finite float (> 0, or >= 0 with ``allow_zero``); size-1 arrays are accepted."""
    arr = np.asarray(value)
    if arr.size != 1 or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError(f"{where}: {name} must be a number, got {short_repr(value)}")
    v = float(arr.reshape(()))
    if not math.isfinite(v):
        raise InputError(f"{where}: {name} must be finite, got {v}")
    if positive and (v < 0 or (v == 0 and not allow_zero)):
        raise InputError(f"{where}: {name} must be {'>= 0' if allow_zero else 'positive'}, got {v}")
    return v


def _number_or_auto(value, name, where):
    """A positive finite float, or the string "auto" (spec section 3)."""
    if isinstance(value, (str, bytes, np.str_, np.bytes_)) or (
            isinstance(value, np.ndarray) and value.dtype.kind in "OSU"):
        text = _text(value, name, where)
        if text.strip().lower() == AUTO:
            return AUTO
        raise InputError(f'{where}: {name} must be a positive number or "auto", got '
                         f"{short_repr(text)}")
    return _scalar(value, name, where)


def _background_mode(value, where):
    """ "none" or "auto" (spec section 3)."""
    text = _text(value, "background", where).strip().lower()
    if text not in ("none", AUTO):
        raise InputError(f'{where}: background must be "none" or "auto", got {short_repr(text)}')
    return text


def _text(value, name, where) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{where}: {name} is not valid UTF-8") from None
    if isinstance(value, (str, np.str_)):
        return str(value)
    arr = np.asarray(value)
    if arr.size == 1 and arr.dtype.kind in "OSU":
        return _text(arr.reshape(()).item(), name, where)
    raise InputError(f"{where}: {name} must be a string, got {short_repr(value)}")


def _species_weights(value, where) -> dict | None:
    """Parse and check a ``species_weights`` value (a JSON object string or a dict)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        text = _text(value, "species_weights", where)
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: species_weights is not valid JSON ({exc.msg})") from None
        if not isinstance(value, dict):
            raise InputError(f"{where}: species_weights must be a JSON object like "
                             f'{{"Pt": 1.0}}, got {short_repr(text)}')
    weights = {}
    for name, w in value.items():
        if isinstance(w, bool) or not isinstance(w, (int, float, np.integer, np.floating)):
            raise InputError(f"{where}: species weight of {name!r} must be a number, got {w!r}")
        w = float(w)
        if not math.isfinite(w) or w <= 0:
            raise InputError(f"{where}: species weight of {name!r} must be positive, got {w}")
        weights[str(name)] = w
    return weights or None


def _projections(data, ndim, where) -> np.ndarray:
    p = np.asarray(data)
    if not np.issubdtype(p.dtype, np.number) or np.issubdtype(p.dtype, np.complexfloating):
        raise InputError(f"{where}: projections must be real numbers, got dtype {p.dtype}")
    if p.dtype != np.float32:
        p = p.astype(np.float64)
    if p.ndim != ndim:
        layout = "(n_angles, n_det)" if ndim == 2 else "(n_angles, n_rows, n_cols)"
        raise InputError(f"{where}: a {ndim}D tilt series needs projections of shape {layout}, "
                         f"got shape {p.shape}")
    if p.size == 0:
        raise InputError(f"{where}: projections are empty (shape {p.shape})")
    check_data_scale(p, where)
    return p


def _angles(value, n_angles, where) -> np.ndarray:
    a = np.asarray(value)
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise InputError(f"{where}: angles must be real numbers, got dtype {a.dtype}")
    a = a.astype(float).reshape(-1) if a.ndim <= 1 else a.astype(float)
    if a.ndim != 1:
        raise InputError(f"{where}: angles must be a 1D array (radians), got shape {a.shape}")
    if len(a) != n_angles:
        raise InputError(f"{where}: {len(a)} angles for {n_angles} projections")
    if not np.all(np.isfinite(a)):
        raise InputError(f"{where}: angles contain NaN or infinite values")
    return a


def _ground_truth(positions, species, ndim, weights, where) -> Configuration:
    pos = np.asarray(positions)
    if not np.issubdtype(pos.dtype, np.number) or pos.ndim != 2 or pos.shape[1] != ndim:
        raise InputError(f"{where}: ground_truth/positions must have shape (n_atoms, {ndim}), "
                         f"got {pos.shape}")
    if species is not None:
        sp = np.asarray(species)
        if sp.ndim != 1 or len(sp) != len(pos):
            raise InputError(f"{where}: ground_truth/species has shape {sp.shape} but there are "
                             f"{len(pos)} ground-truth positions")
        species = [_text(s, "ground_truth/species", where) for s in sp.tolist()]
    try:
        return Configuration(pos.astype(float), species, dict(weights or {}))
    except InputError as exc:
        raise InputError(f"{where}: ground truth: {exc}") from None


def _equivalent_angles(geometry: Geometry) -> np.ndarray:
    """The geometry's angles, or for general directions the single-axis angles nearest to them."""
    if geometry.angles is not None:
        return np.asarray(geometry.angles, dtype=float)
    d = geometry.directions
    if geometry.ndim == 2:
        return np.arctan2(d[:, 1], d[:, 0])
    return np.arctan2(d[:, 0, 2], d[:, 0, 0])


def _is_single_axis(geometry: Geometry) -> bool:
    """True when the directions are exactly those that ``geometry.angles`` define."""
    if geometry.angles is None or len(geometry.angles) != geometry.n_angles:
        return False
    ref = Geometry.from_angles(geometry.ndim, geometry.angles, geometry.detector_shape,
                               geometry.pixel_size)
    return bool(np.allclose(ref.directions, geometry.directions, rtol=0, atol=1e-12))


def _check_tiltseries(ts: TiltSeries, where: str) -> None:
    geo = ts.geometry
    if not isinstance(geo, Geometry):
        raise InputError(f"{where}: geometry must be an atomtomo Geometry")
    proj = _projections(ts.projections, geo.ndim, where)
    if proj.shape != tuple(geo.data_shape):
        raise InputError(f"{where}: projections have shape {proj.shape} but the geometry "
                         f"expects {tuple(geo.data_shape)}")
    if ts.atom_sigma is not None:
        _number_or_auto(ts.atom_sigma, "atom_sigma", where)
    if ts.intensity_scale is not None:
        _number_or_auto(ts.intensity_scale, "intensity_scale", where)
    if ts.background is not None:
        _background_mode(ts.background, where)
    _species_weights(ts.species_weights, where)
    box_array(ts.box, geo.ndim, where)
    if ts.bond_length is not None:
        _scalar(ts.bond_length, "bond_length", where)
    if ts.noise_std is not None:
        _scalar(ts.noise_std, "noise_std", where, allow_zero=True)
    gt = ts.ground_truth
    if gt is not None and gt.ndim != geo.ndim:
        raise InputError(f"{where}: the ground truth is {gt.ndim}D but the tilt series is "
                         f"{geo.ndim}D")


# ---------------------------------------------------------------------------------------------
# HDF5 files (spec section 3)
# ---------------------------------------------------------------------------------------------
def _attr_value(value):
    """A value h5py can store as an attribute (dicts and lists of strings become JSON)."""
    if isinstance(value, dict):
        return json.dumps(value, default=float)
    if isinstance(value, (list, tuple)) and any(isinstance(v, (str, dict)) for v in value):
        return json.dumps(value, default=float)
    return value


def write_tiltseries(ts: TiltSeries, path) -> None:
    """Write ``ts`` as a tilt-series file (spec section 3), atomically.

    Optional fields that are ``None`` are left out. Unknown attributes (``ts.attrs``) and
    datasets (``ts.extra``) from a file that was read are written back.

    Raises
    ------
    InputError
        When the fields disagree with each other (e.g. projections of the wrong shape) or the
        output directory does not exist. No file is left behind on any failure.
    """
    import h5py

    _check_tiltseries(ts, "cannot write tilt series")
    geo = ts.geometry
    proj = np.asarray(ts.projections)
    proj = proj if proj.dtype in (np.float32, np.float64) else proj.astype(np.float64)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("projections", data=proj)
            f.create_dataset("angles", data=_equivalent_angles(geo).astype(np.float64))
            if not _is_single_axis(geo):
                name = "detector_directions" if geo.ndim == 2 else "detector_frames"
                f.create_dataset(name, data=np.asarray(geo.directions, dtype=np.float64))
            if ts.ground_truth is not None:
                gt = ts.ground_truth
                grp = f.create_group("ground_truth")
                grp.create_dataset("positions", data=np.asarray(gt.positions, dtype=np.float64))
                grp.create_dataset("species", data=np.array([str(s) for s in gt.species],
                                                            dtype=object),
                                   dtype=h5py.string_dtype("utf-8"))
            for name, data in ts.extra.items():
                name = str(name).strip("/")
                if name in _KNOWN_DATASETS or name in f:
                    continue
                f.create_dataset(name, data=data)
            for key, value in ts.attrs.items():
                if key not in _KNOWN_ATTRS:
                    f.attrs[key] = _attr_value(value)
            f.attrs["atomtomo_format"] = FORMAT_NAME
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["ndim"] = geo.ndim
            f.attrs["pixel_size"] = float(geo.pixel_size)
            f.attrs["length_unit"] = str(ts.length_unit or "")
            for name in ("atom_sigma", "intensity_scale"):
                value = getattr(ts, name)
                if value is not None:
                    value = _number_or_auto(value, name, "cannot write tilt series")
                    f.attrs[name] = value if value == AUTO else float(value)
            if ts.background is not None:
                f.attrs["background"] = _background_mode(ts.background, "cannot write tilt series")
            weights = _species_weights(ts.species_weights, "cannot write tilt series")
            if weights:
                f.attrs["species_weights"] = json.dumps(weights)
            if ts.box is not None:
                f.attrs["box"] = np.asarray(ts.box, dtype=np.float64)
            if ts.bond_length is not None:
                f.attrs["bond_length"] = float(ts.bond_length)
            if ts.noise_model is not None:
                f.attrs["noise_model"] = str(ts.noise_model)
            if ts.noise_std is not None:
                f.attrs["noise_std"] = float(ts.noise_std)


@contextlib.contextmanager
def _hdf5_for_reading(path: Path, what: str):
    """Open HDF5 file ``path`` for reading; an error of h5py (raised while opening or in the
    ``with`` body) becomes a one-line :class:`InputError` saying it cannot read ``what``."""
    import h5py

    try:
        if not h5py.is_hdf5(path):
            raise InputError(f"{path} is not an HDF5 file")
        with h5py.File(path, "r") as f:
            yield f
    except InputError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise InputError(f"{path}: cannot read {what}: {first_line(exc)}") from None


def read_tiltseries(path) -> TiltSeries:
    """Read and check a tilt-series file (spec section 3).

    Angles are radians; ``detector_directions`` (2D) or ``detector_frames`` (3D), when present,
    override them (the angles are kept in the geometry). The ground truth, when present, becomes
    a :class:`~atomtomo.configuration.Configuration` with the file's species weights.

    Raises
    ------
    InputError
        With a one-line message naming the file and what is wrong with it: missing file, not
        HDF5, not a tilt series, unsupported version, any missing or invalid field, or a read
        error.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"tilt-series file not found: {path}")
    if not path.is_file():
        raise InputError(f"{path} is not a file")
    with _hdf5_for_reading(path, "tilt series") as f:
        return _read_open_file(f, str(path))


def _read_open_file(f, where: str) -> TiltSeries:
    import h5py

    attrs = {k: f.attrs[k] for k in f.attrs.keys()}
    fmt = attrs.get("atomtomo_format")
    if fmt is None:
        raise InputError(f"{where} is not an atomtomo tilt series: root attribute "
                         f"atomtomo_format='{FORMAT_NAME}' is missing")
    fmt = _text(fmt, "atomtomo_format", where)
    if fmt != FORMAT_NAME:
        raise InputError(f"{where} is not an atomtomo tilt series: atomtomo_format is {fmt!r}, "
                         f"expected {FORMAT_NAME!r}")
    if "format_version" not in attrs:
        raise InputError(f"{where}: root attribute format_version is missing")
    version = _scalar(attrs["format_version"], "format_version", where)
    if version != FORMAT_VERSION:
        raise InputError(f"{where}: unsupported format_version {version:g} (this version of "
                         f"atomtomo reads version {FORMAT_VERSION})")
    if "ndim" not in attrs:
        raise InputError(f"{where}: root attribute ndim (2 or 3) is missing")
    ndim = _scalar(attrs["ndim"], "ndim", where)
    if ndim not in (2, 3):
        raise InputError(f"{where}: ndim must be 2 or 3, got {ndim:g}")
    ndim = int(ndim)

    def dataset(name, required=False):
        obj = f.get(name)
        if obj is None:
            if required:
                raise InputError(f"{where}: dataset {name!r} is missing")
            return None
        if not isinstance(obj, h5py.Dataset):
            raise InputError(f"{where}: {name!r} must be a dataset, found a group")
        check_memory(8.0 * obj.size, f"{where}: dataset {name!r} of shape {obj.shape}")
        return obj[()]

    proj = _projections(dataset("projections", required=True), ndim, where)
    n_angles = proj.shape[0]
    angles = _angles(dataset("angles", required=True), n_angles, where)
    if "pixel_size" not in attrs:
        raise InputError(f"{where}: root attribute pixel_size is missing")
    pixel_size = _scalar(attrs["pixel_size"], "pixel_size", where)

    own, other = ("detector_directions", "detector_frames")[:: 1 if ndim == 2 else -1]
    if other in f:
        raise InputError(f"{where}: a {ndim}D tilt series cannot have {other!r} "
                         f"(use {own!r})")
    directions = dataset(own)
    try:
        if directions is None:
            geometry = Geometry.from_angles(ndim, angles, proj.shape[1:], pixel_size)
        else:
            directions = np.asarray(directions)
            if directions.shape[:1] != (n_angles,):
                raise InputError(f"{own} has {directions.shape[0] if directions.ndim else 0} "
                                 f"entries for {n_angles} projections")
            geometry = Geometry.from_directions(ndim, directions, proj.shape[1:], pixel_size,
                                                angles=angles)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None

    length_unit = _text(attrs["length_unit"], "length_unit", where) if "length_unit" in attrs else ""
    optional = {}
    for name in ("atom_sigma", "intensity_scale"):
        optional[name] = _number_or_auto(attrs[name], name, where) if name in attrs else None
    optional["bond_length"] = (_scalar(attrs["bond_length"], "bond_length", where)
                               if "bond_length" in attrs else None)
    optional["background"] = (_background_mode(attrs["background"], where)
                              if "background" in attrs else None)
    noise_std = (_scalar(attrs["noise_std"], "noise_std", where, allow_zero=True)
                 if "noise_std" in attrs else None)
    noise_model = _text(attrs["noise_model"], "noise_model", where) if "noise_model" in attrs else None
    weights = _species_weights(attrs.get("species_weights"), where)
    box = box_array(attrs.get("box"), ndim, where)

    truth = None
    gt = f.get("ground_truth")
    if gt is not None:
        if not isinstance(gt, h5py.Group):
            raise InputError(f"{where}: 'ground_truth' must be a group")
        positions = dataset("ground_truth/positions")
        species = dataset("ground_truth/species")
        if positions is None and species is not None:
            raise InputError(f"{where}: ground_truth/species without ground_truth/positions")
        if positions is not None:
            truth = _ground_truth(positions, species, ndim, weights, where)

    extra = {}

    def collect(name, obj):
        if isinstance(obj, h5py.Dataset) and name not in _KNOWN_DATASETS:
            extra[name] = obj[()]

    f.visititems(collect)
    return TiltSeries(
        projections=proj,
        geometry=geometry,
        atom_sigma=optional["atom_sigma"],
        species_weights=weights,
        box=box,
        bond_length=optional["bond_length"],
        length_unit=length_unit,
        noise_model=noise_model,
        noise_std=noise_std,
        ground_truth=truth,
        intensity_scale=optional["intensity_scale"],
        background=optional["background"],
        attrs={k: v for k, v in attrs.items() if k not in _KNOWN_ATTRS},
        extra=extra,
    )


# ---------------------------------------------------------------------------------------------
# simulation
# ---------------------------------------------------------------------------------------------
def simulate_tiltseries(config: Configuration, geometry: Geometry, sigma, *, noise_std=None,
                        relative_noise=None, dose=None, seed=None, box=None, bond_length=None,
                        length_unit="", intensity_scale=None, background=None,
                        unknown=()) -> TiltSeries:
    """Project ``config`` (spec section 2) and add noise: a simulated tilt series.

    Parameters
    ----------
    config : Configuration
        The atoms; they become the ground truth.
    geometry : Geometry
    sigma : float
        Standard deviation of every atom (recorded as ``atom_sigma``).
    noise_std : float, optional
        Absolute standard deviation of additive Gaussian noise.
    relative_noise : float, optional
        Gaussian noise relative to the largest noiseless value (0.01 = "1 % noise", see
        :func:`atomtomo.noise.add_gaussian_noise`). At most one of the two.
    dose : float, optional
        Electron dose per unit area for Poisson shot noise (applied before any Gaussian noise,
        which then models read-out noise); the pixel area is ``pixel_size ** (ndim - 1)``.
    seed : int, optional
        Seed of the noise.
    box : (ndim, 2) array_like, optional
        Reconstruction domain; default ``config.info["box"]`` if present, else none (the
        detector's span).
    bond_length : float, optional
        Default ``config.info["bond_length"]`` if present.
    length_unit : str
    intensity_scale : float, optional
        Data units per unit of the model (spec section 3): the projections (noise included) are
        multiplied by it; the noise levels above refer to the unit-scale projections and the
        recorded ``noise_std`` is in data units. Default 1 (the attribute is then left out).
    background : "auto", float or ndarray, optional
        A smooth non-negative background added to every projection after the scale: "auto"
        draws one (:func:`atomtomo.imaging.smooth_background`, level 0.2 x the largest scaled
        noiseless value), a float draws one of that level, an array of the projections' shape is
        used as is. It is kept as the dataset ``ground_truth/background``.
    unknown : iterable of str
        Image-formation parameters to hide from the reconstruction: any of "atom_sigma",
        "intensity_scale", "background" (or "all"). They are written as "auto" (spec section
        3) and their true values kept as root attributes ``true_atom_sigma``,
        ``true_intensity_scale`` (and ``ground_truth/background``).

    Returns
    -------
    TiltSeries
        With ``noise_model`` one of "none", "gaussian", "poisson", "poisson+gaussian" and
        ``noise_std`` the total standard deviation of the noise added.
    """
    from .forward import ForwardModel
    from .noise import add_gaussian_noise, add_poisson_noise

    if not isinstance(config, Configuration):
        raise InputError("simulate_tiltseries needs a Configuration")
    if config.ndim != geometry.ndim:
        raise InputError(f"a {config.ndim}D configuration cannot be projected with a "
                         f"{geometry.ndim}D geometry")
    if noise_std is not None and relative_noise is not None:
        raise InputError("give at most one of noise_std and relative_noise")
    model = ForwardModel(geometry, sigma)
    clean = model.project(config.positions, config.weights)
    rng = np.random.default_rng(seed)
    data, parts, variance = clean, [], 0.0
    if dose is not None:
        data, std = add_poisson_noise(data, dose, geometry.pixel_size ** (geometry.ndim - 1), rng)
        parts.append("poisson")
        variance += std ** 2
    if noise_std is not None or relative_noise is not None:
        # The relative level refers to the noiseless signal, also when shot noise came first.
        if relative_noise is not None:
            _, std = add_gaussian_noise(clean, relative=relative_noise, seed=0)
        else:
            std = noise_std
        data, std = add_gaussian_noise(data, std=std, seed=rng)
        parts.append("gaussian")
        variance += std ** 2

    scale = 1.0 if intensity_scale is None else _scalar(intensity_scale, "intensity_scale",
                                                          "simulate_tiltseries")
    data = scale * data
    bg = None
    if background is not None and not (isinstance(background, str) and background == "none"):
        from .imaging import smooth_background

        if isinstance(background, str):
            if background != AUTO:
                raise InputError(f'background must be "auto", "none", a level or an array, '
                                 f"got {background!r}")
            level = 0.2 * scale * float(np.max(clean))
        elif np.ndim(background) == 0:
            level = _scalar(background, "background level", "simulate_tiltseries",
                            allow_zero=True)
        else:
            level = None
            bg = np.asarray(background, float)
            if bg.shape != data.shape or np.any(bg < 0) or not np.all(np.isfinite(bg)):
                raise InputError(f"a background array must be finite, >= 0 and of shape "
                                 f"{data.shape}")
        if bg is None:
            bg = smooth_background(geometry.detector_shape, geometry.n_angles, level, seed=rng)
        data = data + bg
    unknown = set(unknown or ())
    if "all" in unknown:
        unknown = {"atom_sigma", "intensity_scale", "background"}
    bad = unknown - {"atom_sigma", "intensity_scale", "background"}
    if bad:
        raise InputError(f"unknown image-formation parameter(s) {sorted(bad)}; choose from "
                         "atom_sigma, intensity_scale, background")

    if box is None and config.info.get("box") is not None:
        box = config.info["box"]
    if bond_length is None and config.info.get("bond_length") is not None:
        bond_length = config.info["bond_length"]
    if bond_length is not None:
        bond_length = _scalar(bond_length, "bond_length", "simulate_tiltseries")
    names = config.species_names
    weights = None  # one species of weight 1 needs no attribute
    if config.species_weights or len(names) > 1:
        weights = {s: config.species_weights.get(s, 1.0) for s in names}
    ts = TiltSeries(
        projections=data,
        geometry=geometry,
        atom_sigma=AUTO if "atom_sigma" in unknown else model.sigma,
        species_weights=weights,
        box=box_array(box, geometry.ndim, "simulate_tiltseries"),
        bond_length=bond_length,
        length_unit=str(length_unit or ""),
        noise_model="+".join(parts) if parts else "none",
        noise_std=float(scale * np.sqrt(variance)),
        ground_truth=config.copy(),
        intensity_scale=(AUTO if "intensity_scale" in unknown
                         else (None if intensity_scale is None else scale)),
        # a background present is unknown to a reader (the spec has no attribute for a known one)
        background=AUTO if bg is not None or "background" in unknown else None,
    )
    if "atom_sigma" in unknown:
        ts.attrs["true_atom_sigma"] = model.sigma
    if "intensity_scale" in unknown:
        ts.attrs["true_intensity_scale"] = scale
    if bg is not None:
        ts.extra["ground_truth/background"] = bg
    return ts


# ---------------------------------------------------------------------------------------------
# importers: image stacks with one image per angle
# ---------------------------------------------------------------------------------------------
def _stack_to_projections(data, n_angles, ndim, where) -> np.ndarray:
    """Arrange an image stack as ``(n_angles, *detector)``.

    3D: a stack ``(n_angles, rows, cols)``, or one image when there is one angle. 2D: a sinogram
    image ``(n_angles, n_det)``, a stack of one-row images ``(n_angles, 1, n_det)``, or one
    profile when there is one angle.
    """
    data = np.asarray(data)
    if ndim == 3:
        if data.ndim == 2 and n_angles == 1:
            data = data[None]
    elif ndim == 2:
        if data.ndim == 3 and data.shape[1] == 1:
            data = data[:, 0, :]
        elif data.ndim == 1 and n_angles == 1:
            data = data[None]
    else:
        raise InputError(f"ndim must be 2 or 3, got {ndim}")
    if data.ndim != ndim:
        want = ("a stack of images (n_angles, rows, cols)" if ndim == 3
                else "a sinogram image (n_angles, n_det)")
        raise InputError(f"{where}: a {ndim}D tilt series needs {want}, got data of shape "
                         f"{data.shape}")
    if data.shape[0] != n_angles:
        raise InputError(f"{where}: {n_angles} angles for {data.shape[0]} images")
    return _projections(data, ndim, where)


def _imported(data, angles, pixel_size, ndim, where, *, atom_sigma, bond_length, box,
              species_weights, length_unit, frames=None) -> TiltSeries:
    try:
        angles = np.atleast_1d(np.asarray(angles, dtype=float))
    except (TypeError, ValueError):
        raise InputError(f"angles must be numbers (radians), got {short_repr(angles)}") from None
    if angles.ndim != 1 or len(angles) == 0:
        raise InputError(f"angles must be a non-empty 1D list (radians), got shape {angles.shape}")
    if not np.all(np.isfinite(angles)):
        raise InputError("angles contain NaN or infinite values")
    proj = _stack_to_projections(data, len(angles), ndim, where)
    pixel_size = _scalar(pixel_size, "pixel size", where)
    if frames is None:
        geometry = Geometry.from_angles(ndim, angles, proj.shape[1:], pixel_size)
    else:
        geometry = Geometry.from_directions(ndim, frames, proj.shape[1:], pixel_size,
                                            angles=angles)
    # Measured data: what the caller does not give is unknown (spec section 3, "auto").
    ts = TiltSeries(
        projections=proj,
        geometry=geometry,
        atom_sigma=AUTO if atom_sigma is None else _number_or_auto(atom_sigma, "atom_sigma", where),
        intensity_scale=AUTO,
        background=AUTO,
        species_weights=_species_weights(species_weights, where),
        box=box_array(box, ndim, where),
        bond_length=None if bond_length is None else _scalar(bond_length, "bond_length", where),
        length_unit=str(length_unit or ""),
        attrs={"source_file": Path(where).name},
    )
    return ts


def import_mrc(path, angles, pixel_size=None, *, ndim=3, atom_sigma=None,
               length_unit="angstrom", bond_length=None, box=None,
               species_weights=None) -> TiltSeries:
    """Read an MRC tilt stack (one image per angle, the stack axis = angles).

    Parameters
    ----------
    path : path-like
        MRC file: ``(n_angles, rows, cols)`` for ``ndim=3``; a sinogram image
        ``(n_angles, n_det)`` for ``ndim=2``.
    angles : array_like
        Tilt angles in radians, one per image; rows of the images lie along the tilt axis.
    pixel_size : float, optional
        Pixel width. ``None``: the header's voxel size, which MRC gives in angstrom (the length
        unit is then "angstrom").
    ndim : {2, 3}
    atom_sigma, bond_length, box, species_weights :
        Recorded in the tilt series (spec section 3).
    length_unit : str
        Unit of ``pixel_size`` when it is given.

    Returns
    -------
    TiltSeries
    """
    import mrcfile

    path = Path(path)
    if not path.is_file():
        raise InputError(f"MRC file not found: {path}")
    try:
        with mrcfile.open(path, mode="r", permissive=True) as mrc:
            if mrc.data is None:
                raise InputError(f"{path} is not a readable MRC file")
            data = np.array(mrc.data)
            header_pixel = float(mrc.voxel_size.x)
    except InputError:
        raise
    except (OSError, ValueError, TypeError, EOFError) as exc:
        msg = first_line(exc)
        raise InputError(f"{path} is not a readable MRC file: {msg}") from None
    if pixel_size is None:
        if not (math.isfinite(header_pixel) and header_pixel > 0):
            raise InputError(f"{path}: the MRC header has no pixel size; give one (--pixel-size)")
        pixel_size, length_unit = header_pixel, "angstrom"
    return _imported(data, angles, pixel_size, ndim, str(path), atom_sigma=atom_sigma,
                     bond_length=bond_length, box=box, species_weights=species_weights,
                     length_unit=length_unit)


# ImageJ unit names -> the length units we record.
_TIFF_UNITS = {"a": "angstrom", "å": "angstrom", "\\u00c5": "angstrom", "angstrom": "angstrom",
               "nm": "nm", "nanometer": "nm", "um": "um", "µm": "um", "micron": "um",
               "pixel": "", "": ""}


def _tiff_pixel_size(tif):
    """``(pixel size, unit)`` from a TIFF's resolution tags and ImageJ unit, or ``None``."""
    page = tif.pages[0]
    tag = page.tags.get("XResolution")
    meta = tif.imagej_metadata or {}
    unit = str(meta.get("unit", "")).strip().lower()
    if tag is None or unit not in _TIFF_UNITS or not _TIFF_UNITS[unit]:
        return None
    num, den = tag.value
    if not num or not den:
        return None
    return den / num, _TIFF_UNITS[unit]


def import_tiff(path, angles, pixel_size=None, *, ndim=3, atom_sigma=None,
                length_unit="angstrom", bond_length=None, box=None,
                species_weights=None) -> TiltSeries:
    """Read a multi-page TIFF tilt stack (one page per angle).

    Parameters are those of :func:`import_mrc`. ``pixel_size=None`` takes the pixel size from
    the resolution tags of an ImageJ TIFF that names a length unit; other TIFFs need
    ``pixel_size``. For ``ndim=2`` the file is one sinogram image ``(n_angles, n_det)``.
    """
    import tifffile

    path = Path(path)
    if not path.is_file():
        raise InputError(f"TIFF file not found: {path}")
    try:
        with tifffile.TiffFile(path) as tif:
            # Pages written one at a time form one series each; asarray() alone would return
            # only the first image. Stack every page then.
            shapes = {tuple(series.shape) for series in tif.series}
            if len(shapes) > 1:
                raise InputError(f"{path}: the TIFF holds images of different shapes "
                                 f"{sorted(shapes)}; a tilt stack needs one shape")
            if tif.pages and getattr(tif.pages[0], "samplesperpixel", 1) > 1:
                raise InputError(f"{path}: the TIFF holds colour images ({tif.pages[0].samplesperpixel} "
                                 "samples per pixel); a tilt stack needs greyscale intensities")
            for series in tif.series:
                check_memory(8.0 * math.prod(series.shape), f"{path}: image stack {series.shape}")
            data = tif.asarray() if len(tif.series) <= 1 else tif.asarray(key=slice(None))
            header = _tiff_pixel_size(tif) if pixel_size is None else None
    except InputError:
        raise
    except (OSError, ValueError, TypeError, KeyError, RuntimeError, tifffile.TiffFileError) as exc:
        msg = first_line(exc)
        raise InputError(f"{path} is not a readable TIFF file: {msg}") from None
    if pixel_size is None:
        if header is None:
            raise InputError(f"{path}: the TIFF has no pixel size with a unit; give one "
                             "(--pixel-size)")
        pixel_size, length_unit = header
    return _imported(data, angles, pixel_size, ndim, str(path), atom_sigma=atom_sigma,
                     bond_length=bond_length, box=box, species_weights=species_weights,
                     length_unit=length_unit)


def aet_rotation(phi, theta, psi) -> np.ndarray:
    """Rotation matrix of the AET Euler angles (degrees), as the published AET code builds it.

    ``R = Rz(phi) Ry(theta) Rx(psi)`` (``MatrixQuaternionRot`` about z, y, x, in that order, of
    the AET MATLAB/Python code, e.g. RESIRE and the R1-factor scripts of
    AET-AmorphousMaterials); a model is projected as ``R^T X`` summed along its third axis, so
    the detector's first (MATLAB row) axis is ``R[:, 0] . X`` and the second ``R[:, 1] . X``.
    """
    phi, theta, psi = np.radians([phi, theta, psi])
    c, s = np.cos, np.sin
    rz = np.array([[c(phi), -s(phi), 0], [s(phi), c(phi), 0], [0, 0, 1]])
    ry = np.array([[c(theta), 0, s(theta)], [0, 1, 0], [-s(theta), 0, c(theta)]])
    rx = np.array([[1, 0, 0], [0, c(psi), -s(psi)], [0, s(psi), c(psi)]])
    return rz @ ry @ rx


def aet_frames(euler_deg) -> np.ndarray:
    """``detector_frames`` (spec section 2) of AET Euler angles ``(n, 3)`` (phi, theta, psi).

    AET coordinates ``(X, Y, Z)`` become ``(x, y, z) = (X, Y, -Z)``: with ``phi = psi = 0`` the
    AET detector's row axis is ``X cos(theta) - Z sin(theta)``, the spec's ``u`` is ``x cos(theta)
    + z sin(theta)``. So ``e_u = (R00, R10, -R20)`` and ``e_v = (R01, R11, -R21)``; for
    ``phi = psi = 0`` these are exactly the single-axis frames of ``theta``. See
    :func:`aet_to_spec` for model coordinates.
    """
    euler_deg = np.asarray(euler_deg, float)
    flip = np.array([1.0, 1.0, -1.0])
    out = np.empty((len(euler_deg), 2, 3))
    for i, (phi, theta, psi) in enumerate(euler_deg):
        r = aet_rotation(phi, theta, psi)
        out[i, 0] = r[:, 0] * flip
        out[i, 1] = r[:, 1] * flip
    return out


def aet_to_spec(positions) -> np.ndarray:
    """AET model coordinates ``(X, Y, Z)`` in the frame of :func:`aet_frames`: ``(X, Y, -Z)``."""
    return np.asarray(positions, float) * np.array([1.0, 1.0, -1.0])


def import_aet(path, *, atom_sigma=None, bond_length=None, box=None,
               euler_frames: bool = True) -> TiltSeries:
    """Read a measured AET tilt series stored in the MATLAB layout of the published data sets.

    The HDF5 file holds ``projections_rows_cols_angles`` (rows, cols, n_angles),
    ``euler_angles_deg_phi_theta_psi`` (n_angles, 3) whose ``theta`` column is the tilt angle
    in degrees, and a root attribute ``pixel_size_angstrom`` — as the amorphous Ta-film data of
    the AET-AmorphousMaterials repository. The tilt axis runs along the MATLAB columns'
    direction: the column profiles (sums over rows) stay the same at every angle, the row
    profiles do not, so each image is transposed to the spec's (rows along the tilt axis ``y``,
    columns along ``u``). The three Euler angles become ``detector_frames``
    (:func:`aet_frames`; ``euler_frames=False``: theta alone, single-axis), so the alignment's small
    ``phi`` and ``psi`` corrections are kept. Model coordinates of the same data (e.g. a
    published traced model) map to this frame with :func:`aet_to_spec`.

    Width, intensity scale and background are unknown: written as "auto" unless ``atom_sigma``
    is given.

    Returns
    -------
    TiltSeries
        3D, lengths in angstrom.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"AET file not found: {path}")
    with _hdf5_for_reading(path, "AET tilt series") as f:
        missing = [k for k in ("projections_rows_cols_angles", "euler_angles_deg_phi_theta_psi")
                   if k not in f]
        if missing:
            raise InputError(f"{path} is not an AET tilt series: dataset {missing[0]!r} is "
                             "missing")
        data = np.asarray(f["projections_rows_cols_angles"][()])
        euler = np.asarray(f["euler_angles_deg_phi_theta_psi"][()], dtype=float)
        pixel = f.attrs.get("pixel_size_angstrom")
    where = str(path)
    if data.ndim != 3:
        raise InputError(f"{where}: projections_rows_cols_angles must be 3D, got {data.shape}")
    if euler.ndim != 2 or euler.shape != (data.shape[2], 3):
        raise InputError(f"{where}: euler angles of shape {euler.shape} do not match "
                         f"{data.shape[2]} projections")
    if pixel is None:
        raise InputError(f"{where}: root attribute pixel_size_angstrom is missing")
    stack = np.transpose(data, (2, 1, 0))  # (angles, cols -> rows along the tilt axis, rows -> u)
    euler_on = euler_frames
    if not np.all(np.isfinite(euler)):
        raise InputError(f"{where}: euler angles contain NaN or infinite values")
    frames = aet_frames(euler) if euler_on and np.any(euler[:, [0, 2]] != 0) else None
    ts = _imported(stack, np.radians(euler[:, 1]), pixel, 3, where, atom_sigma=atom_sigma,
                   bond_length=bond_length, box=box, species_weights=None,
                   length_unit="angstrom", frames=frames)
    ts.attrs["euler_angles_deg"] = json.dumps(euler.round(6).tolist())
    if frames is None and np.any(euler[:, [0, 2]] != 0):
        ts.attrs["ignored_euler_deg"] = float(np.max(np.abs(euler[:, [0, 2]])))
    return ts
