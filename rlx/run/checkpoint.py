"""Checkpoints of a run folder: the whole runner state, saved with orbax, resumable bit for bit;
and the evaluation of a saved run.

A checkpoint is one orbax ``CheckpointManager`` step under ``<run>/checkpoints/``, named by the
number of evaluation blocks done when it was written::

    checkpoints/<e>/state/     the RunnerState without its replay buffers: parameters, optimizer
                               states, target networks, temperature, env states (observation
                               statistics included), current observations, keys, step counters
    checkpoints/<e>/buffers/   the replay buffer(s); absent when saved with save_buffer=False
    checkpoints/<e>/meta/      JSON: agent, env, env kwargs, seed, num_seeds, every config field,
                               schedule, evaluation index, env steps, wall time of each evaluation
    checkpoints/<e>/metrics/   JSON: every metric of evaluations 0..e-1, per seed, exact values

orbax writes a step into ``<e>.orbax-checkpoint-tmp-<time>/`` and renames it to ``<e>/`` only
when everything is on disk, so a save that is killed, or fails on a full disk or a read-only
folder (:class:`CheckpointSaveError`), leaves nothing that lists or loads as a checkpoint, and
the previous checkpoints as they were. Before restoring, the saved agent, env, seeds and config
are compared with the run asking for them, and the saved array shapes with the shapes that run's
``init`` produces; any difference is refused with a :class:`CheckpointError` that lists it.
Reading never writes.

The meta item also holds a CRC-32 of every array (keyed by its path in the tree) and of the
metrics payload, written in the same atomic step; a restore recomputes them and refuses a
checkpoint whose bytes changed on disk as damaged, pointing to the previous checkpoint.
Checkpoints written before checksums were saved have none in their meta and load unchecked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
import signal
import sys
import threading
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from rlx.buffers import ReplayBuffer
from rlx.core import contract
from rlx.run.logging import RunFileError, os_error_text

CHECKPOINT_DIR = "checkpoints"
FORMAT_VERSION = 1
IDENTITY_KEYS = ("agent", "env", "env_kwargs", "seed", "num_seeds")
# Compared when either side has them: a sweep's points (:mod:`rlx.run.sweep`).
OPTIONAL_IDENTITY_KEYS = ("points",)


def _handlers() -> dict:
    # Named up front: orbax reports an item's metadata only for items whose handler it knows.
    return {
        "state": ocp.StandardCheckpointHandler(),
        "buffers": ocp.StandardCheckpointHandler(),
        "meta": ocp.JsonCheckpointHandler(),
        "metrics": ocp.JsonCheckpointHandler(),
    }


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, damaged, or written by a different run."""


class CheckpointSaveError(RunFileError):
    """Writing a run's files during training (a checkpoint, the metrics files) failed: a full
    disk, a read-only folder. The message names what and where, the operating system's reason,
    the last good checkpoint (a failed save leaves the earlier ones intact) and the command
    that continues from it. ``errno`` is the operating system's error number when known."""

    def __init__(self, path, cause: BaseException, last_good: Path | None, resume_command: str | None = None,
                 *, kind: str = ""):
        if isinstance(cause, RunFileError):  # it knows the file
            path, cause = cause.path, cause.cause
        self.last_good, self.resume_command = last_good, resume_command
        code, reason = os_error_text(cause)
        what = f"{kind} {path}" if kind else str(path)
        then = "after freeing disk space (or making the folder writable)"
        if last_good is not None:
            text = f"could not write {what}: {reason}; the last good checkpoint is {last_good}"
            if resume_command:
                text += f"; {then}, continue from it with: {resume_command}"
        else:
            text = f"could not write {what}: {reason}; no checkpoint was saved before it"
            if resume_command:
                text += f"; {then}, train the run again with: {resume_command}"
        OSError.__init__(self, text)
        self.path, self.cause, self.reason, self.errno = Path(path), cause, reason, code


# tensorstore (orbax's writer) reports a failed write as a ValueError with the OS error number
_TENSORSTORE_OS_ERROR = re.compile(r"\[os_error_code='\d+'\]")
_TENSORSTORE_WRITE_FAILURES = ("RESOURCE_EXHAUSTED:", "PERMISSION_DENIED:")


def _io_failure(err: BaseException) -> bool:
    """Whether ``err`` (from orbax, tensorstore or Python) means the disk refused a write."""
    if isinstance(err, CheckpointSaveError):
        return False
    if isinstance(err, OSError):
        return True
    text = str(err)
    return bool(_TENSORSTORE_OS_ERROR.search(text)) or text.startswith(_TENSORSTORE_WRITE_FAILURES)


@contextlib.contextmanager
def writing(path, last_good: Path | None, resume_command: str | None, *, kind: str = ""):
    """Turn a failed write inside the block (a full disk, a read-only folder) into a
    :class:`CheckpointSaveError` that names the file (``path`` unless the error knows it better),
    the reason, the last good checkpoint and how to continue; other errors pass unchanged."""
    try:
        yield
    except Exception as err:
        if not _io_failure(err):
            raise
        raise CheckpointSaveError(path, err, last_good, resume_command, kind=kind) from err


class ChecksumMismatch(ValueError):
    """Bytes of a checkpoint differ from the checksums saved with it (the checkpoint is then
    refused as damaged, a :class:`CheckpointError`)."""


class Restored(NamedTuple):
    evaluation: int  # evaluation blocks done when the checkpoint was written
    path: Path
    state: Any  # RunnerState (replay buffers replaced by None when restored without them)
    metrics: dict[str, np.ndarray]  # every leaf (num_seeds, evaluation)
    meta: dict


# ---------------------------------------------------------------------------------------------
# Replay buffers travel as their own item, so they can be left out
# ---------------------------------------------------------------------------------------------
def _is_buffer(x) -> bool:
    return isinstance(x, ReplayBuffer)


def split_buffers(state) -> tuple[Any, list]:
    """(``state`` with every replay buffer replaced by None, the buffers in tree order)."""
    without = jax.tree.map(lambda x: None if _is_buffer(x) else x, state, is_leaf=_is_buffer)
    buffers = [x for x in jax.tree.leaves(state, is_leaf=_is_buffer) if _is_buffer(x)]
    return without, buffers


def merge_buffers(without, buffers, template):
    """Inverse of :func:`split_buffers`; ``template`` is any tree of the full state's structure."""
    slots, treedef = jax.tree.flatten(template, is_leaf=_is_buffer)
    rest, buffers = iter(jax.tree.leaves(without)), iter(buffers)
    return jax.tree.unflatten(treedef, [next(buffers) if _is_buffer(s) else next(rest) for s in slots])


# ---------------------------------------------------------------------------------------------
# What a checkpoint must agree with
# ---------------------------------------------------------------------------------------------
def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, (np.ndarray, jax.Array)):
        return np.asarray(x).tolist()
    return str(x)


def plain(x):
    """``x`` as it reads back from JSON (tuples as lists, numpy scalars as numbers)."""
    return json.loads(json.dumps(x, default=_jsonable))


def run_identity(agent_name: str, env_name: str, env_kwargs, seed: int, num_seeds: int, config) -> dict:
    """What fixes a run's state and metrics: a checkpoint resumes only a run with the same one."""
    return plain({
        "agent": agent_name,
        "env": env_name,
        "env_kwargs": dict(env_kwargs or {}),
        "seed": int(seed),
        "num_seeds": int(num_seeds),
        "config": config.to_dict(),
    })


_MISSING = "<missing>"


def identity_mismatches(saved: Mapping, wanted: Mapping, saved_name: str = "checkpoint") -> list[str]:
    """One line per difference between two :func:`run_identity` dicts (empty: they agree)."""
    problems = []
    for key in (*IDENTITY_KEYS, *(k for k in OPTIONAL_IDENTITY_KEYS if k in saved or k in wanted)):
        a, b = saved.get(key, _MISSING), wanted.get(key, _MISSING)
        if a != b:
            problems.append(f"{key}: {saved_name} {a!r}, this run {b!r}")
    saved_cfg, wanted_cfg = saved.get("config", {}), wanted.get("config", {})
    for name in [*wanted_cfg, *(n for n in saved_cfg if n not in wanted_cfg)]:
        a, b = saved_cfg.get(name, _MISSING), wanted_cfg.get(name, _MISSING)
        if a != b:
            problems.append(f"config.{name}: {saved_name} {a!r}, this run {b!r}")
    return problems


def _path_text(path) -> str:
    parts = []
    for k in path:
        for attr in ("name", "key", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return ".".join(parts)


def _leaf_specs(tree) -> dict[str, tuple[tuple[int, ...], str]]:
    return {
        _path_text(path): (tuple(leaf.shape), np.dtype(leaf.dtype).name)
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    }


def structure_mismatches(stored, template, limit: int = 8) -> list[str]:
    """Arrays whose path, shape or dtype differ between a checkpoint's metadata and ``template``."""
    have, want = _leaf_specs(stored), _leaf_specs(template)
    problems = []
    for path, (shape, dtype) in want.items():
        if path not in have:
            problems.append(f"{path}: not in the checkpoint (this run: {dtype}{list(shape)})")
        elif have[path] != (shape, dtype):
            s, d = have[path]
            problems.append(f"{path}: checkpoint {d}{list(s)}, this run {dtype}{list(shape)}")
    for path, (shape, dtype) in have.items():
        if path not in want:
            problems.append(f"{path}: in the checkpoint ({dtype}{list(shape)}), not in this run's state")
    if len(problems) > limit:
        problems = problems[:limit] + [f"... and {len(problems) - limit} more"]
    return problems


def _metrics_to_json(metrics: Mapping[str, np.ndarray]) -> dict:
    # Python floats hold float32 values exactly, and JSON writes them back exactly (NaN too).
    return {name: {"dtype": np.asarray(v).dtype.name, "values": np.asarray(v).tolist()} for name, v in metrics.items()}


def _metrics_from_json(payload: Mapping) -> dict[str, np.ndarray]:
    return {name: np.asarray(v["values"], dtype=v["dtype"]) for name, v in payload.items()}


REQUIRED_METRICS = ("step", "eval/return_mean", "eval/return_std")
CHECKSUM = "crc32"  # zlib.crc32 of each array's C-order bytes, and of the canonical metrics JSON


def _crc(leaf) -> int:
    array = np.ascontiguousarray(np.asarray(leaf))
    return zlib.crc32(array.reshape(-1).view(np.uint8))


def array_checksums(tree) -> dict[str, int]:
    """The checksum of every array of ``tree`` (on the host or the device), by its path."""
    return {_path_text(path): _crc(leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def payload_checksum(payload) -> int:
    """The checksum of a JSON payload, as it reads back (key order does not matter)."""
    return zlib.crc32(json.dumps(payload, sort_keys=True).encode())


def checksum_problems(saved: Mapping, arrays: Mapping[str, Any], metrics_payload, limit: int = 4) -> list[str]:
    """What differs between ``saved`` (a checkpoint's ``meta["checksums"]``) and the restored
    ``arrays`` (item name -> tree, e.g. ``{"state": ...}``) and metrics payload; empty: all agree."""
    problems = []
    for item, tree in arrays.items():
        want = saved.get(item)
        if not isinstance(want, Mapping):
            problems.append(f"no checksums of its {item}")
            continue
        have = array_checksums(jax.device_get(tree))
        problems += [f"{item} {path}" for path in have if want.get(path) != have[path]]
        problems += [f"{item} {path} (missing)" for path in want if path not in have]
    if "metrics" in saved and saved["metrics"] != payload_checksum(metrics_payload):
        problems.append("metrics")
    if len(problems) > limit:
        problems = problems[:limit] + [f"{len(problems) - limit} more"]
    return problems


def _placed(template):
    """Abstract arrays with a sharding, which orbax needs to restore onto devices."""
    default = jax.sharding.SingleDeviceSharding(jax.devices()[0])

    def place(leaf):
        sharding = getattr(leaf, "sharding", None) or default
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding)

    return jax.tree.map(place, template)


def _short(err: Exception, limit: int = 300) -> str:
    """The gist of an orbax / tensorstore error (they append a long JSON spec)."""
    text = (str(err).splitlines() or [""])[0].split(" [tensorstore_spec=")[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def _quiet_orbax(level: int = logging.ERROR):
    """orbax warns through absl about expected situations (a read-only manager); keep the CLI clean.
    A save raises what it logs as an error, so it goes quieter still (``logging.CRITICAL``)."""
    logger = logging.getLogger("absl")
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)


# ---------------------------------------------------------------------------------------------
# The checkpoints of one run folder
# ---------------------------------------------------------------------------------------------
class RunCheckpoints:
    """Save and restore the checkpoints under ``<run_dir>/checkpoints/``.

    With ``write=False`` nothing on disk is created, changed or cleaned up. ``resume_command``:
    what continues the run after a failed save (default: ``rlx train AGENT --resume RUN_DIR``).
    """

    def __init__(self, run_dir, *, keep: int = 3, save_buffer: bool = True, write: bool = True,
                 resume_command: str | None = None):
        if keep < 1:
            raise ValueError(f"keep_checkpoints must be >= 1, got {keep}")
        self.run_dir = Path(run_dir)
        self.resume_command = resume_command
        self.directory = self.run_dir / CHECKPOINT_DIR
        self.save_buffer = save_buffer
        self._manager = None
        if not write and not self.directory.is_dir():
            return
        with _quiet_orbax():
            options = ocp.CheckpointManagerOptions(
                # Synchronous: the next chunk donates the state's device buffers, so they must
                # be on disk before it starts.
                enable_async_checkpointing=False,
                preservation_policy=ocp.checkpoint_managers.LatestN(keep) if write else None,
                create=write,
                read_only=not write,
                cleanup_tmp_directories=write,  # leftovers of a killed save, never listed as steps
            )
            self._manager = ocp.CheckpointManager(self.directory.absolute(), options=options, item_handlers=_handlers())

    # ---- listing ---------------------------------------------------------------------------
    def evaluations(self) -> list[int]:
        """Evaluation indices of the finalized checkpoints, oldest first."""
        return sorted(self._manager.all_steps()) if self._manager is not None else []

    def latest(self) -> int | None:
        found = self.evaluations()
        return found[-1] if found else None

    def path(self, evaluation: int) -> Path:
        return self.directory / str(evaluation)

    # ---- saving ------------------------------------------------------------------------------
    def save(self, evaluation: int, state, metrics: Mapping[str, np.ndarray], meta: Mapping) -> Path:
        """Write checkpoint ``evaluation`` (blocking); the oldest beyond ``keep`` are removed.

        A write the disk refuses raises :class:`CheckpointSaveError` and leaves the earlier
        checkpoints as they were."""
        without, buffers = split_buffers(state)
        with_buffers = self.save_buffer and bool(buffers)
        payload = _metrics_to_json(metrics)
        checksums = {"algorithm": CHECKSUM, "state": array_checksums(without), "metrics": payload_checksum(plain(payload))}
        if with_buffers:
            checksums["buffers"] = array_checksums(buffers)
        meta = plain({
            **meta, "format_version": FORMAT_VERSION, "evaluation": int(evaluation), "has_buffers": with_buffers,
            "checksums": checksums,
        })
        items = {
            "state": ocp.args.StandardSave(without),
            "meta": ocp.args.JsonSave(meta),
            "metrics": ocp.args.JsonSave(payload),
        }
        if with_buffers:
            items["buffers"] = ocp.args.StandardSave(buffers)
        last_good = [e for e in self.evaluations() if e != int(evaluation)]
        agent = meta.get("agent")
        with writing(
            self.path(evaluation), self.path(last_good[-1]) if last_good else None,
            self.resume_command or (f"rlx train {agent} --resume {self.run_dir}" if isinstance(agent, str) else None),
            kind="checkpoint",
        ), _quiet_orbax(logging.CRITICAL):
            saved = self._manager.save(int(evaluation), args=ocp.args.Composite(**items), force=True)
        if not saved:
            raise CheckpointError(f"orbax did not write checkpoint {self.path(evaluation)}")
        return self.path(evaluation)

    def close(self) -> None:
        if self._manager is not None:
            self._manager.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # ---- reading -----------------------------------------------------------------------------
    def _damaged(self, evaluation: int, err: Exception) -> CheckpointError:
        older = [e for e in self.evaluations() if e < evaluation]
        hint = (
            f"; remove {self.path(evaluation)} to use the previous checkpoint ({self.path(older[-1])})"
            if older else ""
        )
        return CheckpointError(
            f"checkpoint {self.path(evaluation)} cannot be read, it is damaged or incomplete "
            f"({type(err).__name__}: {_short(err)}){hint}"
        )

    def read_meta(self, evaluation: int) -> dict:
        try:
            with _quiet_orbax():
                meta = self._manager.restore(evaluation, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
            if not isinstance(meta, Mapping):
                raise TypeError(f"its meta is a {type(meta).__name__}, not a JSON object")
            if not isinstance(meta.get("wall_time", []), list) or not isinstance(meta.get("num_evals", 0), int):
                raise TypeError("its meta's wall_time or num_evals is of the wrong type")
            return dict(meta)
        except Exception as err:  # orbax raises many kinds; all mean the same to the user
            raise self._damaged(evaluation, err) from err

    def restore(self, template, identity: Mapping, *, evaluation: int | None = None, buffers: bool = True) -> Restored:
        """Restore a checkpoint (the latest by default) shaped like ``template``.

        ``template``: the full runner state or its abstract shapes (``jax.eval_shape`` of init).
        ``identity``: :func:`run_identity` of the run asking; any difference is refused.
        ``buffers=False`` skips the replay buffers (evaluation), leaving None in their place.
        Every array restored and the metrics are checked against the checksums in the
        checkpoint's meta; a checkpoint written before checksums were saved has none and
        restores unchecked.
        """
        evaluation = self.latest() if evaluation is None else evaluation
        if evaluation is None:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        if evaluation not in self.evaluations():
            raise CheckpointError(f"no checkpoint {evaluation} in {self.directory}; there are {self.evaluations()}")
        path = self.path(evaluation)
        meta = self.read_meta(evaluation)
        problems = identity_mismatches(meta, identity)
        if problems:
            raise CheckpointError(f"checkpoint {path} was written by a different run:\n  " + "\n  ".join(problems))
        state_template, buffer_templates = split_buffers(template)
        buffers = buffers and bool(buffer_templates)
        if buffers and not meta.get("has_buffers", False):
            raise CheckpointError(
                f"checkpoint {path} was saved without its replay buffer (--no-save-buffer), so training "
                f"cannot continue from it as the same run; resuming is refused (evaluating it works: "
                f"rlx eval {self.run_dir})"
            )
        try:
            with _quiet_orbax():
                stored = self._manager.item_metadata(evaluation)
            stored_state = stored["state"]
            stored_buffers = stored["buffers"] if buffers else None
            if stored_state is None or (buffers and stored_buffers is None):
                raise FileNotFoundError("an item's metadata is missing")
        except Exception as err:
            raise self._damaged(evaluation, err) from err
        problems = structure_mismatches(stored_state, state_template)
        if buffers:
            problems += structure_mismatches(stored_buffers, buffer_templates)
        if problems:
            raise CheckpointError(
                f"checkpoint {path} holds arrays of other shapes than this run's state:\n  " + "\n  ".join(problems)
            )
        args = {"state": ocp.args.StandardRestore(_placed(state_template)), "metrics": ocp.args.JsonRestore()}
        if buffers:
            args["buffers"] = ocp.args.StandardRestore(_placed(buffer_templates))
        try:
            with _quiet_orbax():
                out = self._manager.restore(evaluation, args=ocp.args.Composite(**args))
        except Exception as err:
            raise self._damaged(evaluation, err) from err
        checksums = meta.get("checksums")  # none in checkpoints written before they were saved
        if checksums is not None:
            if not isinstance(checksums, Mapping) or checksums.get("algorithm") != CHECKSUM:
                raise self._damaged(evaluation, ChecksumMismatch(f"its meta holds no readable {CHECKSUM} checksums"))
            arrays = {"state": out.state, **({"buffers": list(out.buffers)} if buffers else {})}
            problems = checksum_problems(checksums, arrays, out.metrics)
            if problems:
                raise self._damaged(evaluation, ChecksumMismatch(
                    f"its bytes differ from the checksums saved with it: {', '.join(problems)}"
                ))
        try:
            metrics = _metrics_from_json(out.metrics)
        except Exception as err:
            raise self._damaged(evaluation, ValueError("its metrics item holds no metrics record")) from err
        missing = [name for name in REQUIRED_METRICS if name not in metrics]
        if missing:
            raise self._damaged(evaluation, ValueError(f"its metrics lack {', '.join(missing)}"))
        runs = identity.get("num_runs", identity["num_seeds"])  # a sweep: points x seeds
        bad = [k for k, v in metrics.items() if v.shape != (runs, evaluation)]
        if bad:
            raise self._damaged(evaluation, ValueError(f"metrics {bad} do not have shape ({runs}, {evaluation})"))
        state = merge_buffers(out.state, list(out.buffers), template) if buffers else out.state
        return Restored(evaluation, path, state, metrics, meta)


# ---------------------------------------------------------------------------------------------
# A run folder's description (config.json)
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RunSpec:
    """What ``config.json`` says about a run: enough to build it again."""

    run_dir: Path
    agent: Any  # the agent module
    config: Any
    env: str
    env_kwargs: dict
    seed: int
    num_seeds: int
    info: dict  # the whole config.json

    @property
    def identity(self) -> dict:
        return run_identity(self.info["agent"], self.env, self.env_kwargs, self.seed, self.num_seeds, self.config)


def _read_config(run_dir: Path) -> dict:
    path = run_dir / "config.json"
    if not path.is_file():
        if (run_dir / "sweep.json").is_file():
            raise CheckpointError(
                f"{run_dir} is a sweep folder, not a run folder: continue a stopped sweep with "
                f"`rlx sweep ALGO --resume {run_dir}`; the metrics of its points are in {run_dir / 'points'}/*"
            )
        raise CheckpointError(f"{run_dir} is not a run folder: it has no config.json")
    try:
        info = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} cannot be read ({type(err).__name__}: {err})") from err
    if not isinstance(info, dict):
        raise CheckpointError(f"{path} is not a run description")
    return info


def sweep_point(run_dir, info: Mapping) -> tuple[int | None, Path | None, str | None] | None:
    """(point index, sweep folder, sweep command) when ``run_dir`` is a point of a sweep
    (``<sweep>/points/<i>-.../``, :mod:`rlx.run.sweep`; its config.json has ``sweep_point``),
    else None. The folder and command are None for a point moved out of its sweep."""
    run_dir = Path(run_dir)
    sweep_dir = run_dir.parent.parent
    marker = info.get("sweep_point")
    in_sweep = run_dir.parent.name == "points" and (sweep_dir / "sweep.json").is_file()
    if marker is None and not in_sweep:
        return None
    index = marker.get("point") if isinstance(marker, Mapping) else None
    command = None
    if in_sweep:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            command = json.loads((sweep_dir / "sweep.json").read_text()).get("command")
    return index, sweep_dir if in_sweep else None, command if isinstance(command, str) else None


def refuse_sweep_point(run_dir, info: Mapping) -> None:
    """A sweep point has no checkpoints of its own (the sweep's hold all its points together):
    resuming it alone would train it again and overwrite its metrics, which the sweep's summary
    was made from. Refused before anything is written."""
    point = sweep_point(run_dir, info)
    if point is None:
        return
    index, sweep_dir, command = point
    which = f"point {index}" if index is not None else "a point"
    where = f"the sweep in {sweep_dir}" if sweep_dir is not None else "a sweep"
    again = (
        f"continue the sweep with `rlx sweep ALGO --resume {sweep_dir}`" if sweep_dir is not None
        else "run the sweep again instead" + (f" ({command})" if command else "")
    )
    raise CheckpointError(
        f"{run_dir} is {which} of {where}: a sweep point has no checkpoints of its own and cannot be "
        f"resumed alone (that would train it again and overwrite the metrics its summary was made from); "
        f"{again}"
    )


def load_run_spec(run_dir) -> RunSpec:
    """Read ``<run_dir>/config.json``; a clear error when it is not a run folder."""
    from rlx.agents import get_agent

    run_dir = Path(run_dir)
    info = _read_config(run_dir)
    path = run_dir / "config.json"
    for module in info.get("env_modules") or ():  # the modules that registered the run's own envs
        from rlx import envs as rlx_envs

        try:
            rlx_envs.import_env_module(module)
        except (ImportError, ValueError) as err:
            raise CheckpointError(
                f"{path} names env module {module!r}, which cannot be imported now ({err}); "
                f"pass the module that registers {info.get('env')!r} with --env-module"
            ) from err
    try:
        for key, kind in (("agent", str), ("env", str), ("config", dict), ("env_kwargs", (dict, type(None))),
                          ("runs_layout", (dict, type(None))), ("agent_inputs", (dict, type(None)))):
            if not isinstance(info.get(key), kind):
                raise TypeError(f"{key} is {info[key]!r}" if key in info else f"it has no {key}")
        agent = get_agent(info["agent"])
        config = agent.Config.from_dict(info["config"])
        spec = RunSpec(
            run_dir, agent, config, info["env"], dict(info.get("env_kwargs") or {}),
            int(info.get("seed", 0)), int(info.get("num_seeds", 1)), info,
        )
        if spec.num_seeds < 1:
            raise ValueError(f"num_seeds is {spec.num_seeds}")
    except (KeyError, TypeError, ValueError, AttributeError) as err:  # a ConfigError is a ValueError
        raise CheckpointError(f"{path} cannot be read as a run description ({type(err).__name__}: {err})") from err
    return spec


def bind_inputs(spec: RunSpec) -> RunSpec:
    """``spec`` with an agent that can train: the registered module itself, or, for an offline
    agent (one with ``from_inputs``), the agent built again by ``from_inputs`` from the dataset,
    dynamics model (and MOREC's dynamics reward) that ``config.json["agent_inputs"]`` names
    (``rlx train ... --dataset``). The dataset, and the dynamics model of an agent that takes one,
    must be named there; an input the run does not name (MOREC's dynamics reward) is trained
    again from the run's seed."""
    from_inputs = contract.optional(spec.agent, "from_inputs")
    if from_inputs is None:
        return spec
    inputs = spec.info.get("agent_inputs") or {}
    names = contract.optional(spec.agent, "INPUTS")
    required = tuple(name for name in names if name in ("dataset", "dynamics"))
    missing = [k for k in (*required, *inputs) if not inputs.get(k) or not Path(inputs[k]).exists()]
    missing = list(dict.fromkeys(missing))
    if missing:
        trains_from = "an offline dataset and dynamics model" if "dynamics" in required else "an offline dataset"
        raise CheckpointError(
            f"{spec.run_dir}: {spec.info['agent']} trains from {trains_from}, and the run's "
            f"config.json names no readable {' or '.join(missing)} ({', '.join(f'{k}={inputs.get(k)!r}' for k in missing)})"
        )
    files = {name: inputs[name] for name in names if name in inputs}
    agent = from_inputs(spec.config, **files, env=spec.env, env_kwargs=spec.env_kwargs, seed=spec.seed)
    return dataclasses.replace(spec, agent=agent)


def abstract_runner_state(train, num_seeds: int, keys):
    """Shapes and dtypes of ``train.init`` over the run's seed keys (traced, never run): the
    state of the :class:`rlx.run.compiled.CompiledRun` that :func:`rlx.run.run` trains."""
    from rlx.run.compiled import CompiledRun
    from rlx.run.mesh import RunsLayout

    compiled = CompiledRun.of_train(train, RunsLayout(num_seeds, num_seeds, None), num_seeds)
    return compiled.abstract_state(keys if num_seeds > 1 else keys[0])


def default_checkpoint_every(num_evals: int) -> int:
    """About ten checkpoints per run, at most one per evaluation block (plus the final one)."""
    return max(1, -(-num_evals // 10))


def open_for_resume(
    run_dir, identity: Mapping, template: Callable[[], Any], *, saved: Mapping | None = None, described_in: str = "config.json"
) -> Restored | None:
    """Check that ``run_dir`` is the run described by ``identity``; restore its latest checkpoint.

    Returns None when the run has no checkpoint yet (it then starts again from the beginning,
    which gives the same run). ``template`` builds the abstract runner state when needed. The
    checkpoint of a complete run saved without its replay buffer restores with None for it.
    Refusals (a different run, a damaged or incompatible checkpoint, a sweep point) change
    nothing on disk. ``saved``: the identity the folder describes when it is not a run's
    ``config.json`` (a sweep's, read from ``described_in``).
    """
    run_dir = Path(run_dir)
    if saved is None:
        info = _read_config(run_dir)
        refuse_sweep_point(run_dir, info)
        saved = {key: info.get(key) for key in IDENTITY_KEYS} | {"config": info.get("config", {})}
        saved["env_kwargs"] = saved["env_kwargs"] or {}
    problems = identity_mismatches(saved, identity, saved_name=described_in)
    if problems:
        raise CheckpointError(
            f"cannot resume {run_dir}: a resumed run keeps the agent, env, seeds and config of "
            f"its {described_in}, and this run differs:\n  " + "\n  ".join(problems)
        )
    with RunCheckpoints(run_dir, write=False) as checkpoints:
        latest = checkpoints.latest()
        if latest is None:
            return None
        meta = checkpoints.read_meta(latest)
        # A complete run trains no further, so it needs no buffer (it may have been saved without).
        complete = meta.get("evaluation", 0) >= meta.get("num_evals", float("inf"))
        return checkpoints.restore(template(), identity, buffers=not complete or meta.get("has_buffers", False))


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on Ctrl-C after a whole chunk; ``checkpoint`` holds where it stopped."""

    def __init__(self, run_dir, evaluation: int, num_evals: int, checkpoint: Path | None, resume_command: str):
        self.run_dir, self.evaluation, self.num_evals = run_dir, evaluation, num_evals
        self.checkpoint, self.resume_command = checkpoint, resume_command
        if checkpoint is not None:
            text = (f"training interrupted after evaluation {evaluation} of {num_evals}; checkpoint "
                    f"saved in {checkpoint}; continue with: {resume_command}")
        else:
            text = f"training interrupted after evaluation {evaluation} of {num_evals}; no checkpoint was saved"
        super().__init__(text)


class InterruptRequest:
    """While active, Ctrl-C (SIGINT) only asks the driver to stop after the current chunk.

    A second Ctrl-C interrupts at once, as usual. Signal handlers belong to the main thread,
    so elsewhere this does nothing.
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, self._fallback())
        print(
            "\nrlx: Ctrl-C: finishing the current chunk, then saving a checkpoint "
            "(Ctrl-C again to stop at once)", file=sys.stderr, flush=True,
        )

    def _fallback(self):
        return self._previous if callable(self._previous) else signal.default_int_handler

    def __enter__(self):
        if self.enabled:
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self.enabled:
            signal.signal(signal.SIGINT, self._fallback())
        return False


# ---------------------------------------------------------------------------------------------
# Evaluating a saved run
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class EvalReport:
    """Deterministic-policy returns of a saved run's checkpoint. ``returns``: (num_seeds, episodes)."""

    run_dir: Path
    checkpoint: Path
    evaluation: int  # evaluation blocks done when the checkpoint was written
    env_steps: int  # steps per seed, in ``step_unit``
    returns: np.ndarray
    step_unit: str = "env steps"  # "gradient steps" for an offline agent

    @property
    def per_seed_mean(self) -> np.ndarray:
        return self.returns.mean(axis=1)

    @property
    def per_seed_std(self) -> np.ndarray:
        return self.returns.std(axis=1)

    @property
    def return_mean(self) -> float:
        """Mean over every episode of every seed."""
        return float(self.returns.mean())

    @property
    def return_std(self) -> float:
        """Standard deviation over every episode of every seed."""
        return float(self.returns.std())

    @property
    def std_over_seeds(self) -> float:
        """Standard deviation of the per-seed means (0 for one seed)."""
        return float(self.per_seed_mean.std())

    def to_dict(self) -> dict:
        return {
            "run_dir": str(self.run_dir),
            "checkpoint": str(self.checkpoint),
            "evaluation": self.evaluation,
            "env_steps": self.env_steps,
            "step_unit": self.step_unit,
            "episodes": int(self.returns.shape[1]),
            "return_mean": self.return_mean,
            "return_std": self.return_std,
            "std_over_seeds": self.std_over_seeds,
            "per_seed": [
                {"seed": i, "return_mean": float(m), "return_std": float(s)}
                for i, (m, s) in enumerate(zip(self.per_seed_mean, self.per_seed_std, strict=True))
            ],
        }


@dataclasses.dataclass
class TrainedRun:
    """A saved run's checkpoint restored for acting (no replay buffer): its env and policies."""

    spec: RunSpec
    env: Any
    env_params: Any
    restored: Restored  # ``state`` has a leading seed axis when the run trained several seeds
    template: Any  # abstract runner state of the run (structure used to put the buffers back)
    buffer_templates: list  # one seed's (unbatched) replay-buffer shapes

    def agent_state(self, state_without_buffers):
        """One seed's agent state with zeros standing in for its replay buffer (a policy never
        reads it; under jit XLA drops the zeros)."""
        buffers = [jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), b) for b in self.buffer_templates]
        return merge_buffers(state_without_buffers, buffers, self.template).agent_state

    def seed_state(self, seed_index: int):
        """The restored state (buffers left out) of seed ``seed_index`` of the run."""
        if not 0 <= seed_index < self.spec.num_seeds:
            raise ValueError(f"seed index {seed_index} is out of range; the run trained {self.spec.num_seeds} seed(s)")
        if self.spec.num_seeds == 1:
            return self.restored.state
        return jax.tree.map(lambda x: x[seed_index], self.restored.state)

    def policy(self, seed_index: int = 0, deterministic: bool = True):
        """(policy(obs, key) -> action, the frozen observation statistics or None) of one seed."""
        agent_state = self.agent_state(self.seed_state(seed_index))
        policy = self.spec.agent.make_policy(self.spec.config, agent_state, deterministic=deterministic)
        return policy, self.spec.agent.observation_stats(agent_state)


def load_trained_run(run_dir, evaluation: int | None = None) -> TrainedRun:
    """Restore the latest checkpoint of ``run_dir`` (or checkpoint ``evaluation``) for acting."""
    from rlx import envs as rlx_envs
    from rlx.run.driver import seed_keys
    from rlx.run.train import make_train

    spec = bind_inputs(load_run_spec(run_dir))
    if (spec.info.get("runs_layout") or {}).get("mode") == "data_parallel":
        raise CheckpointError(
            f"{spec.run_dir} was trained data-parallel (its checkpoints hold one slice per device); "
            "evaluating such a run from its checkpoint is not supported yet: its metrics files hold its evaluations"
        )
    env, env_params = rlx_envs.make(spec.env, **spec.env_kwargs)
    train = make_train(spec.agent, spec.config, env, env_params)
    with RunCheckpoints(spec.run_dir, write=False) as checkpoints:
        if checkpoints.latest() is None:
            point = sweep_point(spec.run_dir, spec.info)
            why = (
                f"it is a sweep point{f' of {point[1]}' if point[1] else ''}: the sweep's checkpoints hold all its "
                "points together, and evaluating one point from them is not supported"
                if point is not None
                else "it stopped before its first checkpoint, or was trained with checkpoint_every=0"
            )
            raise CheckpointError(f"{spec.run_dir} has no checkpoint to evaluate ({why})")
        template = abstract_runner_state(train, spec.num_seeds, seed_keys(spec.seed, spec.num_seeds))
        restored = checkpoints.restore(template, spec.identity, evaluation=evaluation, buffers=False)
    _, buffer_templates = split_buffers(template)
    if spec.num_seeds > 1:  # inside vmap every seed's buffer is unbatched
        buffer_templates = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape[1:], s.dtype), buffer_templates)
    return TrainedRun(spec, env, env_params, restored, template, buffer_templates)


def evaluate_run(
    run_dir, episodes: int = 100, *, seed: int = 0, evaluation: int | None = None, trained: TrainedRun | None = None
) -> EvalReport:
    """Evaluate the latest checkpoint of ``run_dir`` (or checkpoint ``evaluation``).

    Each seed's deterministic policy runs ``episodes`` episodes in parallel, with the run's
    frozen observation statistics; every seed sees the same episodes (one evaluation key from
    ``seed``), so seeds differ only by their policies. The replay buffer is not read.
    ``trained``: the run's checkpoint already restored (:func:`load_trained_run`).
    """
    from rlx.run.train import evaluate

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    trained = trained or load_trained_run(run_dir, evaluation)
    spec, env, env_params, restored = trained.spec, trained.env, trained.env_params, trained.restored
    agent, config = spec.agent, spec.config

    def seed_returns(state_without_buffers, key):
        agent_state = trained.agent_state(state_without_buffers)
        policy = agent.make_policy(config, agent_state, deterministic=True)
        return evaluate(policy, env, env_params, key, episodes, agent.observation_stats(agent_state))

    if spec.num_seeds > 1:
        returns = jax.jit(jax.vmap(seed_returns, in_axes=(0, None)))(restored.state, jax.random.PRNGKey(seed))
    else:
        returns = jax.jit(seed_returns)(restored.state, jax.random.PRNGKey(seed))[None]
    return EvalReport(
        spec.run_dir, restored.path, restored.evaluation, int(restored.meta.get("env_steps", -1)),
        np.asarray(jax.device_get(returns), dtype=np.float64),
        str(getattr(config, "step_unit", "env steps")),
    )
