"""MOREC: known values of the dynamics reward and the filter (algorithms.md 4.5), the filter's
choice by hand, and on the refrigerator with known dynamics: the learned dynamics reward ranks
true transitions above perturbed ones on state-actions absent from the data, filtered rollouts
are closer to the true dynamics than unfiltered ones, and MOREC-MOPO does at least as well as
MOPO on the same seeds and learns: it beats the data's own controller and random actions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx.agents import model_based, mopo, morec
from rlx.core.config import ConfigError
from rlx.envs.synthetic_dynamics import behaviour_dataset, controller, make_fridge, true_next_mean
from rlx.models import dynamics_reward as drw
from rlx.models import ensemble as ens
from rlx.models.ensemble import Prediction
from rlx.models.filter import FilterConfig, filter_step, make_filter, select
from rlx.models.rollout import rollout, sample_elite
from rlx.run import make_train
from rlx.run.train import evaluate

REWARD = drw.DynamicsRewardConfig(
    iterations=100, keep_last=100, keep_every=5, hidden_sizes=(64, 64), generator_hidden_sizes=(64, 64)
)
ENSEMBLE = ens.EnsembleConfig(
    ensemble_size=5, num_elites=3, hidden_sizes=(32, 32), weight_decays=(2.5e-5, 5e-5, 1e-4),
    min_steps_per_epoch=100, max_epochs=20,
)


# ------------------------------------------------------------------------------------------
# Known values
# ------------------------------------------------------------------------------------------
def test_reward_form_known_values():
    r = drw.reward_from_probabilities
    assert float(r(jnp.array([0.5]))) == pytest.approx(0.693147, abs=1e-5)
    assert abs(float(r(jnp.array([0.0])))) < 1e-6
    # the average is over probabilities, not logits: (0.1, 0.5) -> 0.3 -> 0.3567 (logit mean: 0.2877)
    assert float(r(jnp.array([0.1, 0.5]))) == pytest.approx(-np.log(0.7), abs=1e-5)
    assert float(r(jnp.array([0.1, 0.5]))) == pytest.approx(0.3567, abs=1e-4)
    # clip to [0, c] before the mean
    assert float(r(jnp.array([0.9, 0.1]), d_clip=0.5)) == pytest.approx(-np.log(1 - 0.3), abs=1e-5)
    # rescaled logits: each D_t in [sigmoid(-1), sigmoid(1)] -> r_D in [softplus(-1), softplus(1)]
    # = [0.31326, 1.31326] (algorithms.md 4.5 rounds the upper end to 1.3130)
    p = drw.rescaled_probability(jnp.array([-100.0, 0.0, 2.0, 100.0]), jnp.float32(0.0), jnp.float32(2.0))
    np.testing.assert_allclose(p, jax.nn.sigmoid(jnp.array([-1.0, -1.0, 1.0, 1.0])), rtol=1e-6)
    assert float(r(p[:1])) == pytest.approx(0.313262, abs=1e-5)
    assert float(r(p[-1:])) == pytest.approx(1.313262, abs=1e-5)
    # the terminal threshold 0.6: Dbar 0.45 -> 0.5978 (terminal), 0.46 -> 0.6162 (not)
    assert float(r(jnp.array([0.45]))) == pytest.approx(0.5978, abs=1e-4)
    assert float(r(jnp.array([0.46]))) == pytest.approx(0.6162, abs=1e-4)


def test_selection_known_values():
    scores = jnp.array([0.4, 0.9, 0.7])[:, None]  # (M, B = 1)
    assert int(select(jax.random.PRNGKey(0), scores, "argmax")[0]) == 1
    np.testing.assert_allclose(jax.nn.softmax(scores[:, 0] / 0.1), [0.0059, 0.8756, 0.1185], atol=1e-4)
    draws = select(jax.random.PRNGKey(1), jnp.tile(scores, (1, 20_000)), "softmax", 0.1)
    np.testing.assert_allclose(np.bincount(np.asarray(draws), minlength=3) / 20_000, [0.0059, 0.8756, 0.1185], atol=0.01)


def _prediction(means, rewards, std=1e-6):
    """Two branches, one member per entry of ``means`` (obs_dim 1), all members elites."""
    e = len(means)
    mean = jnp.asarray(means, jnp.float32).reshape(e, 1, 1).repeat(2, axis=1)
    return Prediction(
        obs=jnp.zeros((2, 1)), action=jnp.zeros((2, 1)), next_obs_mean=mean, next_obs_std=jnp.full_like(mean, std),
        reward_mean=jnp.asarray(rewards, jnp.float32)[:, None].repeat(2, axis=1),
        reward_std=jnp.full((e, 2), std), termination_prob=None, elites=jnp.arange(e, dtype=jnp.int32),
    )


def test_filter_keeps_the_argmax_candidate_and_cuts_low_reward():
    pred = _prediction([1.0, 3.0, 2.0], [10.0, 20.0, 40.0])
    config = FilterConfig(samples_per_elite=1)

    def near(target):  # a dynamics reward peaked at s' = target
        return lambda obs, action, next_obs: 1.3 - jnp.abs(next_obs[..., 0] - target)

    chosen, kept, scores = filter_step(jax.random.PRNGKey(0), pred, near(2.9), config)
    assert scores.shape == (3, 2)
    np.testing.assert_allclose(chosen.next_obs[:, 0], [3.0, 3.0], atol=1e-4)
    np.testing.assert_allclose(chosen.reward, [20.0, 20.0], atol=1e-4)  # the reward of the same candidate
    np.testing.assert_allclose(kept, [1.2, 1.2], atol=1e-4)
    assert not np.any(chosen.terminated)
    chosen, kept, _ = filter_step(jax.random.PRNGKey(0), pred, near(1.2), config)
    np.testing.assert_allclose(chosen.next_obs[:, 0], [1.0, 1.0], atol=1e-4)
    # best candidate's r_D = 1.3 - 4 < 0.6: terminal; the rule switched off: not terminal
    chosen, _, _ = filter_step(jax.random.PRNGKey(0), pred, near(7.0), config)
    assert np.all(chosen.terminated)
    chosen, _, _ = filter_step(jax.random.PRNGKey(0), pred, near(7.0), FilterConfig(samples_per_elite=1, terminal_reward=0.0))
    assert not np.any(chosen.terminated)
    # 2 samples per elite: M = 6 candidates, only elites sample
    pred = pred._replace(elites=jnp.array([0, 2], jnp.int32))
    chosen, _, scores = filter_step(jax.random.PRNGKey(0), pred, near(2.9), FilterConfig())
    assert scores.shape == (4, 2)
    np.testing.assert_allclose(chosen.next_obs[:, 0], [2.0, 2.0], atol=1e-4)
    np.testing.assert_allclose(chosen.reward, [25.0, 25.0], atol=1e-4)  # clipped to +-25


def test_bad_settings_are_refused_by_name():
    with pytest.raises(ConfigError, match="selection"):
        FilterConfig(selection="max").validate()
    with pytest.raises(ConfigError, match="keep_every"):
        drw.DynamicsRewardConfig(iterations=30, keep_last=30, keep_every=7).validate()
    with pytest.raises(ConfigError, match="keep_last"):
        drw.DynamicsRewardConfig(iterations=10, keep_last=20, keep_every=10).validate()
    with pytest.raises(ConfigError, match="base"):
        morec.agent("sac", None)
    assert morec.mopo_config().rollout_length == 100 and morec.mopo_config().rollout_batch_size == 2_000
    assert morec.mobile_config().deterministic_backup is False and morec.mobile_config().init_alpha == 1.0  # log_alpha = 0, as the official code with auto alpha
    assert morec.reward_config("mopo").num_discriminators == 40
    assert morec.reward_config("mobile").num_discriminators == 10


# ------------------------------------------------------------------------------------------
# The refrigerator: data from one controller, a dynamics reward and an ensemble fitted to it
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fridge():
    dataset = behaviour_dataset(jax.random.PRNGKey(0), episodes=40, action_noise=0.3)
    dr, report = drw.train_dynamics_reward(dataset, REWARD, jax.random.PRNGKey(1))
    dynamics, _ = ens.train_dynamics(dataset, ENSEMBLE, jax.random.PRNGKey(2), termination="never", progress=False)
    return dataset, dr, report, dynamics


@pytest.mark.timeout(300)
def test_every_kth_discriminator_is_a_slice_of_the_history(fridge):
    """``every(4)`` keeps discriminators 0, 4, 8, ... of every parameter and bound, and nothing else."""
    _, dr, _, _ = fridge
    thin = dr.every(4)
    assert thin.num_discriminators == -(-dr.num_discriminators // 4)
    for a, b in zip(jax.tree.leaves(dr.params), jax.tree.leaves(thin.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a)[::4], np.asarray(b))
    np.testing.assert_array_equal(np.asarray(dr.high)[::4], np.asarray(thin.high))
    np.testing.assert_array_equal(np.asarray(dr.obs_mean), np.asarray(thin.obs_mean))
    assert dr.every(1).num_discriminators == dr.num_discriminators
    with pytest.raises(ValueError, match="k must be >= 1"):
        dr.every(0)


@pytest.mark.timeout(300)
def test_dynamics_reward_ranks_true_above_perturbed_on_unseen_state_actions(fridge):
    dataset, dr, report, _ = fridge
    assert dr.num_discriminators == 20 and np.all(np.isfinite(report.discriminator_loss))
    k_x, k_sign = jax.random.split(jax.random.PRNGKey(5))
    x = jax.random.uniform(k_x, (2_000, 1), minval=0.7, maxval=1.8)
    a_data = controller(x, k_x, action_noise=0.0)
    a_unseen = -a_data  # the opposite cooling: absent from the data where |a_unseen - a_data| > 1
    unseen = np.asarray(jnp.abs(a_unseen - a_data)[:, 0] > 1.0)
    assert unseen.sum() > 200
    sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, (2_000, 1)), 1.0, -1.0)
    for a, rows, floor in ((a_data, slice(None), 0.95), (a_unseen, unseen, 0.6)):
        true = true_next_mean(x, a)
        r_true = dynamics_reward_np(dr, x, a, true)[rows]
        r_off = dynamics_reward_np(dr, x, a, true + 0.1 * sign)[rows]  # 5 noise stds off
        accuracy = float(np.mean(r_true > r_off))
        assert accuracy > floor, f"ranked {accuracy:.2f} of the pairs right (floor {floor})"
        assert r_true.mean() > r_off.mean()


def dynamics_reward_np(dr, obs, action, next_obs):
    return np.asarray(drw.dynamics_reward(dr, obs, action, next_obs))


@pytest.mark.timeout(300)
def test_filtered_rollouts_are_closer_to_the_true_dynamics(fridge):
    dataset, dr, _, dynamics = fridge
    policy = lambda obs, key: controller(obs, key, set_point=0.4, action_noise=0.3)  # noqa: E731  another policy
    start = dataset.observations[:: 10][:200]
    errors = {}
    for name, fn in (("filtered", make_filter(dr, FilterConfig(terminal_reward=0.0))), ("unfiltered", sample_elite)):
        out = jax.jit(lambda k, fn=fn: rollout(k, dynamics, policy, start, 20, fn))(jax.random.PRNGKey(3))
        t = out.transitions
        errors[name] = float(jnp.mean(jnp.abs(t.next_obs - true_next_mean(t.obs, t.action))))
    assert errors["filtered"] < errors["unfiltered"], errors
    print("one-step error along 20-step rollouts", errors)


@pytest.mark.timeout(600)
def test_morec_mopo_learns_and_does_at_least_as_well_as_mopo_on_the_same_seeds(fridge):
    dataset, dr, _, dynamics = fridge
    env, env_params = make_fridge()
    small = dict(
        total_steps=2_000, eval_every=1_000, rollout_freq=250, rollout_batch_size=200, hidden_sizes=(32, 32),
        eval_episodes=5, ensemble_size=5, num_elites=3, model_hidden_sizes=(32, 32), penalty_coef=1.0,
    )
    keys = jax.random.split(jax.random.PRNGKey(7), 2)
    finals = {}
    for name, config, agent in (
        ("mopo", mopo.MOPOConfig(rollout_length=5, **small), mopo.agent(dataset, dynamics)),
        ("morec_mopo", morec.mopo_config(rollout_length=20, **small), morec.agent("mopo", dataset, dynamics, dynamics_reward=dr)),
    ):
        assert isinstance(agent, model_based.OfflineAgent) and getattr(agent.algorithm, "base", agent.algorithm) is mopo
        out = jax.jit(jax.vmap(make_train(agent, config, env, env_params)))(keys)
        returns = np.asarray(out.metrics["eval/return_mean"])  # (seeds, evaluations)
        finals[name] = returns[:, -1]
    print("final return per seed", finals)
    assert finals["morec_mopo"].mean() >= finals["mopo"].mean() - 1.0, finals
    # Learning: above the data's own controller (the level of a perfect behaviour clone) and
    # uniformly random actions, evaluated on the same 4 C task.
    k_eval = jax.random.PRNGKey(11)
    behaviour = float(jnp.mean(evaluate(lambda o, k: controller(o, k, action_noise=0.0), env, env_params, k_eval, 10)))
    uniform = float(jnp.mean(evaluate(
        lambda o, k: jax.random.uniform(k, o.shape, minval=-1.0, maxval=1.0), env, env_params, k_eval, 10
    )))
    print(f"behaviour controller {behaviour:.1f}, random {uniform:.1f}")
    assert np.all(finals["morec_mopo"] > behaviour), (finals, behaviour)
    assert finals["morec_mopo"].mean() > max(behaviour, uniform) + 3.0, (finals, behaviour, uniform)


@pytest.mark.timeout(300)
def test_morec_mobile_beats_the_behaviour_controller_and_random(fridge):
    """MOREC-MOBILE's defaults (temperature from 1, entropy term in the target, softmax selection)
    with h = 20, 2000 gradient steps, 2 seeds. With the temperature from 0.1 instead, these seeds
    ended at -20.9 / -19.6, below the data's controller (-18.9) and random actions (-16.7)."""
    dataset, dr, _, dynamics = fridge
    env, env_params = make_fridge()
    config = morec.mobile_config(
        total_steps=2_000, eval_every=1_000, rollout_freq=250, rollout_batch_size=200, rollout_length=20,
        hidden_sizes=(32, 32), eval_episodes=5, ensemble_size=5, num_elites=3, model_hidden_sizes=(32, 32),
        penalty_coef=1.0,
    )
    agent = morec.agent("mobile", dataset, dynamics, dynamics_reward=dr)
    out = jax.jit(jax.vmap(make_train(agent, config, env, env_params)))(jax.random.split(jax.random.PRNGKey(7), 2))
    finals = np.asarray(out.metrics["eval/return_mean"])[:, -1]
    k_eval = jax.random.PRNGKey(11)
    behaviour = float(jnp.mean(evaluate(lambda o, k: controller(o, k, action_noise=0.0), env, env_params, k_eval, 10)))
    uniform = float(jnp.mean(evaluate(
        lambda o, k: jax.random.uniform(k, o.shape, minval=-1.0, maxval=1.0), env, env_params, k_eval, 10
    )))
    print(f"MOREC-MOBILE final returns {finals.round(1)}, behaviour controller {behaviour:.1f}, random {uniform:.1f}")
    assert np.all(finals > behaviour), (finals, behaviour)
    assert finals.mean() > max(behaviour, uniform) + 3.0, (finals, behaviour, uniform)


# ------------------------------------------------------------------------------------------
# The command line: `rlx train morec_mopo|morec_mobile --dataset PATH`
# ------------------------------------------------------------------------------------------
def test_morec_variants_are_registered_agents_with_their_own_configs_and_presets():
    from rlx.agents import get_agent

    for name, base in (("morec_mopo", mopo), ("morec_mobile", morec.mobile)):
        variant = get_agent(name)
        assert variant.NAME == name and variant.base is base
        assert issubclass(variant.Config, base.Config)  # every base field, MOREC's defaults
        assert variant.Config().rollout_length == 100 and variant.Config().filter_terminal_reward == pytest.approx(0.6)
        assert "paper" in variant.PRESETS and "hopper-medium" in variant.PRESETS
        with pytest.raises(ConfigError, match="--dataset"):
            variant.check_env(None, None, None)
    assert get_agent("morec_mobile").Config().filter_selection == "softmax"
    hopper = get_agent("morec_mopo").PRESETS["hopper-medium"]
    assert (hopper["penalty_coef"], hopper["filter_selection"]) == (15.0, "softmax")
    with pytest.raises(ConfigError, match="reward_keep_every"):
        morec.mopo_config(reward_keep_every=7).validate()


@pytest.mark.timeout(300)
def test_rlx_train_morec_mopo_from_a_dataset_folder(tmp_path, capsys):
    import json

    from rlx.buffers.dataset import Dataset, DatasetInfo, save
    from rlx.cli import main

    rng = np.random.default_rng(0)
    rows = 64
    obs = rng.normal(size=(rows, 3)).astype(np.float32)
    dataset = Dataset(
        observations=obs, actions=rng.uniform(-1, 1, size=(rows, 1)).astype(np.float32),
        rewards=rng.normal(size=rows).astype(np.float32), next_observations=obs + 0.1 * rng.normal(size=(rows, 3)).astype(np.float32),
        terminals=np.zeros(rows, bool), timeouts=np.zeros(rows, bool),
    )
    save(tmp_path / "data", dataset, DatasetInfo(env="gymnax/Pendulum-v1", kind="random", size=rows))
    tiny = [
        "--env", "gymnax/Pendulum-v1", "--env-kwarg", "max_steps_in_episode=20", "--dataset", str(tmp_path / "data"),
        "--total-steps", "16", "--eval-every", "8", "--rollout-freq", "8", "--rollout-batch-size", "8",
        "--rollout-length", "3", "--batch-size", "20", "--hidden-sizes", "8", "--ensemble-size", "3", "--num-elites", "2",
        "--model-hidden-sizes", "8", "--model-max-epochs", "1", "--model-min-steps-per-epoch", "1", "--eval-episodes", "1",
        "--reward-iterations", "2", "--reward-keep-last", "2", "--reward-keep-every", "1", "--no-progress",
    ]
    assert main(["train", "morec_mopo", *tiny[:-1], "--reward-keep-every", "3"]) == 2  # refused before training
    assert "reward_keep_every" in capsys.readouterr().err
    assert main(["train", "morec_mopo", "--env", "gymnax/Pendulum-v1", "--no-progress"]) == 2
    assert "--dataset" in capsys.readouterr().err
    out = tmp_path / "run"
    assert main(["train", "morec_mopo", *tiny, "--out", str(out)]) == 0
    info = json.loads((out / "config.json").read_text())
    assert info["agent"] == "morec_mopo"
    assert (info["config"]["rollout_length"], info["config"]["reward_keep_every"]) == (3, 1)
    # The trained dynamics model is kept in the run folder, so a resume rebuilds the same agent.
    assert info["agent_inputs"] == {
        "dataset": str((tmp_path / "data").resolve()), "dynamics": str((out / "dynamics").resolve()),
        "dynamics_reward": str((out / "dynamics_reward").resolve()),
    }
    saved = drw.load_dynamics_reward(out / "dynamics_reward")
    assert saved.num_discriminators == 2 and saved.hidden_sizes == (256, 256)
    capsys.readouterr()
    assert main(["train", "morec_mopo", "--resume", str(out), "--no-progress"]) == 0
    assert "nothing to resume" in capsys.readouterr().out
    assert main(["eval", str(out), "--episodes", "1"]) == 0  # the policy of the saved checkpoint
    assert "return" in capsys.readouterr().out
    assert main(["train", "morec_mopo", *tiny, "--out", str(out)]) == 2  # an occupied --out, refused before training
    assert "not empty" in capsys.readouterr().err


def test_every_problem_of_a_morec_run_is_named_at_once():
    dataset = behaviour_dataset(jax.random.PRNGKey(0), episodes=2, action_noise=0.3)
    wrong_size = drw.DynamicsReward(
        params={}, low=jnp.zeros(1), high=jnp.ones(1), obs_mean=jnp.zeros(7), obs_std=jnp.ones(7),
        action_mean=jnp.zeros(1), action_std=jnp.ones(1), delta_mean=jnp.zeros(7), delta_std=jnp.ones(7),
        d_clip=jnp.float32(1.0), hidden_sizes=(4,),
    )
    config = morec.mopo_config(reward_keep_every=7, eval_every=1_500)
    with pytest.raises(ConfigError) as err:
        morec.agent(
            "mopo", dataset, config=config, filter_config=FilterConfig(selection="max"),
            reward_config=drw.DynamicsRewardConfig(iterations=10, keep_last=20), dynamics_reward=wrong_size,
        )
    message = str(err.value)
    for part in ("reward_keep_every", "eval_every=1500", "selection", "keep_last=20", "observations of size 7"):
        assert part in message, (part, message)
    assert message.startswith("5 problems with the morec_mopo settings")  # config, filter, reward, size


def test_keep_every_defaults_say_where_they_come_from():
    for config in (morec.MORECMOPOConfig, morec.MORECMOBILEConfig):
        text = dict((name, help_text) for name, _, help_text, *_ in config.field_help())["reward_keep_every"]
        assert "10 for MOREC-MOPO" in text and "40 for MOREC-MOBILE" in text


@pytest.mark.timeout(300)
def test_dynamics_reward_training_shows_progress_without_changing_it(capsys):
    dataset = behaviour_dataset(jax.random.PRNGKey(0), episodes=2, action_noise=0.3)
    tiny = drw.DynamicsRewardConfig(
        iterations=6, keep_last=6, keep_every=3, batch_size=8, hidden_sizes=(4,), generator_hidden_sizes=(4,)
    )
    quiet, _ = drw.train_dynamics_reward(dataset, tiny, jax.random.PRNGKey(1), progress=False)
    assert "dynamics reward" not in capsys.readouterr().err
    shown, _ = drw.train_dynamics_reward(dataset, tiny, jax.random.PRNGKey(1), progress=True)
    err = capsys.readouterr().err
    assert "dynamics reward" in err and "6/6" in err, err
    for a, b in zip(jax.tree.leaves(quiet), jax.tree.leaves(shown), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
