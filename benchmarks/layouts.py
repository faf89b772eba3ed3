"""Cost of the flat layout against the dense one: a training step and force prediction, per system.

    python -m benchmarks.layouts                        # rMD17 ethanol and aspirin, water-96 (TIP3P box)
    python -m benchmarks.layouts --systems ethanol --steps 20

For each system the same frames are featurised both ways (dense: descriptors and Jacobians; flat:
descriptors and pair lists) and the default ensemble (5 members, 128-128, 16 frames per member and step)
trains ``--steps`` steps from the same start on each, then predicts every member's energies and forces
of ``--frames`` frames. Printed: milliseconds per training step and per predicted frame, the ratio
flat/dense, bytes held per frame by each layout, and the largest force difference between the layouts'
predictions (one set of weights). One torch thread unless ``ALENV_TORCH_THREADS`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import time

import ase.io
import numpy as np


def _frames(system: str, n: int):
    from alenv.datasets import rmd17

    if system == "water":
        from benchmarks.memory import water_frames

        return water_frames(n, np.random.default_rng(5), equilibration=500)
    return ase.io.read(rmd17(system, "train"), index=f":{n}")


def measure(system: str, n_frames: int, steps: int) -> dict:
    from alenv.descriptors.representation import Representation
    from alenv.models import make_potential

    frames = _frames(system, n_frames)
    rep = Representation.for_frames(frames)
    out = {"system": system, "atoms": len(frames[0]), "frames": n_frames, "D": rep.spec.n_features}
    data = {}
    for layout in ("dense", "flat"):
        t0 = time.perf_counter()
        data[layout] = rep.featurize(frames, layout=layout)
        out[f"featurize_ms_per_frame_{layout}"] = 1e3 * (time.perf_counter() - t0) / n_frames
    rep.set_normalisation([data["dense"]])
    d = data["dense"]
    out["bytes_per_frame_dense"] = (d.G.numel() * 4 + d.J.numel() * 4 + d.species.numel() * 8) / n_frames
    out["bytes_per_frame_flat"] = data["flat"].nbytes() / n_frames
    E = np.array([a.get_potential_energy() for a in frames])
    F = np.stack([a.get_forces() for a in frames])
    labels = {"dense": F, "flat": F.reshape(-1, 3)}
    pots = {}
    for layout in ("dense", "flat"):
        pot = make_potential("bp-ensemble", rep, seed=0, min_steps=steps, epochs_initial=1)
        fit = pot.fit(data[layout], E, labels[layout], np.random.default_rng(0))
        out[f"train_ms_per_step_{layout}"] = 1e3 * fit["train_seconds"] / fit["steps"]
        out[f"loss_forces_{layout}"] = fit["loss_forces"]
        pots[layout] = pot
    preds = {}
    for layout in ("dense", "flat"):
        pots["dense"].predict(data[layout], idx=np.arange(2))  # warm up
        t0 = time.perf_counter()
        preds[layout] = pots["dense"].predict(data[layout])
        out[f"predict_ms_per_frame_{layout}"] = 1e3 * (time.perf_counter() - t0) / n_frames
    out["force_diff_max"] = float(np.abs(preds["flat"][1] - preds["dense"][1].reshape(len(preds["dense"][1]), -1, 3)).max())
    out["force_max"] = float(np.abs(preds["dense"][1]).max())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", nargs="+", default=["ethanol", "aspirin", "water"])
    p.add_argument("--frames", type=int, default=64)
    p.add_argument("--water-frames", type=int, default=24, help="water-96 frames (dense Jacobians: 14 MB each)")
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args()
    from alenv.threads import configure_torch

    configure_torch()
    rows = []
    for system in args.systems:
        r = measure(system, args.water_frames if system == "water" else args.frames, args.steps)
        rows.append(r)
        print(
            f"{system} ({r['atoms']} atoms, D {r['D']}): train step dense {r['train_ms_per_step_dense']:.0f} ms, flat "
            f"{r['train_ms_per_step_flat']:.0f} ms ({r['train_ms_per_step_flat'] / r['train_ms_per_step_dense']:.1f}x); "
            f"force prediction dense {r['predict_ms_per_frame_dense']:.1f} ms/frame, flat "
            f"{r['predict_ms_per_frame_flat']:.1f} ({r['predict_ms_per_frame_flat'] / r['predict_ms_per_frame_dense']:.1f}x); "
            f"bytes/frame dense {r['bytes_per_frame_dense']:,.0f}, flat {r['bytes_per_frame_flat']:,.0f}; "
            f"max force difference {r['force_diff_max']:.1e} of {r['force_max']:.1f} eV/A",
            flush=True,
        )
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
