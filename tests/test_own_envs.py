"""Our own environments (rlx/KeyDoor-v0, rlx/Household-v0): same key -> same task, invalid
actions are flagged no-ops, truncation at the time limit, success reward 1 (terminated)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx import envs

pytestmark = pytest.mark.timeout(300)

NAMES = ["rlx/KeyDoor-v0", "rlx/Household-v0"]


@pytest.fixture(scope="module", params=NAMES)
def env_rollout(request):
    env, params = envs.make(request.param, max_steps_in_episode=6)

    @jax.jit
    def rollout(key, actions):
        obs0, state = env.reset(key, params)

        def body(state, inputs):
            k, a = inputs
            obs, state, reward, term, trunc, info = env.step(k, state, a, params)
            return state, (obs, reward, term, trunc, info)

        _, out = jax.lax.scan(body, state, (jax.random.split(key, actions.shape[0]), actions))
        return obs0, state, out

    return env, params, rollout


def test_registered_and_spaces(env_rollout):
    env, params, _ = env_rollout
    assert env.name in {n.split("/")[1] for n in envs.registered_names() if n.startswith("rlx/")}
    assert not envs.is_continuous(env.action_space(params))
    obs, _ = env.reset(jax.random.PRNGKey(0), params)
    assert obs.shape == envs.obs_shape(env, params) and obs.dtype == jnp.float32


def test_same_key_same_task_other_key_other_task(env_rollout):
    env, params, _ = env_rollout
    a, sa = env.reset(jax.random.PRNGKey(1), params)
    b, sb = env.reset(jax.random.PRNGKey(1), params)
    np.testing.assert_array_equal(a, b)
    jax.tree.map(np.testing.assert_array_equal, sa, sb)
    others = [env.reset(jax.random.PRNGKey(k), params)[0] for k in range(2, 12)]
    assert any(not np.array_equal(a, o) for o in others), "tasks must be procedurally generated"


def test_truncates_at_limit_with_final_observation(env_rollout):
    env, params, rollout = env_rollout
    # An action sequence of "go to room 0" / "up" is mostly invalid, so no success before the limit.
    actions = jnp.zeros(13, jnp.int32)
    obs0, _, (obs, reward, term, trunc, info) = rollout(jax.random.PRNGKey(3), actions)
    term, trunc = np.asarray(term), np.asarray(trunc)
    assert not term.any()
    np.testing.assert_array_equal(np.flatnonzero(trunc), [5, 11])
    # after the auto-reset the returned obs is the new episode's; final_observation the old one
    assert np.asarray(info["final_observation"]).shape == np.asarray(obs).shape


def test_keydoor_invalid_actions_flagged_and_success_reward():
    env, params = envs.make("rlx/KeyDoor-v0", height=1, room_width=2, num_doors=1)
    obs, state = env.reset(jax.random.PRNGKey(0), params)
    # layout 1 x 5: room 0 = cols 0-1, wall col 2 (door in row 0), room 1 = cols 3-4
    key_col = int(state.key_cells[0, 1])
    step = jax.jit(lambda s, a: env.step(jax.random.PRNGKey(0), s, a, params))
    _, s1, r, term, trunc, info = step(state, 0)  # up: off the grid
    assert bool(info["invalid_action"]) and float(r) == 0.0
    jax.tree.map(np.testing.assert_array_equal, s1.replace(time=0), state.replace(time=0))
    _, _, _, _, _, info = step(state, 5)  # open without the key
    assert bool(info["invalid_action"])
    if int(state.agent[1]) != key_col:
        _, _, _, _, _, info = step(state, 4)  # pick up where there is no key
        assert bool(info["invalid_action"])
        state = step(state, 3 if key_col > int(state.agent[1]) else 2)[1]
    _, state, _, _, _, info = step(state, 4)
    assert not bool(info["invalid_action"]) and bool(state.key_held[0])
    if int(state.agent[1]) == 0:
        state = step(state, 3)[1]
    _, blocked, _, _, _, info = step(state, 3)  # locked door
    assert bool(info["invalid_action"])
    _, state, _, _, _, info = step(state, 5)
    assert not bool(info["invalid_action"]) and bool(state.door_open[0])
    total, done = 0.0, False
    goal_col = int(state.goal[1])
    for _ in range(goal_col - int(state.agent[1])):
        _, state, r, term, trunc, info = step(state, 3)
        total += float(r)
        done = bool(term)
    assert done and total == 1.0 and bool(info["success"])


def test_household_invalid_actions_flagged_and_success_reward():
    env, params = envs.make("rlx/Household-v0", num_rooms=1, receptacles_per_room=3, num_objects=1)
    step = jax.jit(lambda s, a: env.step(jax.random.PRNGKey(0), s, a, params))
    for seed in range(20):
        _, state = env.reset(jax.random.PRNGKey(seed), params)
        for a in (env.put_action, env.open_action, env.clean_action, env.first_take, 0):
            _, s1, r, _, _, info = step(state, a)
            assert bool(info["invalid_action"]), env.action_text(state, a)
            jax.tree.map(np.testing.assert_array_equal, s1.replace(time=0), state.replace(time=0))
        # solve it by the script an agent has to discover
        src, dst, sink = int(state.location[0]), int(state.goal_receptacle), int(state.sink)
        plan = [env.first_goto_receptacle + src]
        plan += [env.open_action] if bool(state.openable[src]) else []
        plan += [env.first_take]
        if bool(state.goal_clean):
            plan += ([] if src == sink else [env.first_goto_receptacle + sink]) + [env.clean_action]
        plan += [env.first_goto_receptacle + dst]
        plan += [env.open_action] if bool(state.openable[dst]) else []
        plan += [env.put_action]
        rewards, terms = [], []
        for a in plan:
            text = env.render_text(state)
            _, state, r, term, _, info = step(state, a)
            assert not bool(info["invalid_action"]), (seed, env.action_text(state, a), text)
            rewards.append(float(r))
            terms.append(bool(term))
        assert rewards[-1] == 1.0 and sum(rewards) == 1.0 and terms[-1] and not any(terms[:-1])


def test_household_hides_unseen_objects():
    env, params = envs.make("rlx/Household-v0")
    obs_a, sa = env.reset(jax.random.PRNGKey(0), params)
    moved = sa.replace(location=(sa.location + 1) % env.num_receptacles)
    np.testing.assert_array_equal(obs_a, env.get_obs(moved))  # nothing seen yet
    assert "Task: put" in env.render_text(sa)


def test_household_admissible_actions_match_the_invalid_flag_and_are_observed():
    env, params = envs.make("rlx/Household-v0")
    plain, _ = envs.make("rlx/Household-v0", show_admissible=False)

    @jax.jit
    def walk(key):
        _, state = env.reset(key, params)

        def body(state, k):
            k_act, k_env = jax.random.split(k)
            action = jax.random.randint(k_act, (), 0, env.num_actions)
            mask = env.admissible(state)
            obs, state, _, _, _, info = env.step(k_env, state, action, params)
            return state, (mask, action, info["invalid_action"], obs)

        return jax.lax.scan(body, state, jax.random.split(key, 40))[1]

    mask, action, invalid, obs = jax.device_get(walk(jax.random.PRNGKey(4)))
    np.testing.assert_array_equal(mask[np.arange(40), action], ~invalid)
    assert invalid.any() and (~invalid).any()
    assert obs.shape[-1] == envs.obs_shape(plain, params)[0] + env.num_actions
    obs0, state0 = env.reset(jax.random.PRNGKey(4), params)
    np.testing.assert_array_equal(np.asarray(obs0[-env.num_actions:]), np.asarray(env.admissible(state0), np.float32))
