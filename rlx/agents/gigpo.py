"""GiGPO: Group-in-Group Policy Optimization (Feng et al. 2025, arXiv 2505.10978), and GRPO
(Shao et al. 2024, arXiv 2402.03300) as its special case with the step level switched off.

One iteration (``algorithms.md`` 5.1-5.3):

1. Groups: ``num_envs`` task instances (one reset key each), each rolled out ``group_size``
   times from the same initial state by the current policy, for a fixed ``max_episode_steps``
   steps; the steps after an episode ends are padding (mask 0).
2. Episode level: A^E(tau_i) = (R(tau_i) - mean_j R(tau_j)) / F_norm within the group, with
   F_norm = std (unbiased) + 1e-6 or 1 (``normalize_std``). The statistics weigh each trajectory
   once (``episode_stats="per_trajectory"``, the paper) or once per step row
   (``"per_step_row"``, what verl-agent's code does by default). A group of one: mean 0, std 1.
3. Step level (anchor states): every valid step whose observation is identical to other valid
   steps of the same group (other trajectories, or the same one revisiting) forms a step group;
   its discounted return R_t = sum_k gamma^(k-t) r_k is compared within that group:
   A^S = (R_t - mean) / F_norm; a singleton gets 0. Padding never joins a group.
4. A = A^E + omega A^S, used by a clipped-ratio loss on every valid step with an entropy bonus
   and an optional k3 KL to a reference policy (the initial one). No critic.

The rewards behind both levels may carry verl-agent's invalid-action penalty (a step the env
flags in ``info["invalid_action"]`` loses ``invalid_penalty``; off by default, see the config).
Observations may have any shape and dtype (vectors, MinAtar's boolean images): the policy
flattens one observation, and anchor states compare all of its bits.

An exploration bonus (:func:`rlx.explore.with_intrinsic`, ``GroupPGState.intrinsic``) enters
as a per-step reward: each iteration the module trains on the rollout's real steps (s, a, s'
with s' the true successor, the final observation at an episode's end) and every real step's
reward becomes task_coef * r_t + bonus_coef * bonus_t, padding keeping 0, before anything
above is computed, so the episode returns R(tau) of the episode level and the discounted
returns R_t of the step level (anchor states) both see it. The reported success rate and
episode returns stay those of the task reward. Measured on the default KeyDoor (RND, task
reward + bonus, 2 seeds, up to 461k steps) the bonus did not raise success: with F_norm = std
even ``bonus_coef=0.001`` turns the groups without a success into bonus contests and the policy
collapses onto no-op actions (as with the invalid-action penalty, see the config); with
``normalize_std=False`` and 0.01 the policy stayed near uniform.

Anchor grouping runs inside jit with static shapes: each observation's bits are hashed twice
(two independent 32-bit hashes), the group's rows are sorted by (padding, hash1, hash2), and a
new step group starts wherever two neighbours differ in *any observation bit* (not just in the
hash). So a hash collision can never merge different states; it could only split one state's
group if two colliding states interleave in the sort, which needs a 64-bit collision
(probability < M^2 / 2^64 per group of M rows); collisions are counted in the metrics.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from rlx import envs as rlx_envs
from rlx.agents import policy_gradient as pg
from rlx.core.config import ConfigError, TrainConfig, config_dataclass, static, tunable

NAME = "gigpo"

def _check_widths(v):
    return None if len(v) > 0 and all(int(w) >= 1 for w in v) else "need >= 1 positive width"


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------
@config_dataclass
class GiGPOConfig(TrainConfig):
    """Defaults: group size 8, gamma 0.95, omega 1, clip 0.2 (paper / verl-agent scripts).

    Chosen here, for a policy learnt from scratch on our envs (measured, README "GiGPO"):
    8 groups of 30 steps per iteration (the paper: 16 x 50; more iterations per env step),
    F_norm = std (``normalize_std=True``, verl-agent's ``mean_std_norm``; the code's function
    default is ``mean_norm``), no invalid-action penalty (the paper's 0.1: with std
    normalisation even 0.01 turns the groups without a success into "avoid invalid actions"
    contests and the policy collapses onto always-valid moves), no KL (the paper's 0.01 is to a
    pretrained reference; ours would be the random initial policy), sampled evaluation.
    ``PRESETS["paper"]`` restores the paper's values. Learning rate, epochs and network sizes are
    rlx's, for small tabular-like tasks (the paper's 1e-6 is for an LLM)."""

    # Multiples of one iteration (num_envs * group_size * max_episode_steps = 1,920 env steps), so
    # they run exactly: 500 iterations, an evaluation every 25.
    total_steps: int = static(960_000, "environment steps in total (simulated, padding included)", low=1)
    num_envs: int = static(
        8, "task instances (groups) per iteration; each is rolled out group_size times", low=1
    )
    eval_every: int = static(48_000, "environment steps between deterministic evaluations", low=1)
    eval_episodes: int = static(64, "episodes per evaluation (eval return = success rate on rlx envs)", low=1)
    group_size: int = static(8, "trajectories per task instance (N)", low=1)
    max_episode_steps: int = static(
        30, "rollout length T; steps after an episode ends are padding, episodes longer are cut", low=1
    )
    update_epochs: int = static(4, "passes over each iteration's batch", low=1)
    num_minibatches: int = static(4, "minibatches per pass (must divide num_envs * group_size * T)", low=1)
    hidden_sizes: tuple[int, ...] = static((64, 64), "hidden layer widths of the policy", check=_check_widths)
    activation: str = static("tanh", "hidden activation", choices=("relu", "tanh", "gelu", "silu", "elu"))
    step_level: bool = static(True, "step-level (anchor-state) advantages; False is GRPO", choices=(False, True))
    episode_stats: str = static(
        "per_trajectory", "episode-group statistics over trajectories (paper) or step rows (verl-agent code)",
        choices=("per_trajectory", "per_step_row"),
    )
    normalize_std: bool = static(
        True, "divide relative advantages by the group std (mean_std_norm) or not (mean_norm)", choices=(False, True)
    )
    eval_policy: str = static(
        "sample", "evaluation actions: sampled from the policy, or its most likely action",
        choices=("sample", "greedy"),
    )
    loss_aggregation: str = static(
        "step_mean", "loss mean over all valid steps, or per trajectory then over trajectories",
        choices=("step_mean", "trajectory_mean"),
    )

    learning_rate: float = tunable(3e-3, "Adam learning rate", low=0.0, low_inclusive=False)
    gamma: float = tunable(0.95, "discount of the step-level returns", low=0.0, high=1.0)
    step_weight: float = tunable(1.0, "omega: weight of the step-level advantage", low=0.0)
    clip_eps: float = tunable(0.2, "ratio clip epsilon", low=0.0, low_inclusive=False)
    ent_coef: float = tunable(0.01, "entropy bonus coefficient", low=0.0)
    kl_coef: float = tunable(0.0, "k3 KL coefficient to the reference (initial) policy", low=0.0)
    invalid_penalty: float = tunable(
        0.0, "subtracted from a step's reward for the advantages when the env flags info['invalid_action']", low=0.0
    )
    max_grad_norm: float = tunable(0.5, "global gradient-norm clip", low=0.0, low_inclusive=False)

    def _check_consistency(self) -> list[str]:
        problems = []
        rows = self.num_envs * self.group_size * self.max_episode_steps
        if rows % self.num_minibatches:
            problems.append(
                f"num_minibatches={self.num_minibatches} must divide num_envs * group_size * max_episode_steps = {rows}"
            )
        if self.normalize_observations:
            problems.append(
                "normalize_observations=True is not supported: anchor states are compared on raw observations"
            )
        return problems

    @property
    def num_rollouts(self) -> int:
        return self.num_envs * self.group_size

    @property
    def env_steps_per_iteration(self) -> int:
        return self.num_rollouts * self.max_episode_steps

    @property
    def warmup_env_steps(self) -> int:
        return 0


Config = GiGPOConfig

PRESETS = {
    "paper": {
        "_doc": "the paper's / verl-agent's ALFWorld values: 16 groups x 8, 50 steps, mean_norm, "
        "invalid-action penalty 0.1, KL 0.01 to the (here: initial) reference",
        "num_envs": 16,
        "max_episode_steps": 50,
        "normalize_std": False,
        "invalid_penalty": 0.1,
        "kl_coef": 0.01,
    },
}


def categorical_action_check(agent_name: str):
    """The ``check_env`` of a categorical-policy agent; its refusal names the agent asked for."""

    def check_env(config, env, env_params) -> None:
        if rlx_envs.is_continuous(env.action_space(env_params)):
            raise ConfigError(
                f"{agent_name} uses a categorical policy; {getattr(env, 'name', env)} has a continuous "
                "(Box) action space. Use a continuous-action agent (sac, dsac_t), or an env with a Discrete action space."
            )

    return check_env


check_env = categorical_action_check(NAME)


# ---------------------------------------------------------------------------------------------
# Advantages (pure functions of arrays; tested against the hand-worked values of 5.5)
# ---------------------------------------------------------------------------------------------
def discounted_returns(rewards: jax.Array, valid: jax.Array, gamma) -> jax.Array:
    """R_t = sum_{k >= t} gamma^(k-t) r_k along the last axis; 0 on padding."""
    rewards = jnp.where(valid, rewards, 0.0)

    def back(next_return, r):
        ret = r + gamma * next_return
        return ret, ret

    moved = jnp.moveaxis(rewards, -1, 0)
    _, out = jax.lax.scan(back, jnp.zeros_like(moved[0]), moved, reverse=True)
    return jnp.where(valid, jnp.moveaxis(out, 0, -1), 0.0)


def episode_advantages(returns: jax.Array, lengths: jax.Array, episode_stats: str, normalize_std: bool):
    """A^E for returns of shape (groups, N) (5.2 and 5.3.1-3).

    ``per_trajectory``: statistics over the N trajectories; ``per_step_row``: each trajectory
    counted once per step (weights = lengths). A group of one row: mean 0, std 1.
    """
    weights = jnp.ones_like(returns) if episode_stats == "per_trajectory" else lengths.astype(returns.dtype)
    mean, std, count = pg.weighted_group_stats(returns, weights, axis=-1)
    single = count <= 1.0
    mean = jnp.where(single, 0.0, mean)
    std = jnp.where(single, 1.0, std)
    centred = returns - mean
    return centred / (std + pg.EPS_STD) if normalize_std else centred


def _fmix32(h: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finaliser (a bijection with good avalanche)."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


_SIGN_BIT = 0x80000000
_CANONICAL_NAN = 0x7FC00000


def observation_bits(obs: jax.Array) -> jax.Array:
    """Observations (M, ...) of any shape and dtype (float, int, bool; vectors or images) as rows
    (M, D) of uint32 words such that two rows are equal iff the observations are equal.

    Floats are widened to float32 (exact for float16/bfloat16) and compared by bit pattern, with
    -0.0 folded into +0.0 and every NaN into one pattern. The folding works on the integer bits,
    not on float arithmetic: ``x + 0.0``, the textbook fold, is simplified away by XLA under jit,
    which then split the two zeros into different anchor states. Integers are not widened to
    float32 (which would merge values beyond 2**24): signed ones are sign-extended to 32 bits,
    64-bit ones (with ``jax_enable_x64``) take two words, as does float64."""
    flat = obs.reshape(obs.shape[:1] + (-1,)) if obs.ndim else obs.reshape(1, 1)
    dtype = flat.dtype
    if jnp.issubdtype(dtype, jnp.floating):
        if dtype.itemsize == 8:
            words = jax.lax.bitcast_convert_type(flat, jnp.uint32)  # (M, D, 2): low, high word
            low, high = words[..., 0], words[..., 1]
            magnitude_zero = ((high & ~jnp.uint32(_SIGN_BIT)) == 0) & (low == 0)
            high = jnp.where(magnitude_zero, jnp.uint32(0), high)
            nan = ((high & 0x7FF00000) == 0x7FF00000) & (((high & 0x000FFFFF) != 0) | (low != 0))
            high = jnp.where(nan, jnp.uint32(0x7FF80000), high)
            low = jnp.where(nan, jnp.uint32(0), low)
            return jnp.stack([low, high], axis=-1).reshape(flat.shape[0], -1)
        bits = jax.lax.bitcast_convert_type(flat.astype(jnp.float32), jnp.uint32)
        bits = jnp.where(bits == jnp.uint32(_SIGN_BIT), jnp.uint32(0), bits)
        nan = (bits & jnp.uint32(0x7FFFFFFF)) > jnp.uint32(0x7F800000)
        return jnp.where(nan, jnp.uint32(_CANONICAL_NAN), bits)
    if dtype == jnp.bool_:
        return flat.astype(jnp.uint32)
    if jnp.issubdtype(dtype, jnp.integer):
        if dtype.itemsize == 8:
            return jax.lax.bitcast_convert_type(flat, jnp.uint32).reshape(flat.shape[0], -1)
        wide = flat.astype(jnp.int32 if jnp.issubdtype(dtype, jnp.signedinteger) else jnp.uint32)
        return jax.lax.bitcast_convert_type(wide, jnp.uint32)
    raise TypeError(f"anchor states need float, integer or bool observations, got dtype {dtype}")


def hash_rows(bits: jax.Array, seed: int) -> jax.Array:
    """A 32-bit hash of each row of ``bits`` (..., D): sum over columns of fmix(word + fmix(col, seed))."""
    column = jnp.arange(bits.shape[-1], dtype=jnp.uint32)
    salt = _fmix32(column * jnp.uint32(0x9E3779B9) + jnp.uint32(seed))
    return _fmix32(jnp.sum(_fmix32(bits ^ salt), axis=-1, dtype=jnp.uint32) + jnp.uint32(seed))


def anchor_segments(bits: jax.Array, valid: jax.Array, hash_fn=None):
    """Step groups of one episode group: rows (M, D) of observation bits and a validity mask (M,).

    Returns (segment id per row in [0, M), number of hash collisions seen). Valid rows share an
    id iff their observations are identical (barring an interleaved 64-bit collision, see the
    module docstring); each padding row gets an id of its own.
    """
    m = bits.shape[0]
    if hash_fn is None:
        h1, h2 = hash_rows(bits, 0x1234567), hash_rows(bits, 0x7654321)
    else:
        h1, h2 = hash_fn(bits)
    padding = (~valid).astype(jnp.uint32)
    pad_s, h1_s, h2_s, perm = jax.lax.sort((padding, h1, h2, jnp.arange(m)), num_keys=3)
    bits_s = bits[perm]
    same_hash = (h1_s[1:] == h1_s[:-1]) & (h2_s[1:] == h2_s[:-1])
    same_obs = jnp.all(bits_s[1:] == bits_s[:-1], axis=-1)
    both_valid = (pad_s[1:] == 0) & (pad_s[:-1] == 0)
    boundary = jnp.concatenate([jnp.ones(1, bool), ~(same_hash & same_obs & both_valid)])
    segment_sorted = jnp.cumsum(boundary) - 1
    segment = jnp.zeros(m, segment_sorted.dtype).at[perm].set(segment_sorted)
    collisions = jnp.sum(same_hash & ~same_obs & both_valid)
    return segment, collisions


def step_advantages(obs: jax.Array, step_returns: jax.Array, valid: jax.Array, normalize_std: bool, hash_fn=None):
    """A^S for one episode group: obs (M, ...) flattened over (trajectory, step), returns and
    mask (M,). Returns (A^S (M,), step-group size per row, collisions)."""
    m = step_returns.shape[0]
    segment, collisions = anchor_segments(observation_bits(obs), valid, hash_fn)
    w = valid.astype(step_returns.dtype)
    count = jax.ops.segment_sum(w, segment, num_segments=m)
    mean = jax.ops.segment_sum(w * step_returns, segment, num_segments=m) / jnp.maximum(count, 1.0)
    dev = step_returns - mean[segment]
    ss = jax.ops.segment_sum(w * dev**2, segment, num_segments=m)
    std = jnp.sqrt(ss / jnp.maximum(count - 1.0, 1.0))
    size = count[segment]
    std_row = jnp.where(size > 1, std[segment], 1.0)
    adv = dev / (std_row + pg.EPS_STD) if normalize_std else dev
    adv = jnp.where(valid & (size > 1), adv, 0.0)
    return adv, jnp.where(valid, size, 0.0), collisions


def advantages(config: GiGPOConfig, obs, rewards, valid):
    """Combined A = A^E + omega A^S for a batch shaped (groups, N, T, ...).

    Returns (advantages (G, N, T), diagnostics dict)."""
    g, n, t = rewards.shape
    valid = valid.astype(bool)
    lengths = jnp.sum(valid, axis=-1)
    episode_return = jnp.sum(jnp.where(valid, rewards, 0.0), axis=-1)
    a_episode = episode_advantages(episode_return, lengths, config.episode_stats, config.normalize_std)
    combined = jnp.where(valid, a_episode[..., None], 0.0)
    info = {}
    if config.step_level:
        returns = discounted_returns(rewards, valid, config.gamma)
        a_step, size, collisions = jax.vmap(step_advantages, in_axes=(0, 0, 0, None))(
            obs.reshape((g, n * t) + obs.shape[3:]),
            returns.reshape(g, n * t),
            valid.reshape(g, n * t),
            config.normalize_std,
        )
        combined = combined + config.step_weight * a_step.reshape(g, n, t)
        grouped = jnp.sum(size > 1) / jnp.maximum(jnp.sum(valid), 1)
        info = {"anchor/grouped_fraction": grouped, "anchor/hash_collisions": jnp.sum(collisions)}
    return combined, info


# ---------------------------------------------------------------------------------------------
# State, rollout, update
# ---------------------------------------------------------------------------------------------
@struct.dataclass
class GroupPGState:
    params: Any
    opt_state: Any
    ref_params: Any
    key: jax.Array
    env_steps: jax.Array  # int32, simulated steps (padding included)
    iterations: jax.Array  # int32
    num_actions: int = struct.field(pytree_node=False, default=0)
    obs_ndim: int = struct.field(pytree_node=False, default=1)  # rank of one observation
    intrinsic: Any = None  # exploration bonus (rlx.explore.intrinsic.IntrinsicReward) or None


def _policy_net(config: GiGPOConfig, num_actions: int, obs_ndim: int = 1) -> pg.CategoricalPolicy:
    return pg.CategoricalPolicy(tuple(config.hidden_sizes), num_actions, config.activation, obs_ndim)


def observation_stats(state) -> None:
    return None


def init(config: GiGPOConfig, env, env_params, key) -> GroupPGState:
    num_actions = rlx_envs.action_dim(env.action_space(env_params))
    key, k_net, k_reset = jax.random.split(key, 3)
    obs, _ = env.reset(k_reset, env_params)
    obs_ndim = max(1, jnp.ndim(obs))
    params = _policy_net(config, num_actions, obs_ndim).init(k_net, jnp.asarray(obs, jnp.float32)[None])
    opt = pg.make_optimizer(config.learning_rate, config.max_grad_norm)
    return GroupPGState(
        params=params,
        opt_state=opt.init(params),
        ref_params=params,
        key=key,
        env_steps=jnp.int32(0),
        iterations=jnp.int32(0),
        num_actions=num_actions,
        obs_ndim=obs_ndim,
    )


def rollout(config: GiGPOConfig, env, env_params, params, num_actions: int, key, obs_ndim: int = 1):
    """``num_envs`` groups x ``group_size`` trajectories of ``max_episode_steps`` steps.

    Returns a dict of arrays shaped (G, N, T, ...): obs, final_obs (the true successor of the
    step: the episode's last observation where it ends, not the reset one), action, logp,
    reward, valid (the step belongs to the episode), invalid_action, terminated."""
    g, n, t = config.num_envs, config.group_size, config.max_episode_steps
    net = _policy_net(config, num_actions, obs_ndim)
    k_tasks, k_steps = jax.random.split(key)
    reset_keys = jnp.repeat(jax.random.split(k_tasks, g), n, axis=0)  # same task within a group
    obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(reset_keys, env_params)

    def step(carry, key):
        obs, env_state, alive = carry
        k_act, k_env = jax.random.split(key)
        obs = jnp.asarray(obs, jnp.float32)
        logits = net.apply(params, obs)
        action = pg.sample(k_act, logits)
        next_obs, env_state, reward, terminated, truncated, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(k_env, g * n), env_state, action, env_params
        )
        invalid = info.get("invalid_action", jnp.zeros_like(terminated))
        out = {
            "obs": obs,
            "final_obs": info["final_observation"],
            "action": action,
            "logp": pg.log_prob(logits, action),
            "reward": jnp.where(alive, reward.astype(jnp.float32), 0.0),
            "valid": alive,
            "invalid_action": alive & invalid,
            "terminated": alive & terminated,
        }
        alive = alive & ~(terminated | truncated)
        return (next_obs, env_state, alive), out

    _, traj = jax.lax.scan(step, (obs, env_state, jnp.ones(g * n, bool)), jax.random.split(k_steps, t))
    return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1).reshape((g, n, t) + x.shape[2:]), traj)


def policy_loss(params, config: GiGPOConfig, num_actions: int, ref_params, batch, obs_ndim: int = 1):
    """Clipped-ratio loss with entropy bonus and k3 KL, averaged with per-row weights (mask,
    or mask / trajectory length for ``trajectory_mean``)."""
    net = _policy_net(config, num_actions, obs_ndim)
    logits = net.apply(params, batch["obs"])
    logp = pg.log_prob(logits, batch["action"])
    ratio = jnp.exp(logp - batch["logp"])
    objective = pg.clipped_objective(ratio, batch["advantage"], config.clip_eps)
    ref_logp = jax.lax.stop_gradient(pg.log_prob(net.apply(ref_params, batch["obs"]), batch["action"]))
    kl = pg.kl_k3(logp, ref_logp)
    ent = pg.entropy(logits)
    w = batch["weight"]
    loss = pg.masked_mean(-objective - config.ent_coef * ent + config.kl_coef * kl, w)
    metrics = {
        "loss/policy": pg.masked_mean(-objective, w),
        "entropy": pg.masked_mean(ent, w),
        "kl_ref": pg.masked_mean(kl, w),
        "clip_fraction": pg.masked_mean((jnp.abs(ratio - 1.0) > config.clip_eps).astype(jnp.float32), w),
    }
    return loss, metrics


def shaped_rewards(config: GiGPOConfig, reward: jax.Array, invalid_action: jax.Array) -> jax.Array:
    """The rewards the advantages are computed from: r - invalid_penalty * [invalid action]
    (verl-agent's invalid-action penalty). The env's reward, and so the reported success rate,
    is left alone."""
    return reward - config.invalid_penalty * invalid_action.astype(jnp.float32)


def update(config: GiGPOConfig, env, env_params, state: GroupPGState):
    """One iteration: roll out the groups, compute A = A^E + omega A^S, then minibatch epochs.
    With an exploration bonus the module first trains on the rollout's real steps and the
    rewards behind A become task_coef * r + bonus_coef * bonus (module docstring)."""
    key, k_roll, k_epochs = jax.random.split(state.key, 3)
    traj = rollout(config, env, env_params, state.params, state.num_actions, k_roll, state.obs_ndim)
    reward, bonus_metrics = traj["reward"], {}
    if state.intrinsic is not None:  # exploration bonus on the real (unpadded) steps
        key, k_bonus = jax.random.split(key)
        intrinsic, reward, bonus_metrics = pg.intrinsic_rollout_rewards(
            state.intrinsic, traj, state.num_actions, k_bonus, mask=traj["valid"]
        )
        state = state.replace(intrinsic=intrinsic)
    shaped = shaped_rewards(config, reward, traj["invalid_action"])
    adv, diagnostics = advantages(config, traj["obs"], shaped, traj["valid"])
    valid = traj["valid"].astype(jnp.float32)
    if config.loss_aggregation == "trajectory_mean":
        weight = valid / jnp.maximum(jnp.sum(valid, axis=-1, keepdims=True), 1.0)
    else:
        weight = valid
    rows = config.env_steps_per_iteration
    batch = {
        "obs": traj["obs"].reshape((rows,) + traj["obs"].shape[3:]),
        "action": traj["action"].reshape(rows),
        "logp": traj["logp"].reshape(rows),
        "advantage": adv.reshape(rows),
        "weight": weight.reshape(rows),
    }
    opt = pg.make_optimizer(config.learning_rate, config.max_grad_norm)

    def minibatch_step(carry, mb):
        params, opt_state = carry
        grads, metrics = jax.grad(policy_loss, has_aux=True)(
            params, config, state.num_actions, state.ref_params, mb, state.obs_ndim
        )
        updates, opt_state = opt.update(grads, opt_state, params)
        return (jax.tree.map(jnp.add, params, updates), opt_state), metrics

    (params, opt_state), metrics = pg.minibatch_epochs(
        k_epochs, (state.params, state.opt_state), batch, config.update_epochs, config.num_minibatches, minibatch_step
    )
    returns = jnp.sum(traj["reward"], axis=-1)
    num_traj = float(config.num_rollouts)
    metrics = {
        **metrics,
        **diagnostics,
        **bonus_metrics,
        "train/episode_return_sum": jnp.sum(returns),
        "train/episodes": jnp.float32(num_traj),
        "train/success_rate": jnp.mean(jnp.any(traj["terminated"], axis=-1).astype(jnp.float32)),
        "train/episode_length": jnp.mean(jnp.sum(valid, axis=-1)),
        "train/invalid_action_rate": jnp.sum(traj["invalid_action"]) / jnp.maximum(jnp.sum(valid), 1.0),
        "advantage_abs": pg.masked_mean(jnp.abs(adv), valid),
    }
    state = state.replace(
        params=params,
        opt_state=opt_state,
        key=key,
        env_steps=state.env_steps + config.env_steps_per_iteration,
        iterations=state.iterations + 1,
    )
    return state, metrics


def make_policy(config: GiGPOConfig, state: GroupPGState, deterministic: bool = True):
    """(obs, key) -> action. The runner's evaluation asks for ``deterministic``; it takes the
    most likely action only with ``eval_policy="greedy"``. By default evaluation samples, as
    training does (and as LLM agents are evaluated): on our envs an invalid action is a no-op
    that leaves the observation unchanged, so a greedy policy whose argmax there is invalid
    repeats it until the time limit, and greedy success says little about the policy."""
    net = _policy_net(config, state.num_actions, state.obs_ndim)
    params = state.params
    greedy = deterministic and config.eval_policy == "greedy"

    def policy(obs, key):
        logits = net.apply(params, jnp.asarray(obs, jnp.float32))
        return pg.greedy(logits) if greedy else pg.sample(key, logits)

    return policy
