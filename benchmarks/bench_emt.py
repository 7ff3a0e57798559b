"""EMT energy and forces of a Pd@Pt particle: ASE's Python EMT against asap3's compiled EMT.

A 3D metal potential that judges the stacked planes together (issue 38) must be cheap enough to
call inside the solver's L-BFGS-B moves: this measures one energy+forces evaluation on
particles of about 500, 1500 and 5000 atoms (the decahedra of ``bench_3d.py --scaling``; Pd core,
Pt shell), the best of ``--repeat`` runs, and checks that both give the same energy::

    python benchmarks/bench_emt.py [--sizes 500,1500,5000] [--repeat 3] [--json FILE]

asap3 is optional (``pip install asap3``, built from source: a C++ compiler is needed).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

SIZES = {500: {"p": 4, "q": 2, "r": 2}, 1500: {"p": 6, "q": 4, "r": 2},
         5000: {"p": 9, "q": 6, "r": 3}}


def particle(size):
    from ase import Atoms

    from atomtomo.phantoms import build_phantom

    cfg = build_phantom("decahedron", {**SIZES[size], "species": "Pd,Pt",
                                       "chemistry": "core-shell", "lattice_constant": 3.9})
    atoms = Atoms(symbols=[str(s) for s in cfg.species], positions=cfg.positions)
    atoms.center(vacuum=10.0)
    return atoms


def timed(atoms, calc, repeat):
    best, energy = np.inf, None
    for _ in range(repeat):
        atoms.calc = calc
        t0 = time.perf_counter()
        energy = atoms.get_potential_energy()
        forces = atoms.get_forces()
        best = min(best, time.perf_counter() - t0)
        atoms.positions = atoms.positions + 1e-4  # new positions: no cached result
    return best, float(energy), float(np.abs(forces).max())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="500,1500,5000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    from ase.calculators.emt import EMT

    try:
        from asap3 import EMT as AsapEMT
    except ImportError:
        AsapEMT = None
        print("asap3 not installed: ASE's EMT only")
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        atoms = particle(size)
        row = {"atoms": len(atoms)}
        row["ase_s"], row["ase_energy"], _ = timed(atoms.copy(), EMT(), args.repeat)
        if AsapEMT is not None:
            row["asap3_s"], row["asap3_energy"], _ = timed(atoms.copy(), AsapEMT(), args.repeat)
            row["speedup"] = row["ase_s"] / row["asap3_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
