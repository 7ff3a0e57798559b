"""The file formats of other tools: EMD tilt series, angle files, MRC densities.

* EMD (Electron Microscopy Dataset, HDF5): :func:`is_emd`, :func:`read_emd`,
  :func:`write_emd`. A tilt series is a group with attribute ``emd_group_type = 1`` holding
  ``data`` and one dimension vector ``dim1 ... dimN`` per axis, each with attributes ``name``
  and ``units``. tomviz writes ``/data/tomography`` with ``data`` of shape
  ``(n_angles, ny, nx)``, ``dim1`` the angles (units ``[deg]``, name ``angles``) and the tilt
  axis along x (``dim3``); ncempy and other writers may put the angle axis last. The reader
  finds the angle axis by its name or units and moves it first; the tilt axis among the two
  image axes is found from the data (:func:`tilt_axis_of_stack`) unless given.
* Angle files: :func:`read_angle_file` reads IMOD ``.tlt``/``.rawtlt`` (one angle per line)
  and SerialEM ``.mdoc`` (``TiltAngle = ...`` of each ``[ZValue = k]`` section).
* Densities: :func:`gaussian_density` (the density ``mu`` of spec section 1 on a voxel grid)
  and :func:`write_density_mrc` (MRC for tomviz, ChimeraX, napari, IMOD).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from ._checks import short_repr
from ._io import atomic_path
from .errors import InputError, first_line
from .geometry import Geometry

#: Units that mark an EMD dimension vector as tilt angles, with the factor to degrees.
ANGLE_UNITS = {"[deg]": 1.0, "deg": 1.0, "degree": 1.0, "degrees": 1.0, "°": 1.0,
               "[rad]": 180 / math.pi, "rad": 180 / math.pi, "radian": 180 / math.pi,
               "radians": 180 / math.pi}

#: EMD length units (EMD writes ``[n_m]`` for nanometres) -> the length unit we record.
LENGTH_UNITS = {"[n_m]": "nm", "n_m": "nm", "nm": "nm", "[nm]": "nm", "[a]": "angstrom",
                "a": "angstrom", "å": "angstrom", "[å]": "angstrom", "angstrom": "angstrom",
                "[angstrom]": "angstrom", "[p_m]": "pm", "pm": "pm", "[u_m]": "um", "um": "um",
                "[m]": "m", "m": "m"}


# ---------------------------------------------------------------------------------------------
# EMD
# ---------------------------------------------------------------------------------------------
def _attr_text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    arr = np.asarray(value)
    if arr.size == 1:
        item = arr.reshape(()).item()
        return item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
    if arr.size > 1 and arr.dtype.kind in "SUO":  # tomviz's old writer: a 1-element list
        return _attr_text(arr.reshape(-1)[0])
    return str(value)


def _emd_groups(f):
    """Paths of the EMD data groups in the open file ``f`` (tomviz's rule: attribute
    ``emd_group_type``, or a ``data`` dataset, two levels down), tilt series first."""
    import h5py

    found = []

    def visit(name, obj):
        if isinstance(obj, h5py.Group) and isinstance(obj.get("data"), h5py.Dataset):
            if "emd_group_type" in obj.attrs or "dim1" in obj:
                found.append(name)

    f.visititems(visit)
    found.sort(key=lambda p: (p != "data/tomography", p))
    return found


def is_emd(path) -> bool:
    """True if ``path`` is an HDF5 file with an EMD data group (and no atomtomo signature)."""
    import h5py

    try:
        if not h5py.is_hdf5(path):
            return False
        with h5py.File(path, "r") as f:
            if "atomtomo_format" in f.attrs:
                return False
            return bool(_emd_groups(f))
    except (OSError, ValueError):
        return False


def tilt_axis_of_stack(stack) -> int | None:
    """The image axis (1 or 2) of ``stack`` ``(n_angles, a, b)`` that runs along the tilt axis.

    Summing an image across the tilt axis' perpendicular gives, for each slice along the tilt
    axis, the slice's total mass, which does not depend on the angle. So the profile along the
    tilt axis stays the same over the series and the other does not. Returns ``None`` when the
    data cannot tell (one angle, or both profiles equally steady).
    """
    s = np.asarray(stack, dtype=float)
    if s.ndim != 3 or s.shape[0] < 2:
        return None
    scores = []
    for axis in (1, 2):
        profile = s.sum(axis=3 - axis)  # (n_angles, length along `axis`)
        spread = np.std(profile, axis=0).mean()
        scale = np.abs(profile).mean() + 1e-300
        scores.append(spread / scale)
    if not np.all(np.isfinite(scores)) or abs(scores[0] - scores[1]) < 0.1 * max(scores):
        return None
    return 1 if scores[0] < scores[1] else 2


def read_emd(path, *, pixel_size=None, tilt_axis="auto", atom_sigma=None, bond_length=None,
             length_unit=None, group=None, species_weights=None):
    """Read an EMD tilt series into a :class:`~atomtomo.tiltseries.TiltSeries`.

    Parameters
    ----------
    path : path-like
    pixel_size : float, optional
        Default: the spacing of the image dimension vectors (and their units).
    tilt_axis : {"auto", "rows", "cols"}
        Which image axis of the stored ``(n_angles, a, b)`` runs along the tilt axis: ``a``
        ("rows"), ``b`` ("cols") or "auto" (from the data, :func:`tilt_axis_of_stack`; tomviz's
        convention, ``b`` = x, when the data cannot tell). A stack ``(n_angles, n)`` is 2D.
    atom_sigma, bond_length, species_weights :
        Recorded in the tilt series (spec section 3).
    length_unit : str, optional
        Unit of ``pixel_size`` when it is given.
    group : str, optional
        The EMD group to read (default: ``data/tomography``, else the first one found).

    Returns
    -------
    TiltSeries
        Projections ``(n_angles, rows along the tilt axis, cols)``, angles in radians.
    """
    import h5py

    from .tiltseries import _imported

    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise InputError(f"EMD file not found: {path}")
    if tilt_axis not in ("auto", "rows", "cols"):
        raise InputError(f"tilt_axis must be 'auto', 'rows' or 'cols', got {short_repr(tilt_axis)}")
    try:
        if not h5py.is_hdf5(path):
            raise InputError(f"{path} is not an HDF5 (EMD) file")
        with h5py.File(path, "r") as f:
            groups = _emd_groups(f)
            if group is not None:
                group = str(group).strip("/")
                if group not in groups:
                    raise InputError(f"{where}: no EMD data group {group!r} (found: "
                                     f"{', '.join(groups) or 'none'})")
            elif not groups:
                raise InputError(f"{where} is not an EMD file: no group with a 'data' dataset "
                                 "and dimension vectors dim1, dim2, ...")
            g = f[group or groups[0]]
            data = np.asarray(g["data"][()])
            dims = []
            for k in range(1, data.ndim + 1):
                d = g.get(f"dim{k}")
                if d is None:
                    dims.append((np.arange(data.shape[k - 1], dtype=float), "", ""))
                    continue
                dims.append((np.asarray(d[()], dtype=float).reshape(-1),
                             _attr_text(d.attrs.get("name", "")).strip(),
                             _attr_text(d.attrs.get("units", "")).strip()))
    except InputError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise InputError(f"{where}: cannot read EMD file: {first_line(exc)}") from None
    if data.ndim not in (2, 3):
        raise InputError(f"{where}: EMD data of shape {data.shape}: a tilt series needs "
                         "(n_angles, n) or (n_angles, ny, nx)")
    angle_axes = [k for k, (_, name, units) in enumerate(dims)
                  if name.lower() in ("angles", "angle", "tilt", "tilt angles")
                  or units.lower() in ANGLE_UNITS]
    if not angle_axes:
        raise InputError(f"{where}: no dimension vector holds tilt angles (name 'angles' or "
                         "units '[deg]'/'[rad]'); this EMD file is a volume, not a tilt series")
    ax = angle_axes[0]
    values, _, units = dims[ax]
    if len(values) != data.shape[ax]:
        raise InputError(f"{where}: dim{ax + 1} has {len(values)} angles for "
                         f"{data.shape[ax]} images")
    angles_deg = values * ANGLE_UNITS.get(units.lower(), 1.0)
    stack = np.moveaxis(data, ax, 0)
    image_dims = [d for k, d in enumerate(dims) if k != ax]
    if data.ndim == 3:
        axis = {"rows": 1, "cols": 2}.get(tilt_axis) or tilt_axis_of_stack(stack) or 2
        if axis == 2:  # rows of the spec run along the tilt axis
            stack = np.transpose(stack, (0, 2, 1))
            image_dims = image_dims[::-1]
    unit = length_unit
    if pixel_size is None:
        pixel_size, unit = _pixel_from_dims(image_dims, where)
    ts = _imported(stack, np.radians(angles_deg), pixel_size, data.ndim, where,
                   atom_sigma=atom_sigma, bond_length=bond_length, box=None,
                   species_weights=species_weights, length_unit=unit or "")
    ts.attrs["source_format"] = "emd"
    return ts


def _pixel_from_dims(image_dims, where):
    """Pixel size and unit from the spacing of the image dimension vectors."""
    spacings = []
    for values, _, _ in image_dims:
        if len(values) < 2:
            continue
        steps = np.diff(values)
        if not np.all(np.isfinite(steps)) or np.any(steps <= 0) or \
                np.ptp(steps) > 1e-3 * abs(steps.mean()):
            raise InputError(f"{where}: the image dimension vectors are not evenly spaced; "
                             "give the pixel size (--pixel-size)")
        spacings.append(float(steps.mean()))
    if not spacings:
        raise InputError(f"{where}: no pixel size in the EMD file; give one (--pixel-size)")
    if max(spacings) > 1.001 * min(spacings):
        raise InputError(f"{where}: pixels are not square (spacings {spacings}); give the pixel "
                         "size (--pixel-size)")
    units = {u.lower() for _, _, u in image_dims}
    unit = next((LENGTH_UNITS[u] for u in units if u in LENGTH_UNITS), "")
    return spacings[0], unit


def _emd_units(length_unit: str) -> str:
    return {"nm": "[n_m]", "angstrom": "[A]", "pm": "[p_m]", "um": "[u_m]", "m": "[m]"}.get(
        str(length_unit or "").lower(), "[pix]" if not length_unit else f"[{length_unit}]")


def write_emd(ts, path) -> None:
    """Write a single-axis tilt series as a tomviz-style EMD file, atomically.

    ``/data/tomography/data`` is ``(n_angles, ny, nx)`` with the tilt axis along x (tomviz's
    convention: the spec's detector rows become x), ``dim1`` the angles in degrees, ``dim2`` and
    ``dim3`` the pixel centres in the data's unit. A 2D series is ``(n_angles, n)``. The
    atomtomo fields that EMD has no place for (atom_sigma, bond_length, species_weights, box,
    noise) are kept as attributes of the group; the ground truth is not written.
    """
    import h5py

    geo = ts.geometry
    if not isinstance(geo, Geometry) or geo.angles is None:
        raise InputError("EMD holds single-axis tilt series only (angles, no general directions)")
    from .tiltseries import _is_single_axis

    if not _is_single_axis(geo):
        raise InputError("EMD holds single-axis tilt series only; this one has general "
                         "detector directions")
    proj = np.asarray(ts.projections)
    if proj.ndim == 3:
        data = np.ascontiguousarray(np.transpose(proj, (0, 2, 1)))  # (angles, y = cols, x = rows)
    else:
        data = np.ascontiguousarray(proj)
    units = _emd_units(ts.length_unit)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs.create("version_major", 0, dtype="uint32")
            f.attrs.create("version_minor", 2, dtype="uint32")
            g = f.create_group("data").create_group("tomography")
            g.attrs.create("emd_group_type", 1, dtype="uint32")
            d = g.create_dataset("data", data=data)
            d.attrs["name"] = np.bytes_("ImageScalars")
            dims = [("angles", "[deg]", np.degrees(np.asarray(geo.angles, float)))]
            names = ("y", "x") if data.ndim == 3 else ("x",)
            for name, n in zip(names, data.shape[1:]):
                dims.append((name, units, (np.arange(n) - (n - 1) / 2) * geo.pixel_size))
            for k, (name, unit, values) in enumerate(dims, start=1):
                v = g.create_dataset(f"dim{k}", data=np.asarray(values, dtype=np.float64))
                v.attrs["name"] = np.bytes_(name)
                v.attrs["units"] = np.bytes_(unit)
            for key in ("atom_sigma", "bond_length", "noise_std", "intensity_scale",
                        "background"):
                value = getattr(ts, key, None)
                if isinstance(value, str):  # e.g. atom_sigma="auto" (spec section 3)
                    g.attrs[f"atomtomo_{key}"] = value
                elif value is not None:
                    g.attrs[f"atomtomo_{key}"] = float(value)
            if ts.species_weights:
                import json

                g.attrs["atomtomo_species_weights"] = json.dumps(ts.species_weights)
            if ts.box is not None:
                g.attrs["atomtomo_box"] = np.asarray(ts.box, dtype=np.float64)
            g.attrs["atomtomo_length_unit"] = str(ts.length_unit or "")


def emd_extras(path) -> dict:
    """The atomtomo attributes :func:`write_emd` keeps in an EMD group (empty if none)."""
    import json

    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        groups = _emd_groups(f)
        if not groups:
            return out
        attrs = f[groups[0]].attrs
        for key in attrs:
            if key.startswith("atomtomo_"):
                value = attrs[key]
                name = key[len("atomtomo_"):]
                if name == "species_weights":
                    value = json.loads(_attr_text(value))
                elif isinstance(value, (str, bytes)) or np.asarray(value).dtype.kind in "OSU":
                    value = _attr_text(value)
                elif np.ndim(value) == 0:
                    value = float(value)
                else:
                    value = np.asarray(value, float)
                out[name] = value
    return out


def read_tiltseries_any(path, **kwargs):
    """An atomtomo tilt series (spec section 3), an EMD tilt series (told apart by content), or
    an MRC stack (``.mrc``, ``.st``, ``.ali``, ...) with its angle file beside it
    (:func:`read_mrc_stack`).

    ``kwargs`` go to :func:`read_emd` (ignored for atomtomo files). For an EMD file written by
    :func:`write_emd` the atomtomo attributes it kept (atom_sigma, bond_length, ...) come back.
    """
    from .tiltseries import read_tiltseries

    import h5py

    if Path(path).suffix.lower() in MRC_STACK_SUFFIXES and not h5py.is_hdf5(path):
        return read_mrc_stack(path)
    if not is_emd(path):
        return read_tiltseries(path)
    extras = emd_extras(path)
    for key in ("atom_sigma", "bond_length", "species_weights"):
        if kwargs.get(key) is None and key in extras:
            kwargs[key] = extras[key]
    if isinstance(kwargs.get("atom_sigma"), str):  # "auto": left to the reader of the series
        extras["atom_sigma"] = kwargs.pop("atom_sigma")
    ts = read_emd(path, **kwargs)
    for key in ("atom_sigma", "intensity_scale", "background"):
        if isinstance(extras.get(key), str) and hasattr(ts, key):
            setattr(ts, key, extras[key])
    if ts.box is None and "box" in extras and len(extras["box"]) == ts.ndim:
        ts.box = np.asarray(extras["box"], float)
    if "noise_std" in extras:
        ts.noise_std = extras["noise_std"]
    return ts


# ---------------------------------------------------------------------------------------------
# angle files
# ---------------------------------------------------------------------------------------------
_MDOC_SECTION = re.compile(r"^\s*\[\s*ZValue\s*=\s*(-?\d+)\s*\]", re.IGNORECASE)
_MDOC_TILT = re.compile(r"^\s*TiltAngle\s*=\s*(\S+)", re.IGNORECASE)


def read_angle_file(path) -> list[float]:
    """Tilt angles in degrees from an angle file.

    ``.mdoc`` (SerialEM): the ``TiltAngle`` of every ``[ZValue = k]`` section, in the order of
    ``k`` (the order of the images in the stack). Anything else (IMOD ``.tlt``, ``.rawtlt``):
    one number per line (commas or blanks also separate), blank lines ignored.

    Raises
    ------
    InputError
        When the file cannot be read, holds no angle, a non-number, or (mdoc) a section without
        ``TiltAngle`` or two sections with the same ``ZValue``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read angle file {path}: {first_line(exc)}") from None
    if path.suffix.lower() == ".mdoc" or re.search(r"^\s*\[\s*ZValue", text, re.M | re.I):
        values = _mdoc_angles(text, path)
    else:
        values = []
        for line_no, line in enumerate(text.splitlines(), start=1):
            for token in line.replace(",", " ").split():
                try:
                    values.append(float(token))
                except ValueError:
                    raise InputError(f"angle file {path}, line {line_no}: {token[:20]!r} is not "
                                     "a number (degrees, one per line)") from None
    if not values:
        raise InputError(f"angle file {path} holds no angle")
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"angle file {path} holds a non-finite angle")
    return values


def _mdoc_angles(text, path) -> list[float]:
    sections = {}
    current = None
    for line_no, line in enumerate(text.splitlines(), start=1):
        m = _MDOC_SECTION.match(line)
        if m:
            current = int(m.group(1))
            if current in sections:
                raise InputError(f"{path}, line {line_no}: ZValue {current} appears twice")
            sections[current] = None
            continue
        if line.lstrip().startswith("["):  # another kind of section ([T = ...], [MontSection])
            current = None
            continue
        m = _MDOC_TILT.match(line)
        if m and current is not None:
            try:
                sections[current] = float(m.group(1))
            except ValueError:
                raise InputError(f"{path}, line {line_no}: TiltAngle {m.group(1)[:20]!r} is not "
                                 "a number") from None
    if not sections:
        raise InputError(f"{path}: no [ZValue = k] section; not a SerialEM .mdoc")
    missing = [z for z, a in sections.items() if a is None]
    if missing:
        raise InputError(f"{path}: section [ZValue = {missing[0]}] has no TiltAngle")
    return [sections[z] for z in sorted(sections)]


#: Extensions of MRC tilt stacks (IMOD: .st raw stack, .ali aligned, .preali pre-aligned).
MRC_STACK_SUFFIXES = (".mrc", ".mrcs", ".st", ".ali", ".preali")


def find_angle_file(stack) -> Path | None:
    """The angle file that SerialEM or IMOD keep beside a stack, if any.

    Looked for, in order: ``STACK.mdoc`` (SerialEM: ``name.mrc.mdoc``), ``name.rawtlt``,
    ``name.tlt`` (IMOD), ``name.mdoc``.
    """
    stack = Path(stack)
    for candidate in (stack.with_name(stack.name + ".mdoc"), stack.with_suffix(".rawtlt"),
                      stack.with_suffix(".tlt"), stack.with_suffix(".mdoc")):
        if candidate.is_file():
            return candidate
    return None


def read_mrc_stack(path, angles_file=None, **kwargs):
    """An MRC tilt stack with its angles from the angle file beside it (:func:`find_angle_file`)
    or ``angles_file``; the pixel size from the header unless given (``kwargs`` go to
    :func:`atomtomo.tiltseries.import_mrc`). The angle file used is recorded as the
    attribute ``angles_file``."""
    from .tiltseries import import_mrc

    path = Path(path)
    angles_file = find_angle_file(path) if angles_file is None else Path(angles_file)
    if angles_file is None:
        raise InputError(f"{path}: no angle file beside the stack ({path.name}.mdoc, "
                         f"{path.stem}.rawtlt or {path.stem}.tlt); give the angles with "
                         f"'atomtomo import-mrc {path.name} --angles FILE'")
    angles = np.radians(read_angle_file(angles_file))
    pixel = kwargs.pop("pixel_size", None)
    ts = import_mrc(path, angles, pixel, **kwargs)
    ts.attrs["angles_file"] = angles_file.name
    return ts


# ---------------------------------------------------------------------------------------------
# densities
# ---------------------------------------------------------------------------------------------
def density_grid(box, voxel_size):
    """Voxel centres along each axis for ``box`` ``(d, 2)``: a list of 1D arrays."""
    box = np.asarray(box, float)
    axes = []
    for lo, hi in box:
        n = max(1, int(math.ceil((hi - lo) / voxel_size - 1e-9)))
        centre = (lo + hi) / 2
        axes.append(centre + (np.arange(n) - (n - 1) / 2) * voxel_size)
    return axes


def gaussian_density(config, sigma, box=None, voxel_size=None, max_voxels=256 ** 3):
    """The density ``mu = sum_i w_i N(x_i, sigma^2 I)`` (spec section 1) sampled on a grid.

    Parameters
    ----------
    config : Configuration
    sigma : float
        Atom width.
    box : (d, 2) array_like, optional
        Default: the atoms' extent padded by ``4 sigma``.
    voxel_size : float, optional
        Default ``sigma / 2`` (two samples per sigma: the Gaussians are resolved).
    max_voxels : int
        A larger grid is refused (InputError) rather than filling the memory.

    Returns
    -------
    density : ndarray
        Indexed ``[ix, iy(, iz)]``, in weight per unit volume (area in 2D).
    axes : list of ndarray
        Voxel centres along each axis.
    """
    sigma = float(sigma)
    if not (math.isfinite(sigma) and sigma > 0):
        raise InputError(f"sigma must be a positive number, got {short_repr(sigma)}")
    pos = np.asarray(config.positions, float)
    if box is None:
        if len(pos) == 0:
            raise InputError("no atoms and no box: nothing to sample")
        box = np.column_stack([pos.min(0) - 4 * sigma, pos.max(0) + 4 * sigma])
    voxel = sigma / 2 if voxel_size is None else float(voxel_size)
    if not (math.isfinite(voxel) and voxel > 0):
        raise InputError(f"voxel size must be a positive number, got {short_repr(voxel_size)}")
    axes = density_grid(box, voxel)
    n = int(np.prod([len(a) for a in axes]))
    if n > max_voxels:
        raise InputError(f"a grid of {' x '.join(str(len(a)) for a in axes)} voxels is too "
                         f"large (over {max_voxels}); choose a larger voxel size")
    w = np.asarray(config.weights, float)
    norm = 1.0 / (math.sqrt(2 * math.pi) * sigma)
    factors = [norm * np.exp(-0.5 * ((a[None, :] - pos[:, [k]]) / sigma) ** 2)
               for k, a in enumerate(axes)]  # (n_atoms, n_k) per axis
    if len(axes) == 2:
        density = (factors[0] * w[:, None]).T @ factors[1]
    else:
        # sum_i w_i gx[i, x] gy[i, y] gz[i, z], in blocks of atoms (bounded memory)
        density = np.zeros([len(a) for a in axes])
        for s in range(0, len(pos), 256):
            b = slice(s, s + 256)
            gyz = factors[1][b, :, None] * factors[2][b, None, :]
            density += np.tensordot((factors[0][b] * w[b, None]).T, gyz, axes=(1, 0))
    return density, axes


def write_density_mrc(density, axes, path, length_unit="") -> None:
    """Write a density indexed ``[ix, iy(, iz)]`` on the voxel centres ``axes`` as MRC.

    MRC stores ``(z, y, x)``; the voxel size and the origin (the corner of the first voxel)
    are in the header, in angstrom as the format wants: lengths in nm are converted, other
    units are written as they are (a dimensionless phantom's unit becomes one angstrom). A 2D
    density is one image.
    """
    import mrcfile

    density = np.asarray(density, dtype=np.float32)
    steps = [float(a[1] - a[0]) if len(a) > 1 else None for a in axes]
    known = [h for h in steps if h]
    steps = [h or (known[0] if known else 1.0) for h in steps]
    to_angstrom = {"nm": 10.0, "pm": 0.01, "um": 1e4}.get(str(length_unit).lower(), 1.0)
    if density.ndim == 2:
        data = density.T[None]  # (1, y, x)
    else:
        data = np.transpose(density, (2, 1, 0))  # (z, y, x)
    with atomic_path(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(data))
            size = [h * to_angstrom for h in steps] + [steps[-1] * to_angstrom] * (3 - len(steps))
            mrc.voxel_size = tuple(size)
            origin = [a[0] - h / 2 for a, h in zip(axes, steps)] + [0.0] * (3 - len(axes))
            mrc.header.origin.x = origin[0] * to_angstrom
            mrc.header.origin.y = origin[1] * to_angstrom
            mrc.header.origin.z = origin[2] * to_angstrom
