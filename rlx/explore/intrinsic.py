"""Intrinsic rewards that train on the agent's own minibatches: RND, ensemble disagreement, APT.

Each module is a frozen (hashable) dataclass of its settings with three pure functions over a
typed-pytree state (``algorithms.md`` 6.3; URLB, Laskin et al. 2021, arXiv 2110.15191):

    state = module.init(obs_dim, action_dim, key)
    bonus = module.bonus(state, batch)                    # (B,), the current module, no update
    state, bonus, metrics = module.update(state, batch, key)   # one training step, then the
                                                          # bonus of the batch (URLB's order)

``batch`` is a :class:`rlx.core.types.Transition` (s, a, r, s', terminated, truncated), with
continuous actions or one-hot discrete ones.

:class:`IntrinsicReward` plugs a module into any agent without touching the agent: it sits in
the train state (``OffPolicyState.intrinsic`` for SAC and DSAC-T, ``PPOState.intrinsic`` for
PPO, ``GroupPGState.intrinsic`` for GRPO and GiGPO) and the shared loop calls
:meth:`IntrinsicReward.relabel` on every minibatch it learns from (the on-policy agents: on
each rollout, before their advantages). The learner then sees
``task_coef * r + bonus_coef * bonus`` (reward-free exploration: ``task_coef = 0``, and the
task reward is then never read; exploration with reward: both > 0).
For replay-based agents the bonus of a stored transition is computed at learning time by the
current module, as in URLB, so it decays as the module learns the visited region.

Defaults are sized for the low-dimensional tasks rlx ships (2-D maze, MountainCar): two
hidden layers of 256 and Adam 3e-4, where URLB uses 1024 units and 1e-4 for pixel- and
proprioceptive DMC tasks trained for millions of frames.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from rlx.core.config import ConfigError
from rlx.core.networks import MLP, Ensemble
from rlx.core.running_stats import (
    RunningMeanStd,
    init_running_stats,
    normalize,
    update_running_stats,
)
from rlx.core.types import Transition

__all__ = [
    "APT",
    "APTState",
    "Disagreement",
    "DisagreementState",
    "IntrinsicReward",
    "RND",
    "RNDState",
    "RewardMoments",
    "init_reward_moments",
    "knn_particle_reward",
    "make_intrinsic",
    "update_reward_moments",
]


def _check(cls_name: str, checks: list[tuple[str, Any, bool, str]]) -> None:
    problems = [f"{name}={value!r}: {allowed}" for name, value, ok, allowed in checks if not ok]
    if problems:
        raise ConfigError(f"invalid {cls_name}:\n  " + "\n  ".join(problems))


def _widths_ok(v) -> bool:
    return isinstance(v, tuple) and len(v) > 0 and all(isinstance(w, int) and w >= 1 for w in v)


def _adam(learning_rate):
    return optax.adam(learning_rate)


# ---------------------------------------------------------------------------------------------
# RND (Burda et al. 2018, arXiv 1810.12894; URLB agent/rnd.py)
# ---------------------------------------------------------------------------------------------
@struct.dataclass
class RewardMoments:
    """URLB's running moments of the prediction error (init mean 0, var 1, count 1e-4)."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array


def init_reward_moments() -> RewardMoments:
    return RewardMoments(jnp.float32(0.0), jnp.float32(1.0), jnp.float32(1e-4))


def ema_reward_moments(m: RewardMoments, x: jax.Array, decay) -> RewardMoments:
    """Exponential moving average of the batch mean and (unbiased) variance: follows the
    current scale of the error when the predictor has learned most of what it sees."""
    batch_var = jnp.var(x, ddof=1) if x.shape[0] > 1 else jnp.float32(0.0)
    first = m.count < 1.0  # the initial moments describe no data: replace them
    w = jnp.where(first, 1.0, 1.0 - decay)
    return RewardMoments((1 - w) * m.mean + w * jnp.mean(x), (1 - w) * m.var + w * batch_var, m.count + x.shape[0])


def update_reward_moments(m: RewardMoments, x: jax.Array) -> RewardMoments:
    """Chan et al. parallel merge of a batch with its *unbiased* variance (torch.var, as URLB):
    n = n_a + n_b, mean += delta n_b / n, var = (var_a n_a + var_b n_b + delta^2 n_a n_b / n) / n."""
    n_b = x.shape[0]
    batch_mean = jnp.mean(x)
    batch_var = jnp.var(x, ddof=1) if n_b > 1 else jnp.float32(0.0)
    delta = batch_mean - m.mean
    count = m.count + n_b
    mean = m.mean + delta * n_b / count
    m2 = m.var * m.count + batch_var * n_b + delta**2 * m.count * n_b / count
    return RewardMoments(mean, m2 / count, count)


@struct.dataclass
class RNDState:
    predictor_params: Any
    target_params: Any  # fixed random network, never trained
    opt_state: Any
    obs_stats: RunningMeanStd  # normalises s' before both networks
    error_moments: RewardMoments  # scales the error into the bonus


@dataclasses.dataclass(frozen=True)
class RND:
    """Random network distillation: bonus(s') = scale * e(s') / (sqrt(var_e) + 1e-8) with
    e(s') = mean_k (f_target(s')_k - f_pred(s')_k)^2 on the normalised, clipped s'
    (``algorithms.md`` 6.3; URLB divides by the running std without subtracting the mean).

    ``error_decay = 0`` keeps URLB's moments of every error seen so far. The default 0.99 uses
    an exponential moving average instead: on low-dimensional states the predictor learns the
    visited region within a few hundred updates, and moments dominated by that first transient
    would shrink the bonus to nothing (measured on the maze: the agent then stalls)."""

    hidden_sizes: tuple[int, ...] = (256, 256)
    embed_dim: int = 64
    learning_rate: float = 3e-4
    obs_clip: float = 5.0
    scale: float = 1.0
    error_decay: float = 0.99
    name: str = "rnd"

    def __post_init__(self):
        _check("RND", [
            ("hidden_sizes", self.hidden_sizes, _widths_ok(self.hidden_sizes), "a tuple of >= 1 positive ints"),
            ("embed_dim", self.embed_dim, isinstance(self.embed_dim, int) and self.embed_dim >= 1, ">= 1"),
            ("learning_rate", self.learning_rate, self.learning_rate > 0, "> 0"),
            ("obs_clip", self.obs_clip, self.obs_clip > 0, "> 0"),
            ("scale", self.scale, self.scale >= 0, ">= 0"),
            ("error_decay", self.error_decay, 0.0 <= self.error_decay < 1.0,
             "0 <= value < 1 (0: URLB's moments of every error so far; else an EMA)"),
        ])

    def _net(self) -> nn.Module:
        return MLP(self.hidden_sizes, self.embed_dim, "relu")

    def init(self, obs_dim: int, action_dim: int, key) -> RNDState:
        del action_dim
        k_pred, k_target = jax.random.split(key)
        dummy = jnp.zeros((1, obs_dim), jnp.float32)
        predictor = self._net().init(k_pred, dummy)
        target = self._net().init(k_target, dummy)
        return RNDState(predictor, target, _adam(self.learning_rate).init(predictor),
                        init_running_stats((obs_dim,)), init_reward_moments())

    def _errors(self, predictor_params, state: RNDState, next_obs) -> jax.Array:
        x = normalize(state.obs_stats, next_obs, clip=self.obs_clip)
        target = jax.lax.stop_gradient(self._net().apply(state.target_params, x))
        return jnp.mean((target - self._net().apply(predictor_params, x)) ** 2, axis=-1)

    def prediction_error(self, state: RNDState, batch: Transition) -> jax.Array:
        """e(s') before the division by the running std: (B,)."""
        return self._errors(state.predictor_params, state, batch.next_obs)

    def bonus(self, state: RNDState, batch: Transition) -> jax.Array:
        e = self._errors(state.predictor_params, state, batch.next_obs)
        return self.scale * e / (jnp.sqrt(state.error_moments.var) + 1e-8)

    def update(self, state: RNDState, batch: Transition, key):
        del key
        state = state.replace(obs_stats=update_running_stats(state.obs_stats, batch.next_obs))
        loss, grads = jax.value_and_grad(lambda p: jnp.mean(self._errors(p, state, batch.next_obs)))(
            state.predictor_params
        )
        updates, opt_state = _adam(self.learning_rate).update(grads, state.opt_state, state.predictor_params)
        predictor = optax.apply_updates(state.predictor_params, updates)
        errors = self._errors(predictor, state, batch.next_obs)
        if self.error_decay > 0:
            moments = ema_reward_moments(state.error_moments, errors, self.error_decay)
        else:
            moments = update_reward_moments(state.error_moments, errors)
        state = state.replace(predictor_params=predictor, opt_state=opt_state, error_moments=moments)
        bonus = self.scale * errors / (jnp.sqrt(state.error_moments.var) + 1e-8)
        return state, bonus, {"intrinsic/loss": loss}


# ---------------------------------------------------------------------------------------------
# Ensemble disagreement (Pathak, Gandhi & Gupta 2019, arXiv 1906.04161; URLB agent/disagreement.py)
# ---------------------------------------------------------------------------------------------
class ForwardModel(nn.Module):
    """f(s, a) -> s'."""

    hidden_sizes: tuple[int, ...]
    obs_dim: int

    @nn.compact
    def __call__(self, obs, action):
        return MLP(self.hidden_sizes, self.obs_dim, "relu")(jnp.concatenate([obs, action], axis=-1))


@struct.dataclass
class DisagreementState:
    params: Any  # ensemble parameters, leading axis num_models
    opt_state: Any
    moments: RewardMoments = None  # scale of the variance (when normalize_decay > 0)


@dataclasses.dataclass(frozen=True)
class Disagreement:
    """bonus(s, a) = mean over obs dims of Var_k[f_k(s, a)] (unbiased, across the ensemble);
    every model regresses s' on the same minibatch with loss mean_k E_B ||s' - f_k(s, a)||_2
    (the L2 norm, not squared, as URLB).

    ``normalize_decay = 0`` is URLB's raw variance. Its scale is that of s' squared and shrinks
    as the ensemble agrees (on the maze it fell from 1e-1 to 1e-3 within 1,000 updates, far below
    SAC's entropy term, and the agent stalled), so by default the variance is divided by an
    exponential moving average (decay 0.99) of its own std over minibatches, as RND's error is."""

    num_models: int = 5
    hidden_sizes: tuple[int, ...] = (256, 256)
    learning_rate: float = 3e-4
    scale: float = 1.0
    normalize_decay: float = 0.99
    name: str = "disagreement"

    def __post_init__(self):
        _check("Disagreement", [
            ("num_models", self.num_models, isinstance(self.num_models, int) and self.num_models >= 2,
             ">= 2 (a variance needs two models)"),
            ("hidden_sizes", self.hidden_sizes, _widths_ok(self.hidden_sizes), "a tuple of >= 1 positive ints"),
            ("learning_rate", self.learning_rate, self.learning_rate > 0, "> 0"),
            ("scale", self.scale, self.scale >= 0, ">= 0"),
            ("normalize_decay", self.normalize_decay, 0.0 <= self.normalize_decay < 1.0,
             "0 <= value < 1 (0: the raw variance, as URLB)"),
        ])

    def _ensemble(self, obs_dim: int) -> nn.Module:
        return Ensemble(ForwardModel, self.num_models, {"hidden_sizes": self.hidden_sizes, "obs_dim": obs_dim})

    def init(self, obs_dim: int, action_dim: int, key) -> DisagreementState:
        params = self._ensemble(obs_dim).init(
            key, jnp.zeros((1, obs_dim), jnp.float32), jnp.zeros((1, action_dim), jnp.float32)
        )
        return DisagreementState(params, _adam(self.learning_rate).init(params), init_reward_moments())

    def predictions(self, params, batch: Transition) -> jax.Array:
        """(num_models, B, obs_dim)."""
        return self._ensemble(batch.obs.shape[-1]).apply(params, batch.obs, batch.action)

    def variance(self, state: DisagreementState, batch: Transition) -> jax.Array:
        """Mean over obs dims of the unbiased variance across the ensemble: (B,)."""
        return jnp.mean(jnp.var(self.predictions(state.params, batch), axis=0, ddof=1), axis=-1)

    def bonus(self, state: DisagreementState, batch: Transition) -> jax.Array:
        v = self.variance(state, batch)
        if self.normalize_decay > 0:
            v = v / (jnp.sqrt(state.moments.var) + 1e-8)
        return self.scale * v

    def update(self, state: DisagreementState, batch: Transition, key):
        del key

        def loss_fn(params):
            err = self.predictions(params, batch) - batch.next_obs[None]
            return jnp.mean(jnp.sqrt(jnp.sum(err**2, axis=-1) + 1e-12))

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = _adam(self.learning_rate).update(grads, state.opt_state, state.params)
        state = state.replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state)
        if self.normalize_decay > 0:
            state = state.replace(moments=ema_reward_moments(state.moments, self.variance(state, batch),
                                                             self.normalize_decay))
        return state, self.bonus(state, batch), {"intrinsic/loss": loss}


# ---------------------------------------------------------------------------------------------
# APT: particle-based entropy (Liu & Abbeel 2021, arXiv 2103.04551; URLB agent/icm_apt.py)
# ---------------------------------------------------------------------------------------------
def knn_particle_reward(source: jax.Array, particles: jax.Array, k: int, clip: float = 0.0) -> jax.Array:
    """r_i = log(1 + mean_{j <= k} max(d_ij - clip, 0)), d_i1 <= ... the distances from
    ``source[i]`` to its k nearest ``particles`` (a point in both sets has distance 0 to itself,
    which counts: ``algorithms.md`` 6.3/6.4)."""
    d = jnp.sqrt(jnp.maximum(jnp.sum((source[:, None, :] - particles[None, :, :]) ** 2, axis=-1), 0.0))
    nearest = -jax.lax.top_k(-d, k)[0]  # (B, k), ascending
    return jnp.log1p(jnp.mean(jnp.maximum(nearest - clip, 0.0), axis=-1))


class ICM(nn.Module):
    """URLB's ICM for APT: z = tanh(LayerNorm(W s)); forward [z, a] -> z'; inverse [z, z'] -> a."""

    rep_dim: int
    hidden: int
    action_dim: int

    def setup(self):
        self.trunk = nn.Dense(self.rep_dim)
        self.norm = nn.LayerNorm()
        self.forward_net = MLP((self.hidden,), self.rep_dim, "relu")
        self.inverse_net = MLP((self.hidden,), self.action_dim, "relu")

    def represent(self, obs):
        return jnp.tanh(self.norm(self.trunk(obs)))

    def __call__(self, obs, action, next_obs):
        z, z_next = self.represent(obs), self.represent(next_obs)
        forward_error = jnp.linalg.norm(z_next - self.forward_net(jnp.concatenate([z, action], -1)), axis=-1)
        action_hat = jnp.tanh(self.inverse_net(jnp.concatenate([z, z_next], -1)))
        inverse_error = jnp.linalg.norm(action - action_hat, axis=-1)
        return forward_error, inverse_error


@struct.dataclass
class APTState:
    params: Any  # ICM parameters (an empty dict with representation="obs")
    opt_state: Any


@dataclasses.dataclass(frozen=True)
class APT:
    """bonus = kNN particle entropy of z(s') against the other z(s') of the same minibatch
    (k = 12, average over the k neighbours, no clip, no running normalisation: URLB icm_apt).
    ``representation="icm"`` learns z with ICM's forward + inverse losses (URLB); ``"obs"`` uses
    s' itself, which suits low-dimensional states such as the maze's position and has nothing to
    train. On a 2-D state the ICM trunk tanh(LayerNorm(W s + b)) is blind to the norm of s while
    b ~ 0 (LayerNorm(W c s) = LayerNorm(W s) for c > 0): at initialisation every ray from the
    origin is one particle, and on the four-room maze SAC settled on wall-hugging paths before the
    representation became informative (coverage 0.154 against 0.625 with ``"obs"``, 20,000
    steps). ``update`` also reports the mean and max over the batch of the mean k-NN distance
    (``intrinsic/knn_dist_mean``, ``intrinsic/knn_dist_max``)."""

    k: int = 12
    representation: str = "icm"
    rep_dim: int = 64
    hidden: int = 256
    knn_clip: float = 0.0
    learning_rate: float = 3e-4
    scale: float = 1.0
    name: str = "apt"

    def __post_init__(self):
        _check("APT", [
            ("k", self.k, isinstance(self.k, int) and self.k >= 1, ">= 1 (and <= the batch size)"),
            ("representation", self.representation, self.representation in ("icm", "obs"), "'icm' or 'obs'"),
            ("rep_dim", self.rep_dim, isinstance(self.rep_dim, int) and self.rep_dim >= 1, ">= 1"),
            ("hidden", self.hidden, isinstance(self.hidden, int) and self.hidden >= 1, ">= 1"),
            ("knn_clip", self.knn_clip, self.knn_clip >= 0, ">= 0"),
            ("learning_rate", self.learning_rate, self.learning_rate > 0, "> 0"),
            ("scale", self.scale, self.scale >= 0, ">= 0"),
        ])

    def _icm(self, action_dim: int) -> ICM:
        return ICM(self.rep_dim, self.hidden, action_dim)

    def init(self, obs_dim: int, action_dim: int, key) -> APTState:
        if self.representation == "obs":
            return APTState({}, ())
        params = self._icm(action_dim).init(
            key, jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim)), jnp.zeros((1, obs_dim))
        )
        return APTState(params, _adam(self.learning_rate).init(params))

    def represent(self, state: APTState, obs: jax.Array) -> jax.Array:
        if self.representation == "obs":
            return obs
        # ICM.represent uses only the trunk, so the action width given here plays no part.
        return self._icm(1).apply(state.params, obs, method=ICM.represent)

    def bonus(self, state: APTState, batch: Transition) -> jax.Array:
        if self.k > batch.next_obs.shape[0]:
            raise ValueError(f"APT k={self.k} is larger than the minibatch of {batch.next_obs.shape[0]} particles")
        z = jax.lax.stop_gradient(self.represent(state, batch.next_obs))
        return self.scale * knn_particle_reward(z, z, self.k, self.knn_clip)

    def knn_distances(self, state: APTState, batch: Transition) -> jax.Array:
        """Mean distance of each z(s') to its k nearest particles (self included): (B,)."""
        z = jax.lax.stop_gradient(self.represent(state, batch.next_obs))
        d = jnp.sqrt(jnp.maximum(jnp.sum((z[:, None, :] - z[None, :, :]) ** 2, axis=-1), 0.0))
        return jnp.mean(-jax.lax.top_k(-d, self.k)[0], axis=-1)

    def _metrics(self, state: APTState, batch: Transition, loss) -> dict:
        d = self.knn_distances(state, batch)
        return {"intrinsic/loss": loss, "intrinsic/knn_dist_mean": jnp.mean(d),
                "intrinsic/knn_dist_max": jnp.max(d)}

    def update(self, state: APTState, batch: Transition, key):
        del key
        if self.representation == "obs":
            return state, self.bonus(state, batch), self._metrics(state, batch, jnp.float32(0.0))
        icm = self._icm(batch.action.shape[-1])

        def loss_fn(params):
            forward_error, inverse_error = icm.apply(params, batch.obs, batch.action, batch.next_obs)
            return jnp.mean(forward_error) + jnp.mean(inverse_error)

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = _adam(self.learning_rate).update(grads, state.opt_state, state.params)
        state = APTState(optax.apply_updates(state.params, updates), opt_state)
        return state, self.bonus(state, batch), self._metrics(state, batch, loss)


MODULES = {"rnd": RND, "disagreement": Disagreement, "apt": APT}


# ---------------------------------------------------------------------------------------------
# The hook the agents' loops call
# ---------------------------------------------------------------------------------------------
@struct.dataclass
class IntrinsicReward:
    """A module, its state and the mixing coefficients, carried in an agent's train state."""

    module: Any = struct.field(pytree_node=False)  # RND / Disagreement / APT (static settings)
    state: Any = None
    task_coef: jax.Array = None  # float32 scalar
    bonus_coef: jax.Array = None  # float32 scalar

    def relabel(self, batch: Transition, key):
        """Train the module on ``batch``, then replace its reward with
        ``task_coef * r + bonus_coef * sg(bonus)``. Returns (self', batch', metrics)."""
        state, bonus, metrics = self.module.update(self.state, batch, key)
        bonus = jax.lax.stop_gradient(bonus).astype(jnp.float32)
        # With task_coef = 0 the task reward is never read (not even a NaN in it gets through).
        task = jnp.where(self.task_coef == 0.0, 0.0, self.task_coef * batch.reward.astype(jnp.float32))
        reward = task + self.bonus_coef * bonus
        metrics = {**metrics, "intrinsic/bonus_mean": jnp.mean(bonus), "intrinsic/bonus_max": jnp.max(bonus)}
        return self.replace(state=state), batch._replace(reward=reward), metrics


def make_intrinsic(module, obs_dim: int, action_dim: int, key, task_coef: float = 0.0,
                   bonus_coef: float = 1.0) -> IntrinsicReward:
    """An :class:`IntrinsicReward` with a freshly initialised ``module``."""
    if not all(hasattr(module, f) for f in ("init", "bonus", "update")):
        raise ConfigError(
            f"intrinsic module {module!r} needs init / bonus / update; use one of "
            f"{', '.join(c.__name__ for c in MODULES.values())}"
        )
    for name, value in (("task_coef", task_coef), ("bonus_coef", bonus_coef)):
        if not (isinstance(value, (int, float)) and value >= 0):
            raise ConfigError(f"{name}={value!r} must be a number >= 0")
    return IntrinsicReward(
        module=module,
        state=module.init(int(obs_dim), int(action_dim), key),
        task_coef=jnp.float32(task_coef),
        bonus_coef=jnp.float32(bonus_coef),
    )
