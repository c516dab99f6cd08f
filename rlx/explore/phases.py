"""Reward-free exploration in two phases, and the URLB pretrain-then-fine-tune protocol.

Phase 1, :func:`explore` (Jin et al. 2020, arXiv 2002.02794, ``algorithms.md`` 6.1): an agent of
rlx (SAC by default) trains on an intrinsic reward only (:mod:`rlx.explore.intrinsic`; the
task reward is never read) and everything it collects, warm-up included, becomes an offline
:class:`rlx.buffers.dataset.Dataset`.

Phase 2, :func:`plan`: for any reward function r(s, a, s') given afterwards, the dataset is
relabelled with r (:func:`relabel`, exact: every reward is recomputed from the function) and the
agent's learner trains on the fixed dataset with no environment interaction; the result is a
policy. The planner is model-free (SAC's own update on the relabelled transitions), because data
collected by exploration covers the state-action space widely, and on such data plain off-policy
learners work offline without a conservatism term or a model (Yarats et al. 2022, "Don't Change
the Algorithm, Change the Data", ExORL, arXiv 2201.13425); a model adds compounding rollout
error and a penalty to tune, which exploratory data does not need.

:func:`pretrain_finetune` is URLB's protocol (Laskin et al. 2021, arXiv 2110.15191): pretrain
reward-free, then fine-tune the pretrained learner (actor, critics, temperature, optimiser
states) with the task reward for a fixed number of env steps.

Several seeds at once: ``explore(..., num_seeds=N)`` and ``random_dataset(..., num_seeds=N)``
return N datasets stacked on a leading axis (seed i from ``run_keys(key, N)[i]``, as
:func:`rlx.run.run` derives its seeds), and ``plan(..., batched=True)`` learns from such a stack
with one key per run, all runs in one compiled program (``jax.vmap``); each run is the
unbatched call with its own dataset and key, up to float rounding (a vmapped matrix product may
round differently in the last bit). :meth:`PlanResult.policy_of` is run i's policy and
:func:`evaluate_plan` evaluates every run's policy in one program.

:func:`with_intrinsic` is how any agent gets a bonus: it wraps the agent (SAC, DSAC-T, PPO,
GRPO, GiGPO) so that its train state carries an :class:`~rlx.explore.intrinsic.IntrinsicReward`,
which the agent's own loop applies to every minibatch (or rollout) it learns from; nothing of
the agent is copied.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rlx import envs as rlx_envs
from rlx.buffers.dataset import Dataset
from rlx.buffers.dataset import sample as sample_dataset
from rlx.core.config import ConfigError
from rlx.explore.intrinsic import make_intrinsic

__all__ = [
    "ExplorationResult",
    "buffer_dataset",
    "evaluate_plan",
    "evaluate_reward",
    "FinetuneResult",
    "PlanResult",
    "explore",
    "exploration_config",
    "plan",
    "planning_config",
    "pretrain_finetune",
    "random_dataset",
    "relabel",
    "run_keys",
    "with_intrinsic",
]


# ---------------------------------------------------------------------------------------------
# Any agent with a bonus
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class WithIntrinsic:
    """``agent`` whose learner sees ``task_coef * r + bonus_coef * bonus`` (the agent contract of
    :func:`rlx.run.make_train`). ``initial_intrinsic`` continues a trained module (fine-tuning)."""

    agent: Any
    module: Any
    task_coef: float = 0.0
    bonus_coef: float = 1.0
    initial_intrinsic: Any = None
    initial_learner: Any = None  # fine-tuning: start from this learner instead of a fresh one

    @property
    def NAME(self) -> str:  # noqa: N802 (the agent contract's name)
        return f"{self.agent.NAME}+{getattr(self.module, 'name', 'bonus')}" if self.module else self.agent.NAME

    @property
    def Config(self):  # noqa: N802
        return self.agent.Config

    def check_env(self, config, env, env_params) -> None:
        self.agent.check_env(config, env, env_params)

    def init(self, config, env, env_params, key):
        k_agent, k_bonus = jax.random.split(key)
        state = self.agent.init(config, env, env_params, k_agent)
        if not hasattr(state, "intrinsic"):
            raise ConfigError(
                f"agent {self.agent.NAME!r} keeps no intrinsic-reward slot in its train state; "
                "bonuses plug into the off-policy agents (sac, dsac_t), ppo, grpo and gigpo"
            )
        if self.initial_learner is not None:
            state = state.replace(learner=self.initial_learner)
        if self.module is None:
            return state
        intrinsic = self.initial_intrinsic
        if intrinsic is None:
            obs_dim = int(np.prod(rlx_envs.obs_shape(env, env_params)))
            action_dim = rlx_envs.action_dim(env.action_space(env_params))
            intrinsic = make_intrinsic(self.module, obs_dim, action_dim, k_bonus, self.task_coef, self.bonus_coef)
        else:
            intrinsic = intrinsic.replace(task_coef=jnp.float32(self.task_coef), bonus_coef=jnp.float32(self.bonus_coef))
        return state.replace(intrinsic=intrinsic)

    def update(self, config, env, env_params, state):
        return self.agent.update(config, env, env_params, state)

    def make_policy(self, config, state, deterministic: bool = True):
        return self.agent.make_policy(config, state, deterministic)

    def observation_stats(self, state):
        return self.agent.observation_stats(state)

    def __getattr__(self, name):  # q_estimate, value_estimate, ... of the wrapped agent
        if name.startswith("__") or name in {f.name for f in dataclasses.fields(WithIntrinsic)}:
            raise AttributeError(name)
        return getattr(self.agent, name)


def with_intrinsic(agent, module, task_coef: float = 0.0, bonus_coef: float = 1.0) -> WithIntrinsic:
    """``agent`` (a module of rlx.agents) trained on ``task_coef * r + bonus_coef * bonus``.

    ``task_coef = 0`` is reward-free exploration; ``task_coef = 1, bonus_coef = c`` is
    exploration with reward (the task reward plus a bonus with coefficient c)."""
    for name, value in (("task_coef", task_coef), ("bonus_coef", bonus_coef)):
        if not (isinstance(value, (int, float)) and value >= 0):
            raise ConfigError(f"{name}={value!r} must be a number >= 0")
    return WithIntrinsic(agent, module, float(task_coef), float(bonus_coef))


# ---------------------------------------------------------------------------------------------
# Phase 1: explore -> Dataset
# ---------------------------------------------------------------------------------------------
# Initial temperature for exploring with SAC. With SAC's default (1.0) the entropy term swamps
# bonuses of order 0.1-1 for the few thousand steps of rlx's small tasks and the agent moves
# like a random one (measured on the four-room maze, 4,000 steps: coverage 0.15 at 1.0 against
# 0.47 at 0.05); the temperature is still learned toward the target entropy from there.
EXPLORE_INIT_ALPHA = 0.05


def exploration_config(agent=None, **overrides):
    """The agent's (SAC's) default config for exploration: ``init_alpha`` 0.05, else its defaults."""
    if agent is None:
        from rlx.agents import sac as agent
    fields = {"init_alpha": EXPLORE_INIT_ALPHA} if "init_alpha" in agent.Config.tunable_names() else {}
    return agent.Config(**{**fields, **overrides}).validate()


def run_keys(key, num_seeds: int) -> jax.Array:
    """The keys of ``num_seeds`` runs started from ``key``, leading axis ``num_seeds``: the key
    itself for one run, else ``jax.random.split(key, num_seeds)``, which is how
    :func:`rlx.run.run` (``key=``) derives its seeds."""
    _check_num_seeds(num_seeds)
    return key[None] if num_seeds == 1 else jax.random.split(key, num_seeds)


def _check_num_seeds(num_seeds) -> None:
    if num_seeds is not None and (isinstance(num_seeds, bool) or not isinstance(num_seeds, (int, np.integer))
                                  or num_seeds < 1):
        raise ConfigError(
            f"num_seeds={num_seeds!r} is not allowed: None (one run, no leading axis) or an int >= 1 "
            "(that many seeds trained together, results with a leading axis of that size)"
        )


def random_dataset(key, env, env_params, num_steps: int, *, num_seeds: int | None = None) -> Dataset:
    """``num_steps`` transitions of one env driven by uniform random actions (in [-1, 1] for a Box,
    uniform choices for a Discrete space), as a Dataset: the baseline exploration is compared to.

    ``num_seeds=N`` collects N such streams together (one compiled program), stacked on a leading
    axis: stream i is ``random_dataset(run_keys(key, N)[i], ...)``, bit for bit."""
    _check_num_seeds(num_seeds)
    venv = rlx_envs.make_vec_env(env, env_params, 1)
    space = env.action_space(env_params)
    continuous = rlx_envs.is_continuous(space)
    action_dim = rlx_envs.action_dim(space)

    def run(key):
        k_reset, k_loop = jax.random.split(key)
        obs, state = venv.reset(k_reset, env_params)

        def step(carry, key):
            obs, state = carry
            k_act, k_env = jax.random.split(key)
            if continuous:
                action = jax.random.uniform(k_act, (1, action_dim), jnp.float32, -1.0, 1.0)
            else:
                action = jax.random.randint(k_act, (1,), 0, action_dim)
            next_obs, state, reward, terminated, truncated, info = venv.step(k_env, state, action, env_params)
            row = (obs[0], action[0], reward[0], info["final_observation"][0], terminated[0], truncated[0])
            return (next_obs, state), row

        _, rows = jax.lax.scan(step, (obs, state), jax.random.split(k_loop, num_steps))
        return rows

    if num_seeds is None:
        o, a, r, o2, te, tr = jax.jit(run)(key)
    else:
        o, a, r, o2, te, tr = jax.jit(jax.vmap(run))(run_keys(key, num_seeds))
    a = a.astype(jnp.float32) if continuous else jax.nn.one_hot(a, action_dim)
    return Dataset(o.astype(jnp.float32), a, r.astype(jnp.float32), o2.astype(jnp.float32),
                   te.astype(bool), tr.astype(bool))


class ExplorationResult(NamedTuple):
    """What :func:`explore` returns; with ``num_seeds=N`` every field has a leading seed axis."""

    dataset: Dataset  # every transition collected, in order (warm-up first)
    state: Any  # the final train state (learner, module, buffer, ...)
    metrics: dict[str, np.ndarray]  # per evaluation block (losses, bonus statistics, ...)


def _check_explore_config(config) -> None:
    from rlx.run.train import Schedule

    if getattr(config, "normalize_observations", False):
        raise ConfigError(
            "normalize_observations=True is not allowed for exploration: the dataset must hold the "
            "env's own observations, which a reward function given later is written against"
        )
    if not hasattr(config, "buffer_capacity"):
        raise ConfigError(f"{type(config).__name__} has no replay buffer; explore() needs a replay-based agent")
    schedule = Schedule.from_config(config)
    if schedule.total_env_steps > config.buffer_capacity:
        per_block = schedule.env_steps_per_eval
        fit = schedule.warmup_env_steps + max(1, (config.total_steps - schedule.warmup_env_steps) // per_block) * per_block
        raise ConfigError(
            f"exploration runs {schedule.total_env_steps} env steps (total_steps={config.total_steps} "
            f"rounded up to whole blocks of eval_every={config.eval_every}), more than the replay capacity "
            f"{config.buffer_capacity} (min(buffer_size, total_steps)), so the dataset would lose the oldest "
            f"data; use total_steps = learning_starts + a multiple of eval_every, e.g. {fit}"
        )


def buffer_dataset(buffer) -> Dataset:
    """The written part of a replay buffer of :class:`~rlx.core.types.Transition` as a Dataset,
    oldest first (host-side: the buffer must be concrete). A buffer of several seeds (a leading
    seed axis, as :func:`rlx.run.run` returns it) gives one Dataset of them all, each seed's
    transitions in its own order on a leading seed axis; the seeds must hold the same number."""
    size, position = np.asarray(buffer.size), np.asarray(buffer.position)
    data = jax.tree.map(np.asarray, buffer.data)
    if size.ndim == 0:
        order = _buffer_order(int(size), int(position), buffer.capacity)
        rows = jax.tree.map(lambda x: jnp.asarray(x[order]), data)
    else:
        if len(set(size.tolist())) != 1:
            raise ValueError(f"the seeds' buffers hold different numbers of transitions {size.tolist()}; "
                             "a Dataset of several seeds needs one size for all")
        capacity = jax.tree.leaves(data)[0].shape[1]
        order = np.stack([_buffer_order(int(n), int(p), capacity) for n, p in zip(size, position, strict=True)])
        seeds = np.arange(size.shape[0])[:, None]
        rows = jax.tree.map(lambda x: jnp.asarray(x[seeds, order]), data)
    return Dataset(
        observations=rows.obs.astype(jnp.float32),
        actions=rows.action.astype(jnp.float32),
        rewards=rows.reward.astype(jnp.float32),
        next_observations=rows.next_obs.astype(jnp.float32),
        terminals=rows.terminated.astype(bool),
        timeouts=rows.truncated.astype(bool),
    )


def _buffer_order(size: int, position: int, capacity: int) -> np.ndarray:
    return np.arange(size) if size < capacity else (position + np.arange(capacity)) % capacity


def explore(key, agent, config, env, env_params, module, *, num_seeds: int | None = None,
            progress: bool = True) -> ExplorationResult:
    """Train ``agent`` on ``module``'s bonus alone for ``config.total_steps`` env steps and return
    everything it collected as a Dataset. The ``rewards`` column keeps what the env emitted; the
    learner never read it. Config, env and ``num_seeds`` are checked before anything is compiled.
    The run is :func:`rlx.run.run`'s from ``key`` (a progress bar unless ``progress=False``): the
    same data as ``jax.jit(train)(key)``, bit for bit (logged loss means agree up to float rounding).

    ``num_seeds=None`` is one run with unbatched results. ``num_seeds=N`` trains N seeds together
    in one compiled program (``rlx.run.run(..., num_seeds=N, key=key)``, seeds vmapped) and the
    result's dataset, state and metrics carry a leading seed axis of N (the datasets all hold
    ``total_steps`` transitions); seed i is the run from ``run_keys(key, N)[i]``, the same run as
    ``explore(run_keys(key, N)[i], ...)`` up to float rounding, as rlx.run's vmapped seeds are: the
    warm-up transitions bit for bit, later ones within float32 rounding (a vmapped matrix product
    may round differently in the last bit, and the policy acts on that)."""
    from rlx.run.driver import run

    _check_num_seeds(num_seeds)
    config.validate()
    _check_explore_config(config)
    result = run(with_intrinsic(agent, module, 0.0, 1.0), config, env, env_params, key=key,
                 num_seeds=1 if num_seeds is None else int(num_seeds), progress=progress)
    state = result.state.agent_state
    if num_seeds is None:
        metrics = {name: values[0] for name, values in result.metrics.items()}  # the one seed
        return ExplorationResult(buffer_dataset(state.buffer), state, metrics)
    if num_seeds == 1:  # run returns one seed's state without the seed axis
        state = jax.tree.map(lambda x: jnp.expand_dims(x, 0), state)
    return ExplorationResult(buffer_dataset(state.buffer), state, dict(result.metrics))


# ---------------------------------------------------------------------------------------------
# Phase 2: relabel and plan offline
# ---------------------------------------------------------------------------------------------
def relabel(dataset: Dataset, reward_fn: Callable) -> Dataset:
    """The dataset with ``rewards[i] = reward_fn(s_i, a_i, s'_i)`` (``reward_fn`` works on one
    transition and is vmapped; terminals and timeouts are kept)."""
    if not callable(reward_fn):
        raise TypeError(f"reward_fn must be a function of (obs, action, next_obs), got {reward_fn!r}")
    rewards = jax.vmap(reward_fn)(dataset.observations, dataset.actions, dataset.next_observations)
    if rewards.shape != dataset.rewards.shape:
        raise ValueError(
            f"reward_fn must return one scalar per transition; it returned shape {rewards.shape[1:]} "
            f"for one transition (expected ())"
        )
    return dataset._replace(rewards=jnp.asarray(rewards, jnp.float32))


class PlanResult(NamedTuple):
    """What :func:`plan` returns. A batched result (``num_runs`` not None) holds ``num_runs``
    learners on a leading axis; :meth:`policy_of` is one run's policy."""

    policy: Callable  # (obs, key) -> action, deterministic; batched: obs and keys with a leading run axis
    learner: Any  # batched: a leading run axis on every leaf
    metrics: dict[str, np.ndarray]  # losses averaged over each of ``num_logs`` stretches of updates (batched: per run)
    make_policy: Callable | None = None  # learner (one run's) -> its deterministic policy
    num_runs: int | None = None  # None: one run, no leading axis

    def policy_of(self, i: int) -> Callable:
        """Run ``i``'s deterministic policy, (obs, key) -> action (of a batched result; 0 of an
        unbatched one is its ``policy``)."""
        runs = 1 if self.num_runs is None else self.num_runs
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < runs:
            raise IndexError(f"run {i!r} is out of range: this result holds runs 0..{runs - 1}")
        if self.num_runs is None:
            return self.policy
        return self.make_policy(jax.tree.map(lambda x: x[i], self.learner))


class _LearnerState(NamedTuple):
    learner: Any


def _key_batch_ndim(key) -> int:
    """1 for a raw uint32 key (shape (2,)), 0 for a typed key: the shape of one key."""
    return 0 if jnp.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key) else 1


def _check_runs(dataset: Dataset, key, learner, batched: bool) -> tuple[int | None, int]:
    """(number of runs or None, transitions per dataset), or a ConfigError naming what does not fit."""
    if not isinstance(batched, bool):
        raise ConfigError(f"batched={batched!r} must be True or False")
    key_shape, one_key = tuple(jnp.shape(key)), _key_batch_ndim(key)
    if not batched:
        if len(key_shape) != one_key:
            raise ConfigError(
                f"key of shape {key_shape} is a batch of keys; an unbatched call takes one key "
                "(pass batched=True with a dataset per key to learn several runs together)"
            )
        return None, int(dataset.observations.shape[0])
    leading = {name: (jnp.shape(x)[0] if jnp.ndim(x) else None)
               for name, x in zip(dataset._fields, dataset, strict=True)}
    if len(key_shape) != one_key + 1:
        raise ConfigError(f"batched=True needs one key per run (shape (N, ...), e.g. run_keys(key, N)); "
                          f"key has shape {key_shape}")
    leading["key"] = key_shape[0]
    if learner is not None:
        for i, leaf in enumerate(jax.tree.leaves(learner)):
            leading[f"learner leaf {i}"] = jnp.shape(leaf)[0] if jnp.ndim(leaf) else None
    if len(set(leading.values())) != 1 or None in leading.values() or jnp.ndim(dataset.observations) < 3:
        raise ConfigError(
            "batched=True learns one run per entry of a leading axis N, shared by every dataset field "
            "(observations (N, size, obs_dim), rewards (N, size), ...), the keys and the learner if given; "
            f"got leading axes {leading}"
        )
    return int(key_shape[0]), int(dataset.observations.shape[1])


def offline_learn(agent, config, dataset: Dataset, key, num_updates: int, num_logs: int = 10, learner=None,
                  *, batched: bool = False, progress: bool = False):
    """``num_updates`` of the agent's gradient step on minibatches of a fixed dataset (no env).
    One compiled ``lax.scan``; returns (learner, metrics of ``num_logs`` stretches). ``progress``
    shows a bar fed after each stretch by a host callback (progress only: the results are the
    same without it).

    The dataset, key and starting learner are arguments of the compiled program, which is kept:
    another dataset of the same shape (the same data relabelled for another reward, say) runs
    without compiling again. ``batched=True`` learns N independent runs together
    (``jax.vmap``): ``dataset``, ``key`` (and ``learner`` if given) carry a leading axis of N, as
    do the results; run i is the unbatched call with dataset i and key i, up to float rounding
    (learner parameters agree to about 1e-6). Inputs are checked before anything is compiled."""
    if num_updates < 1 or num_logs < 1 or num_updates % num_logs:
        raise ConfigError(f"num_updates={num_updates} must be >= 1 and a multiple of num_logs={num_logs}")
    num_runs, size = _check_runs(dataset, key, learner, batched)
    if size < config.batch_size:
        raise ConfigError(f"dataset of {size} transitions is smaller than batch_size={config.batch_size}")
    program = _offline_program(agent, config, num_updates, num_logs, learner is None, batched, progress)

    entry = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_updates * (num_runs or 1), desc="offline updates", unit="update", unit_scale=True,
                   dynamic_ncols=True)
        entry = (bar, num_updates // num_logs)  # under vmap the callback runs once per run and stretch
        _OFFLINE_BARS.append(entry)
    try:
        final, metrics = program(dataset, key, learner)
        jax.effects_barrier()  # every callback has run before the bar closes
    finally:
        if entry is not None:
            _OFFLINE_BARS[:] = [e for e in _OFFLINE_BARS if e is not entry]
            entry[0].close()
    return final, jax.tree.map(np.asarray, metrics)


# The bars of the offline_learn calls running now; the compiled programs' callback feeds the latest.
_OFFLINE_BARS: list = []


def _offline_stretch_done(critic_loss) -> None:
    if _OFFLINE_BARS:
        bar, updates = _OFFLINE_BARS[-1]
        bar.update(updates)
        bar.set_postfix_str(f"critic loss {float(critic_loss):.4g}", refresh=False)


def _offline_program(agent, config, num_updates, num_logs, fresh, batched, progress):
    try:
        return _cached_offline_program(agent, config, num_updates, num_logs, fresh, batched, progress)
    except TypeError:  # an unhashable config: compiled for this call only
        return _build_offline_program(agent, config, num_updates, num_logs, fresh, batched, progress)


def _build_offline_program(agent, config, num_updates: int, num_logs: int, fresh: bool, batched: bool,
                           progress: bool):
    """jit((dataset, key, learner) -> (learner, metrics)); ``fresh``: the learner is initialised
    from the key (the learner argument is None)."""

    def run(dataset, key, learner):
        action_dim = int(dataset.actions.shape[-1])
        k_init, k_loop = jax.random.split(key)
        start = agent.init_learner(config, dataset.observations[:1], action_dim, k_init) if fresh else learner

        def one(carry, key):
            learner, step = carry
            k_sample, k_step = jax.random.split(key)
            batch = sample_dataset(dataset, k_sample, config.batch_size)
            batch = batch._replace(terminated=batch.terminated.astype(jnp.float32),
                                   truncated=batch.truncated.astype(jnp.float32))
            learner, metrics = agent.gradient_step(config, action_dim, learner, batch, k_step, step)
            return (learner, step + 1), metrics

        def stretch(carry, key):
            carry, metrics = jax.lax.scan(one, carry, jax.random.split(key, num_updates // num_logs))
            if progress:
                jax.debug.callback(_offline_stretch_done,
                                   metrics["loss/critic"][-1] if "loss/critic" in metrics else jnp.nan)
            return carry, jax.tree.map(jnp.mean, metrics)

        (final, _), metrics = jax.lax.scan(stretch, (start, jnp.int32(0)), jax.random.split(k_loop, num_logs))
        return final, metrics

    if batched:
        return jax.jit(jax.vmap(run, in_axes=(0, 0, None if fresh else 0)))
    return jax.jit(run)


_cached_offline_program = functools.lru_cache(maxsize=8)(_build_offline_program)


# SAC settings for learning from a fixed dataset. Nothing is left to explore, so the temperature
# starts small (0.01), and Adam 1e-3 with tau 0.02 carries a sparse reward back along the
# dataset's paths within a few thousand updates (measured on a 3,000-step maze dataset, goal 1.3
# cells from the start, 3,000 updates: return 98 of 100 against 4.5 with SAC's online defaults).
PLAN_SAC_SETTINGS = {"init_alpha": 0.01, "tau": 0.02, "actor_lr": 1e-3, "critic_lr": 1e-3}


def planning_config(agent=None, **overrides):
    """The agent's (SAC's) config for :func:`plan`: :data:`PLAN_SAC_SETTINGS` over its defaults."""
    if agent is None:
        from rlx.agents import sac as agent
    names = set(agent.Config.tunable_names())
    fields = {k: v for k, v in PLAN_SAC_SETTINGS.items() if k in names}
    return agent.Config(**{**fields, **overrides}).validate()


def plan(dataset: Dataset, reward_fn: Callable, key, agent=None, config=None, num_updates: int = 20_000,
         num_logs: int = 10, *, batched: bool = False, progress: bool = True) -> PlanResult:
    """A policy for ``reward_fn`` from ``dataset`` alone: relabel, then ``num_updates`` offline
    updates of ``agent``'s learner (SAC by default, :func:`planning_config` unless ``config``),
    with a progress bar unless ``progress=False``.

    ``batched=True``: ``dataset`` and ``key`` carry a leading axis of N independent runs (e.g.
    the datasets of ``explore(..., num_seeds=N)`` and ``run_keys(key, N)``), learned together in
    one compiled program; run i is ``plan(dataset_i, reward_fn, key_i, ...)`` up to float
    rounding. The result's
    learner and metrics carry the run axis, ``policy_of(i)`` is run i's policy and
    :func:`evaluate_plan` evaluates them all."""
    if agent is None:
        from rlx.agents import sac as agent
    config = (planning_config(agent) if config is None else config).validate()
    num_runs, _ = _check_runs(dataset, key, None, batched)
    labelled = jax.vmap(lambda d: relabel(d, reward_fn))(dataset) if batched else relabel(dataset, reward_fn)
    learner, metrics = offline_learn(agent, config, labelled, key, num_updates, num_logs, batched=batched,
                                     progress=progress)

    def make_policy(learner):
        return agent.make_policy(config, _LearnerState(learner), deterministic=True)

    if not batched:
        return PlanResult(make_policy(learner), learner, metrics, make_policy)

    def policy(obs, keys):  # every run's policy on its own observations
        return jax.vmap(lambda learner, o, k: make_policy(learner)(o, k))(learner, obs, keys)

    return PlanResult(policy, learner, metrics, make_policy, num_runs)


def _episode_returns(policy: Callable, env, env_params, reward_fn: Callable, num_episodes: int):
    """key -> the return under ``reward_fn`` of each of ``num_episodes`` parallel episodes."""
    venv = rlx_envs.make_vec_env(env, env_params, num_episodes)
    horizon = rlx_envs.episode_limit(env, env_params)

    def run(key):
        k_reset, k_loop = jax.random.split(key)
        obs, state = venv.reset(k_reset, env_params)

        def step(carry, key):
            obs, state, total, alive = carry
            k_act, k_env = jax.random.split(key)
            action = policy(obs.astype(jnp.float32), k_act)
            next_obs, state, _, terminated, truncated, info = venv.step(k_env, state, action, env_params)
            r = jax.vmap(reward_fn)(obs, action, info["final_observation"])
            total = total + alive * r
            alive = alive * (1.0 - jnp.logical_or(terminated, truncated).astype(jnp.float32))
            return (next_obs, state, total, alive), None

        zeros = jnp.zeros(num_episodes, jnp.float32)
        (_, _, total, _), _ = jax.lax.scan(step, (obs, state, zeros, zeros + 1.0), jax.random.split(k_loop, horizon))
        return total

    return run


def evaluate_reward(policy: Callable, env, env_params, reward_fn: Callable, key, num_episodes: int = 10) -> np.ndarray:
    """Return of ``policy`` under ``reward_fn`` (not the env's own reward): the sum of
    r(s, a, s') over one episode (up to the env's limit), for ``num_episodes`` parallel episodes.
    For one run of a batched :class:`PlanResult` pass ``result.policy_of(i)``."""
    return np.asarray(jax.jit(_episode_returns(policy, env, env_params, reward_fn, num_episodes))(key))


def evaluate_plan(result: PlanResult, env, env_params, reward_fn: Callable, key, num_episodes: int = 10) -> np.ndarray:
    """:func:`evaluate_reward` of a :func:`plan` result's policy: shape (num_episodes,); of a
    batched result, every run's policy in one compiled program, shape (num_runs, num_episodes),
    row i that of ``evaluate_reward(result.policy_of(i), ..., key, num_episodes)`` up to float
    rounding (every run plays the same episodes: the same start states and env noise)."""
    if result.num_runs is None:
        return evaluate_reward(result.policy, env, env_params, reward_fn, key, num_episodes)
    if result.make_policy is None:
        raise ValueError("this batched PlanResult has no make_policy to build each run's policy from")

    def one(learner):
        return _episode_returns(result.make_policy(learner), env, env_params, reward_fn, num_episodes)(key)

    return np.asarray(jax.jit(jax.vmap(one))(result.learner))


# ---------------------------------------------------------------------------------------------
# URLB: pretrain reward-free, then fine-tune with the task reward
# ---------------------------------------------------------------------------------------------
class FinetuneResult(NamedTuple):
    pretrain: ExplorationResult
    metrics: dict[str, np.ndarray]  # fine-tuning, per evaluation block (eval/return_mean, step, ...)
    state: Any


def pretrain_finetune(key, agent, pretrain_config, finetune_config, env, env_params, module,
                      finetune_bonus_coef: float = 0.0) -> FinetuneResult:
    """URLB: :func:`explore` for ``pretrain_config.total_steps``, then ``finetune_config.total_steps``
    env steps of ``agent`` on the task reward starting from the pretrained learner (fresh replay
    buffer and warm-up of ``finetune_config.learning_starts`` steps); ``finetune_bonus_coef > 0``
    keeps the pretrained module's bonus in the reward (exploration with reward)."""
    from rlx.run.train import make_train

    finetune_config.validate()
    agent.check_env(finetune_config, env, env_params)
    k_pre, k_fine = jax.random.split(key)
    pre = explore(k_pre, agent, pretrain_config, env, env_params, module)
    if jax.tree.structure(pre.state.learner) != jax.tree.structure(
        jax.eval_shape(lambda: agent.init_learner(finetune_config, pre.dataset.observations[:1],
                                                  int(pre.dataset.actions.shape[-1]), jax.random.PRNGKey(0)))
    ):
        raise ConfigError("finetune_config must build the same networks as pretrain_config (hidden sizes, activation)")
    wrapped = WithIntrinsic(
        agent,
        module if finetune_bonus_coef > 0 else None,
        task_coef=1.0,
        bonus_coef=float(finetune_bonus_coef),
        initial_intrinsic=pre.state.intrinsic if finetune_bonus_coef > 0 else None,
        initial_learner=pre.state.learner,
    )
    out = jax.jit(make_train(wrapped, finetune_config, env, env_params))(k_fine)
    return FinetuneResult(pre, jax.tree.map(np.asarray, out.metrics), out.state.agent_state)
