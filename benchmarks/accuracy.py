"""Accuracy of the default ensemble on real DFT data (rMD17, PBE/def2-SVP), every training frame labelled.

    python -m benchmarks.accuracy                                  # ethanol, 1,000 frames
    python -m benchmarks.accuracy --train 250 --epochs 300
    python -m benchmarks.accuracy --molecule aspirin
    python -m benchmarks.accuracy --train 200 --delta xtb          # Delta-learning on GFN2-xTB
    python -m benchmarks.accuracy --model mace-heads --set dtype=float32 heads=4   # model settings

Trains the ensemble of the Dataset task (same descriptors and settings as the environment) from scratch
on the first ``--train`` frames of the train split and reports test errors of the ensemble mean and of
each member, the correlation of ensemble spread with true error, and the training time. Published force
MAE at 1,000 ethanol frames, for orientation: ANI 16.5, GAP 14.9, ACE 7.3, NequIP 2.8, MACE 2.1 meV/A.
Target: 20 meV/A or less.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path



def main() -> None:
    import numpy as np

    from alenv.data import read_labelled
    from alenv.datasets import RMD17_DIR
    from alenv.descriptors.representation import Representation
    from alenv.models import make_potential
    from alenv.tasks import get_task
    from benchmarks.learner import parse_settings

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(RMD17_DIR), help="folder of <molecule>_{train,test}_01.extxyz")
    p.add_argument("--molecule", default="ethanol")
    p.add_argument("--train", type=int, default=1000)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=None, help="default: the task's epochs_initial")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=None, help="a name of alenv.models.MODELS (default: the Dataset task's)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="model settings (e.g. dtype=float32 heads=4 n_members=3); values are read as YAML")
    p.add_argument("--delta", default=None, metavar="ORACLE",
                   help="learn the labels minus this baseline oracle's (e.g. xtb) with the model above (model delta)")
    args = p.parse_args()
    from alenv.threads import configure_torch

    configure_torch()  # the cores this process has (ALENV_TORCH_THREADS overrides)

    data = Path(args.data)
    frames, E, F, _ = read_labelled(data / f"{args.molecule}_train_01.extxyz")
    test, Et, Ft, _ = read_labelled(data / f"{args.molecule}_test_01.extxyz")
    frames, E, F = frames[: args.train], E[: args.train], F[: args.train]
    test, Et, Ft = test[: args.test], Et[: args.test], Ft[: args.test]
    task = get_task("Dataset")
    model = args.model or task.model
    settings = dict(task.model_kwargs) if model == task.model else {}
    if args.epochs is not None:
        settings["epochs_initial"] = args.epochs
    settings.update(parse_settings(args.set))  # YAML values, as benchmarks.learner --model
    rep = Representation.for_frames(frames + test, task.descriptor, task.embedding_dim)
    if args.delta:
        settings = {"baseline": args.delta, "model": model, "model_kwargs": settings}
        model = "delta"
    pot = make_potential(model, rep, seed=args.seed, **settings)
    t0 = time.perf_counter()
    train_set = rep.featurize(frames)
    test_set = rep.featurize(test)
    feat = time.perf_counter() - t0
    rep.set_normalisation([train_set])
    t0, c0 = time.perf_counter(), time.process_time()
    fit = pot.fit(train_set, E, F, np.random.default_rng(args.seed))
    train_seconds, train_cpu = time.perf_counter() - t0, time.process_time() - c0
    Ep, Fp = pot.predict(test_set)
    f_mae = 1000 * np.abs(Fp.mean(0) - Ft).mean()
    e_mae = 1000 * np.abs(Ep.mean(0) - Et).mean()
    members = [1000 * np.abs(Fp[m] - Ft).mean() for m in range(len(Fp))]
    err = np.abs(Fp.mean(0) - Ft).mean((1, 2))
    spread = np.sqrt(((Fp - Fp.mean(0)) ** 2).sum(-1).mean(0)).mean(1)
    corr = float(np.corrcoef(err, spread)[0, 1])
    print(f"{args.molecule}: {len(frames)} training frames, {len(test)} test frames, model {model} "
          f"({pot.n_members} members, {settings or 'defaults'}), {fit['epochs']} epochs")
    baseline = f"   (of which baseline labels: {pot.baseline_seconds:.1f} s)" if args.delta else ""
    print(f"descriptors + Jacobians: {feat:.1f} s   training: {train_seconds:.1f} s wall, {train_cpu:.1f} CPU-s"
          f" ({torch_threads()} threads){baseline}")
    print(f"ensemble mean: force MAE {f_mae:.1f} meV/A, energy MAE {e_mae:.2f} meV")
    print(f"members: force MAE {', '.join(f'{m:.1f}' for m in members)} meV/A")
    print(f"correlation of ensemble force spread with true force error (per frame): {corr:.2f}")


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main()
