"""PPO on continuous actions: Gaussian log-probability and entropy known values under jit, reward
normalization, the probes (truncation bootstraps, termination does not), the brax preset runs,
and Pendulum is learned with the defaults within the CI budget."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx import envs
from rlx.agents import policy_gradient as pg
from rlx.agents import ppo
from rlx.core.running_stats import init_running_stats
from rlx.envs import probes
from rlx.run import make_train

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@pytest.mark.timeout(60)
def test_gaussian_log_prob_and_entropy_known_values_under_jit():
    mean = jnp.array([[0.0, 0.0], [1.0, -1.0]])
    log_std = jnp.array([[0.0, 0.0], [math.log(2.0), 0.0]])
    action = jnp.zeros((2, 2))
    logp, ent = jax.jit(lambda m, s, a: (pg.gaussian_log_prob(m, s, a), pg.gaussian_entropy(s)))(mean, log_std, action)
    # row 0: two standard normals at 0; row 1: z = -0.5 with sigma 2, and z = 1 with sigma 1
    expected_logp = [-2 * HALF_LOG_2PI, (-0.125 - math.log(2.0) - HALF_LOG_2PI) + (-0.5 - HALF_LOG_2PI)]
    np.testing.assert_allclose(logp, expected_logp, rtol=1e-6)
    np.testing.assert_allclose(logp, jax.scipy.stats.norm.logpdf(action, mean, jnp.exp(log_std)).sum(-1), rtol=1e-6)
    np.testing.assert_allclose(logp[0], -1.8378771, rtol=1e-6)
    np.testing.assert_allclose(ent, [2 * (0.5 + HALF_LOG_2PI), math.log(2.0) + 2 * (0.5 + HALF_LOG_2PI)], rtol=1e-6)
    np.testing.assert_allclose(ent[0], 2.8378771, rtol=1e-6)
    # d log p / d mu = (a - mu) / sigma^2, d log p / d log sigma = z^2 - 1
    g_mean, g_log_std = jax.jit(jax.grad(lambda m, s: pg.gaussian_log_prob(m, s, action[1]), argnums=(0, 1)))(mean[1], log_std[1])
    np.testing.assert_allclose(g_mean, [-0.25, 1.0], rtol=1e-6)
    np.testing.assert_allclose(g_log_std, [0.25 - 1.0, 1.0 - 1.0], rtol=1e-6, atol=1e-7)


@pytest.mark.timeout(60)
def test_gaussian_samples_have_the_policy_moments():
    mean, log_std = jnp.array([0.5, -2.0]), jnp.log(jnp.array([0.1, 3.0]))
    x = jax.jit(lambda k: pg.gaussian_sample(k, jnp.broadcast_to(mean, (20_000, 2)), jnp.broadcast_to(log_std, (20_000, 2))))(
        jax.random.PRNGKey(0))
    np.testing.assert_allclose(x.mean(0), mean, atol=0.05)
    np.testing.assert_allclose(x.std(0), jnp.exp(log_std), rtol=0.03)


@pytest.mark.timeout(60)
def test_reward_normalization_divides_by_the_return_std_and_resets_at_episode_ends():
    rewards = jnp.ones((4, 2))
    done = jnp.array([[False, False], [True, False], [False, False], [False, False]])
    stats, carried, scaled = jax.jit(pg.normalize_rewards, static_argnums=(5,))(
        init_running_stats(()), jnp.zeros(2), rewards, done, 0.5, 10.0)
    # env 0: G = 1, 1.5 (episode ends), 1, 1.5; env 1: G = 1, 1.5, 1.75, 1.875
    seen = np.array([1, 1.5, 1, 1.5, 1, 1.5, 1.75, 1.875])
    np.testing.assert_allclose(stats.var, seen.var(), rtol=1e-5)
    np.testing.assert_allclose(stats.count, 8)
    np.testing.assert_allclose(carried, [1.5, 1.875], rtol=1e-6)
    np.testing.assert_allclose(scaled, 1.0 / np.sqrt(seen.var() + 1e-8), rtol=1e-5)  # no mean subtracted


@pytest.mark.timeout(60)
def test_reward_normalization_follows_the_action_space():
    config = ppo.PPOConfig()
    assert config.reward_normalization(True) and not config.reward_normalization(False)
    assert config.override(normalize_rewards="on").reward_normalization(False)
    assert not config.override(normalize_rewards="off").reward_normalization(True)
    brax = ppo.PPOConfig().override(**{k: v for k, v in ppo.PRESETS["brax"].items() if not k.startswith("_")})
    brax.validate()
    assert brax.env_steps_per_iteration == 1024 * 32 * 5  # brax's batch_size x num_minibatches x unroll_length


GAMMA = 0.5
PROBE_CONFIG = {  # as tests/test_probes.py probes discrete PPO, rewards left as they are
    "total_steps": 64 * 30, "num_envs": 4, "num_steps": 16, "update_epochs": 4, "num_minibatches": 2,
    "hidden_sizes": (32, 32), "learning_rate": 3e-3, "gamma": GAMMA, "eval_every": 64 * 30, "eval_episodes": 2,
    "normalize_rewards": "off",
}


@pytest.mark.timeout(180)
def test_continuous_ppo_solves_the_probes_and_catches_the_planted_truncation_bug():
    names = list(probes.PROBES)
    made = [envs.make(name, continuous=True) for name in names]
    env = made[0][0]
    planted = probes.make_probe("rlx/ProbeTruncation-v0", True, terminal=True)[1]
    params = jax.tree.map(lambda *xs: jnp.stack(xs), *[p for _, p in made], planted)
    config = ppo.PPOConfig().override(**PROBE_CONFIG)
    obs = jnp.eye(probes.NUM_POSITIONS)

    def train_and_read(p, key):
        state = make_train(ppo, config, env, p)(key).state.agent_state
        assert state.continuous
        return ppo.value_estimate(config, state, obs)

    values = np.asarray(jax.jit(jax.vmap(train_and_read, in_axes=(0, None)))(params, jax.random.PRNGKey(0)))
    for name, v in zip(names, values[:3], strict=True):
        problem = probes.diagnose(name, dict(enumerate(map(float, v))), GAMMA, 0.05)
        assert problem is None, f"{name}: {problem} ({v})"
    problem = probes.diagnose("rlx/ProbeTruncation-v0", dict(enumerate(map(float, values[3]))), GAMMA, 0.05)
    assert problem is not None and "treated as a termination" in problem, problem


@pytest.mark.timeout(120)
def test_brax_preset_runs_shrunk():
    """The brax preset's program (no value clip, separate critic widths, swish, normalized
    observations, reward scale) on a tiny budget; the full preset is for an accelerator."""
    env, params = envs.make("gymnax/Pendulum-v1")
    preset = {k: v for k, v in ppo.PRESETS["brax"].items() if not k.startswith("_")}
    config = ppo.PPOConfig().override(**{**preset, "num_envs": 8, "num_steps": 10, "num_minibatches": 4,
                                         "total_steps": 160, "eval_every": 160, "eval_episodes": 1})
    out = jax.jit(make_train(ppo, config, env, params), compiler_options={"xla_backend_optimization_level": 0})(
        jax.random.PRNGKey(0))
    state = out.state.agent_state
    assert state.reward_stats is None and ppo.observation_stats(state) is not None
    assert state.params["critic"]["params"]["MLP_0"]["Dense_0"]["kernel"].shape[-1] == 256
    for name in ("loss/value", "loss/policy", "policy_std", "eval/return_mean"):
        assert np.all(np.isfinite(np.asarray(out.metrics[name]))), name


def _random_return(env, params, episodes: int = 16) -> float:
    def episode(key):
        k_reset, k_steps = jax.random.split(key)
        obs, state = env.reset(k_reset, params)

        def step(state, key):
            k_act, k_env = jax.random.split(key)
            action = jax.random.uniform(k_act, (1,), minval=-2.0, maxval=2.0)
            _, state, reward, *_ = env.step(k_env, state, action, params)
            return state, reward

        return jax.lax.scan(step, state, jax.random.split(k_steps, params.max_steps_in_episode))[1].sum()

    return float(jnp.mean(jax.jit(jax.vmap(episode))(jax.random.split(jax.random.PRNGKey(123), episodes))))


@pytest.mark.timeout(240)
def test_ppo_learns_pendulum_with_the_defaults():
    """Half the default budget (256k steps, ~5 s after a ~25 s compile on 2 cores): the deterministic
    return goes from a random policy's (about -1,200) to better than -700 (about -150 to -400 at
    512k steps, docs/algorithms/policy-gradient.md)."""
    env, params = envs.make("gymnax/Pendulum-v1")
    config = ppo.PPOConfig(total_steps=256_000, eval_every=25_600)
    out = jax.jit(make_train(ppo, config, env, params))(jax.random.PRNGKey(0))
    curve = np.asarray(out.metrics["eval/return_mean"])
    random_return = _random_return(env, params)
    assert random_return < -900, random_return
    assert curve[-3:].mean() > -700, curve.round(0)
    assert curve[-3:].mean() > random_return + 500, (curve.round(0), random_return)
