"""A learned query policy that runs on any task: one small network scores every candidate alike.

The policy never sees a candidate's index or the pool size. Each candidate is described by inputs that mean
the same on every task (``POLICY_INPUTS``): its ensemble spreads and distance to the labelled set as
within-round z-scores of log values and as within-round ranks, its signal-to-noise ratio, how crowded its
neighbourhood of the embedding is, its distance to the labelled set *and the candidates already picked this
round* (so a batch spreads out), and the learner's state from ``obs["globals"]`` (budget spent, validation
error, failures), never anything derived from the test set. A shared MLP maps each row to a score; a batch
is built one pick at a time, the picked-set inputs updated after each pick, greedily by default or by
sampling from the softmax of the scores (``temperature``), which is what training needs.

Scores depend only on the set of candidates, not on their order in the observation (a test checks it), so
one network plays pools of 60 or 2,000 candidates, on-the-fly slots and every task's descriptors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from scipy.stats import rankdata

from alenv.observe import CANDIDATE_FEATURES, GLOBAL_FEATURES

# the spreads and the distance are heavy-tailed (force_std_max from 0.19 to 23 eV/Angstrom across tasks):
# the policy sees their logs, standardised within the round, and their ranks
SPREADS: tuple[str, ...] = ("energy_std_per_atom", "force_std_mean", "force_std_max", "force_std_rel", "dist_to_train")
GLOBALS: tuple[str, ...] = ("budget_used", "n_labels", "log10_force_mae", "failed_fraction")
DEFAULT_CHECKPOINT = Path(__file__).parent / "checkpoints" / "learned-v1.pt"  # see checkpoints/README.md
DENSITY_NEIGHBOURS = 5  # crowding: mean embedding distance to this many nearest candidates of the round

POLICY_INPUTS: tuple[str, ...] = (
    *(f"z_log_{f}" for f in SPREADS),
    *(f"rank_{f}" for f in SPREADS),
    "z_log_signal_to_noise",  # force_std_mean / noise_sigma: spread that label noise cannot explain
    "rank_crowding",  # 0: the most isolated candidate of the round, 1: the most crowded
    "log_dist_to_chosen",  # log of (distance to labelled or picked) / (median distance to labelled)
    "picked_fraction",  # picks made this round / picks to make
    *(f"global_{g}" for g in GLOBALS),
)
# Named subsets of the inputs, for ablations and for the learned scalar mix (``python -m agents.train --inputs``)
INPUT_SETS: dict[str, tuple[str, ...]] = {
    "all": POLICY_INPUTS,
    # uncertainty and distance only: with no hidden layer, a learned weighted sum of the two (a scalar mix)
    "mix": ("z_log_force_std_max", "log_dist_to_chosen"),
    "no-density-distance": tuple(
        n for n in POLICY_INPUTS if n not in ("z_log_dist_to_train", "rank_dist_to_train", "rank_crowding", "log_dist_to_chosen")
    ),
    "no-learner-state": tuple(n for n in POLICY_INPUTS if not n.startswith("global_")),
}


def input_set(spec: str | Sequence[str]) -> tuple[str, ...]:
    """The inputs named by ``spec``: a key of ``INPUT_SETS``, or input names (a list, or one string with
    commas); ValueError for an unknown or repeated name."""
    if isinstance(spec, str):
        if spec in INPUT_SETS:
            return INPUT_SETS[spec]
        spec = [s.strip() for s in spec.split(",") if s.strip()]
    names = tuple(spec)
    unknown = [n for n in names if n not in POLICY_INPUTS]
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(f"inputs must be one of {sorted(INPUT_SETS)} or distinct names from {list(POLICY_INPUTS)}; got {list(names)}")
    return names


def _z(x: np.ndarray) -> np.ndarray:
    sd = float(x.std())
    return (x - x.mean()) / sd if sd > 1e-12 else np.zeros_like(x)


def _rank(x: np.ndarray) -> np.ndarray:
    """Ranks scaled to [0, 1], tied values sharing their mean rank (so the order of candidates never
    matters); 0.5 for a single candidate."""
    n = len(x)
    if n == 1:
        return np.full(1, 0.5)
    return (rankdata(x, method="average") - 1) / (n - 1)


@dataclass
class RoundContext:
    """What the inputs of one round's candidates share, computed once per observation: the per-candidate
    columns that do not change while a batch is built, and the embedding distances the picks update."""

    rows: np.ndarray  # candidate indices with obs["mask"] == 1
    static: np.ndarray  # (len(rows), number of static inputs)
    embedding: np.ndarray  # (len(rows), D)
    dist_to_train: np.ndarray  # (len(rows),)
    scale: float  # median distance to the labelled set (> 0)
    globals: np.ndarray  # (len(GLOBALS),)

    @classmethod
    def of(cls, obs: dict) -> "RoundContext":
        mask = np.asarray(obs["mask"]).astype(bool)
        rows = np.flatnonzero(mask)
        if len(rows) == 0:
            raise ValueError("no candidate is available in this observation")
        cand = np.asarray(obs["candidates"], dtype=np.float64)[rows]
        col = {name: cand[:, j] for j, name in enumerate(CANDIDATE_FEATURES)}
        logs = {f: np.log(np.maximum(col[f], 0.0) + 1e-8) for f in SPREADS}
        snr = np.log((np.maximum(col["force_std_mean"], 0.0) + 1e-8) / (np.maximum(col["noise_sigma"], 0.0) + 1e-3))
        emb = np.asarray(obs["embedding"], dtype=np.float64)[rows]
        crowd = _crowding(emb)
        static = np.column_stack(
            [_z(logs[f]) for f in SPREADS] + [_rank(logs[f]) for f in SPREADS] + [_z(snr), _rank(-crowd)]
        )
        g = np.asarray(obs["globals"], dtype=np.float64)
        glob = np.array([g[GLOBAL_FEATURES.index(name)] for name in GLOBALS])
        glob = np.where(np.isfinite(glob), glob, 0.0)
        dist = np.maximum(col["dist_to_train"], 0.0)
        scale = float(np.median(dist))
        return cls(rows, static, emb, dist, scale if scale > 1e-12 else 1.0, glob)

    def inputs(self, nearest_chosen: np.ndarray, picked_fraction: float) -> np.ndarray:
        """(len(rows), len(POLICY_INPUTS)) float32 inputs, given each candidate's distance to the labelled
        set or the candidates picked so far."""
        n = len(self.rows)
        dyn = np.column_stack([
            np.log(nearest_chosen / self.scale + 1e-3),
            np.full(n, picked_fraction),
        ])
        return np.hstack([self.static, dyn, np.tile(self.globals, (n, 1))]).astype(np.float32)


def _crowding(emb: np.ndarray) -> np.ndarray:
    """Mean distance to the ``DENSITY_NEIGHBOURS`` nearest other candidates (small: crowded), in chunks so
    that 2,000 candidates need no 2,000 x 2,000 matrix at once."""
    n = len(emb)
    k = min(DENSITY_NEIGHBOURS, n - 1)
    if k < 1:
        return np.zeros(n)
    sq = (emb**2).sum(1)
    out = np.empty(n)
    for lo in range(0, n, 512):
        d2 = np.maximum(sq[lo : lo + 512, None] + sq[None, :] - 2 * emb[lo : lo + 512] @ emb.T, 0.0)
        d2[np.arange(len(d2)), np.arange(lo, lo + len(d2))] = np.inf
        out[lo : lo + 512] = np.sqrt(np.partition(d2, k - 1, axis=1)[:, :k]).mean(1)
    return out


class Scorer(torch.nn.Module):
    """The shared per-candidate network: inputs (N, len(POLICY_INPUTS)) to scores (N,), reading only the
    columns named in ``inputs`` (all by default; ``hidden=()`` makes it linear in them)."""

    def __init__(self, hidden: Sequence[int] = (64, 64), inputs: str | Sequence[str] = POLICY_INPUTS):
        super().__init__()
        self.inputs = input_set(inputs if isinstance(inputs, str) else list(inputs))
        self.register_buffer("columns", torch.tensor([POLICY_INPUTS.index(n) for n in self.inputs]), persistent=False)
        sizes = [len(self.inputs), *hidden]
        layers: list[torch.nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [torch.nn.Linear(a, b), torch.nn.SiLU()]
        layers.append(torch.nn.Linear(sizes[-1], 1))
        self.net = torch.nn.Sequential(*layers)
        self.hidden = tuple(int(h) for h in hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != len(POLICY_INPUTS):
            raise ValueError(f"the scorer takes all {len(POLICY_INPUTS)} policy inputs per candidate, got {x.shape[-1]}")
        return self.net(x[..., self.columns])[..., 0]


class LearnedPolicy:
    """Builds a batch from a ``Scorer``: ``act(obs, info, k, rng)`` like every agent (``agents.strategy``).

    ``temperature`` 0 (the default) picks the best score each time; above 0 each pick is drawn from the
    softmax of scores / temperature over the candidates still available (the policy's Plackett-Luce
    distribution over ordered batches, whose log-probability ``log_prob`` gives for training).
    """

    def __init__(self, scorer: Scorer, temperature: float = 0.0, name: str = "learned"):
        if temperature < 0 or not math.isfinite(temperature):
            raise ValueError(f"temperature must be finite and non-negative, got {temperature}")
        self.scorer, self.temperature, self.name = scorer, float(temperature), name
        self.checkpoint: str | None = None  # the file name when loaded from one

    def rounds(self, obs: dict, picks: Sequence[int], k: int,
               ctx: RoundContext | None = None) -> tuple[RoundContext, list[np.ndarray], list[int]]:
        """The inputs before each pick of ``picks`` (candidate indices, in order) and each pick's position
        among the available rows: what training scores. ``ctx``: ``RoundContext.of(obs)`` if already made
        (training reuses it every epoch; its crowding input costs O(N^2) in the candidates)."""
        ctx = RoundContext.of(obs) if ctx is None else ctx
        where = {int(r): i for i, r in enumerate(ctx.rows)}
        nearest = ctx.dist_to_train.copy()
        xs, pos = [], []
        for j, p in enumerate(picks):
            if int(p) not in where:
                raise ValueError(f"candidate {p} is not available in this observation")
            xs.append(ctx.inputs(nearest, j / max(k, 1)))
            i = where[int(p)]
            pos.append(i)
            nearest = np.minimum(nearest, np.linalg.norm(ctx.embedding - ctx.embedding[i], axis=1))
        return ctx, xs, pos

    def log_prob(self, obs: dict, picks: Sequence[int], k: int, ctx: RoundContext | None = None) -> torch.Tensor:
        """Log-probability (with gradient) of the ordered batch ``picks`` under the softmax of the scores
        (temperature 1), each pick among the candidates not yet picked (``ctx`` as in ``rounds``)."""
        _, xs, pos = self.rounds(obs, picks, k, ctx)
        total = torch.zeros(())
        taken: list[int] = []
        for x, i in zip(xs, pos):
            s = self.scorer(torch.from_numpy(x))
            if taken:
                s = s.masked_fill(torch.isin(torch.arange(len(s)), torch.tensor(taken)), -torch.inf)
            total = total + torch.log_softmax(s, 0)[i]
            taken.append(i)
        return total

    @torch.no_grad()
    def act(self, obs: dict, info: dict, k: int, rng: np.random.Generator) -> np.ndarray:
        """k distinct available candidates (exactly k; on-the-fly mode too), best first."""
        ctx = RoundContext.of(obs)
        k = int(k)
        if not 0 <= k <= len(ctx.rows):
            raise ValueError(f"cannot select {k} of {len(ctx.rows)} available candidates")
        nearest = ctx.dist_to_train.copy()
        free = np.ones(len(ctx.rows), dtype=bool)
        out = []
        for j in range(k):
            s = self.scorer(torch.from_numpy(ctx.inputs(nearest, j / k))).double().numpy()
            s[~free] = -np.inf
            if self.temperature > 0:
                z = s / self.temperature
                p = np.exp(z - z[free].max())
                p[~free] = 0.0
                i = int(rng.choice(len(p), p=p / p.sum()))
            else:
                i = int(np.argmax(s))
            free[i] = False
            out.append(int(ctx.rows[i]))
            nearest = np.minimum(nearest, np.linalg.norm(ctx.embedding - ctx.embedding[i], axis=1))
        return np.array(out, dtype=np.int64)

    # ----------------------------------------------------------------------------------- checkpoints
    def save(self, path: str | Path, **meta: Any) -> None:
        """Weights, inputs and architecture (and any ``meta``: training settings, seeds) in one file."""
        torch.save({"state_dict": self.scorer.state_dict(), "inputs": list(self.scorer.inputs),
                    "hidden": list(self.scorer.hidden), "meta": meta}, Path(path))

    @classmethod
    def load(cls, path: str | Path, temperature: float = 0.0) -> "LearnedPolicy":
        """A policy from ``save``'s file; refuses one that reads inputs this version does not compute."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no policy checkpoint at {path}")
        ck = torch.load(path, map_location="cpu", weights_only=True)
        try:
            inputs = input_set(list(ck.get("inputs", [])))
        except ValueError:
            raise ValueError(f"{path} was trained on inputs {ck.get('inputs')}, this version computes {list(POLICY_INPUTS)}") from None
        scorer = Scorer(ck["hidden"], inputs)
        try:
            scorer.load_state_dict(ck["state_dict"])
        except RuntimeError as err:
            raise ValueError(f"{path}: its weights do not fit its inputs {list(inputs)} and layers {ck['hidden']}") from err
        scorer.eval()
        policy = cls(scorer, temperature)
        policy.checkpoint = path.name  # which file played, recorded with each run (benchmarks.run)
        return policy
