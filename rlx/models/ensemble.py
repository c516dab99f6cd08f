"""Probabilistic dynamics ensembles: E Gaussian MLPs predicting (s' - s, r) from (s, a).

This is the model MOPO (Yu et al. 2020, Sec. 4.3 / App. C) and MOBILE (Sun et al. 2023, Sec. 5)
share, in the form of their public code (``../shared/algorithms.md`` Sec. 3.1):

* E = 7 members, each an MLP with 4 hidden layers of 200 Swish units on the standardized input
  [s, a] (mean / std of the training split, a std below 1e-12 replaced by 1); the output is the
  mean and log-variance of y = [s' - s, r] (targets are not normalized);
* the log-variance is soft-bounded per output dimension by learnable bounds shared by all
  members, lv <- maxlv - softplus(maxlv - lv), then lv <- minlv + softplus(lv - minlv), with
  maxlv initialised to 0.5 and minlv to -10;
* loss (Eq. 1 of PETS / MBPO, as the codes write it), summed over members, averaged over batch
  and output dimensions:

      L = sum_e mean_{b,d}[ (mu_e - y)^2 exp(-lv_e) + lv_e ] + sum_l wd_l * 0.5 ||W_l||^2
          + 0.01 (sum maxlv - sum minlv)

  with per-layer weight decay wd = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4), Adam 1e-3, batch 256;
* every member trains on its own bootstrap resample of the training split (drawn once, each row
  reshuffled every epoch); a holdout split of min(20 %, 1000) transitions measures the MSE of
  each member's mean; a member's parameters are snapshotted when its holdout MSE improves by more
  than 1 % (relative), training stops when no member improved for 5 epochs (or at an optional
  epoch cap), the snapshots are restored, and the K = 5 members with the lowest holdout MSE are
  the elites. One departure: an epoch is one pass over the training split but at least
  ``min_steps_per_epoch`` (1000) gradient steps. At D4RL sizes (1M transitions, ~3900 steps a
  pass) this changes nothing; on a small dataset a pass is a few dozen steps, shorter than the
  first phase of training in which the variances shrink and the holdout MSE of the means rises
  before it falls, and a patience of 5 such passes stopped training there (measured on a 10k
  Pendulum dataset: stopped at epoch 9 with holdout MSE 0.31, against 0.05 later).

Termination: the environment's own rule when it is known (:mod:`rlx.models.termination`),
otherwise learned: each member then has one more output, a termination logit trained with
binary cross-entropy on the dataset's ``terminals`` (not its ``timeouts``), and a predicted
transition is terminal when the elites' mean probability exceeds 1/2.

Training is compiled: one call runs ``epochs_per_chunk`` epochs (a ``lax.scan`` over epochs, each
a ``lax.scan`` over minibatches; epochs after the stop are skipped with ``lax.cond``), and the
host shows progress between calls. A trained model is a :class:`Dynamics` pytree that lives on
the device; :func:`save_dynamics` / :func:`load_dynamics` store it with orbax.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from rlx.core.config import Config, ConfigError, config_dataclass, static
from rlx.models import termination as term_rules

_positive_widths = static(
    (200, 200, 200, 200), "hidden layer widths of every ensemble member",
    check=lambda v: None if len(v) > 0 and all(int(w) >= 1 for w in v) else "need >= 1 positive width",
)


@config_dataclass
class EnsembleConfig(Config):
    """How a dynamics ensemble is built and trained (defaults: MOPO / MOBILE code)."""

    ensemble_size: int = static(7, "members of the dynamics ensemble", low=1)
    num_elites: int = static(5, "members kept as elites (lowest holdout MSE)", low=1)
    hidden_sizes: tuple[int, ...] = _positive_widths
    weight_decays: tuple[float, ...] = static(
        (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4), "L2 coefficient per layer (hidden layers, then output)",
        check=lambda v: None if all(float(w) >= 0 for w in v) else "need non-negative values",
    )
    learning_rate: float = static(1e-3, "Adam learning rate", low=0.0, low_inclusive=False)
    batch_size: int = static(256, "minibatch per member and gradient step", low=1)
    holdout_ratio: float = static(0.2, "fraction of the data held out for early stopping", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
    max_holdout: int = static(1000, "largest holdout split", low=1)
    max_epochs_since_update: int = static(5, "stop after this many epochs without a >1 % holdout improvement of any member", low=1)
    improvement: float = static(0.01, "relative holdout improvement that counts (and snapshots a member)", low=0.0)
    max_epochs: int = static(0, "cap on training epochs (0: no cap, early stopping only)", low=0)
    max_logvar_init: float = static(0.5, "initial upper log-variance bound")
    min_logvar_init: float = static(-10.0, "initial lower log-variance bound")
    logvar_bound_coef: float = static(0.01, "weight of the bound term 0.01 (sum maxlv - sum minlv)", low=0.0)
    termination_coef: float = static(1.0, "weight of the termination BCE (learned termination only)", low=0.0)
    min_steps_per_epoch: int = static(
        1000, "gradient steps per epoch at least (small datasets: several passes per epoch)", low=0
    )
    epochs_per_chunk: int = static(1, "epochs per compiled call between host progress updates", low=1)

    def _check_consistency(self) -> list[str]:
        problems = []
        if self.num_elites > self.ensemble_size:
            problems.append(f"num_elites={self.num_elites} must be <= ensemble_size={self.ensemble_size}")
        if len(self.weight_decays) != len(self.hidden_sizes) + 1:
            problems.append(
                f"weight_decays has {len(self.weight_decays)} entries; need one per layer: "
                f"{len(self.hidden_sizes) + 1} (hidden_sizes={tuple(self.hidden_sizes)} plus the output layer)"
            )
        if self.min_logvar_init >= self.max_logvar_init:
            problems.append(f"min_logvar_init={self.min_logvar_init} must be < max_logvar_init={self.max_logvar_init}")
        return problems


# ---------------------------------------------------------------------------------------------
# The network: stacked member weights, one batched matmul per layer
# ---------------------------------------------------------------------------------------------
def swish(x):
    return x * jax.nn.sigmoid(x)


def init_params(key, config: EnsembleConfig, in_dim: int, target_dim: int, learned_termination: bool) -> dict:
    """Weights (E, in, out) drawn from a truncated normal with std 1 / (2 sqrt(in)), zero biases."""
    widths = [in_dim, *config.hidden_sizes, 2 * target_dim + int(learned_termination)]
    keys = jax.random.split(key, len(widths) - 1)
    layers = []
    for k, n_in, n_out in zip(keys, widths[:-1], widths[1:], strict=True):
        w = jax.random.truncated_normal(k, -2.0, 2.0, (config.ensemble_size, n_in, n_out), jnp.float32)
        layers.append({"w": w / (2.0 * math.sqrt(n_in)), "b": jnp.zeros((config.ensemble_size, n_out), jnp.float32)})
    return {
        "layers": layers,
        "max_logvar": jnp.full((target_dim,), config.max_logvar_init, jnp.float32),
        "min_logvar": jnp.full((target_dim,), config.min_logvar_init, jnp.float32),
    }


def soft_bound_logvar(raw, max_logvar, min_logvar):
    """lv <- maxlv - softplus(maxlv - lv); lv <- minlv + softplus(lv - minlv)."""
    lv = max_logvar - jax.nn.softplus(max_logvar - raw)
    return min_logvar + jax.nn.softplus(lv - min_logvar)


def forward(params: dict, x: jax.Array):
    """Member outputs for standardized inputs ``x`` (B, in) or per-member (E, B, in).

    Returns ``(mean, logvar, termination_logit)``: (E, B, D), (E, B, D) and (E, B) or None.
    """
    layers = params["layers"]
    h = x
    for i, layer in enumerate(layers):
        spec = "bi,eio->ebo" if h.ndim == 2 else "ebi,eio->ebo"
        h = jnp.einsum(spec, h, layer["w"]) + layer["b"][:, None, :]
        if i < len(layers) - 1:
            h = swish(h)
    target_dim = params["max_logvar"].shape[0]
    mean, raw_logvar = h[..., :target_dim], h[..., target_dim : 2 * target_dim]
    logvar = soft_bound_logvar(raw_logvar, params["max_logvar"], params["min_logvar"])
    logit = h[..., 2 * target_dim] if h.shape[-1] > 2 * target_dim else None
    return mean, logvar, logit


def gaussian_nll_terms(mean, logvar, target):
    """Per-member mean over batch and dims of (mu - y)^2 exp(-lv) + lv: shape (E,)."""
    return jnp.mean((mean - target) ** 2 * jnp.exp(-logvar) + logvar, axis=(-2, -1))


def weight_decay_loss(params: dict, weight_decays) -> jax.Array:
    return sum(wd * 0.5 * jnp.sum(layer["w"] ** 2) for wd, layer in zip(weight_decays, params["layers"], strict=True))


def ensemble_loss(params, config: EnsembleConfig, inputs, targets, terminals):
    """The training loss above for per-member minibatches ``inputs`` (E, B, in)."""
    mean, logvar, logit = forward(params, inputs)
    nll = jnp.sum(gaussian_nll_terms(mean, logvar, targets))
    loss = nll + weight_decay_loss(params, config.weight_decays)
    loss = loss + config.logvar_bound_coef * (jnp.sum(params["max_logvar"]) - jnp.sum(params["min_logvar"]))
    if logit is not None:
        bce = optax.sigmoid_binary_cross_entropy(logit, terminals.astype(jnp.float32))
        loss = loss + config.termination_coef * jnp.sum(jnp.mean(bce, axis=-1))
    return loss


# ---------------------------------------------------------------------------------------------
# A trained model
# ---------------------------------------------------------------------------------------------
@struct.dataclass
class Dynamics:
    """A trained ensemble: parameters, input standardization, elites and the termination rule."""

    params: dict
    input_mean: jax.Array  # (obs_dim + act_dim,)
    input_std: jax.Array
    elites: jax.Array  # int32 (K,): member indices, best holdout MSE first
    holdout_mse: jax.Array  # (E,) holdout MSE of each member's mean (restored snapshots)
    termination: str = struct.field(pytree_node=False, default="learned")

    @property
    def obs_dim(self) -> int:
        return int(self.params["max_logvar"].shape[0]) - 1

    @property
    def input_dim(self) -> int:
        return int(self.input_mean.shape[0])

    @property
    def action_dim(self) -> int:
        return self.input_dim - self.obs_dim

    @property
    def ensemble_size(self) -> int:
        return int(self.params["layers"][0]["w"].shape[0])

    @property
    def num_elites(self) -> int:
        return int(self.elites.shape[0])


class Prediction(NamedTuple):
    """What every member predicts for a batch of (s, a): the input of a transition hook.

    ``next_obs_mean`` is s + mu_e (the absolute next state), ``reward_mean`` the reward mean, and
    the stds are sqrt(exp(lv_e)); the leading axis indexes ALL E members (``elites`` says which
    ones are elites).
    """

    obs: jax.Array  # (B, obs_dim)
    action: jax.Array  # (B, act_dim)
    next_obs_mean: jax.Array  # (E, B, obs_dim)
    next_obs_std: jax.Array  # (E, B, obs_dim)
    reward_mean: jax.Array  # (E, B)
    reward_std: jax.Array  # (E, B)
    termination_prob: jax.Array | None  # (E, B) when termination is learned
    elites: jax.Array  # int32 (K,)

    @property
    def std(self) -> jax.Array:
        """Per-member std over all output dims [delta s, r]: (E, B, obs_dim + 1)."""
        return jnp.concatenate([self.next_obs_std, self.reward_std[..., None]], axis=-1)


def predict(dynamics: Dynamics, obs, action) -> Prediction:
    x = (jnp.concatenate([obs, action], axis=-1) - dynamics.input_mean) / dynamics.input_std
    mean, logvar, logit = forward(dynamics.params, x)
    std = jnp.sqrt(jnp.exp(logvar))
    return Prediction(
        obs=obs,
        action=action,
        next_obs_mean=obs[None] + mean[..., :-1],
        next_obs_std=std[..., :-1],
        reward_mean=mean[..., -1],
        reward_std=std[..., -1],
        termination_prob=None if logit is None else jax.nn.sigmoid(logit),
        elites=dynamics.elites,
    )


def is_terminal(dynamics: Dynamics, prediction: Prediction, next_obs) -> jax.Array:
    """The environment's rule on (s, a, s'), or the elites' mean termination probability > 1/2."""
    if dynamics.termination == "learned":
        if prediction.termination_prob is None:
            raise ValueError("this model has no termination head; train it with termination='learned'")
        return jnp.mean(prediction.termination_prob[prediction.elites], axis=0) > 0.5
    return term_rules.termination_fn(dynamics.termination)(prediction.obs, prediction.action, next_obs)


# ---------------------------------------------------------------------------------------------
# Training (compiled; early stopping and elite selection on the holdout split)
# ---------------------------------------------------------------------------------------------
class _Data(NamedTuple):
    train_x: jax.Array  # standardized (N_train, in)
    train_y: jax.Array
    train_term: jax.Array
    holdout_x: jax.Array
    holdout_y: jax.Array


class EnsembleTrainState(NamedTuple):
    params: dict
    opt_state: Any
    best_params: dict  # snapshots (per member), restored at the end
    best_mse: jax.Array  # (E,)
    epochs_since_update: jax.Array  # int32
    epoch: jax.Array  # int32
    done: jax.Array  # bool
    bootstrap: jax.Array  # int32 (E, N_train): each member's resample, reshuffled every epoch
    key: jax.Array


@struct.dataclass
class TrainingReport:
    epochs: int
    train_loss: list  # per epoch
    holdout_mse: list  # per epoch, per member
    elites: list
    seconds: float
    compile_seconds: float


def holdout_size(config: EnsembleConfig, n: int) -> int:
    return min(int(n * config.holdout_ratio), config.max_holdout)


def fit_inputs_and_targets(dataset):
    """(s, a) inputs, [s' - s, r] targets and terminals of a :class:`rlx.buffers.dataset.Dataset`."""
    obs = jnp.asarray(dataset.observations, jnp.float32)
    inputs = jnp.concatenate([obs, jnp.asarray(dataset.actions, jnp.float32)], axis=-1)
    targets = jnp.concatenate(
        [jnp.asarray(dataset.next_observations, jnp.float32) - obs, jnp.asarray(dataset.rewards, jnp.float32)[:, None]],
        axis=-1,
    )
    return inputs, targets, jnp.asarray(dataset.terminals).astype(bool)


def _snapshot(improved, new, old):
    """Per member: the new weights where the member improved, else the stored snapshot."""

    def pick(n, o):  # every layer leaf has the member axis first
        return jnp.where(improved.reshape((-1,) + (1,) * (n.ndim - 1)), n, o)

    layers = [jax.tree.map(pick, ln, lo) for ln, lo in zip(new["layers"], old["layers"], strict=True)]
    # The log-variance bounds are shared by all members: keep the latest.
    return {**new, "layers": layers}


def _epoch_fn(config: EnsembleConfig, optimizer):
    def epoch(state: EnsembleTrainState, data: _Data):
        key, k_shuffle = jax.random.split(state.key)
        e, n_train = state.bootstrap.shape
        order = jnp.argsort(jax.random.uniform(k_shuffle, (e, n_train)), axis=-1)
        bootstrap = jnp.take_along_axis(state.bootstrap, order, axis=-1)
        num_batches = max(-(-n_train // config.batch_size), config.min_steps_per_epoch)

        def step(carry, i):
            params, opt_state = carry
            pos = (i * config.batch_size + jnp.arange(config.batch_size)) % n_train
            idx = bootstrap[:, pos]  # (E, B)
            loss, grads = jax.value_and_grad(ensemble_loss)(
                params, config, data.train_x[idx], data.train_y[idx], data.train_term[idx]
            )
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, opt_state), losses = jax.lax.scan(step, (state.params, state.opt_state), jnp.arange(num_batches))
        mean, _, _ = forward(params, data.holdout_x)
        mse = jnp.mean((mean - data.holdout_y) ** 2, axis=(1, 2))  # (E,) mean only, no variance
        improved = (state.best_mse - mse) / state.best_mse > config.improvement
        since = jnp.where(jnp.any(improved), 0, state.epochs_since_update + 1)
        epoch_count = state.epoch + 1
        done = since >= config.max_epochs_since_update
        if config.max_epochs > 0:
            done = done | (epoch_count >= config.max_epochs)
        new_state = EnsembleTrainState(
            params=params,
            opt_state=opt_state,
            best_params=_snapshot(improved, params, state.best_params),
            best_mse=jnp.where(improved, mse, state.best_mse),
            epochs_since_update=since.astype(jnp.int32),
            epoch=epoch_count,
            done=done,
            bootstrap=bootstrap,
            key=key,
        )
        return new_state, (jnp.mean(losses), mse)

    return epoch


def make_chunk(config: EnsembleConfig):
    """``chunk(state, data) -> (state, (ran, train_loss, holdout_mse))`` over ``epochs_per_chunk``
    epochs; an epoch after the stop leaves the state as it is (``ran`` False)."""
    optimizer = optax.adam(config.learning_rate)
    epoch = _epoch_fn(config, optimizer)

    def chunk(state, data):
        def body(state, _):
            def skip(s):
                e = s.best_mse.shape[0]
                return s, (jnp.float32(jnp.nan), jnp.full((e,), jnp.nan, jnp.float32))

            ran = ~state.done
            state, out = jax.lax.cond(state.done, skip, lambda s: epoch(s, data), state)
            return state, (ran, *out)

        return jax.lax.scan(body, state, None, config.epochs_per_chunk)

    return chunk, optimizer


def train_dynamics(
    dataset, config: EnsembleConfig | None = None, key=None, *, termination: str = "learned", progress: bool = True
) -> tuple[Dynamics, TrainingReport]:
    """Train an ensemble on ``dataset`` (a :class:`rlx.buffers.dataset.Dataset`).

    ``termination``: a rule of :mod:`rlx.models.termination` (``"hopper"``, ``"never"``, ...;
    :func:`rlx.models.termination.rule_for_env` finds the one of an env) or ``"learned"``.
    Everything is validated before compiling. Returns the model (snapshots restored, elites
    chosen) and a report of the epochs (train loss, holdout MSE per member, wall times).
    """
    config = (config or EnsembleConfig()).validate()
    if termination != "learned":
        term_rules.termination_fn(termination)  # raises naming the allowed rules
    key = jax.random.PRNGKey(0) if key is None else key
    n = int(np.shape(dataset.observations)[0])
    n_hold = holdout_size(config, n)
    if n_hold < 1 or n - n_hold < 1:
        raise ConfigError(
            f"dataset of {n} transitions is too small for a holdout split "
            f"(holdout_ratio={config.holdout_ratio}, max_holdout={config.max_holdout}): need >= 1 "
            "transition on each side"
        )
    inputs, targets, terminals = fit_inputs_and_targets(dataset)
    k_split, k_init, k_boot, k_train = jax.random.split(key, 4)
    perm = jax.random.permutation(k_split, n)
    train_idx, hold_idx = perm[n_hold:], perm[:n_hold]
    mean = jnp.mean(inputs[train_idx], axis=0)
    std = jnp.std(inputs[train_idx], axis=0)
    std = jnp.where(std < 1e-12, 1.0, std)
    data = _Data(
        train_x=(inputs[train_idx] - mean) / std,
        train_y=targets[train_idx],
        train_term=terminals[train_idx],
        holdout_x=(inputs[hold_idx] - mean) / std,
        holdout_y=targets[hold_idx],
    )
    learned = termination == "learned"
    params = init_params(k_init, config, inputs.shape[-1], targets.shape[-1], learned)
    chunk, optimizer = make_chunk(config)
    n_train = n - n_hold
    state = EnsembleTrainState(
        params=params,
        opt_state=optimizer.init(params),
        best_params=jax.tree.map(jnp.copy, params),  # own buffers: the state is donated
        best_mse=jnp.full((config.ensemble_size,), 1e10, jnp.float32),
        epochs_since_update=jnp.int32(0),
        epoch=jnp.int32(0),
        done=jnp.bool_(False),
        bootstrap=jax.random.randint(k_boot, (config.ensemble_size, n_train), 0, n_train, jnp.int32),
        key=k_train,
    )
    t0 = time.perf_counter()
    compiled = jax.jit(chunk, donate_argnums=0).lower(state, data).compile()
    compile_seconds = time.perf_counter() - t0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc="dynamics", unit="epoch", dynamic_ncols=True)
    losses, mses = [], []
    t_run = time.perf_counter()
    while True:
        state, (ran, loss, mse) = compiled(state, data)
        ran, loss, mse = np.asarray(ran), np.asarray(loss), np.asarray(mse)
        losses += [float(x) for x in loss[ran]]
        mses += [[float(v) for v in row] for row in mse[ran]]
        if bar is not None and ran.any():
            bar.update(int(ran.sum()))
            best = np.sort(np.asarray(state.best_mse))[: config.num_elites].mean()
            bar.set_postfix_str(f"loss {losses[-1]:.3f} | holdout MSE (elites) {best:.4g}")
        if bool(state.done):
            break
    if bar is not None:
        bar.close()
    best_mse = state.best_mse
    elites = jnp.argsort(best_mse)[: config.num_elites].astype(jnp.int32)
    dynamics = Dynamics(
        params=state.best_params, input_mean=mean, input_std=std, elites=elites,
        holdout_mse=best_mse, termination=termination,
    )
    report = TrainingReport(
        epochs=int(state.epoch), train_loss=losses, holdout_mse=mses,
        elites=[int(i) for i in np.asarray(elites)], seconds=time.perf_counter() - t_run,
        compile_seconds=compile_seconds,
    )
    return dynamics, report


# ---------------------------------------------------------------------------------------------
# Save / load (orbax for the arrays, JSON for what is not an array)
# ---------------------------------------------------------------------------------------------
FORMAT_VERSION = 1


def save_dynamics(path, dynamics: Dynamics, extra: dict | None = None) -> Path:
    """Write ``dynamics`` to the folder ``path`` (``arrays/`` with orbax, ``dynamics.json``)."""
    from rlx.models.saved import save_folder

    arrays = {
        "params": dynamics.params, "input_mean": dynamics.input_mean, "input_std": dynamics.input_std,
        "elites": dynamics.elites, "holdout_mse": dynamics.holdout_mse,
    }
    meta = {
        "termination": dynamics.termination,
        "obs_dim": dynamics.obs_dim, "action_dim": dynamics.action_dim,
        "ensemble_size": dynamics.ensemble_size, "num_elites": dynamics.num_elites,
        "num_layers": len(dynamics.params["layers"]), **(extra or {}),
    }
    return save_folder(path, "dynamics", arrays, meta, FORMAT_VERSION)


def load_dynamics(path) -> Dynamics:
    """Read a model written by :func:`save_dynamics`."""
    from rlx.models.saved import load_folder

    arrays, meta = load_folder(path, "dynamics", FORMAT_VERSION, "dynamics model")
    params = arrays["params"]
    layers = params["layers"]
    if isinstance(layers, dict):  # orbax may return a list as a dict keyed by position
        layers = [layers[k] for k in sorted(layers, key=int)]
    params = {**params, "layers": [{k: jnp.asarray(v) for k, v in layer.items()} for layer in layers]}
    params = jax.tree.map(jnp.asarray, params)
    return Dynamics(
        params=params,
        input_mean=jnp.asarray(arrays["input_mean"]), input_std=jnp.asarray(arrays["input_std"]),
        elites=jnp.asarray(arrays["elites"], jnp.int32), holdout_mse=jnp.asarray(arrays["holdout_mse"]),
        termination=meta["termination"],
    )
