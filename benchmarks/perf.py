"""Speed of the loop: per-round overhead (train + predict + observe) against oracle time.

    python -m benchmarks.perf                      # Ethanol-GFN2 and Cu-EMT, default settings
    python -m benchmarks.perf --tasks Ethanol-GFN2-tiny --agent random
    python -m benchmarks.perf --tasks --md-tasks Ethanol-GFN2-OTF   # only MD speed, ensemble vs oracle
    python -m benchmarks.perf --tasks Ethanol-GFN2 --before 1c99723 # per round: this code and REV's, side by side
    python -m benchmarks.perf --tasks --rl-tasks Cu-EMT-tiny Cu-EMT   # only the RL step rate on the ridge learner

For each task it reports the one-time costs (pool and test set by oracle MD, descriptors and their
Jacobians), then plays one episode and reports per round: oracle seconds charged (the original compute
time of the labels), wall seconds of training, test evaluation and observation (pool prediction), and
their ratio; plus the time of one prediction over the whole pool and the peak memory of the process that
played the task (each task runs in a fresh process). Targets (2 CPU cores): whole default
Ethanol-GFN2 episode <= 60 s once cached, median overhead per round <= 1.5 s, pool prediction <= 0.5 s.

For on-the-fly tasks it reports MD steps per second with the ensemble calculator (plain, with the
failure checks of every step, and uncertainty-biased) next to the same MD with the oracle.

For policy training it reports RL steps per second: random valid single picks (``SinglePick``) on the fast
ridge learner (``model="ridge"``), resets included, on the tiny and the full-size variants of the training
tasks, as wall and as CPU seconds of one process (one torch thread; the load average is printed beside).
Target: at least 200 steps per CPU-second on a tiny task.
"""

from __future__ import annotations

import argparse
import sys
import json
import statistics
import time
from contextlib import ExitStack

from benchmarks.fast_learner import rl_rate
from benchmarks.worktree import checkout


def measure(task: str, agent_name: str, seed: int, cache_dir: str | None) -> dict:
    import gymnasium as gym
    import numpy as np

    import alenv  # noqa: F401
    from agents import make_agent
    from alenv.tasks import get_task

    print(f"{task}: building the task (its first use makes the data by oracle MD) and playing one episode", flush=True)
    t0 = time.perf_counter()
    env = gym.make(get_task(task).id, cache_dir=cache_dir, progress=sys.stderr.isatty(), wall_times=True)
    make_seconds = time.perf_counter() - t0
    u = env.unwrapped
    meta_path = None if u.task.system == "dataset" else u.cache_dir / "tasks" / u.task.data_key() / "meta.json"
    build_seconds = json.loads(meta_path.read_text())["seconds"] if meta_path and meta_path.exists() else float("nan")
    agent = make_agent(agent_name)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    obs, info = env.reset(seed=seed)
    reset_seconds = time.perf_counter() - t0
    rounds = []
    done = False
    oracle_before = info["metrics"]["oracle_seconds"]
    while not done:
        a = agent.act(obs, info, info["max_picks"], rng)
        obs, r, done, _, info = env.step(a)
        tm = info["timings"]
        oracle = info["metrics"]["oracle_seconds"] - oracle_before
        oracle_before = info["metrics"]["oracle_seconds"]
        overhead = tm.get("train", 0.0) + tm.get("evaluate", 0.0) + tm["observe"]
        rounds.append({**tm, "overhead": overhead, "oracle": oracle})
    episode_seconds = reset_seconds + sum(info_r["label"] + info_r["overhead"] for info_r in rounds)
    pred = []
    for _ in range(5):
        t = time.perf_counter()
        u.potential.predict(u.candidates)
        pred.append(time.perf_counter() - t)
    med = lambda k: statistics.median(r[k] for r in rounds)  # noqa: E731
    return {
        "task": task,
        "pool": u.n_pool,
        "test": len(u.test_frames),
        "members": u.potential.n_members,
        "build_s": build_seconds,
        "make_s": make_seconds,
        "featurize_s": u.featurize_seconds,
        "reset_s": reset_seconds,
        "episode_s": episode_seconds,
        "rounds": len(rounds),
        "train_med_s": med("train"),
        "evaluate_med_s": med("evaluate"),
        "observe_med_s": med("observe"),
        "overhead_med_s": med("overhead"),
        "oracle_med_s": med("oracle"),
        "predict_pool_s": statistics.median(pred),
        "final_force_mae_meV": 1000 * info["metrics"]["force_mae"],
        "streamed": sorted(getattr(u, "streamed", ())),
        "peak_gb": _peak_gb(),
    }


def _peak_gb() -> float:
    """Peak resident memory of this process so far, GB (``ru_maxrss`` is in KiB on Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _use_code(code: str) -> None:
    """Worker initialiser: import alenv and agents from ``code`` (a checkout of another revision)."""
    sys.path.insert(0, code)


def isolated(fn, *args, code: str | None = None):
    """``fn(*args)`` in a fresh process, so that its peak memory is its own and not an earlier task's;
    with ``code``, alenv and agents are imported from that checkout."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    init = {"initializer": _use_code, "initargs": (code,)} if code else {}
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"), **init) as pool:
        return pool.submit(fn, *args).result()


def md_speed(task: str, n_steps: int, seed: int, cache_dir: str | None) -> dict:
    """MD steps per second with the ensemble (plain, with the failure checks, uncertainty-biased) and with
    the task's oracle, from the same starting structure at the task's highest temperature."""
    import dataclasses

    import gymnasium as gym
    import numpy as np

    import alenv  # noqa: F401
    from alenv.models.calculator import UncertaintyBiasedCalculator
    from alenv.tasks import get_task
    from alenv.samplers.dynamics import langevin, thermalise
    from alenv.samplers.failures import FailureChecks
    from alenv.samplers.model_md import ModelMD, Walker

    print(f"{task}: building the task and timing {n_steps} MD steps per calculator", flush=True)
    env = gym.make(get_task(task).id, cache_dir=cache_dir, progress=sys.stderr.isatty())
    u = env.unwrapped
    u.reset(seed=seed)
    start, T = u.reserve_frames[0], max(u.task.temperatures)
    md = u.task.md

    def plain(calc) -> float:
        rng = np.random.default_rng(seed)
        atoms = thermalise(start, T, rng)
        atoms.calc = calc
        dyn = langevin(atoms, md, T, rng)
        dyn.run(2)  # warm-up (first calls build caches)
        t = time.perf_counter()
        dyn.run(n_steps)
        return n_steps / (time.perf_counter() - t)

    def checked() -> float:
        lax = dataclasses.replace(u.task.otf, checks=FailureChecks(max_energy_change=1e9, max_force_std=1e9))
        sampler = ModelMD(md, lax)
        rng = np.random.default_rng(seed)
        walker = Walker(thermalise(start, T, rng), T)
        t = time.perf_counter()
        n, _ = sampler.run_steps(walker, u.potential.as_calculator(), n_steps, rng, u.energy_window, u.n_fragments_ref)
        return n / (time.perf_counter() - t)

    oracle = u.oracle.oracle.calculator  # the cached wrapper holds the task's oracle
    return {
        "task": task,
        "atoms": len(start),
        "members": u.potential.n_members,
        "ensemble": plain(u.potential.as_calculator()),
        "ensemble_checked": checked(),
        "biased": plain(UncertaintyBiasedCalculator(u.potential, 0.5, 0.02)),
        "oracle": plain(oracle),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="*", default=["Ethanol-GFN2", "Cu-EMT"])
    p.add_argument("--agent", default="uncertainty")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--md-tasks", nargs="*", default=None,
                   help="on-the-fly tasks whose MD speed to measure (default: two, unless --tasks is given)")
    p.add_argument("--md-steps", type=int, default=300)
    p.add_argument("--rl-tasks", nargs="*", default=None,
                   help="tasks whose RL step rate on the ridge learner to measure (default: Ethanol-GFN2 and "
                        "Cu-EMT, tiny and full size, unless --tasks is given)")
    p.add_argument("--rl-steps", type=int, default=1000, help="single picks timed per RL task")
    p.add_argument("--before", default=None, metavar="REV",
                   help="also play each pool task with the code of git revision REV, side by side (e.g. 1c99723: "
                        "the learner of fixed 60 steps per round)")
    args = p.parse_args()
    explicit = any(a.startswith("--tasks") for a in sys.argv[1:])  # defaults only when no pool task was named
    if args.md_tasks is None:
        args.md_tasks = [] if explicit else ["Ethanol-GFN2-OTF", "AlanineDipeptide-GFN2-OTF"]
    if args.rl_tasks is None:
        args.rl_tasks = [] if explicit else ["Ethanol-GFN2-tiny", "Ethanol-GFN2", "Cu-EMT-tiny", "Cu-EMT"]
    rl_rows = [isolated(rl_rate, t, args.rl_steps, args.cache_dir) for t in args.rl_tasks]
    if rl_rows:
        print()
        print(f"RL steps per second (random single picks on the ridge learner, resets included, {args.rl_steps} steps)")
        print(f"{'task':<28} {'pool':>5} {'episodes':>8} {'per wall s':>10} {'per CPU s':>10} {'load':>5}")
        for r in rl_rows:
            print(f"{r['task']:<28} {r['pool']:>5} {r['episodes']:>8} {r['steps_per_second']:>10.1f} "
                  f"{r['steps_per_cpu_second']:>10.1f} {r['load_average']:>5.1f}")
    md_rows = [md_speed(t, args.md_steps, args.seed, args.cache_dir) for t in args.md_tasks]
    if md_rows:
        print()
        print(f"MD steps per second ({args.md_steps} Langevin steps at the task's highest temperature)")
        print(f"{'task':<28} {'atoms':>5} {'ensemble':>9} {'+checks':>8} {'biased':>7} {'oracle':>7} {'ens/oracle':>10}")
        for r in md_rows:
            print(
                f"{r['task']:<28} {r['atoms']:>5} {r['ensemble']:>9.0f} {r['ensemble_checked']:>8.0f} "
                f"{r['biased']:>7.0f} {r['oracle']:>7.0f} {r['ensemble'] / r['oracle']:>10.2f}"
            )
    with ExitStack() as stack:
        codes = {"current": None}
        if args.before:
            codes = {args.before: str(stack.enter_context(checkout(args.before))), **codes}
        rows = [{**isolated(measure, t, args.agent, args.seed, args.cache_dir, code=code), "code": name}
                for t in args.tasks for name, code in codes.items()]
    label = (lambda r: f"{r['task']} ({r['code']})") if args.before else (lambda r: r["task"])
    print()
    print("one-time costs (seconds)")
    print(f"{'task':<20} {'pool':>5} {'test':>5} {'oracle MD':>10} {'make env':>9} {'descriptors':>12} {'peak GB':>8}  streamed")
    for r in rows:
        print(f"{label(r):<20} {r['pool']:>5} {r['test']:>5} {r['build_s']:>10.1f} {r['make_s']:>9.1f} "
              f"{r['featurize_s']:>12.1f} {r['peak_gb']:>8.2f}  {', '.join(r['streamed']) or '-'}")
    print()
    print("per round, median seconds (overhead = train + evaluate + observe; oracle = charged label time)")
    print(
        f"{'task':<20} {'train':>6} {'eval':>6} {'observe':>8} {'overhead':>9} {'oracle':>7} {'ratio':>6} "
        f"{'predict pool':>13} {'episode':>8} {'F MAE':>7}"
    )
    for r in rows:
        ratio = r["overhead_med_s"] / r["oracle_med_s"] if r["oracle_med_s"] > 0 else float("inf")
        print(
            f"{label(r):<20} {r['train_med_s']:>6.2f} {r['evaluate_med_s']:>6.2f} {r['observe_med_s']:>8.2f} "
            f"{r['overhead_med_s']:>9.2f} {r['oracle_med_s']:>7.3f} {ratio:>6.1f} {r['predict_pool_s']:>13.2f} "
            f"{r['episode_s']:>8.1f} {r['final_force_mae_meV']:>7.1f}"
        )
    print()
    print("targets: Ethanol-GFN2 episode <= 60 s, overhead <= 1.5 s per round, pool prediction <= 0.5 s")


if __name__ == "__main__":
    main()
