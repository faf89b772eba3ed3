"""Names of the ``info`` entries and metrics, with their units, in one table.

Code refers to these constants; ``METRICS`` and ``INFO`` document every key that an environment may put in
``info`` (and that the runner records per round), so that a reader finds a key's meaning and unit here.
"""

from __future__ import annotations

# --- info entries
METRICS_KEY = "metrics"
ROUND = "round"
CHOSEN = "chosen"
FAILED = "failed"
MAX_PICKS = "max_picks"
ANY_SUBSET = "any_subset"
TIMINGS = "timings"
MD_FAILURE_KINDS = "md_failure_kinds"
N_MEMBERS = "n_members"
SLOT_WALKER = "slot_walker"

INFO: dict[str, str] = {
    METRICS_KEY: "dict of the metrics below",
    ROUND: "rounds played so far [count]; 0 after reset",
    CHOSEN: "candidate indices labelled this round (list of int)",
    FAILED: "those of them whose calculation failed (list of int); charged, never trained on",
    MAX_PICKS: "how many candidates the next action may label [count]; pool mode needs exactly this many, "
    "on-the-fly mode at most this many; 0 once the episode is over",
    ANY_SUBSET: "True where an action may label fewer than max_picks candidates, none included (on-the-fly mode)",
    TIMINGS: "this round's wall seconds per stage (label, train, evaluate, observe, md, stability) [s]; "
    "only with wall_times=True",
    MD_FAILURE_KINDS: "on-the-fly mode: counts of this round's MD failures by kind",
    N_MEMBERS: "members of the committee [count]; spreads (and strategies that rank by them) need at least 2",
    SLOT_WALKER: "on-the-fly mode: the walker of each candidate slot, (C,) int; slots are walker-major and in MD "
    "order within a walker (the last of a walker's slots is its newest frame)",
}

# --- metrics (info["metrics"])
ENERGY_MAE = "energy_mae"
ENERGY_RMSE = "energy_rmse"
FORCE_MAE = "force_mae"
FORCE_RMSE = "force_rmse"
FORCE_MAX = "force_max"
FORCE_NORM_P95 = "force_norm_p95"
FORCE_NORM_P99 = "force_norm_p99"
ENERGY_MAE_CENTRED = "energy_mae_centred"
ENERGY_RMSE_CENTRED = "energy_rmse_centred"
N_ENERGY_FRAMES = "n_energy_frames"
N_FORCE_FRAMES = "n_force_frames"
N_LABELS = "n_labels"
N_FAILED = "n_failed"
BUDGET_USED = "budget_used"
ORACLE_SECONDS = "oracle_seconds"
TRAIN_FORCE_RMSE = "train_force_rmse"
TRAIN_SECONDS = "train_seconds"
ROUND_SECONDS = "round_seconds"
MD_STEPS = "md_steps"
MD_FAILURES = "md_failures"
MD_FAILURES_TOTAL = "md_failures_total"
MD_SURVIVED = "md_survived"
STABILITY_STEPS = "stability_steps"
STABILITY_MIN = "stability_min"
TORSION_COVERAGE = "torsion_coverage"
LABEL_TORSION_COVERAGE = "label_torsion_coverage"

# Error metrics of the potential's ensemble-mean prediction: of the validation set in info["metrics"], of
# the sealed test set in env.test_metrics(). Energy errors count every frame of the set, force errors only
# the frames that carry forces (a Dataset file may hold energy-only frames); without any, they are NaN.
TEST_METRICS = (
    ENERGY_MAE, ENERGY_RMSE, FORCE_MAE, FORCE_RMSE, FORCE_MAX, FORCE_NORM_P95, FORCE_NORM_P99,
    ENERGY_MAE_CENTRED, ENERGY_RMSE_CENTRED, N_ENERGY_FRAMES, N_FORCE_FRAMES,
)


def per_subset(key: str, subset: str) -> str:
    """Key of metric ``key`` on one subset of the test set: ``force_mae[T=300K]``, ``energy_mae[dimer_scan]``.

    A frame's subset is its temperature for MD-built tasks (``T=300K``) and its ``subset`` or ``config_type``
    tag for Dataset files (``alenv.data.subset_of``). ``env.test_metrics()`` holds every metric of
    ``TEST_METRICS`` for every subset; ``info["metrics"]`` holds none of these.
    """
    return f"{key}[{subset}]"


METRICS: dict[str, str] = {
    ENERGY_MAE: "mean absolute energy error of the ensemble mean [eV per structure]",
    ENERGY_RMSE: "root-mean-square energy error [eV per structure]",
    FORCE_MAE: "mean absolute force-component error, frames with forces [eV/Angstrom]",
    FORCE_RMSE: "root-mean-square force-component error, frames with forces [eV/Angstrom]",
    FORCE_MAX: "largest per-atom force-error norm |F_pred - F_ref| over every atom of the set's frames with "
    "forces [eV/Angstrom]",
    FORCE_NORM_P95: "95th percentile of the per-atom force-error norm |F_pred - F_ref| over every atom of the "
    "frames with forces (linear interpolation) [eV/Angstrom]",
    FORCE_NORM_P99: "99th percentile of the per-atom force-error norm, as force_norm_p95 [eV/Angstrom]",
    ENERGY_MAE_CENTRED: "energy MAE after subtracting the set's mean signed error (mean of predicted - reference): "
    "offset-invariant, as used for condensed phases [eV per structure]",
    ENERGY_RMSE_CENTRED: "energy RMSE after subtracting the mean signed error (the standard deviation of the "
    "energy error) [eV per structure]",
    N_ENERGY_FRAMES: "frames of the set that the energy errors count (every frame) [count]",
    N_FORCE_FRAMES: "frames of the set that the force errors count (those with reference forces) [count]",
    N_LABELS: "labels paid for, initial ones and failures included [count]",
    N_FAILED: "labels whose calculation failed [count]",
    BUDGET_USED: "labels requested after the initial ones [count]",
    ORACLE_SECONDS: "charged oracle time of all labels so far (original compute time for cached ones) [s]",
    TRAIN_FORCE_RMSE: "force RMSE of the ensemble mean on its own training labels [eV/Angstrom]",
    TRAIN_SECONDS: "wall time spent training so far, cumulative [s]; only with wall_times=True",
    ROUND_SECONDS: "wall time of this reset or step [s]; only with wall_times=True",
    MD_STEPS: "on-the-fly mode: model-MD steps run so far, all walkers [count]",
    MD_FAILURES: "on-the-fly mode: MD failures in the last round [count]",
    MD_FAILURES_TOTAL: "on-the-fly mode: MD failures so far [count]",
    MD_SURVIVED: "on-the-fly mode: mean steps before each walker's first failure in the last round [count]",
    STABILITY_STEPS: "on-the-fly mode: mean steps to failure of fresh MD from validation-set starts, capped [count]",
    STABILITY_MIN: "on-the-fly mode: the least of those [count]",
    TORSION_COVERAGE: "on-the-fly mode: share of the validation set's torsion cells that model MD visited [1]",
    LABEL_TORSION_COVERAGE: "on-the-fly mode: share of the validation set's torsion cells the labels cover [1]",
}
