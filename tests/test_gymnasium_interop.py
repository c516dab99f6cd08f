"""Gymnasium interop: our envs pass Gymnasium's own env checker behind `to_gymnasium`, seeding
is reproducible, an ending step returns the episode's true last observation, and a trained rlx
policy can be evaluated on a Gymnasium env with its actions mapped as training saw them."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

gymnasium = pytest.importorskip("gymnasium")

import rlx.envs as rlx_envs  # noqa: E402
from rlx.run.gymnasium_interop import evaluate_on_gymnasium, space_to_gymnasium, to_gymnasium  # noqa: E402

pytestmark = pytest.mark.timeout(180)


@pytest.mark.parametrize("name, render_mode", [
    ("gymnax/Pendulum-v1", "rgb_array"),
    ("gymnax/CartPole-v1", None),
    ("rlx/KeyDoor-v0", "ansi"),
])
def test_gymnasiums_env_checker_passes(name, render_mode):
    from gymnasium.utils.env_checker import check_env

    env = to_gymnasium(*rlx_envs.make(name), render_mode=render_mode)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # advice (e.g. "use a [-1, 1] action space") is not failure
        check_env(env, skip_render_check=render_mode is None)
    if render_mode == "rgb_array":
        env.reset(seed=0)
        assert env.render().shape == (352, 320, 3)
    elif render_mode == "ansi":
        env.reset(seed=0)
        assert "keys held" in env.render()


def test_spaces_convert_exactly():
    env, params = rlx_envs.make("gymnax/Pendulum-v1")
    obs_space = space_to_gymnasium(env.observation_space(params))
    assert isinstance(obs_space, gymnasium.spaces.Box) and obs_space.shape == (3,)
    np.testing.assert_allclose(obs_space.high, [1.0, 1.0, 8.0])
    assert space_to_gymnasium(rlx_envs.make("gymnax/CartPole-v1")[0].action_space(None)) == gymnasium.spaces.Discrete(2)


def test_seeding_reproduces_episodes_and_a_final_step_returns_the_last_observation():
    env = to_gymnasium(*rlx_envs.make("gymnax/CartPole-v1"))
    first, _ = env.reset(seed=5)
    np.testing.assert_array_equal(env.reset(seed=5)[0], first)
    assert not np.array_equal(env.reset(seed=6)[0], first)
    env.reset(seed=5)
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated) and steps < 200:  # always push right: the pole falls soon
        obs, reward, terminated, truncated, info = env.step(1)
        steps += 1
        assert reward == 1.0
    assert terminated and not truncated and steps < 100
    # The observation that ended the episode (pole beyond 12 degrees or cart off the track),
    # not the first one of the next episode.
    assert abs(obs[2]) > 0.2094 or abs(obs[0]) > 2.4
    assert bool(info["terminated"]) and not bool(info["truncated"])


def test_bad_actions_are_refused_naming_the_space():
    env = to_gymnasium(*rlx_envs.make("gymnax/CartPole-v1"))
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action 7 is outside Discrete\(2\)"):
        env.step(7)
    with pytest.raises(ValueError, match=r"a Discrete\(2\) action is one integer"):
        env.step(0.5)
    box = to_gymnasium(*rlx_envs.make("gymnax/Pendulum-v1"))
    box.reset(seed=0)
    with pytest.raises(ValueError, match=r"a Box action has shape \(1,\)"):
        box.step(np.zeros(3))
    with pytest.raises(gymnasium.error.ResetNeeded):
        to_gymnasium(*rlx_envs.make("gymnax/CartPole-v1")).step(0)


class RecordActions(gymnasium.Wrapper):
    def __init__(self, env):
        super().__init__(env)
        self.actions = []

    def step(self, action):
        self.actions.append(np.array(action))
        return self.env.step(action)


def test_evaluate_on_gymnasium_maps_actions_as_training_saw_them():
    gym_env = RecordActions(gymnasium.make("Pendulum-v1"))  # Box [-2, 2]; rlx policies act in [-1, 1]
    returns = evaluate_on_gymnasium(lambda obs, key: jnp.full((obs.shape[0], 1), 0.5), gym_env, episodes=2, seed=3)
    assert returns.shape == (2,) and np.all(returns < 0)
    assert len(gym_env.actions) == 400  # two full episodes of Gymnasium's 200-step limit
    np.testing.assert_allclose(np.concatenate(gym_env.actions), 1.0)  # 0.5 of the way to +2

    # The same seed gives the same returns; a Discrete env receives integers.
    again = evaluate_on_gymnasium(lambda obs, key: jnp.full((obs.shape[0], 1), 0.5), gymnasium.make("Pendulum-v1"), 2, seed=3)
    np.testing.assert_allclose(again, returns)
    cart = RecordActions(gymnasium.make("CartPole-v1"))
    evaluate_on_gymnasium(lambda obs, key: jnp.ones(obs.shape[0], jnp.int32), cart, episodes=1)
    assert all(a.dtype.kind == "i" and int(a) == 1 for a in cart.actions)


def test_rlx_and_gymnasium_pendulum_agree_step_by_step():
    """Our wrapper of gymnax's Pendulum and Gymnasium's Pendulum started in the same state give
    the same rewards under the same torques (the physics is the same)."""
    ours = to_gymnasium(*rlx_envs.make("gymnax/Pendulum-v1"))
    theirs = gymnasium.make("Pendulum-v1").unwrapped
    ours.reset(seed=0)
    theirs.reset(seed=0)
    state = jax.device_get(ours._state)
    theirs.state = np.array([float(state.theta), float(state.theta_dot)])
    for torque in np.linspace(-2.0, 2.0, 9):
        _, r_ours, *_ = ours.step(np.array([torque], np.float32))
        _, r_theirs, *_ = theirs.step(np.array([torque], np.float32))
        assert r_ours == pytest.approx(r_theirs, rel=1e-4, abs=1e-4)
