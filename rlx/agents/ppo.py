"""PPO with GAE for discrete actions (Schulman et al. 2017, arXiv 1707.06347; GAE arXiv
1506.02438), PureJaxRL's defaults (``algorithms.md`` 5.4), with termination and truncation
kept apart: the TD error bootstraps through a time-limit truncation from the true last
observation (``info["final_observation"]``) and not through a termination; both cut the GAE
recursion at the episode boundary.

One iteration: ``num_steps`` steps of ``num_envs`` envs with the current policy, GAE, then
``update_epochs`` passes of ``num_minibatches`` minibatches of the clipped surrogate, the clipped
value loss and an entropy bonus; advantages are normalised per minibatch.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from rlx import envs as rlx_envs
from rlx.agents import policy_gradient as pg
from rlx.core import parallel
from rlx.core.config import ConfigError, TrainConfig, config_dataclass, static, tunable

NAME = "ppo"
DATA_PARALLEL = True  # rlx.run.mesh.make_data_parallel_train: gradients averaged over devices


@config_dataclass
class PPOConfig(TrainConfig):
    """PureJaxRL's CartPole defaults, except variance-scaling instead of orthogonal init."""

    # Multiples of one iteration (num_envs * num_steps = 512 env steps), so they run exactly:
    # 1,000 iterations, an evaluation every 50.
    total_steps: int = static(512_000, "environment steps in total (all parallel envs)", low=1)
    num_envs: int = static(4, "parallel training environments", low=1)
    eval_every: int = static(25_600, "environment steps between deterministic evaluations", low=1)
    num_steps: int = static(128, "steps per env per iteration (rollout length)", low=1)
    update_epochs: int = static(4, "passes over each rollout", low=1)
    num_minibatches: int = static(4, "minibatches per pass (must divide num_envs * num_steps)", low=1)
    hidden_sizes: tuple[int, ...] = static(
        (64, 64), "hidden widths of the actor and of the critic (separate networks)",
        check=lambda v: None if len(v) > 0 and all(int(w) >= 1 for w in v) else "need >= 1 positive width",
    )
    activation: str = static("tanh", "hidden activation", choices=("relu", "tanh", "gelu", "silu", "elu"))
    anneal_lr: bool = static(False, "anneal the learning rate linearly to 0 over the run", choices=(False, True))
    eval_policy: str = static(
        "greedy", "evaluation actions: the policy's most likely action, or sampled", choices=("greedy", "sample")
    )

    learning_rate: float = tunable(2.5e-4, "Adam learning rate", low=0.0, low_inclusive=False)
    gamma: float = tunable(0.99, "discount factor", low=0.0, high=1.0)
    gae_lambda: float = tunable(0.95, "GAE lambda", low=0.0, high=1.0)
    clip_eps: float = tunable(0.2, "ratio (and value) clip epsilon", low=0.0, low_inclusive=False)
    ent_coef: float = tunable(0.01, "entropy bonus coefficient", low=0.0)
    vf_coef: float = tunable(0.5, "value loss coefficient", low=0.0)
    max_grad_norm: float = tunable(0.5, "global gradient-norm clip", low=0.0, low_inclusive=False)

    def _check_consistency(self) -> list[str]:
        rows = self.num_envs * self.num_steps
        if rows % self.num_minibatches:
            return [f"num_minibatches={self.num_minibatches} must divide num_envs * num_steps = {rows}"]
        return []

    @property
    def env_steps_per_iteration(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def warmup_env_steps(self) -> int:
        return 0

    @property
    def num_iterations(self) -> int:
        return max(1, self.total_steps // self.env_steps_per_iteration)


Config = PPOConfig


def check_env(config: PPOConfig, env, env_params) -> None:
    if rlx_envs.is_continuous(env.action_space(env_params)):
        raise ConfigError(f"{NAME} here is for discrete actions; {getattr(env, 'name', env)} has a Box action space")


@struct.dataclass
class PPOState:
    params: Any  # {"actor": ..., "critic": ...}
    opt_state: Any
    env_state: Any
    obs: jax.Array
    key: jax.Array
    env_steps: jax.Array
    iterations: jax.Array
    num_actions: int = struct.field(pytree_node=False, default=0)
    intrinsic: Any = None  # exploration bonus (rlx.explore.intrinsic.IntrinsicReward) or None


def _networks(config: PPOConfig, num_actions: int):
    return (
        pg.CategoricalPolicy(tuple(config.hidden_sizes), num_actions, config.activation),
        pg.ValueNetwork(tuple(config.hidden_sizes), config.activation),
    )


def training_env(config: PPOConfig, env, env_params):
    return rlx_envs.make_vec_env(env, env_params, config.num_envs, normalize_obs=config.normalize_observations)


def observation_stats(state: PPOState):
    return getattr(state.env_state, "obs_stats", None)


def init(config: PPOConfig, env, env_params, key) -> PPOState:
    num_actions = rlx_envs.action_dim(env.action_space(env_params))
    venv = training_env(config, env, env_params)
    key, k_actor, k_critic, k_reset = jax.random.split(key, 4)
    k_actor, k_critic = parallel.replicated_key(k_actor), parallel.replicated_key(k_critic)  # data-parallel
    obs, env_state = venv.reset(k_reset, env_params)
    obs = obs.astype(jnp.float32)
    actor, critic = _networks(config, num_actions)
    params = {"actor": actor.init(k_actor, obs[:1]), "critic": critic.init(k_critic, obs[:1])}
    opt = pg.make_optimizer(config.learning_rate, config.max_grad_norm)
    return PPOState(params, opt.init(params), env_state, obs, key, jnp.int32(0), jnp.int32(0), num_actions)


def ppo_loss(params, config: PPOConfig, num_actions: int, mb):
    """L = -E[min(rho A~, clip(rho) A~)] + c_v 0.5 E[max((V-R)^2, (V_old + clip(V-V_old) - R)^2)] - c_e H."""
    actor, critic = _networks(config, num_actions)
    logits = actor.apply(params["actor"], mb["obs"])
    value = critic.apply(params["critic"], mb["obs"])
    logp = pg.log_prob(logits, mb["action"])
    ratio = jnp.exp(logp - mb["logp"])
    adv = parallel.standardize(mb["advantage"], 1e-8)  # data-parallel: over every device's minibatch
    policy_loss = -jnp.mean(pg.clipped_objective(ratio, adv, config.clip_eps))
    clipped_value = mb["value"] + jnp.clip(value - mb["value"], -config.clip_eps, config.clip_eps)
    value_loss = 0.5 * jnp.mean(jnp.maximum((value - mb["target"]) ** 2, (clipped_value - mb["target"]) ** 2))
    ent = jnp.mean(pg.entropy(logits))
    loss = policy_loss + config.vf_coef * value_loss - config.ent_coef * ent
    return loss, {"loss/policy": policy_loss, "loss/value": value_loss, "entropy": ent,
                  "clip_fraction": jnp.mean((jnp.abs(ratio - 1.0) > config.clip_eps).astype(jnp.float32))}


def update(config: PPOConfig, env, env_params, state: PPOState):
    venv = training_env(config, env, env_params)
    actor, critic = _networks(config, state.num_actions)
    key, k_roll, k_epochs = jax.random.split(state.key, 3)

    def step(carry, key):
        obs, env_state = carry
        k_act, k_env = jax.random.split(key)
        logits = actor.apply(state.params["actor"], obs)
        action = pg.sample(k_act, logits)
        next_obs, env_state, reward, terminated, truncated, info = venv.step(k_env, env_state, action, env_params)
        done = info["episode_done"]
        out = {
            "obs": obs, "action": action, "logp": pg.log_prob(logits, action),
            "reward": reward.astype(jnp.float32), "terminated": terminated, "done": done,
            "final_obs": info["final_observation"].astype(jnp.float32),
            "episode_return": info["episode_return"] * done,
        }
        return (next_obs.astype(jnp.float32), env_state), out

    (obs, env_state), traj = jax.lax.scan(step, (state.obs, state.env_state), jax.random.split(k_roll, config.num_steps))
    bonus_metrics = {}
    if state.intrinsic is not None:  # exploration bonus: relabel the rollout, train the module on it
        key, k_bonus = jax.random.split(key)
        intrinsic, reward, bonus_metrics = pg.intrinsic_rollout_rewards(state.intrinsic, traj, state.num_actions, k_bonus)
        state, traj = state.replace(intrinsic=intrinsic), {**traj, "reward": reward}
    values = critic.apply(state.params["critic"], traj["obs"])
    next_values = critic.apply(state.params["critic"], traj["final_obs"])  # true successors
    adv, targets = pg.gae(traj["reward"], values, next_values, traj["terminated"], traj["done"],
                          config.gamma, config.gae_lambda)
    rows = config.env_steps_per_iteration
    batch = {
        "obs": traj["obs"].reshape((rows,) + traj["obs"].shape[2:]),
        "action": traj["action"].reshape(rows),
        "logp": traj["logp"].reshape(rows),
        "value": values.reshape(rows),
        "advantage": adv.reshape(rows),
        "target": targets.reshape(rows),
    }
    opt = pg.make_optimizer(config.learning_rate, config.max_grad_norm)
    opt_state = state.opt_state
    if config.anneal_lr:
        frac = 1.0 - state.iterations.astype(jnp.float32) / config.num_iterations
        opt_state = pg.set_learning_rate(opt_state, config.learning_rate * jnp.maximum(frac, 0.0))

    def minibatch_step(carry, mb):
        params, opt_state = carry
        grads, metrics = jax.grad(ppo_loss, has_aux=True)(params, config, state.num_actions, mb)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (jax.tree.map(jnp.add, params, updates), opt_state), metrics

    (params, opt_state), metrics = pg.minibatch_epochs(
        k_epochs, (state.params, opt_state), batch, config.update_epochs, config.num_minibatches, minibatch_step
    )
    metrics = {
        **metrics,
        **bonus_metrics,
        "value_mean": jnp.mean(values),
        "train/episode_return_sum": jnp.sum(traj["episode_return"]),
        "train/episodes": jnp.sum(traj["done"].astype(jnp.float32)),
    }
    state = state.replace(params=params, opt_state=opt_state, env_state=env_state, obs=obs, key=key,
                          env_steps=state.env_steps + rows, iterations=state.iterations + 1)
    return state, metrics


def make_policy(config: PPOConfig, state: PPOState, deterministic: bool = True):
    """(obs, key) -> action; deterministic evaluation takes the argmax unless
    ``eval_policy="sample"`` (see :func:`rlx.agents.gigpo.make_policy` for why one would)."""
    actor, _ = _networks(config, state.num_actions)
    params = state.params["actor"]
    greedy = deterministic and config.eval_policy == "greedy"

    def policy(obs, key):
        logits = actor.apply(params, jnp.asarray(obs, jnp.float32))
        return pg.greedy(logits) if greedy else pg.sample(key, logits)

    return policy


def value_estimate(config: PPOConfig, state: PPOState, obs) -> jax.Array:
    return _networks(config, state.num_actions)[1].apply(state.params["critic"], obs)
