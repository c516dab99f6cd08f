"""MOREC's dynamics reward: how consistent a transition (s, a, s') is with the offline data.

Luo, Xu, Cao, Yu, "Reward-Consistent Dynamics Models are Strongly Generalizable for Offline
Reinforcement Learning" (ICLR 2024, arXiv 2310.05422), Sec. 4; ``../shared/algorithms.md``
Sec. 4.1.

The environment's dynamics are treated as an agent whose state is (s, a) and whose action is s';
the offline transitions are its demonstrations, assumed to maximise a hidden *dynamics reward*
r_D(s, a, s'). r_D is recovered by adversarial inverse RL (GAIL-style), alternating for
t = 1..T:

1. discriminator step: D_t(s, a, s') = sigmoid(f_t(s, a, s')) separates the data's transitions
   (label 1) from those of the current generator g_t (label 0) with binary cross-entropy;
2. generator step: the generator -- a Gaussian model of s' given (s, a), the "policy" of the
   dynamics agent -- ascends E[r_t(s, a, s')] + ent_coef * H[g(.|s, a)] with the reward
   r_t = -log(1 - D_t) = softplus(f_t).

Every D_t is stored; the final reward is built from the AVERAGE of historical discriminators
(the no-regret argument of the paper: the average of the online-learned rewards, not the last
one, carries the guarantee). As in the official code's loaded ensemble ('prob_mean_clip'):

    each stored D_t keeps the mean logits it gave the data (hi_t) and the generator (lo_t) when
    it was trained; its logit is clamped to [lo_t, hi_t], rescaled affinely to [-1, 1] and
    squashed:  D_t = sigmoid(2 (clip(f_t, lo_t, hi_t) - lo_t) / (hi_t - lo_t) - 1)
    Dbar = (1 / |H|) sum_{t in H} clip(D_t, 0, c)                       (c = d_clip = 1)
    r_D  = -log(1 - Dbar + 1e-9)                      in [0.3133, 1.3130] since D_t in [0.269, 0.731]

with H = the last ``keep_last`` (400) iterations, every ``keep_every``-th (10 for MOREC-MOPO, 40
for MOREC-MOBILE: 40 resp. 10 discriminators).

The reward-learning code of the paper is not public (only trained discriminators are), so two
choices here are ours and are stated: (i) the dynamics agent's episode is one step (gamma = 0):
offline there is no behaviour policy to choose the action after a generated s', and the
discriminator scores single transitions; with one step the policy gradient of the generator is
the gradient of its expected reward, estimated here by reparameterisation; (ii) the inputs are the
data-standardised s, a and s' - s (the code's ``delta_input``), without the code's encoder and
mutual-information regulariser (from DARL, arXiv 2206.00238), which serve transfer across
dynamics, not this single-environment use.

The whole procedure is one compiled program (:func:`make_trainer`: nested ``lax.scan``); the
result is a :class:`DynamicsReward` pytree and :func:`dynamics_reward` scores any batch.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from rlx.core.config import Config, ConfigError, config_dataclass, static
from rlx.core.networks import MLP

_widths = dict(check=lambda v: None if len(v) > 0 and all(int(w) >= 1 for w in v) else "need >= 1 positive width")


@config_dataclass
class DynamicsRewardConfig(Config):
    """Adversarial dynamics-reward learning (defaults: MOREC-MOPO's discriminator history)."""

    iterations: int = static(400, "T: adversarial iterations (discriminator steps, then generator steps)", low=1)
    keep_last: int = static(400, "discriminators of the last this-many iterations are candidates for the average", low=1)
    keep_every: int = static(10, "average every k-th kept discriminator (10: MOREC-MOPO, 40: MOREC-MOBILE)", low=1)
    discriminator_steps: int = static(5, "discriminator gradient steps per iteration", low=1)
    generator_steps: int = static(1, "generator gradient steps per iteration", low=1)
    batch_size: int = static(256, "transitions per gradient step (data and generated each)", low=1)
    hidden_sizes: tuple[int, ...] = static((256, 256), "discriminator hidden widths", **_widths)
    generator_hidden_sizes: tuple[int, ...] = static((256, 256), "generator hidden widths", **_widths)
    discriminator_lr: float = static(3e-4, "discriminator Adam learning rate", low=0.0, low_inclusive=False)
    generator_lr: float = static(3e-4, "generator Adam learning rate", low=0.0, low_inclusive=False)
    ent_coef: float = static(0.01, "entropy bonus of the generator (maximum-entropy IRL)", low=0.0)
    d_clip: float = static(1.0, "c: each D_t is clipped to [0, c] before averaging", low=0.0, low_inclusive=False)

    def _check_consistency(self) -> list[str]:
        problems = []
        if self.keep_last > self.iterations:
            problems.append(f"keep_last={self.keep_last} must be <= iterations={self.iterations}")
        if self.keep_last % self.keep_every:
            problems.append(f"keep_last={self.keep_last} must be a multiple of keep_every={self.keep_every}")
        return problems

    @property
    def num_discriminators(self) -> int:
        """|H|: the discriminators averaged in the final reward."""
        return self.keep_last // self.keep_every


@struct.dataclass
class DynamicsReward:
    """The averaged historical discriminators and the data statistics they standardise with."""

    params: dict  # discriminator parameters, leading axis |H|
    low: jax.Array  # (H,) mean logit of generated transitions when D_t was trained
    high: jax.Array  # (H,) mean logit of data transitions
    obs_mean: jax.Array
    obs_std: jax.Array
    action_mean: jax.Array
    action_std: jax.Array
    delta_mean: jax.Array
    delta_std: jax.Array
    d_clip: jax.Array
    hidden_sizes: tuple[int, ...] = struct.field(pytree_node=False, default=(256, 256))

    @property
    def num_discriminators(self) -> int:
        return int(self.low.shape[0])

    def every(self, k: int) -> DynamicsReward:
        """Every ``k``-th of the kept discriminators: a reward kept every 10th iteration gives
        the every-40th one of MOREC-MOBILE with ``every(4)``, without training again."""
        if k < 1:
            raise ValueError(f"every(k): k must be >= 1, got {k}")
        return self.replace(params=jax.tree.map(lambda x: x[::k], self.params), low=self.low[::k], high=self.high[::k])


# ---------------------------------------------------------------------------------------------
# The reward (Sec. 4.1 above): prob-mean of rescaled, clipped historical discriminators
# ---------------------------------------------------------------------------------------------
def reward_from_probabilities(probs, d_clip=1.0) -> jax.Array:
    """r_D = -log(1 - mean_t clip(D_t, 0, c) + 1e-9); ``probs`` has the discriminators first."""
    dbar = jnp.mean(jnp.clip(probs, 0.0, d_clip), axis=0)
    return -jnp.log(1.0 - dbar + 1e-9)


def rescaled_probability(logit, low, high) -> jax.Array:
    """sigmoid of the logit clamped to [low, high] and mapped affinely onto [-1, 1]."""
    span = jnp.maximum(high - low, 1e-6)
    z = 2.0 * (jnp.clip(logit, low, jnp.maximum(high, low + 1e-6)) - low) / span - 1.0
    return jax.nn.sigmoid(z)


def _disc_input(obs_n, act_n, delta_n):
    return jnp.concatenate([obs_n, act_n, delta_n], axis=-1)


def discriminator_probabilities(dr: DynamicsReward, obs, action, next_obs) -> jax.Array:
    """Each stored D_t(s, a, s') after clamping and rescaling: (H, ...batch)."""
    x = _disc_input(
        (obs - dr.obs_mean) / dr.obs_std, (action - dr.action_mean) / dr.action_std,
        (next_obs - obs - dr.delta_mean) / dr.delta_std,
    )
    net = MLP(tuple(dr.hidden_sizes), 1)
    logits = jax.vmap(lambda p: net.apply(p, x)[..., 0])(dr.params)  # (H, ...)
    extra = (1,) * (logits.ndim - 1)
    return rescaled_probability(logits, dr.low.reshape((-1,) + extra), dr.high.reshape((-1,) + extra))


def dynamics_reward(dr: DynamicsReward, obs, action, next_obs) -> jax.Array:
    """r_D(s, a, s') for any batch shape (obs / next_obs (..., obs_dim), action (..., act_dim))."""
    return reward_from_probabilities(discriminator_probabilities(dr, obs, action, next_obs), dr.d_clip)


# ---------------------------------------------------------------------------------------------
# Scoring M candidate next states of each branch (the transition filter's inner loop)
# ---------------------------------------------------------------------------------------------
# The largest intermediate of :func:`candidate_rewards` (H x M x branches x widest layer, float32)
# is kept under this many bytes (per program instance: vmapped seeds hold one each): beyond it the
# branches are scored in equal chunks, one after another. On a 2-core CPU one 800 MB activation
# (H = 40, M = 10, B = 2000, width 256) faulted in about 1.6 GB of fresh pages on every call; in
# chunks of <= 128 MB the filtered model step took about a third less time
# (benchmarks/morec_filter_cost.py), and chunks of 32 to 256 MB timed alike. It also bounds the
# memory of large rollout batches (50,000 branches at once: 20 GB per activation). The results do
# not depend on it.
CHUNK_BYTES = 128 * 2**20


def _dense_layers(params: dict) -> list[tuple[jax.Array, jax.Array]]:
    """(kernel, bias) of every Dense layer of the stacked discriminator parameters, input first."""
    layers = params["params"]
    return [(layers[f"Dense_{i}"]["kernel"], layers[f"Dense_{i}"]["bias"]) for i in range(len(layers))]


def candidate_logits(dr: DynamicsReward, obs, action, next_obs) -> jax.Array:
    """Every D_t's logit f_t(s, a, s'_m) of M candidates per branch: (H, M, B), from obs (B, obs_dim),
    action (B, act_dim) and next_obs (M, B, obs_dim).

    The first layer is linear in its input [s, a, s' - s], so its (s, a) part (and the bias) is
    computed once per branch and discriminator and added to the part of each candidate's s' - s;
    the rest of the network runs on all H x M x B rows as batched matmuls (one vmap over the H
    stacked discriminators). Equal to :func:`discriminator_probabilities`' logits of (s, a)
    broadcast to every candidate up to float rounding (the first layer's sum is split in two).
    """
    sa = jnp.concatenate([(obs - dr.obs_mean) / dr.obs_std, (action - dr.action_mean) / dr.action_std], axis=-1)
    delta = (next_obs - obs - dr.delta_mean) / dr.delta_std  # (M, B, obs_dim)
    n_sa = sa.shape[-1]

    def one(layers):  # one discriminator: MLP(hidden_sizes, 1) with ReLU, as discriminator_probabilities
        (w, b), rest = layers[0], layers[1:]
        h = (sa @ w[:n_sa] + b) + delta @ w[n_sa:]  # (B, width) once, + (M, B, width)
        for w, b in rest:
            h = jax.nn.relu(h) @ w + b
        return h[..., 0]

    return jax.vmap(one)(_dense_layers(dr.params))


def candidate_rewards(dr: DynamicsReward, obs, action, next_obs, *, chunk_bytes: int = CHUNK_BYTES) -> jax.Array:
    """r_D(s, a, s'_m) of M candidate next states per branch: (M, B), from obs (B, obs_dim), action
    (B, act_dim) and next_obs (M, B, obs_dim); equal to :func:`dynamics_reward` of the broadcast
    inputs up to float rounding (:func:`candidate_logits`).

    All H x M x B evaluations are batched; when their widest activation would exceed
    ``chunk_bytes`` the branches are split into equal chunks scored one after another
    (``lax.map``), each chunk still all candidates and all discriminators at once.
    """
    m, batch = int(next_obs.shape[0]), int(next_obs.shape[1])
    low, high = dr.low[:, None, None], dr.high[:, None, None]

    def score(o, a, n):
        return reward_from_probabilities(rescaled_probability(candidate_logits(dr, o, a, n), low, high), dr.d_clip)

    layers = _dense_layers(dr.params)
    width = max(int(b.shape[-1]) for _, b in layers)
    per_branch = dr.num_discriminators * m * width * jnp.dtype(layers[0][0].dtype).itemsize
    rows = max(1, int(chunk_bytes) // per_branch)
    if rows >= batch:
        return score(obs, action, next_obs)
    n_chunks = -(-batch // rows)
    rows = -(-batch // n_chunks)  # equal chunks: fewer than n_chunks padded branches
    pad = n_chunks * rows - batch

    def chunked(x, axis):
        if pad:
            x = jnp.pad(x, [(0, pad) if i == axis else (0, 0) for i in range(x.ndim)], mode="edge")
        x = x.reshape(x.shape[:axis] + (n_chunks, rows) + x.shape[axis + 1:])
        return jnp.moveaxis(x, axis, 0)

    out = jax.lax.map(lambda xs: score(*xs), (chunked(obs, 0), chunked(action, 0), chunked(next_obs, 1)))  # (n, M, rows)
    return jnp.moveaxis(out, 0, 1).reshape(m, n_chunks * rows)[:, :batch]


# ---------------------------------------------------------------------------------------------
# Training: one compiled program
# ---------------------------------------------------------------------------------------------
class RewardData(NamedTuple):
    """Standardised transitions of the offline data."""

    obs: jax.Array
    action: jax.Array
    delta: jax.Array


class _State(NamedTuple):
    disc_params: dict
    disc_opt: optax.OptState
    gen_params: dict
    gen_opt: optax.OptState
    key: jax.Array


def _generator_sample(net, params, obs_n, act_n, key):
    out = net.apply(params, jnp.concatenate([obs_n, act_n], axis=-1))
    mean, log_std = jnp.split(out, 2, axis=-1)
    log_std = jnp.clip(log_std, -5.0, 2.0)
    delta = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)
    return delta, log_std


def make_trainer(config: DynamicsRewardConfig, obs_dim: int, action_dim: int, on_iteration=None):
    """``train(key, data: RewardData) -> (params (H, ...), low (H,), high (H,), metrics)``: pure.

    ``on_iteration(discriminator_loss, generator_loss)``, when given, is called on the host after
    every iteration (``jax.debug.callback``: progress only, the results are the same without it).

    Iteration = ``discriminator_steps`` BCE steps on data (label 1) against fresh generator
    samples (label 0), then ``generator_steps`` ascent steps of the generator on
    softplus(f_t) + ent_coef * entropy. After the first T - keep_last iterations, every
    ``keep_every``-th discriminator is emitted with the mean logits it gives data and generator.
    """
    disc = MLP(tuple(config.hidden_sizes), 1)
    gen = MLP(tuple(config.generator_hidden_sizes), 2 * obs_dim)
    d_opt = optax.adam(config.discriminator_lr)
    g_opt = optax.adam(config.generator_lr)
    b = config.batch_size

    def batch(data, key):
        idx = jax.random.randint(key, (b,), 0, data.obs.shape[0])
        return data.obs[idx], data.action[idx], data.delta[idx]

    def disc_loss(params, real_x, fake_x):
        real, fake = disc.apply(params, real_x)[:, 0], disc.apply(params, fake_x)[:, 0]
        # BCE with labels 1 (data) and 0 (generated): -log sigmoid(f) - log(1 - sigmoid(f))
        loss = jnp.mean(jax.nn.softplus(-real)) + jnp.mean(jax.nn.softplus(fake))
        return loss, (jnp.mean(real), jnp.mean(fake))

    def gen_objective(gen_params, disc_params, obs_n, act_n, key):
        delta, log_std = _generator_sample(gen, gen_params, obs_n, act_n, key)
        logit = disc.apply(disc_params, _disc_input(obs_n, act_n, delta))[:, 0]
        entropy = jnp.mean(jnp.sum(log_std, axis=-1))  # Gaussian entropy up to a constant
        return -(jnp.mean(jax.nn.softplus(logit)) + config.ent_coef * entropy)

    def iteration(state: _State, data: RewardData):
        def d_step(carry, key):
            params, opt = carry
            k_b, k_g = jax.random.split(key)
            obs_n, act_n, delta_n = batch(data, k_b)
            fake_delta, _ = _generator_sample(gen, state.gen_params, obs_n, act_n, k_g)
            real_x = _disc_input(obs_n, act_n, delta_n)
            fake_x = _disc_input(obs_n, act_n, jax.lax.stop_gradient(fake_delta))
            (loss, (hi, lo)), grads = jax.value_and_grad(disc_loss, has_aux=True)(params, real_x, fake_x)
            updates, opt = d_opt.update(grads, opt, params)
            return (optax.apply_updates(params, updates), opt), (loss, hi, lo)

        def g_step(carry, key):
            params, opt = carry
            k_b, k_g = jax.random.split(key)
            obs_n, act_n, _ = batch(data, k_b)
            loss, grads = jax.value_and_grad(gen_objective)(params, disc_params, obs_n, act_n, k_g)
            updates, opt = g_opt.update(grads, opt, params)
            return (optax.apply_updates(params, updates), opt), loss

        key, k_d, k_g = jax.random.split(state.key, 3)
        (disc_params, disc_opt), (d_loss, hi, lo) = jax.lax.scan(
            d_step, (state.disc_params, state.disc_opt), jax.random.split(k_d, config.discriminator_steps)
        )
        (gen_params, gen_opt), g_loss = jax.lax.scan(
            g_step, (state.gen_params, state.gen_opt), jax.random.split(k_g, config.generator_steps)
        )
        new = _State(disc_params, disc_opt, gen_params, gen_opt, key)
        if on_iteration is not None:
            jax.debug.callback(on_iteration, jnp.mean(d_loss), jnp.mean(g_loss))
        # The statistics of D_t: its mean logits on the data and on the generator it was fit against.
        return new, (disc_params, lo[-1], hi[-1], jnp.mean(d_loss), jnp.mean(g_loss))

    def run(state, data, n):
        def body(s, _):
            s, out = iteration(s, data)
            return s, out[3:]

        return jax.lax.scan(body, state, None, n)

    def train(key, data: RewardData):
        k_d, k_g, k_run = jax.random.split(key, 3)
        disc_params = disc.init(k_d, jnp.zeros((1, 2 * obs_dim + action_dim), jnp.float32))
        gen_params = gen.init(k_g, jnp.zeros((1, obs_dim + action_dim), jnp.float32))
        state = _State(disc_params, d_opt.init(disc_params), gen_params, g_opt.init(gen_params), k_run)
        warmup = config.iterations - config.keep_last
        state, (d_warm, g_warm) = run(state, data, warmup) if warmup else (state, (jnp.zeros(0), jnp.zeros(0)))

        def kept_block(s, _):
            s, (params, lo, hi, d_loss, g_loss) = iteration(s, data)  # this D_t is averaged
            s, (d_rest, g_rest) = run(s, data, config.keep_every - 1)
            losses = (jnp.concatenate([d_loss[None], d_rest]), jnp.concatenate([g_loss[None], g_rest]))
            return s, (params, lo, hi, losses)

        state, (params, low, high, (d_kept, g_kept)) = jax.lax.scan(
            kept_block, state, None, config.num_discriminators
        )
        metrics = {
            "discriminator_loss": jnp.concatenate([d_warm, d_kept.reshape(-1)]),
            "generator_loss": jnp.concatenate([g_warm, g_kept.reshape(-1)]),
        }
        return params, low, high, metrics

    return train


def standardise(dataset):
    """(RewardData, statistics) of a :class:`rlx.buffers.dataset.Dataset`: s, a and s' - s
    standardised with the data's mean and std (a std below 1e-6 replaced by 1)."""
    obs = jnp.asarray(dataset.observations, jnp.float32)
    action = jnp.asarray(dataset.actions, jnp.float32)
    delta = jnp.asarray(dataset.next_observations, jnp.float32) - obs

    def stats(x):
        std = jnp.std(x, axis=0)
        return jnp.mean(x, axis=0), jnp.where(std < 1e-6, 1.0, std)

    (om, osd), (am, asd), (dm, dsd) = stats(obs), stats(action), stats(delta)
    data = RewardData((obs - om) / osd, (action - am) / asd, (delta - dm) / dsd)
    return data, dict(obs_mean=om, obs_std=osd, action_mean=am, action_std=asd, delta_mean=dm, delta_std=dsd)


@struct.dataclass
class RewardReport:
    discriminator_loss: np.ndarray  # per iteration
    generator_loss: np.ndarray
    seconds: float  # compile + run


def train_dynamics_reward(
    dataset, config: DynamicsRewardConfig | None = None, key=None, *, progress: bool = True
) -> tuple[DynamicsReward, RewardReport]:
    """Learn r_D from ``dataset`` (a :class:`rlx.buffers.dataset.Dataset`) in one compiled call.

    ``progress`` shows a bar of the adversarial iterations (as the dynamics ensemble's
    :func:`rlx.models.ensemble.train_dynamics` does of its epochs), fed by a host callback that
    does not change the result."""
    config = (config or DynamicsRewardConfig()).validate()
    for name in ("observations", "actions", "next_observations"):
        if not hasattr(dataset, name):
            raise ConfigError(f"dataset has no {name!r}: pass a rlx.buffers.dataset.Dataset (D4RL keys)")
    n = int(np.shape(dataset.observations)[0])
    if n < 2:
        raise ConfigError(f"dataset has {n} transitions; dynamics-reward learning needs at least 2")
    key = jax.random.PRNGKey(0) if key is None else key
    data, stats = standardise(dataset)
    obs_dim, action_dim = int(data.obs.shape[-1]), int(data.action.shape[-1])
    t0 = time.perf_counter()
    bar = on_iteration = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.iterations, desc="dynamics reward", unit="iter", dynamic_ncols=True)

        def on_iteration(d_loss, g_loss):
            bar.update(1)
            bar.set_postfix_str(f"discriminator loss {float(d_loss):.3f} | generator {float(g_loss):.3f}", refresh=False)

    try:
        params, low, high, metrics = jax.jit(make_trainer(config, obs_dim, action_dim, on_iteration))(key, data)
        metrics = jax.device_get(metrics)
        jax.effects_barrier()  # every callback has run before the bar closes
    finally:
        if bar is not None:
            bar.close()
    dr = DynamicsReward(
        params=params, low=low, high=high, d_clip=jnp.float32(config.d_clip),
        hidden_sizes=tuple(config.hidden_sizes), **stats,
    )
    report = RewardReport(
        discriminator_loss=np.asarray(metrics["discriminator_loss"]),
        generator_loss=np.asarray(metrics["generator_loss"]), seconds=time.perf_counter() - t0,
    )
    return dr, report


# ---------------------------------------------------------------------------------------------
# Saving (orbax arrays + JSON), so a run that trained one can be resumed with the same reward
# ---------------------------------------------------------------------------------------------
_ARRAYS = ("low", "high", "obs_mean", "obs_std", "action_mean", "action_std", "delta_mean", "delta_std", "d_clip")


def save_dynamics_reward(path, dr: DynamicsReward):
    """Write ``dr`` to the folder ``path`` (``arrays/`` with orbax, ``dynamics_reward.json``)."""
    from rlx.models.saved import save_folder

    arrays = {"params": dr.params, **{name: getattr(dr, name) for name in _ARRAYS}}
    meta = {"hidden_sizes": list(dr.hidden_sizes), "num_discriminators": dr.num_discriminators}
    return save_folder(path, "dynamics_reward", arrays, meta, version=1)


def load_dynamics_reward(path) -> DynamicsReward:
    """Read a dynamics reward written by :func:`save_dynamics_reward`."""
    from rlx.models.saved import load_folder

    arrays, meta = load_folder(path, "dynamics_reward", 1, "dynamics reward")
    arrays = jax.tree.map(jnp.asarray, arrays)
    return DynamicsReward(
        params=arrays["params"], **{name: arrays[name] for name in _ARRAYS}, hidden_sizes=tuple(meta["hidden_sizes"]),
    )
