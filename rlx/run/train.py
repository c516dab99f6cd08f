"""``make_train``: turn an agent's ``init`` / ``update`` / ``make_policy`` into ``train(key)``.

An agent is any object (usually its module) that meets :class:`rlx.core.contract.Agent`; the
runner uses

* ``Config``: its config class (a :class:`rlx.core.config.TrainConfig`);
* ``check_env(config, env, env_params)``: raise a clear error for an env the agent cannot use;
* ``init(config, env, env_params, key) -> state`` (warm-up included);
* ``update(config, env, env_params, state) -> (state, metrics)``: one iteration;
* ``make_policy(config, state, deterministic) -> policy(obs, key) -> action``;
* ``observation_stats(state)``: the training envs' running observation statistics or None;
* optionally ``eval_metrics(returns)``: more metrics of the evaluation returns;
* config properties ``env_steps_per_iteration`` and ``warmup_env_steps``.

The program is a ``lax.scan`` over evaluation periods ("blocks"); each block is a ``lax.scan`` of
``iterations_per_eval`` updates followed by a deterministic evaluation. The chunked driver
(:mod:`rlx.run.driver`) runs the very same ``run_blocks`` function a few blocks at a time, so the
one-shot program and the driver give the same metrics for the same key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rlx import envs as rlx_envs
from rlx.core import contract, parallel
from rlx.core.running_stats import normalize


class RunnerState(NamedTuple):
    agent_state: Any
    eval_key: jax.Array  # the runner's own key stream, for evaluation episodes


class TrainOutput(NamedTuple):
    state: RunnerState
    metrics: dict[str, jax.Array]  # every leaf stacked over evaluations: shape (num_evals,)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How ``total_steps`` is cut into iterations and evaluation blocks (all static).

    ``step_unit`` names what the runner's step counter counts: "env steps" for online agents,
    "gradient steps" for offline ones (a config's ``step_unit`` property), so that messages,
    ``summary.json``, plots and reports name the x axis right.
    """

    env_steps_per_iteration: int
    warmup_env_steps: int
    iterations_per_eval: int
    num_evals: int
    step_unit: str = "env steps"

    @classmethod
    def from_config(cls, config) -> Schedule:
        per_iter = int(config.env_steps_per_iteration)
        warmup = int(config.warmup_env_steps)
        iters_per_eval = max(1, config.eval_every // per_iter)
        remaining = max(0, config.total_steps - warmup)
        # Round up: the run covers at least ``total_steps`` in whole evaluation blocks.
        num_evals = max(1, -(-remaining // (iters_per_eval * per_iter)))
        return cls(per_iter, warmup, iters_per_eval, num_evals, str(getattr(config, "step_unit", "env steps")))

    @property
    def env_steps_per_eval(self) -> int:
        return self.iterations_per_eval * self.env_steps_per_iteration

    @property
    def total_env_steps(self) -> int:
        """Steps actually run (``total_steps`` rounded up to whole evaluation blocks), in
        ``step_unit`` (gradient steps for an offline agent)."""
        return self.warmup_env_steps + self.num_evals * self.env_steps_per_eval

    @property
    def unit_key(self) -> str:
        """``step_unit`` as a key fragment: "env_steps" or "gradient_steps"."""
        return self.step_unit.replace(" ", "_")

    def rounding_note(self, config) -> str | None:
        """What the schedule changed of ``config``'s ``eval_every`` and ``total_steps`` (both
        rounded to whole iterations and evaluation blocks), or None when it runs them exactly."""
        unit = self.step_unit
        changes = []
        if self.env_steps_per_eval != int(config.eval_every):
            changes.append(
                f"eval_every={int(config.eval_every):,} runs as {self.env_steps_per_eval:,} {unit} "
                f"({self.iterations_per_eval} iteration(s) of {self.env_steps_per_iteration:,})"
            )
        if self.total_env_steps != int(config.total_steps):
            warmup = f"warm-up {self.warmup_env_steps:,} + " if self.warmup_env_steps else ""
            changes.append(
                f"total_steps={int(config.total_steps):,} runs as {self.total_env_steps:,} {unit} per seed "
                f"({warmup}{self.num_evals} evaluation block(s) of {self.env_steps_per_eval:,})"
            )
        if not changes:
            return None
        per_iter = self.env_steps_per_iteration
        hint = (
            "for exact counts make "
            + (f"eval_every a multiple of {per_iter:,} (one iteration) and " if per_iter > 1 else "")
            + "total_steps"
            + (" - warm-up" if self.warmup_env_steps else "")
            + " a multiple of eval_every"
        )
        return "note: " + "; ".join(changes) + "; " + hint


class EpisodeStats(NamedTuple):
    """Deterministic evaluation episodes, one entry per episode."""

    returns: jax.Array  # undiscounted return
    discounted_returns: jax.Array  # sum_t gamma^t r_t from the first step (Monte-Carlo value)
    first_obs: jax.Array  # the observation the policy saw at t = 0 (normalized if training was)
    first_action: jax.Array  # the policy's action at t = 0


def evaluate_episodes(
    policy: Callable, env, env_params, key, num_episodes: int, obs_stats=None, gamma: float = 1.0
) -> EpisodeStats:
    """Deterministic evaluation of ``policy`` over ``num_episodes`` parallel episodes.

    Each episode runs until its first termination or truncation (at most the env's episode
    limit, a static length). Observations are normalized with the training run's statistics
    when given (frozen). The discounted returns and first (obs, action) pairs let a caller
    compare a critic's Q(s_0, a_0) with the Monte-Carlo value of the same episodes.
    """
    venv = rlx_envs.make_vec_env(env, env_params, num_episodes)
    max_steps = rlx_envs.episode_limit(env, env_params)
    k_reset, k_loop = jax.random.split(key)
    obs, env_state = venv.reset(k_reset, env_params)

    def prepare(o):
        o = o.astype(jnp.float32)
        return o if obs_stats is None else normalize(obs_stats, o)

    def step(carry, key):
        obs, env_state, returns, discounted, discount, alive = carry
        k_act, k_env = jax.random.split(key)
        seen = prepare(obs)
        action = policy(seen, k_act)
        obs, env_state, reward, terminated, truncated, _ = venv.step(k_env, env_state, action, env_params)
        reward = alive * reward.astype(jnp.float32)
        returns = returns + reward
        discounted = discounted + discount * reward
        alive = alive * (1.0 - jnp.logical_or(terminated, truncated).astype(jnp.float32))
        return (obs, env_state, returns, discounted, discount * gamma, alive), (seen, action)

    zeros, ones = jnp.zeros(num_episodes, jnp.float32), jnp.ones(num_episodes, jnp.float32)
    init = (obs, env_state, zeros, zeros, ones, ones)
    (_, _, returns, discounted, _, _), (seen, actions) = jax.lax.scan(
        step, init, jax.random.split(k_loop, max_steps)
    )
    return EpisodeStats(returns, discounted, seen[0], actions[0])


def evaluate(policy: Callable, env, env_params, key, num_episodes: int, obs_stats=None):
    """Per-episode returns of deterministic evaluation, shape (num_episodes,)."""
    return evaluate_episodes(policy, env, env_params, key, num_episodes, obs_stats).returns


def _block_metrics(update_metrics: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Average per-iteration metrics over a block; training episode returns as a ratio.

    In data-parallel training the averages are also over the devices and the episode counts
    and return sums are added up over them (:mod:`rlx.core.parallel`; identity otherwise).
    """
    out = {}
    for name, values in update_metrics.items():
        if name in ("train/episode_return_sum", "train/episodes"):
            continue
        out[name] = parallel.mean(jnp.mean(values))
    if "train/episodes" in update_metrics:
        count = parallel.total(jnp.sum(update_metrics["train/episodes"]))
        total = parallel.total(jnp.sum(update_metrics["train/episode_return_sum"]))
        out["train/episode_return"] = jnp.where(count > 0, total / jnp.maximum(count, 1.0), jnp.nan)
        out["train/episodes"] = count
    return out


def make_train(agent, config, env, env_params, *, num_shards: int = 1) -> Callable[[jax.Array], TrainOutput]:
    """Build the pure ``train(key) -> TrainOutput`` for ``agent`` on ``env``.

    Config validation and the agent's env check run here, in Python, before any tracing.
    The returned function also carries ``.init(key)``, ``.run_blocks(runner_state, n)`` and
    ``.schedule``, which the chunked driver uses.

    ``num_shards > 1`` builds the program of one device of data-parallel training
    (:func:`rlx.run.mesh.make_data_parallel_train`): the schedule is the global config's, the
    agent runs :func:`rlx.core.parallel.shard_config`'s per-device config, and the metrics
    ("step" counts every device's env steps, evaluation returns of every device) are the
    global ones.
    """
    if not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(config)):
        config.validate()
        rlx_envs.check_env_contract(env, env_params)  # traced shapes only: cheap, nothing compiles
    agent.check_env(config, env, env_params)
    schedule = Schedule.from_config(config)
    local = parallel.shard_config(config, num_shards)

    def init(key) -> RunnerState:
        k_agent, k_eval = jax.random.split(key)
        return RunnerState(agent.init(local, env, env_params, k_agent), k_eval)

    def block(runner_state: RunnerState, _=None):
        def iteration(agent_state, _):
            return agent.update(local, env, env_params, agent_state)

        agent_state, update_metrics = jax.lax.scan(
            iteration, runner_state.agent_state, None, schedule.iterations_per_eval
        )
        eval_key, k_eval = jax.random.split(runner_state.eval_key)
        policy = agent.make_policy(local, agent_state, deterministic=True)
        returns = evaluate(
            policy, env, env_params, k_eval, local.eval_episodes, agent.observation_stats(agent_state)
        )
        returns = parallel.gather(returns)
        metrics = {
            "step": parallel.total(agent_state.env_steps),
            "eval/return_mean": jnp.mean(returns),
            "eval/return_std": jnp.std(returns),
            # e.g. an offline agent's D4RL normalized score of the same episodes
            **contract.optional(agent, "eval_metrics")(returns),
            **_block_metrics(update_metrics),
        }
        return RunnerState(agent_state, eval_key), metrics

    def run_blocks(runner_state: RunnerState, num_blocks: int):
        return jax.lax.scan(block, runner_state, None, num_blocks)

    def train(key) -> TrainOutput:
        runner_state, metrics = run_blocks(init(key), schedule.num_evals)
        return TrainOutput(runner_state, metrics)

    train.init = init
    train.run_blocks = run_blocks
    train.schedule = schedule
    return train
