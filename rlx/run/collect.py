"""Offline datasets made by rlx's own SAC, following the D4RL recipe (Fu et al. 2020,
"D4RL: Datasets for Deep Data-Driven Reinforcement Learning", arXiv 2004.07219, section 5).

    rlx dataset collect --env brax/hopper --kind medium --size 1000000 --out data/hopper-medium

One SAC run per (env, seed) is behind every kind:

1. **Train the expert.** SAC (:mod:`rlx.agents.sac`) trains for ``expert_steps`` env steps with
   the key of ``rlx train sac --seed SEED`` (so that command, with the recorded config,
   reproduces the run), evaluating its deterministic policy in the compiled graph every block;
   the block loop keeps each block's actor parameters on the host (between compiled calls,
   never inside them).
2. **Reference returns.** ``random_return``: uniform random actions; ``expert_return``: the
   final policy; each the mean undiscounted return of ``reference_episodes`` full episodes.
   They define D4RL's normalized score ``100 (R - random) / (expert - random)``.
3. **Stop at medium.** The medium policy is the evaluation whose return is closest to a third
   of the way from random to expert, ``random + (expert - random) / 3``, among the evaluations
   up to the first one that reaches it (training "stopped early" there). A third of the
   *normalized* score, since a third of a raw return means nothing for negative returns.
4. **Collect** (vectorized over ``num_envs`` envs, ``lax.scan`` chunks compiled once):

   =================  ==========================================================================
   ``random``         uniform actions in [-1, 1] (the env's action box, rescaled)
   ``medium``         the medium policy
   ``expert``         the final (fully trained) policy
   ``medium-replay``  the replay buffer up to the medium evaluation: the whole training history,
                      warm-up included, in order (``size`` does not apply: its length is the
                      number of env steps up to that evaluation)
   ``medium-expert``  the first half from ``medium``, the second from ``expert`` (each the same
                      transitions as that kind collected with half the size and the same seed)
   =================  ==========================================================================

Policies act stochastically (``a ~ pi(.|s)``, as D4RL's data) unless ``deterministic``.
Transitions are stored as the replay buffer stores them: ``next_observations`` is the true last
observation at an auto-reset (``info["final_observation"]``), ``terminals`` and ``timeouts`` are
the env's termination and truncation. Each env's stream is stored contiguously, so episodes are
consecutive; the last step of a stream (cut by the dataset size) is marked as a timeout. Actions
are the agent's, in [-1, 1] (``rlx.envs.make_vec_env`` maps them onto the env's bounds).
Observations are stored raw, so SAC's ``normalize_observations`` is refused here.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import rlx
from rlx import envs as rlx_envs
from rlx.agents import sac
from rlx.buffers.dataset import (
    KINDS,
    Dataset,
    DatasetInfo,
    DatasetWriter,
    episode_returns,
    load,
)
from rlx.core.config import ConfigError
from rlx.core.distributions import sample_tanh_gaussian
from rlx.run import logging as runlog
from rlx.run.driver import seed_keys
from rlx.run.train import Schedule, evaluate_episodes, make_train

MEDIUM_FRACTION = 1.0 / 3.0  # of the way from the random to the expert return (D4RL: "about a third")
NUM_EVALUATIONS = 40  # evaluations of the expert run (the grid the medium policy is picked from)
CHUNK_TRANSITIONS = 200_000  # transitions per compiled collection call (fetched, then written)

# Expert training length per env (overridable with expert_steps / --expert-steps).
EXPERT_STEPS = {
    "gymnax/Pendulum-v1": 20_000,
    "gymnax/MountainCarContinuous-v0": 100_000,
}
EXPERT_STEPS_BRAX = 1_000_000
EXPERT_STEPS_OTHER = 200_000

# Stream tags: every kind draws from its own key, so kinds collected together or apart agree.
_KEY_TAGS = {"random": 1, "medium": 2, "expert": 3, "reference-random": 4, "reference-medium": 5, "reference-expert": 6}


def default_expert_steps(env_name: str) -> int:
    """How long the expert trains by default on ``env_name``."""
    if env_name in EXPERT_STEPS:
        return EXPERT_STEPS[env_name]
    return EXPERT_STEPS_BRAX if env_name.startswith("brax/") else EXPERT_STEPS_OTHER


def stream_key(seed: int, tag: str) -> jax.Array:
    """The key of one collection stream (``tag``: a kind or ``reference-<policy>``)."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), _KEY_TAGS[tag])


@dataclasses.dataclass
class ReferencePolicies:
    """The SAC run behind a family of datasets: policies, reference returns and history."""

    env_name: str
    env_kwargs: dict
    env: Any
    env_params: Any
    seed: int
    config: sac.SACConfig
    deterministic: bool
    reference_episodes: int
    eval_steps: np.ndarray  # (K,) env steps at each evaluation of the expert run
    eval_returns: np.ndarray  # (K,) deterministic evaluation return
    actor_snapshots: list  # K host pytrees: the actor after each evaluation block
    medium_index: int
    random_return: float
    medium_return: float
    expert_return: float
    history: Dataset | None  # replay buffer up to the medium evaluation (None: not kept)
    history_note: str = ""
    train_seconds: float = 0.0
    _compiled: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def action_dim(self) -> int:
        return rlx_envs.action_dim(self.env.action_space(self.env_params))

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return rlx_envs.obs_shape(self.env, self.env_params)

    @property
    def medium_step(self) -> int:
        return int(self.eval_steps[self.medium_index])

    @property
    def expert_steps(self) -> int:
        return int(self.eval_steps[-1])

    @property
    def medium_target(self) -> float:
        return self.random_return + MEDIUM_FRACTION * (self.expert_return - self.random_return)

    def params_of(self, kind: str):
        """Actor parameters behind ``kind`` (None: uniform random actions)."""
        return {"random": None, "medium": self.actor_snapshots[self.medium_index], "expert": self.actor_snapshots[-1]}[kind]

    def policy_return(self, kind: str) -> float:
        return {
            "random": self.random_return,
            "medium": self.medium_return,
            "medium-replay": self.medium_return,
            "expert": self.expert_return,
            "medium-expert": 0.5 * (self.medium_return + self.expert_return),
        }[kind]


# ---------------------------------------------------------------------------------------------
# Policies
# ---------------------------------------------------------------------------------------------
def _actor_policy(config: sac.SACConfig, action_dim: int, params, deterministic: bool):
    """(obs, key) -> action in [-1, 1]: SAC's tanh-Gaussian actor, or uniform when params is None."""
    if params is None:
        return lambda obs, key: jax.random.uniform(key, obs.shape[:1] + (action_dim,), jnp.float32, -1.0, 1.0)
    actor = sac.build_actor(config, action_dim)

    def policy(obs, key):
        mean, log_std = actor.apply(params, obs)
        if deterministic:
            return jnp.tanh(mean)
        return sample_tanh_gaussian(key, mean, log_std)[0]

    return policy


def _reference_return(ref: ReferencePolicies, params, tag: str) -> float:
    fn = ref._compiled.get(("reference", params is None))
    if fn is None:
        def returns(params, key):
            policy = _actor_policy(ref.config, ref.action_dim, params, ref.deterministic)
            return evaluate_episodes(policy, ref.env, ref.env_params, key, ref.reference_episodes).returns

        fn = ref._compiled[("reference", params is None)] = jax.jit(returns)
    return float(np.mean(jax.device_get(fn(params, stream_key(ref.seed, tag)))))


# ---------------------------------------------------------------------------------------------
# 1-3: train the expert, measure the references, pick the medium policy
# ---------------------------------------------------------------------------------------------
def _resolve_env(env, env_params, env_kwargs):
    if isinstance(env, str):
        made, default_params = rlx_envs.make(env, **(env_kwargs or {}))
        return env, made, env_params if env_params is not None else default_params
    return getattr(env, "name", type(env).__name__), env, env_params if env_params is not None else env.default_params


def expert_config(env_name: str, expert_steps: int | None = None, overrides: dict | None = None) -> sac.SACConfig:
    """SAC's defaults, ``expert_steps`` (default: :func:`default_expert_steps`) and ``overrides``
    (any SAC field by name); about :data:`NUM_EVALUATIONS` evaluations unless ``eval_every`` is set."""
    overrides = dict(overrides or {})
    if "total_steps" in overrides:
        raise ConfigError("set the expert's training length with expert_steps (--expert-steps), not total_steps")
    steps = int(expert_steps if expert_steps is not None else default_expert_steps(env_name))
    config = sac.SACConfig().override(total_steps=steps, **{k: v for k, v in overrides.items() if k != "eval_every"})
    if config.normalize_observations:
        raise ConfigError(
            "normalize_observations=True is not allowed for dataset collection: datasets store raw "
            "observations, and a normalizing run's replay buffer (medium-replay) holds normalized ones"
        )
    per_iter = config.env_steps_per_iteration
    learning = max(per_iter, steps - config.warmup_env_steps)
    every = overrides.get("eval_every") or max(per_iter, learning // NUM_EVALUATIONS // per_iter * per_iter)
    config = config.override(eval_every=every)
    # Cover whole evaluation blocks, with a replay capacity that never wraps (medium-replay is a
    # prefix of it).
    total = Schedule.from_config(config).total_env_steps
    if total != config.total_steps and config.buffer_size >= total:
        config = config.override(total_steps=total)
    return config


def _progress(enabled: bool, total: int, desc: str, unit: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, dynamic_ncols=True, smoothing=0.1)


def pick_medium(eval_returns: np.ndarray, target: float) -> int:
    """The evaluation closest to ``target`` among those up to the first that reaches it."""
    eval_returns = np.asarray(eval_returns, np.float64)
    reached = np.flatnonzero(eval_returns >= target)
    last = int(reached[0]) if reached.size else len(eval_returns) - 1
    return int(np.argmin(np.abs(eval_returns[: last + 1] - target)))


def train_reference_policies(
    env, env_params=None, *, env_kwargs: dict | None = None, seed: int = 0, expert_steps: int | None = None,
    config: dict | sac.SACConfig | None = None, reference_episodes: int = 100, deterministic: bool = False,
    keep_history: bool = True, progress: bool = True,
) -> ReferencePolicies:
    """Train the expert SAC on ``env`` (a registered name or an env object) and derive the random,
    medium and expert policies, their reference returns and the medium-replay history.

    ``config``: a :class:`rlx.agents.sac.SACConfig` (used as is) or a dict of SAC fields that
    override the defaults (:func:`expert_config`); everything is checked before compiling.
    """
    env_name, env, env_params = _resolve_env(env, env_params, env_kwargs)
    if reference_episodes < 1:
        raise ValueError(f"reference_episodes must be >= 1, got {reference_episodes}")
    if isinstance(config, sac.SACConfig):
        cfg = config.validate()
        if expert_steps is not None and expert_steps != cfg.total_steps:
            raise ConfigError(f"expert_steps={expert_steps} contradicts the config's total_steps={cfg.total_steps}")
        if cfg.normalize_observations:
            raise ConfigError("normalize_observations=True is not allowed for dataset collection (raw observations)")
    else:
        cfg = expert_config(env_name, expert_steps, config)
    train = make_train(sac, cfg, env, env_params)  # checks the config and the env (continuous actions)
    schedule = train.schedule
    t0 = time.perf_counter()
    bar = _progress(progress, schedule.total_env_steps, f"{env_name}: training the expert", "step")
    runner_state = jax.jit(train.init)(seed_keys(seed, 1)[0])
    block = jax.jit(lambda rs: train.run_blocks(rs, 1), donate_argnums=0)
    if bar is not None:
        bar.update(schedule.warmup_env_steps)
    steps, returns, snapshots = [], [], []
    for _ in range(schedule.num_evals):
        runner_state, metrics = block(runner_state)
        metrics, actor = jax.device_get((metrics, runner_state.agent_state.learner.actor_params))
        steps.append(int(metrics["step"][0]))
        returns.append(float(metrics["eval/return_mean"][0]))
        snapshots.append(actor)
        if bar is not None:
            bar.update(schedule.env_steps_per_eval)
            bar.set_postfix_str(f"eval {returns[-1]:8.1f}")
    if bar is not None:
        bar.close()
    train_seconds = time.perf_counter() - t0

    ref = ReferencePolicies(
        env_name=env_name, env_kwargs=dict(env_kwargs or {}), env=env, env_params=env_params, seed=int(seed),
        config=cfg, deterministic=bool(deterministic), reference_episodes=int(reference_episodes),
        eval_steps=np.asarray(steps), eval_returns=np.asarray(returns), actor_snapshots=snapshots,
        medium_index=len(snapshots) - 1, random_return=math.nan, medium_return=math.nan,
        expert_return=math.nan, history=None, train_seconds=train_seconds,
    )
    ref.random_return = _reference_return(ref, None, "reference-random")
    ref.expert_return = _reference_return(ref, snapshots[-1], "reference-expert")
    ref.medium_index = pick_medium(ref.eval_returns, ref.medium_target)
    ref.medium_return = _reference_return(ref, snapshots[ref.medium_index], "reference-medium")
    if keep_history:
        ref.history, ref.history_note = _history(runner_state.agent_state, cfg, schedule, ref.medium_step)
    else:
        ref.history_note = "not kept (keep_history=False)"
    return ref


def _history(agent_state, config: sac.SACConfig, schedule, medium_step: int) -> tuple[Dataset | None, str]:
    """The replay buffer's first ``medium_step`` transitions, each env's stream contiguous."""
    capacity = config.buffer_capacity
    if schedule.total_env_steps > capacity:
        return None, (
            f"the replay buffer (capacity {capacity}) wrapped during the {schedule.total_env_steps} "
            "training steps; medium-replay needs buffer_size >= the expert's training steps"
        )
    data = jax.device_get(jax.tree.map(lambda x: x[:medium_step], agent_state.buffer.data))
    num_envs = config.num_envs

    def streams(x):  # buffer order is (step, env): make each env's stream contiguous
        x = np.asarray(x)
        return x.reshape((medium_step // num_envs, num_envs) + x.shape[1:]).swapaxes(0, 1).reshape(x.shape)

    history = Dataset(
        observations=streams(data.obs).astype(np.float32),
        actions=streams(data.action).astype(np.float32),
        rewards=streams(data.reward).astype(np.float32),
        next_observations=streams(data.next_obs).astype(np.float32),
        terminals=streams(data.terminated).astype(bool),
        timeouts=streams(data.truncated).astype(bool) & ~streams(data.terminated).astype(bool),
    )
    _mark_stream_ends(history.terminals, history.timeouts, medium_step // num_envs, medium_step)
    return history, f"replay buffer up to env step {medium_step} ({num_envs} env stream(s), warm-up included)"


def _mark_stream_ends(terminals: np.ndarray, timeouts: np.ndarray, stream_length: int, size: int) -> None:
    """The last step of every stream ends an episode: a cut, i.e. a timeout unless terminal."""
    ends = np.minimum(np.arange(stream_length, size + stream_length, stream_length), size) - 1
    ends = np.unique(ends[ends >= 0])
    timeouts[ends] = timeouts[ends] | ~terminals[ends]


# ---------------------------------------------------------------------------------------------
# 4: collect
# ---------------------------------------------------------------------------------------------
def rollout_into(
    arrays: dict[str, np.ndarray], offset: int, size: int, env, env_params, policy_fn, params, key,
    num_envs: int, compiled: dict | None = None, bar=None,
) -> None:
    """Roll ``policy_fn(params) -> (obs, key) -> action`` out in ``num_envs`` envs and write
    ``size`` transitions into ``arrays[key][offset : offset + size]``.

    Env ``e``'s stream fills rows ``e * T ... e * T + T - 1`` (``T = ceil(size / num_envs)``;
    the last stream may be shorter), collected in ``lax.scan`` chunks of one compiled program.
    """
    num_envs = max(1, min(int(num_envs), size))
    length = -(-size // num_envs)
    chunks = -(-length // max(1, CHUNK_TRANSITIONS // num_envs))
    chunk = -(-length // chunks)
    compiled = {} if compiled is None else compiled
    venv = rlx_envs.make_vec_env(env, env_params, num_envs)
    cache_key = ("rollout", num_envs, chunk, params is None)
    if cache_key not in compiled:
        def run_chunk(params, carry, key):
            act = policy_fn(params)

            def step(carry, key):
                obs, env_state = carry
                k_act, k_env = jax.random.split(key)
                obs = obs.astype(jnp.float32)
                action = act(obs, k_act)
                next_obs, env_state, reward, terminated, truncated, info = venv.step(k_env, env_state, action, env_params)
                terminated = terminated.astype(bool)
                # A step that is both terminal and at the time limit is terminal: no bootstrap.
                timeout = jnp.logical_and(truncated.astype(bool), ~terminated)
                out = (obs, action, reward.astype(jnp.float32), info["final_observation"].astype(jnp.float32),
                       terminated, timeout)
                return (next_obs, env_state), out

            return jax.lax.scan(step, carry, jax.random.split(key, chunk))

        compiled[cache_key] = (jax.jit(run_chunk), jax.jit(lambda k: venv.reset(k, env_params)))
    run_chunk, reset = compiled[cache_key]
    k_reset, k_steps = jax.random.split(key)
    carry = reset(k_reset)
    names = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")
    for c, k in enumerate(jax.random.split(k_steps, chunks)):
        carry, out = run_chunk(params, carry, k)
        out = jax.device_get(out)  # (chunk, num_envs, ...)
        t0, t1 = c * chunk, min((c + 1) * chunk, length)
        for e in range(num_envs):
            start = e * length + t0
            stop = min(e * length + t1, size)
            if stop <= start:
                continue
            for name, values in zip(names, out, strict=True):
                arrays[name][offset + start : offset + stop] = values[: stop - start, e]
        if bar is not None:
            bar.update(min(t1 * num_envs, size) - min(t0 * num_envs, size))
    # Basic slices are views (of memory maps too): the marks land in ``arrays``.
    _mark_stream_ends(arrays["terminals"][offset : offset + size], arrays["timeouts"][offset : offset + size], length, size)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; allowed: {', '.join(KINDS)}")


def dataset_info(ref: ReferencePolicies, kind: str, size: int, num_envs: int, extra: dict | None = None) -> DatasetInfo:
    """The metadata record of ``kind`` collected from ``ref``."""
    return DatasetInfo(
        env=ref.env_name, kind=kind, size=int(size), seed=ref.seed, env_kwargs=ref.env_kwargs,
        policy_return=ref.policy_return(kind), random_return=ref.random_return, expert_return=ref.expert_return,
        source="rlx collect", rlx_version=rlx.__version__,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        agent="sac", agent_config=ref.config.to_dict(), expert_steps=ref.expert_steps,
        medium_step=ref.medium_step, medium_eval_return=float(ref.eval_returns[ref.medium_index]),
        policy_mode="deterministic" if ref.deterministic else "stochastic",
        num_envs=int(num_envs) if kind != "medium-replay" else int(ref.config.num_envs),
        reference_episodes=ref.reference_episodes, versions=runlog.versions(),
        extra={
            "medium_target_return": ref.medium_target,
            "medium_rule": "closest evaluation to random + (expert - random) / 3 among those up to the first reaching it",
            "eval_steps": [int(s) for s in ref.eval_steps],
            "eval_returns": [float(r) for r in ref.eval_returns],
            "expert_train_seconds": round(ref.train_seconds, 2),
            **(extra or {}),
        },
    )


def collect_dataset(
    ref: ReferencePolicies, kind: str, size: int | None = None, *, out=None, overwrite: bool = False,
    num_envs: int = 100, progress: bool = True, device: bool = False,
) -> tuple[Dataset, DatasetInfo]:
    """Collect ``size`` transitions of ``kind`` from the policies of ``ref``.

    With ``out`` the transitions are written to that folder in chunks (the rlx format,
    :mod:`rlx.buffers.dataset`) and the returned dataset is memory-mapped from it; without,
    they are host arrays (``device=True``: on the device).
    """
    _check_kind(kind)
    if kind == "medium-replay":
        if ref.history is None:
            raise ValueError(f"no medium-replay history: {ref.history_note}")
        size = ref.history.size
    elif size is None or int(size) < 1:
        raise ValueError(f"size must be a positive number of transitions for kind {kind!r}, got {size}")
    size = int(size)
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    obs_shape, action_shape = ref.obs_shape, (ref.action_dim,)
    if out is not None:
        writer = DatasetWriter(out, size, obs_shape, action_shape, overwrite)
        arrays = writer.arrays
    else:
        writer = None
        arrays = {
            "observations": np.zeros((size, *obs_shape), np.float32),
            "actions": np.zeros((size, *action_shape), np.float32),
            "rewards": np.zeros(size, np.float32),
            "next_observations": np.zeros((size, *obs_shape), np.float32),
            "terminals": np.zeros(size, bool),
            "timeouts": np.zeros(size, bool),
        }
    bar = _progress(progress and kind != "medium-replay", size, f"{ref.env_name}: {kind}", "transition")

    def policy_fn(params):
        return _actor_policy(ref.config, ref.action_dim, params, ref.deterministic)

    def part(part_kind: str, offset: int, n: int) -> None:
        rollout_into(
            arrays, offset, n, ref.env, ref.env_params, policy_fn, ref.params_of(part_kind),
            stream_key(ref.seed, part_kind), num_envs, ref._compiled, bar,
        )

    if kind == "medium-replay":
        for name, values in ref.history._asdict().items():
            arrays[name][:] = values
    elif kind == "medium-expert":
        half = -(-size // 2)
        part("medium", 0, half)
        if size - half:
            part("expert", half, size - half)
    else:
        part(kind, 0, size)
    if bar is not None:
        bar.close()
    dataset = Dataset(**arrays)
    returns = episode_returns(dataset)
    extra = {
        "episodes": int(returns.size),
        "episode_return_mean": float(returns.mean()) if returns.size else None,
        "episode_return_std": float(returns.std()) if returns.size else None,
    }
    if kind == "medium-replay":
        extra["history"] = ref.history_note
    if kind == "medium-expert":
        extra["halves"] = {"medium": [0, -(-size // 2)], "expert": [-(-size // 2), size]}
    info = dataset_info(ref, kind, size, num_envs, extra)
    if writer is not None:
        path = writer.close(info)
        return load(path, device=device, mmap=not device)
    from rlx.buffers.dataset import to_device, validate

    validate(dataset, source=f"{kind} dataset")
    return (to_device(dataset) if device else dataset), info


def _check_out(path: Path, overwrite: bool) -> None:
    if path.exists() and not path.is_dir():
        raise runlog.OutputDirError(f"--out {path} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise runlog.OutputDirError(
            f"output folder {path} exists and is not empty; choose another --out, or pass --overwrite"
        )


def collect(
    env, kinds: str | Sequence[str], size: int | None = 1_000_000, out=None, *, env_params=None,
    env_kwargs: dict | None = None, seed: int = 0, expert_steps: int | None = None, config=None,
    num_envs: int = 100, reference_episodes: int = 100, deterministic: bool = False,
    overwrite: bool = False, progress: bool = True,
) -> dict[str, tuple[Dataset, DatasetInfo]]:
    """Train the expert once and collect every kind in ``kinds`` (one name or several).

    One kind goes to the folder ``out``; several go to ``out/<kind>/``. Every output folder is
    checked (empty, or ``overwrite``) and every argument validated before anything is compiled.
    Returns ``{kind: (dataset, info)}``.
    """
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    if not kinds:
        raise ValueError(f"no dataset kind given; allowed: {', '.join(KINDS)}")
    for kind in kinds:
        _check_kind(kind)
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"a kind is given twice in {kinds}")
    if any(k != "medium-replay" for k in kinds) and (size is None or int(size) < 1):
        raise ValueError(f"size must be a positive number of transitions, got {size}")
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    outs = {}
    if out is not None:
        out = Path(out)
        outs = {kinds[0]: out} if len(kinds) == 1 else {k: out / k for k in kinds}
        for path in outs.values():
            _check_out(path, overwrite)
    ref = train_reference_policies(
        env, env_params, env_kwargs=env_kwargs, seed=seed, expert_steps=expert_steps, config=config,
        reference_episodes=reference_episodes, deterministic=deterministic,
        keep_history="medium-replay" in kinds, progress=progress,
    )
    return {
        kind: collect_dataset(
            ref, kind, size, out=outs.get(kind), overwrite=overwrite, num_envs=num_envs, progress=progress
        )
        for kind in kinds
    }
