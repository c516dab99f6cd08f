"""Pieces shared by the on-policy policy-gradient agents (PPO, GRPO, GiGPO).

* a categorical policy network and a value network (variance-scaling init, never orthogonal:
  DESIGN.md, pitfalls), categorical log-probability / entropy / sampling;
* a diagonal Gaussian policy network with a state-independent learned log-std, and its
  log-probability / entropy / sampling (continuous PPO);
* the clipped-ratio surrogate (PPO-clip, ``algorithms.md`` 5.1/5.4) and the k3 KL estimator;
* masked means, group statistics (mean, unbiased std, the singleton rule of 5.3);
* generalized advantage estimation with termination and truncation kept apart (5.4, sec. 0);
* reward normalization by a running std of the discounted return;
* minibatch epochs over a flat batch;
* the optimizer: global-norm clipping then Adam, learning rate and clip norm as traced values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from rlx.core import parallel
from rlx.core.networks import MLP, activation, default_kernel_init

EPS_STD = 1e-6  # normaliser (std + eps) as in verl-agent (algorithms.md 5.3)


# ---------------------------------------------------------------------------------------------
# Networks and the categorical distribution
# ---------------------------------------------------------------------------------------------
def flatten_observation(obs: jax.Array, obs_ndim: int) -> jax.Array:
    """Merge the last ``obs_ndim`` axes (one observation: a vector, or an image such as
    MinAtar's 10 x 10 x C) into one feature axis; any leading axes are batch axes."""
    batch = obs.shape[: obs.ndim - obs_ndim]
    return obs.reshape(batch + (-1,)).astype(jnp.float32)


class CategoricalPolicy(nn.Module):
    """Logits of a categorical policy: an MLP whose last layer starts near zero (so the first
    policy is close to uniform, like PureJaxRL's 0.01-gain head). ``obs_ndim`` is the rank of one
    observation (1 for vectors)."""

    hidden_sizes: Sequence[int]
    num_actions: int
    activation: str = "tanh"
    obs_ndim: int = 1

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x = flatten_observation(obs, self.obs_ndim)
        for width in self.hidden_sizes:
            x = activation(self.activation)(nn.Dense(width, kernel_init=default_kernel_init)(x))
        head_init = nn.initializers.variance_scaling(1e-4, "fan_in", "uniform")
        return nn.Dense(self.num_actions, kernel_init=head_init)(x)


class ValueNetwork(nn.Module):
    hidden_sizes: Sequence[int]
    activation: str = "tanh"
    obs_ndim: int = 1

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x = flatten_observation(obs, self.obs_ndim)
        return MLP(tuple(self.hidden_sizes), 1, self.activation, default_kernel_init)(x)[..., 0]


def log_prob(logits: jax.Array, action: jax.Array) -> jax.Array:
    """log pi(a|s) of integer actions under categorical ``logits`` (last axis)."""
    logp = jax.nn.log_softmax(logits)
    return jnp.take_along_axis(logp, action[..., None].astype(jnp.int32), axis=-1)[..., 0]


def entropy(logits: jax.Array) -> jax.Array:
    logp = jax.nn.log_softmax(logits)
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def sample(key: jax.Array, logits: jax.Array) -> jax.Array:
    return jax.random.categorical(key, logits).astype(jnp.int32)


def greedy(logits: jax.Array) -> jax.Array:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)


# ---------------------------------------------------------------------------------------------
# The diagonal Gaussian policy (continuous actions)
# ---------------------------------------------------------------------------------------------
LOG_2PI = float(jnp.log(2.0 * jnp.pi))


class GaussianPolicy(nn.Module):
    """Mean and log-std of a diagonal Gaussian policy: an MLP for the mean (last layer near zero,
    so the first policy is centred on the action range) and one learned log-std per action
    dimension that does not depend on the state (PPO paper, sec. 6.1), starting at
    ``log_std_init``. Returns (mean, log_std), log_std broadcast to the mean's shape."""

    hidden_sizes: Sequence[int]
    action_dim: int
    activation: str = "tanh"
    obs_ndim: int = 1
    log_std_init: float = 0.0

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = flatten_observation(obs, self.obs_ndim)
        for width in self.hidden_sizes:
            x = activation(self.activation)(nn.Dense(width, kernel_init=default_kernel_init)(x))
        head_init = nn.initializers.variance_scaling(1e-4, "fan_in", "uniform")
        mean = nn.Dense(self.action_dim, kernel_init=head_init)(x)
        log_std = self.param("log_std", nn.initializers.constant(self.log_std_init), (self.action_dim,))
        return mean, jnp.broadcast_to(log_std, mean.shape)


def gaussian_log_prob(mean: jax.Array, log_std: jax.Array, action: jax.Array) -> jax.Array:
    """log N(a; mu, diag(sigma^2)) = sum_i [-(a_i - mu_i)^2 / (2 sigma_i^2) - log sigma_i - log(2 pi) / 2]."""
    z = (action - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * LOG_2PI, axis=-1)


def gaussian_entropy(log_std: jax.Array) -> jax.Array:
    """H = sum_i [log sigma_i + (1 + log(2 pi)) / 2]."""
    return jnp.sum(log_std + 0.5 * (1.0 + LOG_2PI), axis=-1)


def gaussian_sample(key: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------
def clipped_objective(ratio: jax.Array, advantage: jax.Array, clip_eps) -> jax.Array:
    """min(rho A, clip(rho, 1 - e, 1 + e) A) per sample (to be maximised; 5.1 / 5.4)."""
    return jnp.minimum(ratio * advantage, jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantage)


def kl_k3(logp: jax.Array, ref_logp: jax.Array) -> jax.Array:
    """Low-variance k3 estimate of KL(pi || pi_ref) from a sample of pi:
    pi_ref/pi - log(pi_ref/pi) - 1 >= 0 (5.1)."""
    log_ratio = ref_logp - logp
    return jnp.exp(log_ratio) - log_ratio - 1.0


def masked_mean(x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    if mask is None:
        return jnp.mean(x)
    mask = mask.astype(x.dtype)
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


# ---------------------------------------------------------------------------------------------
# Group statistics
# ---------------------------------------------------------------------------------------------
def weighted_group_stats(values: jax.Array, weights: jax.Array, axis: int = -1):
    """Weighted mean and unbiased std along ``axis`` with integer-like weights (counts):
    mean = sum w x / sum w, std = sqrt(sum w (x - mean)^2 / (sum w - 1)).
    Returns (mean, std, count) with ``axis`` kept (size 1). std is 0 for a count <= 1."""
    weights = weights.astype(values.dtype)
    count = jnp.sum(weights, axis=axis, keepdims=True)
    mean = jnp.sum(weights * values, axis=axis, keepdims=True) / jnp.maximum(count, 1.0)
    ss = jnp.sum(weights * (values - mean) ** 2, axis=axis, keepdims=True)
    std = jnp.sqrt(ss / jnp.maximum(count - 1.0, 1.0))
    return mean, std, count


# ---------------------------------------------------------------------------------------------
# Exploration bonus on a rollout (rlx.explore.intrinsic)
# ---------------------------------------------------------------------------------------------
def intrinsic_rollout_rewards(intrinsic, traj: dict, num_actions: int, key, mask: jax.Array | None = None):
    """Train an ``IntrinsicReward`` on a rollout of any batch shape (T, N for PPO; G, N, T for
    GiGPO) and return (intrinsic', rewards = task_coef * r + bonus_coef * bonus, metrics), shaped
    like ``traj["reward"]``. The bonus is that of s -> s' with s' the true successor
    (``final_obs``); observations enter as flat float32 vectors, discrete actions one-hot,
    continuous actions as they are.

    ``mask`` (bool, the rewards' shape) marks the rows that are real steps; the others (the
    padding after a GiGPO episode ends) get reward 0 and never reach the module: it trains on the
    real rows alone, compacted to the front of the fixed-size batch and repeated cyclically to
    fill it (each real row appears floor or ceil of rows / real times, so the module's losses and
    statistics weigh them almost uniformly; for APT a row's copies are particles of the batch
    too, at distance 0). The bonus metrics are those of the filled batch. Without a mask every
    row is used as it is."""
    from rlx.core.types import Transition

    shape = traj["reward"].shape
    rows = traj["reward"].size
    flat = lambda x: x.reshape((rows,) + x.shape[len(shape):])  # noqa: E731
    vector = lambda x: x.reshape(rows, -1).astype(jnp.float32)  # noqa: E731
    batch = Transition(
        obs=vector(traj["obs"]),
        action=flat(traj["action"] if jnp.issubdtype(traj["action"].dtype, jnp.floating)  # continuous: as taken
                    else jax.nn.one_hot(traj["action"], num_actions)),
        reward=flat(traj["reward"]), next_obs=vector(traj["final_obs"]),
        terminated=flat(traj["terminated"]).astype(jnp.float32), truncated=jnp.zeros(rows, jnp.float32),
    )
    if mask is None:
        intrinsic, batch, metrics = intrinsic.relabel(batch, key)
        return intrinsic, batch.reward.reshape(shape), metrics
    real = mask.reshape(rows).astype(bool)
    order = jnp.argsort(~real, stable=True)  # the real rows first, in their order
    num_real = jnp.maximum(jnp.sum(real), 1)
    source = order[jnp.arange(rows) % num_real]
    intrinsic, filled, metrics = intrinsic.relabel(jax.tree.map(lambda x: x[source], batch), key)
    position = jnp.argsort(order)  # row r sits at position[r] < num_real of the filled batch
    reward = jnp.where(real, filled.reward[position], 0.0)
    return intrinsic, reward.reshape(shape), metrics


# ---------------------------------------------------------------------------------------------
# GAE (PPO)
# ---------------------------------------------------------------------------------------------
def gae(rewards, values, next_values, terminated, done, gamma, lam):
    """Generalized advantage estimation over a time-major batch (T, ...).

    delta_t = r_t + gamma V(s'_t) (1 - term_t) - V(s_t), with s'_t the true successor (the last
    observation of a truncated episode, not the reset one), and
    A_t = delta_t + gamma lambda (1 - done_t) A_{t+1}, done = terminated | truncated: a
    truncation cuts the recursion at the episode boundary but still bootstraps (5.4, sec. 0).
    Returns (advantages, value targets A + V).
    """
    terminated = terminated.astype(jnp.float32)
    done = done.astype(jnp.float32)
    deltas = rewards + gamma * next_values * (1.0 - terminated) - values

    def back(next_adv, inputs):
        delta, d = inputs
        adv = delta + gamma * lam * (1.0 - d) * next_adv
        return adv, adv

    _, adv = jax.lax.scan(back, jnp.zeros_like(deltas[0]), (deltas, done), reverse=True)
    return adv, adv + values


def normalize_rewards(stats, returns, rewards, done, gamma, clip: float = 10.0, epsilon: float = 1e-8):
    """Divide a time-major batch of rewards (T, N) by the running std of the discounted return.

    The return of each env is accumulated as G_t = gamma G_{t-1} (1 - done_{t-1}) + r_t (reset at
    every episode end), all T * N values update ``stats`` (a scalar
    :class:`~rlx.core.running_stats.RunningMeanStd`), and r_t / sqrt(var(G) + eps) is clipped to
    [-clip, clip]. No mean is subtracted, so the sign of every reward, and what an episode's end
    means, stay as they were (the scheme of OpenAI baselines' VecNormalize). ``returns`` (N,) is
    G carried over from the previous rollout. Returns (stats, returns, scaled rewards)."""
    from rlx.core.running_stats import update_running_stats

    def accumulate(g, inputs):
        r, d = inputs
        g = gamma * g + r
        return jnp.where(d, 0.0, g), g

    returns, seen = jax.lax.scan(accumulate, returns, (rewards, done))
    stats = update_running_stats(stats, seen.reshape(-1))
    scaled = jnp.clip(rewards / jnp.sqrt(stats.var + epsilon), -clip, clip)
    return stats, returns, scaled


# ---------------------------------------------------------------------------------------------
# Optimisation
# ---------------------------------------------------------------------------------------------
def make_optimizer(learning_rate, max_grad_norm):
    """Global-norm clipping, then Adam (eps 1e-5, PureJaxRL); both numbers stay traced
    (``inject_hyperparams``) so a sweep over them compiles once and the rate can be annealed."""

    def build(learning_rate, max_grad_norm):
        return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(learning_rate, eps=1e-5))

    optimizer = optax.inject_hyperparams(build)(learning_rate=learning_rate, max_grad_norm=max_grad_norm)
    return parallel.averaged_gradients(optimizer)  # data-parallel: the devices' mean gradient is clipped


def set_learning_rate(opt_state, learning_rate):
    hyper = dict(opt_state.hyperparams)
    hyper["learning_rate"] = jnp.asarray(learning_rate, jnp.float32)
    return opt_state._replace(hyperparams=hyper)


def minibatch_epochs(
    key: jax.Array,
    carry,
    batch,
    num_epochs: int,
    num_minibatches: int,
    step: Callable,
):
    """Run ``step(carry, minibatch) -> (carry, metrics)`` over ``num_epochs`` shuffled passes of
    ``batch`` (a pytree whose leaves share the leading axis), cut into ``num_minibatches``.
    Returns (carry, metrics averaged over all minibatches)."""
    size = jax.tree.leaves(batch)[0].shape[0]
    if size % num_minibatches:
        raise ValueError(f"batch of {size} rows does not split into {num_minibatches} minibatches")

    def epoch(carry, key):
        perm = jax.random.permutation(key, size)
        shuffled = jax.tree.map(
            lambda x: x[perm].reshape((num_minibatches, size // num_minibatches) + x.shape[1:]), batch
        )
        return jax.lax.scan(step, carry, shuffled)

    carry, metrics = jax.lax.scan(epoch, carry, jax.random.split(key, num_epochs))
    return carry, jax.tree.map(jnp.mean, metrics)
