"""What does a top-level error cost? Multi-fidelity strategies side by side, paired by run seed.

    python -m benchmarks.multifidelity --out benchmarks/results/multifidelity            # Ethanol-MF, 5 seeds
    python -m benchmarks.multifidelity --task Ethanol-MF-tiny --seeds 0 1 --out /tmp/mf   # a quick look

Each (strategy, seed) episode is played on the task (``--budget`` and ``--batch-size`` override it, in
top-label equivalents) and its sealed test errors are recorded after every round beside the seconds charged
(declared costs). ``results.json`` in ``--out`` is written after every episode, and a rerun skips the
episodes it holds, so an interrupted run resumes. ``report.md`` gives, per strategy: the test force MAE,
RMSE and maximum at the end (mean and 95% t interval over seeds), the ratio to the top-level-only baseline
(``mf-top``) with its 95% interval and Holm-corrected paired p value, and the seconds charged to first reach
``--target`` (meV/Angstrom test force MAE; the same per seed, with the count of seeds that never reach it).
``--report-only`` writes the report from the episodes held (the seeds every named strategy finished).
``curves.png`` draws the test force MAE against the seconds charged (mean over seeds, 95% band). Seeds are the
independent units: every strategy plays the same seeds (same initial labels, same weights).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.stats import holm, mean_ci, paired_log_ratio

AGENTS = ("mf-top", "mf-cheap-first", "mf-cost-greedy", "mf-random")
BASELINE = "mf-top"


def play(task: str, agent_name: str, seed: int, overrides: dict[str, Any], cache_dir: str | None) -> dict:
    """One episode: per round the seconds charged, labels per level and the sealed test errors."""
    import gymnasium as gym

    import alenv  # noqa: F401
    from agents import make_agent
    from alenv.spaces import picks_to_action
    from alenv.tasks import get_task

    env = gym.make(get_task(task).id, cache_dir=cache_dir, **overrides)
    agent = make_agent(agent_name)
    rng = np.random.default_rng([seed, 17])
    t0 = time.perf_counter()
    obs, info = env.reset(seed=seed)
    u = env.unwrapped
    rounds = []

    def record(info: dict) -> None:
        test = u.test_metrics()
        m = info["metrics"]
        rounds.append({
            "cost": m["cost_used"], "labels": [m[f"n_labels[level={lv}]"] for lv in range(u.n_levels)],
            **{k: test[k] for k in ("force_mae", "force_rmse", "force_max", "energy_mae", "energy_rmse")},
        })

    record(info)
    done = False
    while not done:
        picks = agent.act(obs, info, info["max_picks"], rng)
        obs, _, done, _, info = env.step(picks_to_action(picks, obs, info))
        record(info)
    env.close()
    return {"agent": agent_name, "seed": seed, "rounds": rounds, "wall_seconds": time.perf_counter() - t0}


def cost_to(rounds: list[dict], target: float) -> float:
    """Seconds charged when the test force MAE (eV/Angstrom) first reached ``target``; NaN if it never did."""
    for r in rounds:
        if r["force_mae"] <= target:
            return float(r["cost"])
    return math.nan


def report(runs: list[dict], target_mev: float, meta: dict) -> str:
    agents = [a for a in AGENTS if any(r["agent"] == a for r in runs)]
    seeds = sorted({r["seed"] for r in runs})
    by = {(r["agent"], r["seed"]): r for r in runs}
    target = target_mev / 1000
    lines = [
        f"# Multi-fidelity strategies on {meta['task']}",
        "",
        f"`{meta['command']}`",
        "",
        f"Budget {meta['budget']} top-label equivalents ({meta['budget_seconds']:g} s of declared cost), at most "
        f"{meta['batch_size']} a round; {len(seeds)} run seeds (the independent units: every strategy plays the same "
        f"seeds). Test errors on the sealed test set at the end of the budget; ratios to `{BASELINE}` (the top level "
        "only) are paired by seed, with 95% t intervals on the log ratio and Holm-corrected paired t-test p values.",
        "",
        "| strategy | force MAE meV/Å [95% CI] | force RMSE | force max (median) | / mf-top MAE [95% CI] | Holm p "
        f"| / mf-top RMSE | seconds to {target_mev:g} meV/Å [95% CI] (seeds not reaching) | labels cheap / top |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    finals = {a: [by[(a, s)]["rounds"][-1] if (a, s) in by else None for s in seeds] for a in agents}
    comps = [a for a in agents if a != BASELINE and BASELINE in agents]
    ps = []
    for a in comps:
        ps.append(paired_log_ratio([f and f["force_mae"] for f in finals[a]],
                                   [f and f["force_mae"] for f in finals[BASELINE]]).p)
    adjusted = dict(zip(comps, holm(ps))) if comps else {}
    for a in agents:
        vals = [f for f in finals[a] if f is not None]
        mae = mean_ci([1000 * f["force_mae"] for f in vals])
        rmse = mean_ci([1000 * f["force_rmse"] for f in vals])
        fmax = float(np.median([1000 * f["force_max"] for f in vals]))
        if a in comps:
            r = paired_log_ratio([f and f["force_mae"] for f in finals[a]], [f and f["force_mae"] for f in finals[BASELINE]])
            rr = paired_log_ratio([f and f["force_rmse"] for f in finals[a]], [f and f["force_rmse"] for f in finals[BASELINE]])
            ratio, p, ratio_rmse = f"{r.ratio:.3f} [{r.lo:.3f}, {r.hi:.3f}]", f"{adjusted[a]:.3g}", f"{rr.ratio:.3f}"
        else:
            ratio, p, ratio_rmse = "1", "-", "1"
        costs = [cost_to(by[(a, s)]["rounds"], target) for s in seeds if (a, s) in by]
        reached = [c for c in costs if np.isfinite(c)]
        c = mean_ci(reached)
        cost = (f"{c[0]:.0f} [{c[1]:.0f}, {c[2]:.0f}]" if len(reached) > 1 else (f"{reached[0]:.0f}" if reached else "-"))
        cost += f" ({len(costs) - len(reached)})"
        labels = np.mean([[f["labels"][0], f["labels"][-1]] for f in vals], axis=0)
        lines.append(f"| {a} | {mae[0]:.1f} [{mae[1]:.1f}, {mae[2]:.1f}] | {rmse[0]:.1f} | {fmax:.0f} | {ratio} | {p} "
                     f"| {ratio_rmse} | {cost} | {labels[0]:.0f} / {labels[1]:.0f} |")
    lines += ["", "Per round (mean over seeds): seconds charged and test force MAE, meV/Å.", ""]
    for a in agents:
        rs = [by[(a, s)]["rounds"] for s in seeds if (a, s) in by]
        n = min(len(r) for r in rs)
        pts = ", ".join(f"{np.mean([r[i]['cost'] for r in rs]):.0f} s: {1000 * np.mean([r[i]['force_mae'] for r in rs]):.0f}"
                        for i in range(n))
        lines.append(f"- {a}: {pts}")
    lines += ["", "Wall time per episode (s): " + ", ".join(
        f"{a} {np.mean([by[(a, s)]['wall_seconds'] for s in seeds if (a, s) in by]):.0f}" for a in agents), ""]
    return "\n".join(lines)


def plot(runs: list[dict], path: Path, title: str, target_mev: float) -> None:
    """Test force MAE against seconds charged: each strategy's mean over seeds with a 95% t band (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks.stats import t_half_width

    fig, ax = plt.subplots(figsize=(6, 4))
    for a in AGENTS:
        rs = [r["rounds"] for r in runs if r["agent"] == a]
        if not rs:
            continue
        n = min(len(r) for r in rs)
        cost = np.mean([[r[i]["cost"] for i in range(n)] for r in rs], axis=0)
        err = np.log(np.array([[1000 * r[i]["force_mae"] for i in range(n)] for r in rs]))
        mean = err.mean(0)
        half = t_half_width(err) if len(rs) > 1 else np.zeros(n)
        ax.plot(cost, np.exp(mean), marker="o", ms=3, label=f"{a} ({len(rs)} seeds)")
        ax.fill_between(cost, np.exp(mean - half), np.exp(mean + half), alpha=0.2)
    ax.axhline(target_mev, color="grey", ls=":", lw=1)
    ax.set(xlabel="seconds charged (declared costs)", ylabel="test force MAE, meV/Å", yscale="log", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="Ethanol-MF")
    p.add_argument("--agents", nargs="+", default=list(AGENTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--budget", type=int, default=None, help="top-label equivalents (default: the task's)")
    p.add_argument("--batch-size", type=int, default=None, help="top-label equivalents a round (default: the task's)")
    p.add_argument("--model", default=None, help="a registered model for every level (default: the task's)")
    p.add_argument("--target", type=float, default=100.0, help="test force MAE target, meV/Angstrom")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--report-only", action="store_true", help="report the episodes --out holds; play none")
    args = p.parse_args()
    from alenv.tasks import get_task

    overrides = {k: v for k, v in (("budget", args.budget), ("batch_size", args.batch_size), ("model", args.model))
                 if v is not None}
    spec = get_task(args.task).with_overrides(**overrides)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    meta = {"task": spec.name, "budget": spec.budget, "batch_size": spec.batch_size, "model": spec.model,
            "budget_seconds": spec.budget * spec.top_cost, "overrides": overrides,
            "command": "python -m benchmarks.multifidelity " + " ".join(
                [f"--task {args.task}", "--agents " + " ".join(args.agents), "--seeds " + " ".join(map(str, args.seeds))]
                + [f"--{k.replace('_', '-')} {v}" for k, v in overrides.items()] + [f"--target {args.target:g}",
                                                                                  f"--out {args.out}"])}
    saved = json.loads(path.read_text()) if path.exists() else {"meta": meta, "runs": []}
    if saved["meta"].get("overrides") != overrides or saved["meta"].get("task") != spec.name:
        raise SystemExit(f"{path} holds runs of other settings ({saved['meta']}); use another --out")
    done = {(r["agent"], r["seed"]) for r in saved["runs"]}
    for seed in args.seeds:
        for agent in args.agents:
            if (agent, seed) in done or args.report_only:
                continue
            run = play(args.task, agent, seed, overrides, args.cache_dir)
            last = run["rounds"][-1]
            print(f"{agent} seed {seed}: {last['cost']:.1f} s, test force MAE {1000 * last['force_mae']:.1f} meV/A, "
                  f"labels {last['labels']}, {run['wall_seconds']:.0f} s wall", flush=True)
            saved["runs"].append(run)
            path.write_text(json.dumps(saved, indent=1))
    runs = [r for r in saved["runs"] if r["agent"] in args.agents and r["seed"] in args.seeds]
    if args.report_only:  # only the seeds every named strategy has played: the comparison stays paired
        complete = [s for s in args.seeds if all((a, s) in done for a in args.agents)]
        runs = [r for r in runs if r["seed"] in complete]
    if not runs:
        raise SystemExit(f"{path}: no episode to report")
    text = report(runs, args.target,
                  {**meta, "command": saved["meta"]["command"]})
    (args.out / "report.md").write_text(text)
    plot(runs, args.out / "curves.png", f"{spec.name}: top-level error against cost", args.target)
    print(text)


if __name__ == "__main__":
    main()
