"""BC, TD3+BC and IQL: their losses by hand (under jit), learning from a medium Pendulum
dataset, and `rlx train td3_bc --dataset PATH`.

The dataset is cheap to make: a swing-up controller (energy pumping far from the top, a PD law
near it) whose actions get Gaussian noise (std 0.3) and, half of the time, are replaced by a
uniform random action. Its episodes average about -580 (the controller alone: about -150,
random actions: about -1200), a "medium" dataset in the D4RL sense.
"""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlx.envs
from rlx.agents import AGENTS, bc, get_agent, iql, offline, td3_bc
from rlx.buffers.dataset import DatasetInfo, episode_returns, from_arrays
from rlx.core.config import ConfigError
from rlx.core.types import Transition
from rlx.run import make_train

ENV = "gymnax/Pendulum-v1"
MODULES = {"bc": bc, "td3_bc": td3_bc, "iql": iql}
# Tiny networks and a few thousand gradient steps, so the learning tests fit a 2-core CPU; such
# short runs of 64 x 64 networks take learning rates of 1e-3 (3e-4, the papers' value for
# 256 x 256 over 1M steps, leaves IQL's Q and V far from their values after 5,000 steps).
SMALL = dict(hidden_sizes=(64, 64), eval_every=1_000, eval_episodes=10)
FAST = {
    "bc": dict(learning_rate=1e-3),
    "td3_bc": dict(actor_lr=1e-3, critic_lr=1e-3),
    "iql": dict(actor_lr=1e-3, critic_lr=1e-3, value_lr=1e-3),
}
LEARNING_STEPS = 5_000
SEEDS = 2


def _hand_batch(obs_dim=3, action_dim=1, rows=8, seed=0):
    k_obs, k_act, k_rew = jax.random.split(jax.random.PRNGKey(seed), 3)
    obs = jax.random.normal(k_obs, (rows, obs_dim))
    return Transition(
        obs=obs, action=jax.random.uniform(k_act, (rows, action_dim), minval=-1.0, maxval=1.0),
        reward=jax.random.normal(k_rew, (rows,)), next_obs=obs + 0.1, terminated=jnp.zeros(rows), truncated=jnp.zeros(rows),
    )


# ------------------------------------------------------------------------------------------
# Known values (every loss evaluated under jax.jit)
# ------------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_bc_losses_by_hand():
    mse = jax.jit(bc.mse_loss)(jnp.array([[0.5, -0.5], [0.0, 1.0]]), jnp.zeros((2, 2)))
    assert float(mse) == pytest.approx((0.25 + 0.25 + 0.0 + 1.0) / 4)  # mean over batch and action dims
    # log N(1; 0, 1) = -0.5 - 0.5 log(2 pi) = -1.4189385 per dimension, summed over dimensions
    loglik = jax.jit(bc.gaussian_log_likelihood)(jnp.zeros((1, 2)), jnp.zeros((1, 2)), jnp.ones((1, 2)))
    assert float(loglik[0]) == pytest.approx(2 * -1.4189385, abs=1e-6)
    # log N(0.5; 0.2, 0.5^2) = -0.5 (0.6)^2 - log 0.5 - 0.5 log(2 pi) = -0.4189385 + 0.6931472 - 0.18
    loglik = jax.jit(bc.gaussian_log_likelihood)(jnp.array([[0.2]]), jnp.log(jnp.array([[0.5]])), jnp.array([[0.5]]))
    assert float(loglik[0]) == pytest.approx(-0.18 + math.log(2.0) - 0.5 * math.log(2 * math.pi), abs=1e-6)
    nll = jax.jit(bc.nll_loss)(jnp.zeros((2, 1)), jnp.zeros((2, 1)), jnp.array([[1.0], [0.0]]))
    assert float(nll) == pytest.approx(0.5 * (1.4189385 + 0.9189385), abs=1e-6)


@pytest.mark.timeout(60)
def test_bc_gaussian_policy_fits_by_likelihood_and_acts_with_its_mean():
    config = bc.BCConfig(policy="gaussian", hidden_sizes=(8,), batch_size=8)
    batch = _hand_batch()
    learner = bc.init_learner(config, batch.obs, 1, jax.random.PRNGKey(0))
    step = jax.jit(lambda lrn: bc.learn(config, 1, lrn, batch, jax.random.PRNGKey(1), 0))
    after, metrics = step(learner)
    mean, log_std = bc.gaussian_actor(config, 1).apply(learner.actor_params, batch.obs)
    assert float(metrics["loss/actor"]) == pytest.approx(float(bc.nll_loss(mean, log_std, batch.action)), rel=1e-6)
    np.testing.assert_allclose(jax.jit(lambda lrn: bc.act(config, 1, lrn, batch.obs))(learner), mean)
    # a first Adam step moves log sigma by the learning rate (3e-4), up or down
    assert abs(float(after.actor_params["params"]["log_std"][0])) == pytest.approx(3e-4, rel=1e-3)


@pytest.mark.timeout(60)
def test_td3_bc_lambda_and_actor_loss_by_hand():
    q = jnp.array([1.0, -3.0])  # mean |Q| = 2 -> lambda = 2.5 / 2 = 1.25
    pi, data = jnp.array([[0.5], [0.0]]), jnp.zeros((2, 1))
    loss, lam = jax.jit(td3_bc.actor_objective)(q, pi, data, 2.5)
    assert float(lam) == pytest.approx(1.25)
    # -lambda mean(Q) + mean((pi - a)^2) = -1.25 * (-1) + (0.25 + 0) / 2
    assert float(loss) == pytest.approx(1.25 + 0.125)
    # lambda is a constant for the gradient: dL/dQ_i = -lambda / N, not the |Q| derivative too
    grad_q = jax.jit(jax.grad(lambda q: td3_bc.actor_objective(q, pi, data, 2.5)[0]))(q)
    np.testing.assert_allclose(grad_q, [-0.625, -0.625], rtol=1e-6)
    # TD target: r = 1, gamma = 0.99, min Qbar = 4 -> 4.96; a termination stops the bootstrap
    y = jax.jit(td3_bc.critic_target)(jnp.array([1.0, 1.0]), jnp.array([0.0, 1.0]), jnp.array([4.0, 4.0]), 0.99)
    np.testing.assert_allclose(y, [4.96, 1.0], rtol=1e-6)
    # target policy smoothing: the noise is clipped to +-0.5, then the action to [-1, 1]
    smoothed = jax.jit(td3_bc.smoothed_target_action)(jnp.array([[0.8], [0.0], [-0.8]]), jax.random.PRNGKey(0), 100.0, 0.5)
    for before, after in zip([0.8, 0.0, -0.8], np.asarray(smoothed)[:, 0], strict=True):
        assert np.isclose(after, np.clip(before + 0.5, -1, 1)) or np.isclose(after, np.clip(before - 0.5, -1, 1))
    unsmoothed = jax.jit(td3_bc.smoothed_target_action)(jnp.array([[0.8]]), jax.random.PRNGKey(0), 0.0, 0.5)
    assert float(unsmoothed[0, 0]) == pytest.approx(0.8)


@pytest.mark.timeout(120)
def test_td3_bc_updates_actor_and_targets_every_second_step():
    config = td3_bc.TD3BCConfig(hidden_sizes=(8,), batch_size=8)
    batch = _hand_batch()
    learner = td3_bc.init_learner(config, batch.obs, 1, jax.random.PRNGKey(1))
    step = jax.jit(lambda lrn, s: td3_bc.learn(config, 1, lrn, batch, jax.random.PRNGKey(2), s))
    first, metrics = step(learner, 0)  # step + 1 = 1: critics only
    second, _ = step(first, 1)  # step + 1 = 2: actor and targets too
    same = lambda a, b: all(bool(jnp.array_equal(x, y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))  # noqa: E731
    assert not same(first.critic_params, learner.critic_params)
    assert same(first.actor_params, learner.actor_params)
    assert same(first.target_actor_params, learner.target_actor_params) and same(first.target_critic_params, learner.target_critic_params)
    assert not same(second.actor_params, first.actor_params)
    assert not same(second.target_actor_params, first.target_actor_params)
    # Polyak with tau = 0.005: target = 0.995 target + 0.005 online
    expected = jax.tree.map(lambda t, o: 0.995 * t + 0.005 * o, first.target_critic_params, second.critic_params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), second.target_critic_params, expected)
    assert float(metrics["td3_bc/lambda"]) > 0 and np.isfinite(float(metrics["loss/actor"]))


@pytest.mark.timeout(60)
def test_iql_expectile_loss_and_advantage_weights_by_hand():
    loss = jax.jit(iql.expectile_loss)(jnp.array([2.0, -2.0, 0.0]), 0.7)
    np.testing.assert_allclose(loss, [0.7 * 4, 0.3 * 4, 0.0], rtol=1e-6)  # |tau - 1(u < 0)| u^2
    # The tau-expectile of {0, 1} solves tau (1 - v) = (1 - tau) v: v = tau; the loss is flat there.
    grad = jax.jit(jax.grad(lambda v: jnp.mean(iql.expectile_loss(jnp.array([0.0, 1.0]) - v, 0.7))))(jnp.float32(0.7))
    assert abs(float(grad)) < 1e-6
    assert float(jax.jit(jax.grad(lambda v: jnp.mean(iql.expectile_loss(jnp.array([0.0, 1.0]) - v, 0.7))))(jnp.float32(0.5))) < 0
    # exp(beta A) with beta = 3: A = 0, 1, 2 -> 1, e^3 = 20.0855, e^6 = 403.4 clipped to 100
    w = jax.jit(iql.advantage_weights)(jnp.array([0.0, 1.0, 2.0]), jnp.zeros(3), 3.0, 100.0)
    np.testing.assert_allclose(w, [1.0, math.exp(3.0), 100.0], rtol=1e-5)
    # the weights are constants for the gradient
    assert float(jax.jit(jax.grad(lambda q: jnp.sum(iql.advantage_weights(q, 0.0, 3.0, 100.0))))(jnp.float32(1.0))) == 0.0
    # y = r + gamma (1 - term) V(s')
    y = jax.jit(iql.critic_target)(jnp.array([1.0, 1.0]), jnp.array([0.0, 1.0]), jnp.array([2.0, 2.0]), 0.99)
    np.testing.assert_allclose(y, [2.98, 1.0], rtol=1e-6)
    # the actor's cosine schedule over total_steps
    config = iql.IQLConfig(total_steps=1_000)
    lr = jax.jit(lambda s: iql.actor_learning_rate(config, s))
    np.testing.assert_allclose([float(lr(0)), float(lr(500)), float(lr(1_000)), float(lr(2_000))], [3e-4, 1.5e-4, 0.0, 0.0], atol=1e-10)
    assert iql.actor_learning_rate(config.override(actor_lr_schedule="constant"), 500) == pytest.approx(3e-4)


@pytest.mark.timeout(60)
def test_iql_actor_loss_is_the_weighted_log_likelihood():
    config = iql.IQLConfig(hidden_sizes=(4,))
    actor = bc.gaussian_actor(config, 1)
    obs, action = jnp.zeros((2, 3)), jnp.array([[0.3], [-0.2]])
    params = actor.init(jax.random.PRNGKey(0), obs)
    mean, log_std = actor.apply(params, obs)
    assert float(log_std[0, 0]) == 0.0  # sigma = 1 at the start
    weights = jnp.array([2.0, 0.5])
    loss = jax.jit(lambda p: iql.actor_loss(p, actor, obs, action, weights))(params)
    by_hand = -np.mean(np.asarray(weights) * (-0.5 * (np.asarray(action - mean)[:, 0]) ** 2 - 0.5 * math.log(2 * math.pi)))
    assert float(loss) == pytest.approx(by_hand, rel=1e-5)


@pytest.mark.timeout(60)
def test_iql_reward_normalisation_uses_the_return_spread():
    rows = 6  # two episodes of three steps: returns -3 and -9 (spread 6)
    dataset = from_arrays({
        "observations": np.zeros((rows, 3), np.float32), "actions": np.zeros((rows, 1), np.float32),
        "rewards": np.array([-1, -1, -1, -3, -3, -3], np.float32), "next_observations": np.zeros((rows, 3), np.float32),
        "terminals": np.zeros(rows, bool), "timeouts": np.array([0, 0, 1, 0, 0, 1], bool),
    })
    assert iql.reward_scale(dataset) == pytest.approx(1000.0 / 6.0)
    agent = iql.agent(dataset, config=iql.IQLConfig())
    np.testing.assert_allclose(agent.data.reward, np.asarray(dataset.rewards) * 1000.0 / 6.0, rtol=1e-6)
    assert bc.agent(dataset).reward_scale == 1.0  # BC never scales rewards
    assert hasattr(agent, "q_estimate") and not hasattr(bc.agent(dataset), "q_estimate")  # BC has no critic
    flat = dataset._replace(rewards=np.full(rows, -1.0, np.float32))  # no spread: rewards kept as they are
    assert iql.reward_scale(flat) == 1.0


@pytest.mark.timeout(60)
def test_configs_presets_and_refusals():
    config = td3_bc.TD3BCConfig()
    assert (config.alpha, config.policy_noise, config.noise_clip, config.policy_delay) == (2.5, 0.2, 0.5, 2)
    assert (config.tau, config.gamma, config.actor_lr, config.critic_lr, config.batch_size) == (0.005, 0.99, 3e-4, 3e-4, 256)
    assert config.hidden_sizes == (256, 256) and config.normalize_states and config.step_unit == "gradient steps"
    config = iql.IQLConfig()
    assert (config.expectile, config.temperature, config.max_weight, config.actor_lr_schedule) == (0.7, 3.0, 100.0, "cosine")
    assert bc.BCConfig().policy == "deterministic"
    for name, module in MODULES.items():
        assert AGENTS[name] == module.__name__ and get_agent(name) is module
        assert module.PRESETS["paper"]["total_steps"] == 1_000_000
        for values in module.PRESETS.values():
            module.Config().override(**{k: v for k, v in values.items() if not k.startswith("_")})
        with pytest.raises(ConfigError, match="--dataset"):
            module.check_env(None, None, None)
        with pytest.raises(ConfigError, match="num_envs"):
            module.Config(num_envs=2).validate()
    with pytest.raises(ConfigError, match="expectile"):
        iql.IQLConfig(expectile=1.0).validate()


# ------------------------------------------------------------------------------------------
# A medium Pendulum dataset, and learning from it
# ------------------------------------------------------------------------------------------
def _controller(obs):
    """Energy pumping away from the top, PD near it: about -150 per episode on its own."""
    cos, sin, velocity = obs[..., 0], obs[..., 1], obs[..., 2]
    angle = jnp.arctan2(sin, cos)
    energy = 0.5 * velocity**2 + 15.0 * (cos - 1.0)  # 0 at rest at the top (g = 10, m = l = 1)
    pump = jnp.sign(-velocity * energy + 1e-6)
    hold = -(10.0 * angle + 2.0 * velocity) / 2.0  # torque / max torque 2
    return jnp.clip(jnp.where(cos > 0.85, hold, pump), -1.0, 1.0)[..., None]


def medium_pendulum(key, episodes=50, noise=0.3, random_fraction=0.5):
    env, params = rlx.envs.make(ENV)
    venv = rlx.envs.make_vec_env(env, params, episodes)
    steps = rlx.envs.episode_limit(env, params)

    @jax.jit
    def collect(key):
        k_reset, k_steps = jax.random.split(key)
        obs, state = venv.reset(k_reset, params)

        def step(carry, key):
            obs, state = carry
            k_noise, k_pick, k_random, k_env = jax.random.split(key, 4)
            action = _controller(obs) + noise * jax.random.normal(k_noise, (episodes, 1))
            random_action = jax.random.uniform(k_random, (episodes, 1), minval=-1.0, maxval=1.0)
            action = jnp.clip(jnp.where(jax.random.uniform(k_pick, (episodes, 1)) < random_fraction, random_action, action), -1.0, 1.0)
            next_obs, state, reward, terminated, truncated, info = venv.step(k_env, state, action, params)
            return (next_obs, state), (obs, action, reward, info["final_observation"], terminated, truncated)

        return jax.lax.scan(step, (obs, state), jax.random.split(k_steps, steps))[1]

    columns = [np.asarray(x).swapaxes(0, 1).reshape((-1,) + x.shape[2:]) for x in collect(key)]  # episode after episode
    keys = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")
    return from_arrays(dict(zip(keys, columns, strict=True)))


@pytest.fixture(scope="module")
def medium():
    dataset = medium_pendulum(jax.random.PRNGKey(0))
    behaviour = float(np.mean(episode_returns(dataset)))
    info = DatasetInfo(env=ENV, kind="medium", size=dataset.size, policy_return=behaviour, random_return=-1200.0, expert_return=-150.0)
    return dataset, info, behaviour


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", ["bc", "td3_bc", "iql"])
def test_learns_from_medium_pendulum(medium, name):
    """Every agent reaches the behaviour policy's return, and its evaluations count gradient steps.
    BC fits the data's mean action (half the controller's torque: random actions average 0),
    which swings up on its own; TD3+BC and IQL learn a Q function on the same data."""
    dataset, info, behaviour = medium
    assert -700 < behaviour < -450, behaviour
    env, env_params = rlx.envs.make(ENV)
    module = MODULES[name]
    config = module.Config(total_steps=LEARNING_STEPS, **SMALL, **FAST[name])
    agent = module.agent(dataset, config=config, info=info, env=ENV)
    keys = jax.random.split(jax.random.PRNGKey(1), SEEDS)
    metrics = jax.device_get(jax.jit(jax.vmap(make_train(agent, config, env, env_params)))(keys).metrics)
    returns = metrics["eval/return_mean"]  # (seeds, evaluations)
    np.testing.assert_array_equal(metrics["step"][0], np.arange(1, 6) * 1_000)
    expected = 100 * (returns - info.random_return) / (info.expert_return - info.random_return)
    np.testing.assert_allclose(metrics["eval/normalized_score"], expected, rtol=1e-4, atol=1e-3)
    assert np.all(np.isfinite(metrics["loss/actor"]))
    final = returns[:, -2:].mean(axis=1)  # per seed: the last two evaluations
    print(f"{name}: returns per seed {returns.round(0).tolist()}; final {final.round(0).tolist()}; behaviour {behaviour:.0f}")
    assert np.all(final > behaviour), f"{name} {returns.round(0)} vs behaviour {behaviour:.0f}"


@pytest.mark.timeout(120)
def test_agent_refuses_a_config_it_was_not_built_for(medium):
    dataset, info, _ = medium
    env, env_params = rlx.envs.make(ENV)
    agent = td3_bc.agent(dataset, config=td3_bc.TD3BCConfig())
    with pytest.raises(ConfigError, match="normalize_states"):
        make_train(agent, td3_bc.TD3BCConfig(normalize_states=False), env, env_params)
    with pytest.raises(ConfigError, match="needs a TD3BCConfig"):
        make_train(agent, iql.IQLConfig(), env, env_params)
    other, other_params = rlx.envs.make("gymnax/MountainCarContinuous-v0")
    with pytest.raises(ConfigError, match="observations of size 3"):
        make_train(agent, td3_bc.TD3BCConfig(), other, other_params)
    with pytest.raises(ConfigError, match=r"\[-1, 1\]"):
        bc.agent(dataset._replace(actions=np.asarray(dataset.actions) * 2.0))
    # the policy sees what training saw: (s - mean) / (std + 1e-3) of the dataset
    obs = np.asarray(dataset.observations)
    np.testing.assert_allclose(agent.obs_std, obs.std(axis=0) + offline.STATE_STD_EPS, rtol=1e-5)
    np.testing.assert_allclose(agent.normalize(jnp.asarray(obs[:4])), np.asarray(agent.data.obs[:4]), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------
# The command line: `rlx train td3_bc --dataset PATH`, `rlx sweep iql --dataset PATH`
# ------------------------------------------------------------------------------------------
TINY_FLAGS = [
    "--env", ENV, "--env-kwarg", "max_steps_in_episode=50", "--eval-episodes", "2", "--batch-size", "32",
    "--hidden-sizes", "16", "--no-progress",
]


@pytest.fixture(scope="module")
def dataset_folder(medium, tmp_path_factory):
    from rlx.buffers.dataset import save

    dataset, info, _ = medium
    return save(tmp_path_factory.mktemp("data") / "medium", dataset, info)


@pytest.mark.timeout(300)
def test_rlx_train_td3_bc_from_a_dataset_folder(medium, dataset_folder, tmp_path, capsys):
    from rlx.cli import main
    from rlx.run.checkpoint import bind_inputs, load_run_spec

    dataset, _, _ = medium
    folder = dataset_folder
    out = tmp_path / "run"
    argv = ["train", "td3_bc", "--dataset", str(folder), "--total-steps", "200", "--eval-every", "100", *TINY_FLAGS, "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step_unit"] == "gradient steps" and summary["gradient_steps_per_seed"] == 200
    assert np.isfinite(summary["final_return_mean"])
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [100, 200] and "td3_bc/lambda" in records[0]
    run_config = json.loads((out / "config.json").read_text())
    assert run_config["agent_inputs"] == {"dataset": str(folder.resolve())}  # no dynamics model to keep
    # a resume builds the agent again from the dataset alone
    rebuilt = bind_inputs(load_run_spec(out)).agent
    assert isinstance(rebuilt, offline.DatasetAgent) and rebuilt.NAME == "td3_bc" and rebuilt.size == dataset.size
    # without --dataset: refused, naming the flag
    capsys.readouterr()
    assert main(["train", "iql", "--env", ENV, "--no-progress", "--out", str(tmp_path / "never")]) == 2
    assert "--dataset" in capsys.readouterr().err


@pytest.mark.timeout(300)
def test_rlx_sweep_iql_from_a_dataset_folder(dataset_folder, tmp_path, capsys):
    from rlx.cli import main

    out = tmp_path / "sweep"
    argv = [
        "sweep", "iql", "--dataset", str(dataset_folder), "--set", "expectile=0.7,0.9", "--total-steps", "100",
        "--eval-every", "100", *TINY_FLAGS, "--out", str(out),
    ]
    assert main(argv) == 0
    info = json.loads((out / "sweep.json").read_text())
    assert info["agent"] == "iql" and info["agent_inputs"] == {"dataset": str(dataset_folder.resolve())}
    assert info["schedule"]["step_unit"] == "gradient steps"
    assert "expectile" in capsys.readouterr().out


@pytest.mark.timeout(60)
def test_from_inputs_needs_no_dynamics_model(dataset_folder):
    agent = bc.from_inputs(bc.BCConfig(), dataset=str(dataset_folder), env=ENV, seed=0)  # a model-free agent's inputs
    assert isinstance(agent, offline.DatasetAgent) and agent.random_return == -1200.0
    with pytest.raises(TypeError, match="dynamics"):  # no dynamics model to give
        bc.from_inputs(bc.BCConfig(), dataset=str(dataset_folder), dynamics=str(dataset_folder))
