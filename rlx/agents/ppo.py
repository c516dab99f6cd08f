"""PPO with GAE (Schulman et al. 2017, arXiv 1707.06347; GAE arXiv 1506.02438) for discrete and
continuous actions, chosen by the environment's action space, with termination and truncation
kept apart: the TD error bootstraps through a time-limit truncation from the true last
observation (``info["final_observation"]``) and not through a termination; both cut the GAE
recursion at the episode boundary.

One iteration: ``num_steps`` steps of ``num_envs`` envs with the current policy, GAE, then
``update_epochs`` passes of ``num_minibatches`` minibatches of the clipped surrogate, the clipped
value loss and an entropy bonus; advantages are normalised per minibatch.

* Discrete actions (a Discrete space): a categorical policy, PureJaxRL's defaults
  (``algorithms.md`` 5.4).
* Continuous actions (a Box): a diagonal Gaussian policy whose mean is an MLP and whose log-std is
  one learned number per action dimension, independent of the state (the PPO paper's
  parameterisation). Actions are sampled unbounded and *clipped* to [-1, 1] by the environment
  stack (``RescaleAction`` maps [-1, 1] onto the env's bounds); the log-probability is that of the
  sampled, unclipped action. Clipping rather than a tanh squash: the log-probability and the
  entropy stay exact and closed-form (a tanh-Gaussian has no closed-form entropy: brax estimates
  it from one sample plus the log-Jacobian), and the probability ratio of PPO is that of the
  Gaussian the policy really is. The price is that probability mass beyond the bounds acts as the
  bound, which the mean learns around. Evaluation takes the clipped mean.
* Reward normalization (``normalize_rewards``, on by default for continuous actions): rewards
  are divided by a running std of the discounted return (:func:`policy_gradient.normalize_rewards`)
  and multiplied by ``reward_scale`` (brax's ``reward_scaling``). Observation normalization is
  the shared ``normalize_observations`` (running mean/std kept in the env state).

``PRESETS["brax"]`` carries brax's PPO settings for its locomotion tasks (see
``docs/algorithms/policy-gradient.md`` for where they come from and where rlx differs).
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
from rlx.core.running_stats import init_running_stats

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
    critic_hidden_sizes: tuple[int, ...] = static(
        (), "hidden widths of the critic; () = hidden_sizes",
        check=lambda v: None if all(int(w) >= 1 for w in v) else "need positive widths",
    )
    clip_value: bool = static(True, "clip the value update to +-clip_eps around the rollout's values", choices=(False, True))
    normalize_rewards: str = static(
        "auto", "divide rewards by a running std of the discounted return (auto: for continuous actions only)",
        choices=("auto", "on", "off"),
    )
    log_std_init: float = static(0.0, "continuous actions: initial log-std of the Gaussian policy")

    learning_rate: float = tunable(2.5e-4, "Adam learning rate", low=0.0, low_inclusive=False)
    gamma: float = tunable(0.99, "discount factor", low=0.0, high=1.0)
    gae_lambda: float = tunable(0.95, "GAE lambda", low=0.0, high=1.0)
    clip_eps: float = tunable(0.2, "ratio (and value) clip epsilon", low=0.0, low_inclusive=False)
    ent_coef: float = tunable(0.01, "entropy bonus coefficient", low=0.0)
    vf_coef: float = tunable(0.5, "value loss coefficient", low=0.0)
    max_grad_norm: float = tunable(0.5, "global gradient-norm clip", low=0.0, low_inclusive=False)
    reward_scale: float = tunable(1.0, "multiply rewards by this (after normalization) before learning", low=0.0, low_inclusive=False)

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

    def reward_normalization(self, continuous: bool) -> bool:
        return self.normalize_rewards == "on" or (self.normalize_rewards == "auto" and continuous)


Config = PPOConfig

# brax's PPO settings for its locomotion tasks (the brax training notebook's ant values; MuJoCo
# Playground's locomotion configs agree but for their longer unrolls), as rlx fields: brax's
# batch_size x num_minibatches unrolls of unroll_length steps are num_envs envs x num_steps steps.
_BRAX_ENVS, _BRAX_STEPS = 2048, 80  # 1024 x 32 unrolls of 5 steps = 2048 envs x 80 steps
PRESETS = {
    "brax": {
        "_doc": "brax's PPO for locomotion (ant): 2048 envs x 80 steps, 32 minibatches, 4 epochs, gamma 0.97, "
        "lr 3e-4, entropy 1e-2, clip 0.3, reward scale 10, normalized observations, 4x32 policy / 5x256 value, "
        "swish, ~50M steps (meant for an accelerator)",
        "total_steps": _BRAX_ENVS * _BRAX_STEPS * 300,
        "eval_every": _BRAX_ENVS * _BRAX_STEPS * 30,
        "num_envs": _BRAX_ENVS,
        "num_steps": _BRAX_STEPS,
        "num_minibatches": 32,
        "update_epochs": 4,
        "gamma": 0.97,
        "gae_lambda": 0.95,
        "learning_rate": 3e-4,
        "ent_coef": 1e-2,
        "clip_eps": 0.3,
        "clip_value": False,
        "max_grad_norm": 1.0,
        "reward_scale": 10.0,
        "normalize_rewards": "off",
        "normalize_observations": True,
        "hidden_sizes": (32, 32, 32, 32),
        "critic_hidden_sizes": (256, 256, 256, 256, 256),
        "activation": "silu",
        "log_std_init": 0.0,
    },
}


def check_env(config: PPOConfig, env, env_params) -> None:
    space = env.action_space(env_params)
    if rlx_envs.is_continuous(space) and len(space.shape) != 1:
        raise ConfigError(
            f"{NAME}: continuous actions must be a vector (a Box of shape (d,)); "
            f"{getattr(env, 'name', env)} has a Box of shape {tuple(space.shape)}"
        )


@struct.dataclass
class PPOState:
    params: Any  # {"actor": ..., "critic": ...}
    opt_state: Any
    env_state: Any
    obs: jax.Array
    key: jax.Array
    env_steps: jax.Array
    iterations: jax.Array
    num_actions: int = struct.field(pytree_node=False, default=0)  # action dimension when continuous
    intrinsic: Any = None  # exploration bonus (rlx.explore.intrinsic.IntrinsicReward) or None
    continuous: bool = struct.field(pytree_node=False, default=False)
    reward_stats: Any = None  # RunningMeanStd of the discounted return, when rewards are normalized
    discounted_return: Any = None  # (num_envs,) running discounted return of each env's episode


def _networks(config: PPOConfig, num_actions: int, continuous: bool = False):
    critic_sizes = tuple(config.critic_hidden_sizes) or tuple(config.hidden_sizes)
    if continuous:
        actor = pg.GaussianPolicy(tuple(config.hidden_sizes), num_actions, config.activation,
                                  log_std_init=float(config.log_std_init))
    else:
        actor = pg.CategoricalPolicy(tuple(config.hidden_sizes), num_actions, config.activation)
    return actor, pg.ValueNetwork(critic_sizes, config.activation)


# The policy's distribution: logits (discrete) or (mean, log_std) (continuous).
def _log_prob(continuous: bool, dist, action):
    return pg.gaussian_log_prob(*dist, action) if continuous else pg.log_prob(dist, action)


def _entropy(continuous: bool, dist):
    return pg.gaussian_entropy(dist[1]) if continuous else pg.entropy(dist)


def _sample(continuous: bool, key, dist):
    return pg.gaussian_sample(key, *dist) if continuous else pg.sample(key, dist)


def _mode(continuous: bool, dist):
    return jnp.clip(dist[0], -1.0, 1.0) if continuous else pg.greedy(dist)


def training_env(config: PPOConfig, env, env_params):
    return rlx_envs.make_vec_env(env, env_params, config.num_envs, normalize_obs=config.normalize_observations)


def observation_stats(state: PPOState):
    return getattr(state.env_state, "obs_stats", None)


def init(config: PPOConfig, env, env_params, key) -> PPOState:
    space = env.action_space(env_params)
    continuous = rlx_envs.is_continuous(space)
    num_actions = rlx_envs.action_dim(space)
    venv = training_env(config, env, env_params)
    key, k_actor, k_critic, k_reset = jax.random.split(key, 4)
    k_actor, k_critic = parallel.replicated_key(k_actor), parallel.replicated_key(k_critic)  # data-parallel
    obs, env_state = venv.reset(k_reset, env_params)
    obs = obs.astype(jnp.float32)
    actor, critic = _networks(config, num_actions, continuous)
    params = {"actor": actor.init(k_actor, obs[:1]), "critic": critic.init(k_critic, obs[:1])}
    opt = pg.make_optimizer(config.learning_rate, config.max_grad_norm)
    reward_stats = discounted_return = None
    if config.reward_normalization(continuous):
        reward_stats = init_running_stats(())
        discounted_return = jnp.zeros(obs.shape[0], jnp.float32)
    return PPOState(params, opt.init(params), env_state, obs, key, jnp.int32(0), jnp.int32(0), num_actions,
                    continuous=continuous, reward_stats=reward_stats, discounted_return=discounted_return)


def ppo_loss(params, config: PPOConfig, num_actions: int, mb, continuous: bool = False):
    """L = -E[min(rho A~, clip(rho) A~)] + c_v 0.5 E[max((V-R)^2, (V_old + clip(V-V_old) - R)^2)] - c_e H
    (with ``clip_value=False`` the value term is c_v 0.5 E[(V-R)^2])."""
    actor, critic = _networks(config, num_actions, continuous)
    dist = actor.apply(params["actor"], mb["obs"])
    value = critic.apply(params["critic"], mb["obs"])
    logp = _log_prob(continuous, dist, mb["action"])
    ratio = jnp.exp(logp - mb["logp"])
    adv = parallel.standardize(mb["advantage"], 1e-8)  # data-parallel: over every device's minibatch
    policy_loss = -jnp.mean(pg.clipped_objective(ratio, adv, config.clip_eps))
    if config.clip_value:
        clipped_value = mb["value"] + jnp.clip(value - mb["value"], -config.clip_eps, config.clip_eps)
        value_loss = 0.5 * jnp.mean(jnp.maximum((value - mb["target"]) ** 2, (clipped_value - mb["target"]) ** 2))
    else:
        value_loss = 0.5 * jnp.mean((value - mb["target"]) ** 2)
    ent = jnp.mean(_entropy(continuous, dist))
    loss = policy_loss + config.vf_coef * value_loss - config.ent_coef * ent
    metrics = {"loss/policy": policy_loss, "loss/value": value_loss, "entropy": ent,
               "clip_fraction": jnp.mean((jnp.abs(ratio - 1.0) > config.clip_eps).astype(jnp.float32))}
    if continuous:
        metrics["policy_std"] = jnp.mean(jnp.exp(dist[1]))
    return loss, metrics


def update(config: PPOConfig, env, env_params, state: PPOState):
    venv = training_env(config, env, env_params)
    continuous = state.continuous
    actor, critic = _networks(config, state.num_actions, continuous)
    key, k_roll, k_epochs = jax.random.split(state.key, 3)

    def step(carry, key):
        obs, env_state = carry
        k_act, k_env = jax.random.split(key)
        dist = actor.apply(state.params["actor"], obs)
        action = _sample(continuous, k_act, dist)  # continuous: unclipped; the env stack clips it
        next_obs, env_state, reward, terminated, truncated, info = venv.step(k_env, env_state, action, env_params)
        done = info["episode_done"]
        out = {
            "obs": obs, "action": action, "logp": _log_prob(continuous, dist, action),
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
    if state.reward_stats is not None:
        reward_stats, discounted_return, reward = pg.normalize_rewards(
            state.reward_stats, state.discounted_return, traj["reward"], traj["done"], config.gamma)
        state, traj = state.replace(reward_stats=reward_stats, discounted_return=discounted_return), {**traj, "reward": reward}
    traj = {**traj, "reward": traj["reward"] * config.reward_scale}
    values = critic.apply(state.params["critic"], traj["obs"])
    next_values = critic.apply(state.params["critic"], traj["final_obs"])  # true successors
    adv, targets = pg.gae(traj["reward"], values, next_values, traj["terminated"], traj["done"],
                          config.gamma, config.gae_lambda)
    rows = config.env_steps_per_iteration
    batch = {
        "obs": traj["obs"].reshape((rows,) + traj["obs"].shape[2:]),
        "action": traj["action"].reshape((rows,) + traj["action"].shape[2:]),
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
        grads, metrics = jax.grad(ppo_loss, has_aux=True)(params, config, state.num_actions, mb, continuous)
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
    """(obs, key) -> action; deterministic evaluation takes the argmax (continuous: the mean,
    clipped to [-1, 1]) unless ``eval_policy="sample"`` (see :func:`rlx.agents.gigpo.make_policy`
    for why one would)."""
    continuous = state.continuous
    actor, _ = _networks(config, state.num_actions, continuous)
    params = state.params["actor"]
    greedy = deterministic and config.eval_policy == "greedy"

    def policy(obs, key):
        dist = actor.apply(params, jnp.asarray(obs, jnp.float32))
        return _mode(continuous, dist) if greedy else _sample(continuous, key, dist)

    return policy


def value_estimate(config: PPOConfig, state: PPOState, obs) -> jax.Array:
    return _networks(config, state.num_actions, state.continuous)[1].apply(state.params["critic"], obs)
