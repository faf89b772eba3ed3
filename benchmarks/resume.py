"""What a run's folder holds, whether a rerun may skip it, and which runs may be compared.

A finished run's ``results.json`` records its resolved config and a hash of it (``config_hash``), leaving
out the keys that do not change results (``NOT_RESULTS``); runs on other data seeds (``data_seed``) have
other hashes, and ``data_seed: 0`` hashes as a config without the key (made before data seeds existed). A
rerun into the same folder skips the run only when the hash is the same; with another setting it runs again
and keeps the earlier results aside as ``results.<hash>.json``. A run that raised leaves ``failed.json`` (and
its traceback in ``run.log``) and is rerun. The report compares runs only where their configs differ in swept
keys (:func:`mixed_configs`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import traceback
from pathlib import Path
from typing import Any

# Config keys that change how a run is shown or where it caches, never its results.
NOT_RESULTS: tuple[str, ...] = ("progress", "cache_dir", "torch_threads", "oracle_executor")
# Keys the runs of one report table may differ in besides their variant's (the agent's settings are
# compared within each line of the table, see :func:`mixed_configs`).
SWEPT: tuple[str, ...] = ("task.name", "task.id", "seed", "data_seed")
# Keys whose value here means what a config without the key meant (configs recorded before they existed).
DEFAULTS: dict[str, Any] = {"data_seed": 0, "agent.kwargs.normalise": "none"}
RESULTS, FAILED = "results.json", "failed.json"
_UNSET = "(unset)"


def flat(config: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1, "c": {}}}`` -> ``{"a.b": 1}`` (an empty mapping sets nothing)."""
    if isinstance(config, dict):
        out: dict[str, Any] = {}
        for key, value in config.items():
            out.update(flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: config}


def _drop(keys: dict[str, Any], prefixes: tuple[str, ...] | list[str]) -> dict[str, Any]:
    return {k: v for k, v in keys.items() if not any(k == p or k.startswith(p + ".") for p in prefixes)}


def config_hash(config: dict) -> str:
    """A short hash of a resolved run config, without the keys in ``NOT_RESULTS`` and those at their
    ``DEFAULTS`` value (``data_seed: 0`` hashes as a config recorded before data seeds existed)."""
    kept = {k: v for k, v in _drop(flat(config), NOT_RESULTS).items() if not _default(k, v)}
    text = json.dumps(kept, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def config_diff(old: dict, new: dict, ignore: tuple[str, ...] | list[str] = NOT_RESULTS) -> list[str]:
    """``"key changed: old -> new"`` for every setting that differs (``ignore``d prefixes left out)."""
    a, b = ({**_drop(DEFAULTS, ignore), **_drop(flat(c), ignore)} for c in (old, new))
    return [
        f"{key} changed: {_show(a.get(key, _UNSET))} -> {_show(b.get(key, _UNSET))}"
        for key in sorted(set(a) | set(b))
        if a.get(key, _UNSET) != b.get(key, _UNSET)
    ]


def _default(key: str, value: Any) -> bool:
    """Whether ``key`` holds its ``DEFAULTS`` value (the same type: ``false`` is not ``0``)."""
    return key in DEFAULTS and type(value) is type(DEFAULTS[key]) and value == DEFAULTS[key]


def _show(value: Any) -> str:
    return value if value == _UNSET else json.dumps(value, default=str)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def previous(out: Path, config: dict) -> tuple[dict | None, str | None]:
    """The complete results in ``out`` made with ``config`` (to skip the run), and a line on why not.

    Results made with another config are renamed ``results.<their hash>.json``: kept, never mixed in.
    """
    res = _read(out / RESULTS)
    if res is None or not res.get("complete"):
        failed = _read(out / FAILED)
        if failed is not None:
            return None, f"an earlier attempt failed ({failed.get('error', 'unknown error')}); rerunning"
        return None, None
    old = res.get("config") or {}
    old_hash = res.get("config_hash") or config_hash(old)
    if old_hash == config_hash(config):
        return res, None
    aside = out / f"results.{old_hash}.json"
    os.replace(out / RESULTS, aside)
    changes = config_diff(old, config) or ["config changed"]
    more = f" (and {len(changes) - 3} more)" if len(changes) > 3 else ""
    return None, f"{'; '.join(changes[:3])}{more}; rerunning (earlier results kept as {aside.name})"


# What ``failed.json`` says from a run's start until it ends one way or another: a run whose process was
# killed outright (SIGKILL, a sweep tearing down its workers on Ctrl-C, a machine that went down) still
# leaves a record that it did not finish.
NOT_FINISHED = "interrupted: the run's process ended before the run finished (killed, or still running)"


def mark_started(out: Path, key: str) -> None:
    """Write ``failed.json`` saying the run has not finished; replaced by the error if it raises, and
    removed when it completes."""
    from benchmarks.episode import write_json

    write_json(out / FAILED, {"complete": False, "error": NOT_FINISHED, "traceback": "", "config_hash": key,
                              "pid": os.getpid()})


def record_failure(out: Path, err: BaseException, key: str) -> str:
    """Write ``failed.json`` for a run that raised ``err``; the text for ``run.log``."""
    from benchmarks.episode import write_json

    interrupted = isinstance(err, KeyboardInterrupt)
    error = "interrupted" if interrupted else f"{type(err).__name__}: {err}"
    text = "interrupted" if interrupted else "".join(traceback.format_exception(err))
    write_json(out / FAILED, {"complete": False, "error": error, "traceback": text, "config_hash": key,
                              "pid": os.getpid()})
    return text


def swept_keys(variant: str) -> list[str]:
    """The config keys a sweep's override dirname names: ``model=ridge,+task.overrides.otf.bias=0.5`` ->
    ``["model", "task.overrides.otf.bias"]`` (values may hold commas: only ``,key=`` starts an item)."""
    return [m.lstrip("+~") for m in re.findall(r"(?:^|,)([+~]*[A-Za-z_][\w.@/-]*)=", variant or "")]


def _settings(run: dict) -> tuple[dict[str, Any], list[str]] | None:
    config = run.get("config")
    if not isinstance(config, dict):
        return None
    # keys at their DEFAULTS value read as a config recorded before they existed (as config_hash does)
    return {**DEFAULTS, **flat(config)}, [*SWEPT, *NOT_RESULTS, *swept_keys(run.get("variant", ""))]


def _first_difference(a: dict, b: dict, *, within: str | None) -> str | None:
    """The first key in which runs ``a`` and ``b`` differ, other than what either sweep varied; only keys
    under ``within`` (``"agent"``), or only keys outside ``agent`` when ``within`` is None."""
    sa, sb = _settings(a), _settings(b)
    if sa is None or sb is None:
        return None
    ignore = [*sa[1], *sb[1]]
    fa, fb = _drop(sa[0], ignore), _drop(sb[0], ignore)
    for key in sorted(set(fa) | set(fb)):
        if (within is None) == (key == "agent" or key.startswith("agent.")):
            continue
        if fa.get(key, _UNSET) != fb.get(key, _UNSET):
            return (f"{key} = {_show(fa.get(key, _UNSET))} in {a.get('_path', '?')} but "
                    f"{_show(fb.get(key, _UNSET))} in {b.get('_path', '?')}")
    return None


def mixed_configs(runs: list[dict]) -> list[str]:
    """Why ``runs`` must not be compared: runs of one task whose configs differ in anything but task, agent,
    seed, data seed and the keys of their sweep's override dirname (the agent's settings are compared within
    one report line; runs without a recorded config are not checked), and one line's (data seed, seed) read
    twice (from two folders holding the same run: it would count as two seeds). Results without
    ``data_seed`` were made on data seed 0."""
    problems: list[str] = []
    by_task: dict[str, list[dict]] = {}
    seen: dict[tuple, str] = {}
    for r in runs:
        by_task.setdefault(r["task"], []).append(r)
        key = (r["task"], r["agent"], r.get("data_seed", 0), r["seed"])
        if key in seen:
            problems.append(f"{r['task']}, {r['agent']}, {_seeds(r)}: read twice, from {seen[key]} and "
                            f"{r.get('_path', '?')} (it would count as two seeds)")
        seen.setdefault(key, r.get("_path", "?"))
    for task, rs in sorted(by_task.items()):
        lines: dict[str, dict] = {}
        for r in rs:
            why = _first_difference(rs[0], r, within=None)
            if why is None and r["agent"] in lines:
                why = _first_difference(lines[r["agent"]], r, within="agent")
            lines.setdefault(r["agent"], r)
            if why:
                problems.append(f"{task}, {r['agent']}, {_seeds(r)}: {why}")
    return problems


def _seeds(run: dict) -> str:
    """``seed 2``, or ``seed 2, data seed 1`` for a run on another data seed than 0."""
    data = run.get("data_seed", 0)
    return f"seed {run['seed']}" + (f", data seed {data}" if data else "")
