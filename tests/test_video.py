"""Watching what was learned: the episode recorder, the frame drawers of every env we can draw,
the GIF / MP4 / HTML writers on tiny rollouts, the refusals (before any work) with their
messages, and the learning curve's 95 % interval."""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import rlx.envs as rlx_envs
from rlx.run import video
from rlx.run.plot import mean_confidence_interval, plot_learning_curve

pytestmark = pytest.mark.timeout(240)


def uniform_policy(space):
    if rlx_envs.is_continuous(space):
        return lambda obs, key: jax.random.uniform(key, (obs.shape[0], *space.shape), minval=-1.0, maxval=1.0)
    return lambda obs, key: jax.random.randint(key, (obs.shape[0],), 0, space.n)


@pytest.fixture(scope="module")
def pendulum_episode():
    env, params = rlx_envs.make("gymnax/Pendulum-v1")

    def policy(obs, key):  # +1 in the policy's [-1, 1] is the full torque, 2.0
        return jnp.ones((obs.shape[0], 1))

    return video.rollout(env, params, policy, jax.random.PRNGKey(0), max_steps=8)


def test_rollout_records_the_episode_through_trainings_wrappers(pendulum_episode):
    episode = pendulum_episode
    assert episode.length == 8 and len(episode.states) == 9  # the reset state and one per step
    assert not episode.terminated and not episode.truncated  # cut at max_steps
    np.testing.assert_allclose(episode.actions, 2.0)  # rescaled onto the Box's [-2, 2]
    np.testing.assert_allclose([float(s.last_u) for s in episode.states[1:]], 2.0)
    # Pendulum's reward at step t is -(theta^2 + 0.1 theta_dot^2 + 0.001 u^2) of the state before it.
    expected = [
        -(((float(s.theta) + np.pi) % (2 * np.pi) - np.pi) ** 2 + 0.1 * float(s.theta_dot) ** 2 + 0.001 * 4.0)
        for s in episode.states[:-1]
    ]
    np.testing.assert_allclose(episode.rewards, expected, rtol=1e-4, atol=1e-5)


def test_an_episode_that_terminates_ends_with_its_last_state():
    env, params = rlx_envs.make("gymnax/CartPole-v1")
    episode = video.rollout(env, params, lambda obs, key: jnp.ones(obs.shape[0], jnp.int32), jax.random.PRNGKey(1))
    assert episode.terminated and not episode.truncated and 5 <= episode.length < 60
    assert episode.episode_return == episode.length  # +1 per step
    last = episode.states[-1]  # the state the pole fell in, not the auto-reset one
    assert abs(float(last.theta)) > params.theta_threshold_radians or abs(float(last.x)) > params.x_threshold
    assert len(episode.states) == episode.length + 1


@pytest.mark.parametrize(
    "name",
    ["gymnax/Pendulum-v1", "gymnax/CartPole-v1", "gymnax/MountainCar-v0", "gymnax/MountainCarContinuous-v0",
     "gymnax/Acrobot-v1", "rlx/KeyDoor-v0", "rlx/Household-v0", "rlx/PointMaze-v0"],
)
def test_every_drawable_env_draws_a_frame_of_its_state(name):
    env, params = rlx_envs.make(name)
    _, state = env.reset(jax.random.PRNGKey(0), params)
    frame = video.frame_drawer(env)(jax.device_get(state), params, "step 0")
    assert frame.dtype == np.uint8 and frame.shape == (352, 320, 3)
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) >= 3  # background, caption and the scene


def test_keydoor_frame_shows_agent_key_and_goal_in_their_colours():
    env, params = rlx_envs.make("rlx/KeyDoor-v0")
    _, state = env.reset(jax.random.PRNGKey(3), params)
    frame = video.frame_drawer(env)(jax.device_get(state), params, "")
    colours = {tuple(c) for c in np.unique(frame.reshape(-1, 3), axis=0)}
    for rgb in video._KEYDOOR_COLORS:  # wall, locked door, key, goal, agent all visible
        assert tuple(rgb) in colours


def test_gif_has_one_frame_per_state(pendulum_episode, tmp_path):
    report = video.write_video(pendulum_episode, tmp_path / "p.gif", progress=False)
    assert report.frames == 9 and report.episode_length == 8
    with Image.open(tmp_path / "p.gif") as gif:
        assert gif.n_frames == 9 and gif.size == (320, 352)
        assert gif.info["duration"] == 50  # Pendulum's dt = 0.05 s: real time
    assert "9 frames, one episode of 8 steps (cut at the step limit)" in report.describe()


def test_mp4_has_one_frame_per_state(pendulum_episode, tmp_path):
    imageio = pytest.importorskip("imageio.v3")
    pytest.importorskip("imageio_ffmpeg")
    video.write_video(pendulum_episode, tmp_path / "p.mp4", progress=False)
    frames = imageio.imread(tmp_path / "p.mp4", plugin="FFMPEG")  # every frame, decoded
    assert frames.shape == (9, 352, 320, 3)


def test_html_of_a_gymnax_env_embeds_the_gif(pendulum_episode, tmp_path):
    video.write_video(pendulum_episode, tmp_path / "p.html", progress=False, title="sac")
    page = (tmp_path / "p.html").read_text()
    assert "<img src='data:image/gif;base64," in page and "8 steps" in page


def test_household_text_frames_and_user_render_frame(tmp_path):
    env, params = rlx_envs.make("rlx/Household-v0")
    episode = video.rollout(env, params, uniform_policy(env.action_space(params)), jax.random.PRNGKey(0), max_steps=3)
    assert video.write_video(episode, tmp_path / "h.gif", progress=False).frames == 4

    class Drawn:  # any env with render_frame(state, params) can be filmed
        def render_frame(self, state, params):
            return np.full((10, 20, 3), 7, np.uint8)

    frame = video.frame_drawer(Drawn())({}, None, "x")
    assert frame.shape == (352, 320, 3) and (frame == 7).any()


def test_brax_html_is_braxs_viewer(tmp_path):
    pytest.importorskip("brax")
    env, params = rlx_envs.make("brax/inverted_pendulum", episode_length=4)
    episode = video.rollout(env, params, uniform_policy(env.action_space(params)), jax.random.PRNGKey(0))
    assert episode.truncated and episode.length == 4
    report = video.write_video(episode, tmp_path / "b.html", progress=False)
    page = (tmp_path / "b.html").read_text()
    assert report.frames == 4 and "<html" in page.lower() and "viewer" in page.lower()


# ---- refusals, before any work -----------------------------------------------------------
def test_unknown_extension_is_refused():
    with pytest.raises(video.VideoError, match=r"'out.avi': the extension must be one of .gif, .mp4, .html"):
        video.check_video_path("out.avi")


def test_mp4_without_ffmpeg_suggests_a_gif(monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # as if not installed
    with pytest.raises(video.VideoError, match=r"needs imageio and imageio-ffmpeg .*--video out.gif"):
        video.check_video_path("out.mp4")


def test_an_env_nothing_can_draw_is_refused():
    env, _ = rlx_envs.make("gymnax/Catch-bsuite")
    with pytest.raises(video.VideoError, match="no way to draw Catch-bsuite: frames are drawn for gymnax Pendulum"):
        video.check_video_path("out.gif", env)


def test_brax_frames_without_opengl_suggest_html(monkeypatch):
    mujoco = pytest.importorskip("mujoco")
    pytest.importorskip("brax")

    def no_context(*args):
        raise RuntimeError("no OpenGL")

    monkeypatch.setattr(mujoco, "GLContext", no_context)
    env, _ = rlx_envs.make("brax/inverted_pendulum")
    with pytest.raises(video.VideoError, match=r"MUJOCO_GL=egl .*--video out.html"):
        video.check_video_path("out.gif", env)


def test_cli_eval_refuses_a_bad_video_before_reading_the_run(tmp_path, capsys):
    from rlx.cli import main

    run = tmp_path / "run"
    run.mkdir()
    assert main(["eval", str(run), "--video", "x.avi"]) == 2  # not even a run folder: never read
    assert "the extension must be one of" in capsys.readouterr().err
    (run / "config.json").write_text(json.dumps({"agent": "ppo", "env": "gymnax/Catch-bsuite", "config": {}}))
    assert main(["eval", str(run), "--video", "x.gif"]) == 2  # no checkpoint is needed to refuse
    assert "no way to draw Catch-bsuite" in capsys.readouterr().err


# ---- the learning curve's interval ---------------------------------------------------------
def test_mean_confidence_interval_is_student_t_over_seeds():
    values = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 9.0]])
    mean, low, high = mean_confidence_interval(values)
    np.testing.assert_allclose(mean, [3.0, 5.0])
    # t_{0.975, 2} = 4.302653; sample std 2 and 3.6056; n = 3
    np.testing.assert_allclose(high - mean, [4.302653 * 2.0 / np.sqrt(3), 4.302653 * np.sqrt(13.0) / np.sqrt(3)], rtol=1e-6)
    np.testing.assert_allclose(mean - low, high - mean)
    one = mean_confidence_interval(values[:1])
    np.testing.assert_allclose(one[1], one[2])  # one seed: no interval


def test_learning_curve_png_is_written(tmp_path):
    returns = np.array([[-1000.0, -500.0, -200.0], [-1100.0, -400.0, -150.0], [-900.0, -600.0, -180.0]])
    path = plot_learning_curve(np.array([1000, 2000, 3000]), returns, tmp_path / "c.png", title="sac")
    with Image.open(path) as image:
        assert image.size == (768, 480)
