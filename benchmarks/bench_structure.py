"""Candidates for the structure analysis of reconstructions: import time, runtime, headless.

Runs each library in a fresh interpreter (so the import time is its own) on an fcc
cuboctahedron of about 5000 atoms (``fcc-particle`` size 11, 5083 atoms, 0.1 A jitter) and
prints one JSON line per candidate. OVITO: PTM structure types + coordination + alpha-shape
surface + DXA (what atomtomo.structure uses); freud: neighbour list, coordination and
Steinhardt q6/w6 (freud has no template matching or CNA). pyscal3 is not in the package index
this project installs from (only pyscal2, its predecessor), so it is not measured.

    PYTHONPATH=src python benchmarks/bench_structure.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

SETUP = """
import time, json, numpy as np
t0 = time.perf_counter()
{imports}
t_import = time.perf_counter() - t0
from atomtomo.phantoms import build_phantom
c = build_phantom('fcc-particle', {{'size': 11, 'jitter': 0.1}}, seed=0)
pos = c.positions; bond = c.info['bond_length']
t0 = time.perf_counter()
{run}
t_run = time.perf_counter() - t0
print(json.dumps({{'library': '{name}', 'n_atoms': len(pos), 'import_s': round(t_import, 3),
                   'run_s': round(t_run, 3), 'result': result}}))
"""

CANDIDATES = {
    "ovito": ("import ovito.modifiers",
              "from atomtomo.structure import analyse\n"
              "s = analyse(c, bond).summary\n"
              "result = {k: s[k] for k in ('fcc', 'hcp', 'other', 'surface_atoms', 'vacancies',"
              " 'dislocations')}"),
    "freud": ("import freud",
              "box = freud.box.Box.cube(4 * float(np.ptp(pos)) + 10)\n"
              "nq = freud.locality.AABBQuery(box, pos)\n"
              "nl = nq.query(pos, {'r_max': 1.207 * bond, 'exclude_ii': True}).toNeighborList()\n"
              "coord = np.bincount(nl.query_point_indices, minlength=len(pos))\n"
              "ql = freud.order.Steinhardt(6, wl=True)\n"
              "ql.compute((box, pos), neighbors=nl)\n"
              "result = {'mean_coordination': float(coord.mean()),"
              " 'q6_median': float(np.median(ql.particle_order))}"),
}


def main():
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", DISPLAY="")  # headless
    for name, (imports, run) in CANDIDATES.items():
        code = SETUP.format(imports=imports, run=run, name=name)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=env, timeout=600)
        line = proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 else json.dumps(
            {"library": name, "error": proc.stderr.strip().splitlines()[-1:]})
        print(line, flush=True)


if __name__ == "__main__":
    main()
