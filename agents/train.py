"""Train a learned query policy (``agents.policy``) by imitating a look-ahead expert, with DAgger.

    python -m agents.train --out runs/policy                       # the training family (FAMILY)
    python -m agents.train --out runs/policy --tasks Cu-EMT-tiny --iterations 3 --episodes 2

Why imitation first: published learned acquisition (ALIL, Liu et al. 2018; ImitAL, Gonsior et al. 2022)
found that imitating a look-ahead expert learns in hundreds of episodes where RL on the sparse error-drop
reward needs tens of thousands. In pool mode every label is known in advance, so an expert can look ahead:
at each round it proposes several batches (one per heuristic in ``EXPERT_PROPOSERS`` and a few samples
of the current policy), asks ``env.lookahead`` which would leave the lowest *validation* force error after
a refit, and that batch, in its proposer's pick order, is the target.

DAgger (Ross et al. 2011): in iteration i an episode follows the expert's batch with probability
``beta ** i`` each round and the policy's own otherwise, so the policy is trained on the states it reaches
itself; all (observation, expert batch) pairs are kept and the scorer is refitted on all of them, by
maximising the Plackett-Luce log-likelihood of each expert batch (``LearnedPolicy.log_prob``).

The learner in these episodes is the bootstrap ridge committee (``model="ridge"``): a look-ahead costs one
closed-form fit per proposed batch. The sealed test sets are never read. Everything is seeded (``--seed``);
after each iteration the policy, the data set and the curve are written to ``--out`` and a rerun resumes
from there. A GPU is not used: the scorer is tiny.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from agents.policy import INPUT_SETS, LearnedPolicy, RoundContext, Scorer, input_set

# The training family: tiny pool tasks on systems that are none of the standard tasks, so that every standard
# task (ethanol, Cu, organics, malonaldehyde, water, alanine dipeptide, rMD17) is held out. Each is a tiny
# standard task with another system (and oracle), made by task overrides; its data is cached under its name.
_METAL = {"temperatures": (300.0, 800.0, 1500.0)}
FAMILY: dict[str, tuple[str, dict]] = {
    "Al-EMT-tiny": ("Cu-EMT-tiny", {"system": "al_vacancy", **_METAL}),
    "Ni-EMT-tiny": ("Cu-EMT-tiny", {"system": "ni_vacancy", **_METAL}),
    "Pt-EMT-tiny": ("Cu-EMT-tiny", {"system": "pt_vacancy", **_METAL}),
    # argon (sigma 3.4 Angstrom, epsilon 10.4 meV) solid, soft and near melting (about 35 K for 13 atoms)
    "Ar13-LJ-tiny": ("Cu-EMT-tiny", {"system": "ar13", "oracle": "lj", "temperatures": (10.0, 25.0, 40.0),
                                     "oracle_kwargs": {"sigma": 3.4, "epsilon": 0.0104, "rc": 10.2},
                                     "md": {"timestep": 5.0, "stride": 20}}),
    "FormicAcid-GFN2-tiny": ("Ethanol-GFN2-tiny", {"system": "formic_acid"}),
    "Propane-GFN2-tiny": ("Ethanol-GFN2-tiny", {"system": "propane"}),
    "Ethylamine-GFN2-tiny": ("Ethanol-GFN2-tiny", {"system": "ethylamine"}),
}
TRAINING_TASKS = tuple(FAMILY)
EXPERT_PROPOSERS = ("random", "uncertainty", "kmeans++", "fps", "trust-window", "maxdet")
POLICY_PROPOSALS = 2  # sampled batches of the current policy offered to the expert as well
OBS_KEYS = ("candidates", "embedding", "mask", "globals")


def best_batch(obs: dict, info: dict, k: int, rng: np.random.Generator, lookahead, proposers: Sequence[str],
               extra: Sequence[tuple[str, np.ndarray]] = ()) -> tuple[np.ndarray, str, np.ndarray]:
    """The look-ahead choice: each named heuristic's batch (and any ``extra`` (name, batch) pairs), scored
    by ``lookahead(batches) -> validation force MAE``; the best batch, its proposer and every score."""
    from agents import make_agent

    named = [(name, make_agent(name).act(obs, info, k, rng)) for name in proposers] + list(extra)
    maes = np.asarray(lookahead([batch for _, batch in named]))
    best = int(np.argmin(maes))
    return named[best][1], named[best][0], maes


def greedy_batch(available: np.ndarray, k: int, lookahead, shortlist: int | None, rng: np.random.Generator
                 ) -> tuple[np.ndarray, float]:
    """A batch built pick by pick: each pick adds the candidate whose addition to the picks so far leaves the
    lowest look-ahead validation force MAE, among ``shortlist`` candidates drawn anew for each pick (None:
    every available candidate). The batch and its look-ahead MAE. Costs about ``k x shortlist`` fits."""
    available = np.asarray(available, dtype=np.int64)
    picked: list[int] = []
    best_mae = float("inf")
    for _ in range(min(k, len(available))):
        left = np.setdiff1d(available, picked)
        if shortlist is not None and len(left) > shortlist:
            left = rng.choice(left, size=shortlist, replace=False)
        maes = np.asarray(lookahead([picked + [int(c)] for c in left]))
        j = int(np.argmin(maes))
        picked.append(int(left[j]))
        best_mae = float(maes[j])
    return np.array(picked, dtype=np.int64), best_mae


def expert_batch(env, obs: dict, info: dict, policy: LearnedPolicy, rng: np.random.Generator, seed: int,
                 greedy: int = 0) -> tuple[np.ndarray, str, np.ndarray]:
    """The expert's batch: the best of the heuristics' and ``POLICY_PROPOSALS`` policy samples by
    ``env.lookahead`` (and, with ``greedy`` > 0, of a batch built pick by pick among ``greedy`` candidates
    per pick: :func:`greedy_batch`); its proposer and every look-ahead MAE."""
    k = int(info["max_picks"])
    lookahead = lambda b: env.unwrapped.lookahead(b, seed=seed)  # noqa: E731
    sampler = LearnedPolicy(policy.scorer, temperature=1.0)
    samples = [("policy", sampler.act(obs, info, k, rng)) for _ in range(POLICY_PROPOSALS)]
    if greedy > 0:
        samples.append(("greedy", greedy_batch(np.flatnonzero(obs["mask"]), k, lookahead, greedy, rng)[0]))
    return best_batch(obs, info, k, rng, lookahead, EXPERT_PROPOSERS, samples)


def make_training_env(task: str, cache_dir: str | None, **settings):
    """A pool environment with the ridge learner for ``task``: a ``FAMILY`` name or a registered pool task."""
    import gymnasium as gym

    import alenv  # noqa: F401
    from alenv.tasks import get_task

    base, overrides = FAMILY.get(task, (task, {}))
    if task in FAMILY:
        overrides = {**overrides, "name": task}
    spec = get_task(base)
    if spec.mode != "pool":
        raise ValueError(f"{task} is an on-the-fly task; the look-ahead expert needs a pool task")
    return gym.make(spec.id, model="ridge", cache_dir=cache_dir, **overrides, **settings)


def rollout(task: str, seed: int, policy: LearnedPolicy, beta: float, cache_dir: str | None, data: list,
            greedy: int = 0) -> dict:
    """One episode: record the expert's batch at every round, act by the expert with probability beta."""
    from alenv.spaces import picks_to_action

    env = make_training_env(task, cache_dir)
    rng = np.random.default_rng([seed, 7])
    obs, info = env.reset(seed=seed)
    winners: list[str] = []
    done = False
    while not done:
        batch, winner, maes = expert_batch(env, obs, info, policy, rng, seed, greedy)
        data.append({**{key: np.array(obs[key]) for key in OBS_KEYS}, "batch": batch, "k": int(info["max_picks"])})
        winners.append(winner)
        picks = batch if rng.random() < beta else policy.act(obs, info, info["max_picks"], rng)
        obs, _, terminated, truncated, info = env.step(picks_to_action(picks, obs, info))
        done = terminated or truncated
    env.close()
    return {"task": task, "seed": seed, "beta": beta, "validation_force_mae": float(info["metrics"]["force_mae"]),
            "expert_winners": winners}


def fit(policy: LearnedPolicy, data: list, epochs: int, lr: float, rng: np.random.Generator) -> float:
    """Maximise the mean per-pick log-likelihood of the expert batches; returns the last epoch's loss."""
    opt = torch.optim.Adam(policy.scorer.parameters(), lr=lr)
    contexts = [RoundContext.of(d) for d in data]  # what does not depend on the weights, made once
    loss_value = float("nan")
    for _ in range(epochs):
        total = 0.0
        for j in rng.permutation(len(data)):
            d = data[j]
            loss = -policy.log_prob(d, d["batch"].tolist(), d["k"], contexts[j]) / len(d["batch"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        loss_value = total / max(len(data), 1)
    return loss_value


def save_state(out: Path, policy: LearnedPolicy, data: list, curve: list, args: argparse.Namespace) -> None:
    """Policy, data set and curve after an iteration (each file replaced whole: a kill leaves the last)."""
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    policy.save(out / "policy.tmp", iteration=len(curve), settings=json.dumps(settings))
    (out / "policy.tmp").replace(out / "policy.pt")
    arrays = {f"{j}/{key}": np.asarray(d[key]) for j, d in enumerate(data) for key in (*OBS_KEYS, "batch", "k")}
    np.savez_compressed(out / "data.tmp.npz", **arrays)
    (out / "data.tmp.npz").replace(out / "data.npz")
    (out / "curve.json").write_text(json.dumps({"settings": settings, "iterations": curve}, indent=1))


def load_state(out: Path) -> tuple[LearnedPolicy, list, list] | None:
    """What ``save_state`` wrote, or None when there is nothing to resume."""
    if not (out / "curve.json").exists():
        return None
    policy = LearnedPolicy.load(out / "policy.pt")
    z = np.load(out / "data.npz")
    n = len({name.split("/")[0] for name in z.files})
    data = [{key: (int(z[f"{j}/{key}"]) if key == "k" else z[f"{j}/{key}"]) for key in (*OBS_KEYS, "batch", "k")}
            for j in range(n)]
    return policy, data, json.loads((out / "curve.json").read_text())["iterations"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for policy.pt, data.npz and curve.json (resumes)")
    p.add_argument("--tasks", nargs="+", default=list(TRAINING_TASKS))
    p.add_argument("--iterations", type=int, default=6, help="DAgger iterations")
    p.add_argument("--episodes", type=int, default=4, help="episodes per task and iteration")
    p.add_argument("--beta", type=float, default=0.5, help="the expert acts with probability beta ** iteration")
    p.add_argument("--epochs", type=int, default=20, help="passes over the data set per iteration")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--hidden", type=int, nargs="*", default=[64, 64], help="hidden layer sizes; none: linear")
    p.add_argument("--inputs", default="all",
                   help=f"which policy inputs the scorer reads: one of {sorted(INPUT_SETS)} or names joined by commas "
                        "(ablations; 'mix' with no --hidden is the learned scalar mix of uncertainty and distance)")
    p.add_argument("--greedy", type=int, default=0, metavar="N",
                   help="the expert also builds a batch pick by pick among N candidates per pick (0: off), as the "
                        "lookahead-greedy reference does; about k x N more fits per round")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=None)
    args = p.parse_args(argv)
    if args.iterations < 1 or args.episodes < 1 or args.epochs < 1 or not 0 <= args.beta <= 1 or args.greedy < 0:
        p.error("iterations, episodes and epochs must be positive, beta in [0, 1] and --greedy >= 0")
    if any(h < 1 for h in args.hidden):
        p.error(f"hidden layer sizes must be positive, got {args.hidden}")
    try:
        inputs = input_set(args.inputs)
    except ValueError as err:
        p.error(str(err))
    from alenv.tasks import TASKS

    unknown = [t for t in args.tasks if t not in FAMILY and t not in TASKS]
    if unknown:
        p.error(f"unknown training task(s) {unknown}; the family: {', '.join(FAMILY)}; or a registered pool task")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    state = load_state(out)
    policy, data, curve = state if state else (LearnedPolicy(Scorer(args.hidden, inputs)), [], [])
    if state:
        print(f"resuming after iteration {len(curve)} ({len(data)} expert batches)", file=sys.stderr)
    for it in range(len(curve), args.iterations):
        t0 = time.perf_counter()
        beta = args.beta**it
        # episode seeds differ per iteration and from evaluation seeds (which start at 1000)
        jobs = [(task, 100 * it + e) for task in args.tasks for e in range(args.episodes)]
        episodes = [rollout(task, seed, policy, beta, args.cache_dir, data, args.greedy)
                    for task, seed in tqdm(jobs, desc=f"iteration {it}", disable=not sys.stderr.isatty())]
        loss = fit(policy, data, args.epochs, args.lr, np.random.default_rng([args.seed, it]))
        winners = [w for e in episodes for w in e["expert_winners"]]
        curve.append({
            "iteration": it, "beta": beta, "batches": len(data), "loss": loss, "seconds": time.perf_counter() - t0,
            "validation_force_mae": {t: float(np.mean([e["validation_force_mae"] for e in episodes if e["task"] == t]))
                                     for t in args.tasks},
            "expert_winners": {w: winners.count(w) for w in sorted(set(winners))},
        })
        save_state(out, policy, data, curve, args)
        print(json.dumps(curve[-1]), flush=True)


if __name__ == "__main__":
    main()
