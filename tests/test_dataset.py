"""Offline datasets: validation errors naming key and problem, save/load round trip, normalized
scores, episodes, compiled minibatch sampling, and the D4RL HDF5 and Minari loaders on small
files written here in those layouts."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx.buffers import dataset as ds
from rlx.buffers import loaders
from rlx.buffers.dataset import Dataset, DatasetError, DatasetInfo

h5py = pytest.importorskip("h5py")

pytestmark = pytest.mark.timeout(120)


def make_arrays(n=12, obs_dim=3, act_dim=2, seed=0):
    """Two episodes: a terminal one (steps 0-4) and one cut by the time limit (5-11)."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n + 1, obs_dim)).astype(np.float32)
    terminals = np.zeros(n, bool)
    timeouts = np.zeros(n, bool)
    terminals[4] = True
    timeouts[n - 1] = True
    return {
        "observations": obs[:-1],
        "actions": rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32),
        "rewards": np.arange(n, dtype=np.float32),
        "next_observations": obs[1:],
        "terminals": terminals,
        "timeouts": timeouts,
    }


INFO = DatasetInfo(env="gymnax/Pendulum-v1", kind="medium", size=12, seed=3, policy_return=-500.0,
                   random_return=-1200.0, expert_return=-150.0, rlx_version="0.1.0",
                   agent_config={"hidden_sizes": [64, 64]}, extra={"note": "test"})


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------
def test_from_arrays_canonical_dtypes_and_flattened_columns():
    arrays = make_arrays()
    arrays["rewards"] = arrays["rewards"].astype(np.float64)[:, None]
    arrays["terminals"] = arrays["terminals"].astype(np.float32)
    data = ds.from_arrays(arrays)
    assert data.rewards.shape == (12,) and data.rewards.dtype == np.float32
    assert data.terminals.dtype == np.bool_ and data.terminals[4]
    assert ds.validate(data) is data


@pytest.mark.parametrize(
    "break_it, words",
    [
        (lambda a: a.pop("timeouts"), ["missing key 'timeouts'"]),
        (lambda a: a.pop("next_observations"), ["missing key 'next_observations'"]),
        (lambda a: a.update(actions=a["actions"][:-1]), ["'actions'", "11 rows", "'observations' has 12"]),
        (lambda a: a.update(next_observations=a["next_observations"][:, :2]), ["'next_observations'", "shape (12, 2)"]),
        (lambda a: a.update(rewards=np.ones((12, 2), np.float32)), ["'rewards'", "shape (12, 2)", "expected (N,)"]),
        (lambda a: a["rewards"].__setitem__(7, np.nan), ["'rewards'", "NaN/Inf", "row 7"]),
        (lambda a: a["observations"].__setitem__((2, 1), np.inf), ["'observations'", "NaN/Inf", "row 2"]),
        (lambda a: a.update(actions=a["actions"].astype(str)), ["'actions'", "dtype <U", "expected numbers"]),
        (lambda a: a.update(observations=a["observations"] > 0), ["'observations'", "dtype bool"]),
        (lambda a: a.update(terminals=np.full(12, 2.0)), ["'terminals'", "0/1", "row 0"]),
        (lambda a: a.update(observations=np.zeros(12, np.float32)), ["'observations'", "shape (12,)"]),
        (lambda a: [a.update({k: v[:0]}) for k, v in list(a.items())], ["empty"]),
    ],
)
def test_malformed_dataset_errors_name_key_and_problem(break_it, words):
    arrays = make_arrays()
    break_it(arrays)
    with pytest.raises(DatasetError) as err:
        ds.from_arrays(arrays, source="mydata")
    for word in ["mydata", *words]:
        assert word in str(err.value), str(err.value)


def test_validate_is_strict_about_dtypes():
    data = ds.from_arrays(make_arrays())
    with pytest.raises(DatasetError, match="'rewards' has dtype float64; expected float32"):
        ds.validate(data._replace(rewards=data.rewards.astype(np.float64)))
    with pytest.raises(DatasetError, match="'timeouts' has dtype float32; expected bool"):
        ds.validate(data._replace(timeouts=data.timeouts.astype(np.float32)))
    with pytest.raises(DatasetError, match="'observations' has 1 NaN"):
        ds.validate(data._replace(observations=jnp.asarray(data.observations).at[0, 0].set(jnp.nan)))


# ---------------------------------------------------------------------------------------------
# episodes, scores, sampling
# ---------------------------------------------------------------------------------------------
def test_episode_returns_and_normalized_score():
    data = ds.from_arrays(make_arrays())
    starts, ends = ds.episode_bounds(data)
    np.testing.assert_array_equal(starts, [0, 5])
    np.testing.assert_array_equal(ends, [5, 12])
    np.testing.assert_allclose(ds.episode_returns(data), [0 + 1 + 2 + 3 + 4, sum(range(5, 12))])
    # 100 (R - random) / (expert - random): random -1200, expert -150
    assert ds.normalized_score(-1200.0, INFO) == pytest.approx(0.0)
    assert ds.normalized_score(-150.0, INFO) == pytest.approx(100.0)
    np.testing.assert_allclose(ds.normalized_score(np.array([-675.0, -360.0]), INFO), [50.0, 80.0])
    assert ds.normalized_score(5.0, random_return=0.0, expert_return=10.0) == pytest.approx(50.0)
    with pytest.raises(ValueError, match="random and expert reference returns"):
        ds.normalized_score(1.0, INFO.replace(expert_return=None))
    with pytest.raises(ValueError, match="must be finite and differ"):
        ds.normalized_score(1.0, random_return=2.0, expert_return=2.0)


def test_sampling_is_part_of_a_compiled_loop():
    data = ds.to_device(ds.from_arrays(make_arrays()))
    assert isinstance(data.observations, jax.Array)
    traces = []

    @jax.jit
    def loop(data, key):
        traces.append(1)

        def body(total, key):
            batch = ds.sample(data, key, 5)
            return total + jnp.sum(batch.reward), batch.reward

        return jax.lax.scan(body, jnp.float32(0), jax.random.split(key, 8))

    total, rewards = loop(data, jax.random.PRNGKey(0))
    loop(data, jax.random.PRNGKey(1))
    assert len(traces) == 1, "sampling from a dataset must not recompile per call"
    assert rewards.shape == (8, 5)
    assert set(np.asarray(rewards).ravel()) <= set(range(12))  # rewards are the row numbers
    assert float(total) == pytest.approx(float(np.sum(rewards)))
    assert len(set(np.asarray(rewards).ravel())) > 5  # different keys draw different rows


# ---------------------------------------------------------------------------------------------
# save / load
# ---------------------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path):
    data = ds.from_arrays(make_arrays())
    path = ds.save(tmp_path / "d", data, INFO)
    assert sorted(p.name for p in path.iterdir()) == sorted([f"{k}.npy" for k in ds.KEYS] + ["metadata.json"])
    meta = json.loads((path / "metadata.json").read_text())
    assert meta["format"] == "rlx.offline-dataset" and meta["size"] == 12
    assert meta["keys"]["observations"] == {"dtype": "float32", "shape": [12, 3]}
    loaded, info = ds.load(path)
    assert isinstance(loaded.observations, jax.Array)
    for key in ds.KEYS:
        np.testing.assert_array_equal(np.asarray(getattr(loaded, key)), getattr(data, key))
        assert np.asarray(getattr(loaded, key)).dtype == getattr(data, key).dtype
    assert info == INFO
    host, _ = ds.load(path, device=False, mmap=True)
    assert isinstance(host.observations, np.memmap)
    np.testing.assert_array_equal(host.rewards, data.rewards)


def test_save_refuses_a_non_empty_folder_and_load_refuses_incomplete_ones(tmp_path):
    data = ds.from_arrays(make_arrays())
    path = ds.save(tmp_path / "d", data, INFO)
    with pytest.raises(FileExistsError, match="not empty"):
        ds.save(path, data, INFO)
    ds.save(path, data, INFO.replace(seed=4), overwrite=True)
    assert ds.load(path)[1].seed == 4
    (path / "metadata.json").unlink()
    with pytest.raises(DatasetError, match="no metadata.json"):
        ds.load(path)
    path = ds.save(tmp_path / "e", data, INFO)
    (path / "timeouts.npy").unlink()
    with pytest.raises(DatasetError, match="missing key 'timeouts'"):
        ds.load(path)
    path = ds.save(tmp_path / "f", data, INFO)
    np.save(path / "rewards.npy", np.full(12, np.nan, np.float32))
    with pytest.raises(DatasetError, match="'rewards' has 12 NaN"):
        ds.load(path)


def test_writer_fills_in_chunks(tmp_path):
    data = ds.from_arrays(make_arrays())
    writer = ds.DatasetWriter(tmp_path / "w", 12, (3,), (2,))
    for start in range(0, 12, 5):
        writer.write(start, Dataset(*(x[start : start + 5] for x in data)))
    loaded, info = ds.load(writer.close(INFO.replace(size=0)), device=False)
    assert info.size == 12
    for key in ds.KEYS:
        np.testing.assert_array_equal(getattr(loaded, key), getattr(data, key))


# ---------------------------------------------------------------------------------------------
# D4RL HDF5
# ---------------------------------------------------------------------------------------------
def write_d4rl(path, arrays, next_obs=True):
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            if key == "next_observations" and not next_obs:
                continue
            f.create_dataset(key, data=value)
        f.create_dataset("infos/qpos", data=np.zeros((len(arrays["rewards"]), 2)))  # extra keys are ignored
    return path


def test_d4rl_loader_reads_its_layout(tmp_path):
    arrays = make_arrays()
    arrays["rewards"] = arrays["rewards"][:, None].astype(np.float64)  # some files store (N, 1) float64
    path = write_d4rl(tmp_path / "hopper-medium-v2.hdf5", arrays)
    data, info = loaders.load_d4rl(path, random_return=-20.0, expert_return=3234.3)
    np.testing.assert_array_equal(data.observations, arrays["observations"])
    np.testing.assert_array_equal(data.next_observations, arrays["next_observations"])
    np.testing.assert_array_equal(data.rewards, np.arange(12))
    assert data.terminals[4] and data.timeouts[11] and data.terminals.sum() == 1
    assert (info.env, info.kind, info.source) == ("d4rl/hopper", "medium", f"d4rl:{path}")
    assert ds.normalized_score(3234.3, info) == pytest.approx(100.0)
    opened, _ = loaders.open_dataset(path, device=False)
    np.testing.assert_array_equal(opened.actions, arrays["actions"])


def test_d4rl_loader_rebuilds_successors_without_next_observations(tmp_path):
    arrays = make_arrays()
    arrays["timeouts"][8] = True  # a third episode boundary: episode 5..8 cut by the time limit
    path = write_d4rl(tmp_path / "walker2d-random-v2.hdf5", arrays, next_obs=False)
    data, info = loaders.load_d4rl(path)
    # timeout-ended steps 8 and 11 have no successor in the file: dropped
    keep = [0, 1, 2, 3, 4, 5, 6, 7, 9, 10]
    np.testing.assert_array_equal(data.observations, arrays["observations"][keep])
    np.testing.assert_array_equal(data.rewards, np.asarray(keep, np.float32))
    obs = arrays["observations"]
    expected_next = np.stack([obs[i + 1] if i != 4 else obs[4] for i in keep])
    np.testing.assert_array_equal(data.next_observations, expected_next)
    np.testing.assert_array_equal(np.flatnonzero(data.terminals), [4])
    np.testing.assert_array_equal(np.flatnonzero(data.timeouts), [7, 9])  # the new episode ends
    assert "dropped" in info.extra["next_observations"]
    assert info.random_return is None
    with pytest.raises(ValueError, match="reference returns"):
        ds.normalized_score(1.0, info)


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda a: a.pop("timeouts"), ["missing key 'timeouts'"]),
        (lambda a: a.update(actions=a["actions"][:-2]), ["'actions'", "10 rows"]),
        (lambda a: a["observations"].__setitem__((3, 0), np.nan), ["'observations'", "NaN/Inf", "row 3"]),
        (lambda a: a.update(rewards=np.array([b"x"] * 12)), ["'rewards'", "dtype |S1"]),
    ],
)
def test_d4rl_loader_malformed_files(tmp_path, change, words):
    arrays = make_arrays()
    change(arrays)
    path = write_d4rl(tmp_path / "bad.hdf5", arrays)
    with pytest.raises(DatasetError) as err:
        loaders.load_d4rl(path)
    for word in [str(path), *words]:
        assert word in str(err.value), str(err.value)


def test_d4rl_loader_refuses_a_non_hdf5_file(tmp_path):
    path = tmp_path / "x.hdf5"
    path.write_text("not hdf5")
    with pytest.raises(DatasetError, match="not a readable HDF5 file"):
        loaders.load_d4rl(path)


# ---------------------------------------------------------------------------------------------
# Minari
# ---------------------------------------------------------------------------------------------
def write_minari(root, episodes, metadata=None):
    data_dir = root / "data"
    data_dir.mkdir(parents=True)
    meta = {"dataset_id": "pen/medium-v0", "data_format": "hdf5", "total_episodes": len(episodes),
            "total_steps": sum(len(e["actions"]) for e in episodes), "ref_min_score": -1200.0,
            "ref_max_score": -150.0, "env_spec": json.dumps({"id": "Pendulum-v1"}), **(metadata or {})}
    (data_dir / "metadata.json").write_text(json.dumps(meta))
    with h5py.File(data_dir / "main_data.hdf5", "w") as f:
        for i, ep in enumerate(episodes):
            g = f.create_group(f"episode_{i}")
            g.attrs["id"] = i
            g.attrs["total_steps"] = len(ep["actions"])
            for key, value in ep.items():
                if isinstance(value, dict):
                    for sub, v in value.items():
                        g.create_dataset(f"{key}/{sub}", data=v)
                else:
                    g.create_dataset(key, data=value)
    return root


def minari_episode(steps, seed, end="truncated", obs_dim=3):
    rng = np.random.default_rng(seed)
    terminations = np.zeros(steps, bool)
    truncations = np.zeros(steps, bool)
    if end == "terminated":
        terminations[-1] = True
    elif end == "truncated":
        truncations[-1] = True
    return {
        "observations": rng.normal(size=(steps + 1, obs_dim)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(steps, 2)).astype(np.float32),
        "rewards": rng.normal(size=steps),
        "terminations": terminations,
        "truncations": truncations,
    }


def test_minari_loader_reads_its_layout(tmp_path):
    episodes = [minari_episode(4, 0, "terminated"), minari_episode(3, 1, "truncated"), minari_episode(2, 2, "none")]
    # ids sort numerically (episode_10 after episode_2) only matter with > 10 episodes; order here is 0, 1, 2
    root = write_minari(tmp_path / "pen-medium", episodes)
    data, info = loaders.load_minari(root)
    assert data.size == 9
    np.testing.assert_array_equal(data.observations, np.concatenate([e["observations"][:-1] for e in episodes]))
    np.testing.assert_array_equal(data.next_observations, np.concatenate([e["observations"][1:] for e in episodes]))
    np.testing.assert_array_equal(data.actions, np.concatenate([e["actions"] for e in episodes]))
    np.testing.assert_array_equal(np.flatnonzero(data.terminals), [3])
    np.testing.assert_array_equal(np.flatnonzero(data.timeouts), [6, 8])  # truncated, and cut at the end
    np.testing.assert_allclose(ds.episode_returns(data), [e["rewards"].sum() for e in episodes], rtol=1e-6)
    assert (info.env, info.kind, info.random_return, info.expert_return) == ("Pendulum-v1", "pen/medium-v0", -1200.0, -150.0)
    same, _ = loaders.open_dataset(root, device=False)
    np.testing.assert_array_equal(same.rewards, data.rewards)
    via_data_dir, _ = loaders.load_minari(root / "data")
    np.testing.assert_array_equal(via_data_dir.rewards, data.rewards)


def test_minari_episodes_in_id_order(tmp_path):
    episodes = [minari_episode(1, i) for i in range(12)]
    data, _ = loaders.load_minari(write_minari(tmp_path / "m", episodes))
    np.testing.assert_array_equal(data.observations, np.concatenate([e["observations"][:-1] for e in episodes]))


def bad_minari(kind):
    ep = minari_episode(3, 0)
    if kind == "short_obs":
        ep["observations"] = ep["observations"][:-1]
    elif kind == "no_truncations":
        ep.pop("truncations")
    elif kind == "rewards_rows":
        ep["rewards"] = ep["rewards"][:2]
    elif kind == "nan":
        ep["actions"][1, 0] = np.nan
    elif kind == "dict_obs":
        ep["observations"] = {"pos": ep["observations"], "vel": ep["observations"]}
    return ep


@pytest.mark.parametrize(
    "kind, words",
    [
        ("short_obs", ["episode_1", "'observations' has 3 rows; expected 4"]),
        ("no_truncations", ["episode_1", "missing key 'truncations'"]),
        ("rewards_rows", ["episode_1", "'rewards' has 2 rows; expected 3"]),
        ("nan", ["'actions'", "NaN/Inf", "row 4"]),
        ("dict_obs", ["episode_1", "'observations' is an HDF5 group"]),
    ],
)
def test_minari_loader_malformed_episodes(tmp_path, kind, words):
    root = write_minari(tmp_path / "m", [minari_episode(3, 5), bad_minari(kind)])
    with pytest.raises(DatasetError) as err:
        loaders.load_minari(root)
    for word in words:
        assert word in str(err.value), str(err.value)


def test_minari_loader_refuses_other_storage_and_non_minari_folders(tmp_path):
    root = write_minari(tmp_path / "m", [minari_episode(3, 0)], {"data_format": "arrow"})
    with pytest.raises(DatasetError, match="data_format is 'arrow'"):
        loaders.load_minari(root)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="not a Minari dataset folder"):
        loaders.load_minari(tmp_path / "empty")


# ---------------------------------------------------------------------------------------------
# rlx dataset info
# ---------------------------------------------------------------------------------------------
def test_cli_dataset_info(tmp_path, capsys):
    from rlx.cli import main

    path = ds.save(tmp_path / "d", ds.from_arrays(make_arrays()), INFO)
    assert main(["dataset", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "medium dataset of gymnax/Pendulum-v1" in out and "12 transitions" in out
    assert "episodes 2 (terminals 1, timeouts 1)" in out
    # the second episode (7 steps, Pendulum's limit is 200) was cut by the end of the data
    assert "1 episode(s) cut by the end of the data" in out and "its 1 complete episode(s)" in out
    assert main(["dataset", "info", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["complete_episodes"], report["incomplete_episodes"]) == (1, 1)
    # the complete episode's return 0 + 1 + 2 + 3 + 4 = 10 -> 100 * (10 + 1200) / 1050 (not the
    # fragment's 56 in the mean)
    assert report["normalized_score_of_episodes"] == pytest.approx(100 * (10 + 1200) / 1050)
    assert main(["dataset", "info", str(tmp_path / "missing")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_complete_episodes_without_a_known_limit():
    from rlx.buffers.dataset import complete_episodes

    arrays = make_arrays(n=20)  # terminal at 4, then 15 steps cut at the end
    arrays["timeouts"][14] = True  # a 10-step time-limit episode (5-14), then a 5-step fragment
    complete, lengths = complete_episodes(ds.from_arrays(arrays))
    assert lengths.tolist() == [5, 10, 5] and complete.tolist() == [True, True, False]
    assert complete_episodes(ds.from_arrays(arrays), limit=5)[0].tolist() == [True, True, True]


# ---------------------------------------------------------------------------------------------
# Minari metadata against the file
# ---------------------------------------------------------------------------------------------
def _minari_episodes():
    return [minari_episode(4, 0, "terminated"), minari_episode(3, 1, "truncated"), minari_episode(2, 2, "none")]


@pytest.mark.parametrize(
    "metadata, words",
    [
        ({"total_episodes": 4, "total_steps": 25}, ["total_episodes is 4", "holds 3 episodes", "total_steps is 25", "hold 9 steps"]),
        ({"total_episodes": 2}, ["total_episodes is 2", "holds 3 episodes"]),
        ({"total_steps": 8}, ["total_steps is 8", "hold 9 steps"]),
        ({"total_steps": "many"}, ["total_steps is 'many'", "whole number"]),
    ],
)
def test_minari_metadata_counts_must_match_the_file(tmp_path, capsys, metadata, words):
    from rlx.cli import main

    root = write_minari(tmp_path / "m", _minari_episodes(), metadata)
    with pytest.raises(DatasetError) as err:
        loaders.load_minari(root)
    for word in [str(root / "data" / "metadata.json"), *words]:
        assert word in str(err.value), str(err.value)
    assert main(["dataset", "info", str(root)]) == 2
    assert capsys.readouterr().err.startswith(f"rlx: error: {root / 'data' / 'metadata.json'}: {words[0]}")


def test_minari_episode_step_attribute_must_match_its_rows(tmp_path):
    root = write_minari(tmp_path / "m", _minari_episodes())
    with h5py.File(root / "data" / "main_data.hdf5", "a") as f:
        f["episode_1"].attrs["total_steps"] = 5
    with pytest.raises(DatasetError, match="episode_1: attribute total_steps is 5 but the episode holds 3 steps"):
        loaders.load_minari(root)


# ---------------------------------------------------------------------------------------------
# One rule for an unfinished last episode, in every layout
# ---------------------------------------------------------------------------------------------
def test_every_loader_truncates_an_unfinished_last_episode_the_same_way(tmp_path):
    """Terminated (4 steps), truncated (3) and unfinished (2) episodes in each layout give the same
    Dataset: the unfinished one is truncated, so there are 3 episodes everywhere."""
    episodes = _minari_episodes()
    # D4RL's rebuild gives a terminal step its own observation as successor (never bootstrapped
    # from): end the terminated episode on a repeated observation so the layouts hold the same data.
    episodes[0]["observations"][-1] = episodes[0]["observations"][-2]
    minari, _ = loaders.load_minari(write_minari(tmp_path / "m", episodes))

    flat = {
        "observations": np.concatenate([e["observations"][:-1] for e in episodes]),
        "actions": np.concatenate([e["actions"] for e in episodes]),
        "rewards": np.concatenate([e["rewards"] for e in episodes]),
        "next_observations": np.concatenate([e["observations"][1:] for e in episodes]),
        "terminals": np.concatenate([e["terminations"] for e in episodes]),
        "timeouts": np.concatenate([e["truncations"] for e in episodes]),
    }
    assert not (flat["terminals"][-1] or flat["timeouts"][-1])  # the data's last episode is unfinished
    d4rl_next, _ = loaders.load_d4rl(write_d4rl(tmp_path / "with-next.hdf5", flat))

    # Without next_observations a D4RL file lists every observation of an episode, the last one
    # on a row without a successor (a timeout row, or the file's unfinished last row).
    rows = {k: [] for k in ("observations", "actions", "rewards", "terminals", "timeouts")}
    for e in episodes:
        steps = len(e["actions"])
        extra = 0 if e["terminations"][-1] else 1
        rows["observations"].append(e["observations"][: steps + extra])
        rows["actions"].append(np.concatenate([e["actions"], np.zeros((extra, 2), np.float32)]))
        rows["rewards"].append(np.concatenate([e["rewards"], np.zeros(extra)]))
        rows["terminals"].append(np.concatenate([e["terminations"], np.zeros(extra, bool)]))
        rows["timeouts"].append(np.concatenate([np.zeros(steps, bool), [bool(e["truncations"][-1])] * extra]))
    d4rl_rebuilt, rebuilt_info = loaders.load_d4rl(
        write_d4rl(tmp_path / "no-next.hdf5", {k: np.concatenate(v) for k, v in rows.items()}, next_obs=False)
    )

    # The rlx format: a folder whose last row is unflagged (written by other code) reads the same.
    canonical = Dataset(**{k: v.astype(np.float32 if k in ds.FLOAT_KEYS else bool) for k, v in flat.items()})
    folder = ds.save(tmp_path / "rlx", canonical, INFO)
    np.save(folder / "timeouts.npy", flat["timeouts"])
    from_folder, _ = ds.load(folder, device=False)
    from_array_mapping = ds.from_arrays(flat)

    expected_returns = [e["rewards"].sum() for e in episodes]
    for name, data in [("d4rl", d4rl_next), ("d4rl rebuilt", d4rl_rebuilt), ("rlx", from_folder), ("from_arrays", from_array_mapping)]:
        for key in ds.KEYS:
            np.testing.assert_allclose(np.asarray(getattr(data, key)), np.asarray(getattr(minari, key)), err_msg=f"{name}: {key}")
        np.testing.assert_array_equal(np.flatnonzero(data.timeouts), [6, 8], err_msg=name)
        np.testing.assert_array_equal(np.flatnonzero(data.terminals), [3], err_msg=name)
        np.testing.assert_allclose(ds.episode_returns(data), expected_returns, rtol=1e-6, err_msg=name)
    assert "1 timeout-ended step(s) and the unfinished last step without a successor dropped" in rebuilt_info.extra["next_observations"]


def test_writer_truncates_an_unfinished_last_episode(tmp_path):
    arrays = make_arrays()
    arrays["timeouts"][-1] = False
    path = ds.save(tmp_path / "d", Dataset(**arrays), INFO)
    assert np.load(path / "timeouts.npy")[-1]
    assert ds.episode_returns(ds.load(path, device=False)[0]).size == 2


@pytest.mark.parametrize(
    "timeouts, unfinished, note",
    [
        ([8, 11], False, "2 timeout-ended step(s) without a successor dropped"),
        ([8], True, "1 timeout-ended step(s) and the unfinished last step without a successor dropped"),
        ([], True, "0 timeout-ended step(s) and the unfinished last step without a successor dropped"),
    ],
)
def test_d4rl_rebuild_note_counts_what_it_dropped(tmp_path, timeouts, unfinished, note):
    arrays = make_arrays()
    arrays["timeouts"][:] = False
    arrays["timeouts"][timeouts] = True
    data, info = loaders.load_d4rl(write_d4rl(tmp_path / "x.hdf5", arrays, next_obs=False))
    assert note in info.extra["next_observations"], info.extra["next_observations"]
    assert data.size == 12 - len(timeouts) - int(unfinished)
    assert data.terminals[-1] or data.timeouts[-1]


# ---------------------------------------------------------------------------------------------
# Folders that are not a dataset, damaged files: messages, and `rlx: error:` on the command line
# ---------------------------------------------------------------------------------------------
ACCEPTED_WORDS = ["accepted:", "rlx dataset folder", "Minari dataset folder", "D4RL .hdf5 file"]


def _folder(tmp_path, kind):
    path = tmp_path / kind
    path.mkdir()
    if kind == "npy_only":
        np.save(path / "observations.npy", np.zeros((3, 2), np.float32))
        np.save(path / "actions.npy", np.zeros((3, 1), np.float32))
    elif kind == "binary_metadata":
        (path / "metadata.json").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    elif kind == "bad_json":
        (path / "metadata.json").write_text("{not json")
    elif kind == "json_list":
        (path / "metadata.json").write_text("[1, 2]")
    elif kind == "neither":
        (path / "metadata.json").write_text('{"name": "something else"}')
    elif kind == "other_format":
        (path / "metadata.json").write_text('{"format": "someone.else"}')
    return path


@pytest.mark.parametrize(
    "kind, words",
    [
        ("empty", ["not a dataset folder", "no metadata.json", "no data/metadata.json"]),
        ("npy_only", ["has observations.npy, actions.npy but no metadata.json", "writing did not finish"]),
        ("binary_metadata", ["its metadata.json is broken", "not a JSON text file"]),
        ("bad_json", ["its metadata.json is broken", "not valid JSON"]),
        ("json_list", ["its metadata.json is broken", "holds a JSON list"]),
        ("neither", ["neither an rlx dataset's metadata", "nor a Minari dataset's"]),
        ("other_format", ["format is 'someone.else'", "'rlx.offline-dataset'"]),
    ],
)
def test_a_folder_that_is_not_a_dataset_is_named_with_what_is_missing(tmp_path, monkeypatch, capsys, kind, words):
    from rlx.cli import main

    path = _folder(tmp_path, kind)
    monkeypatch.setitem(__import__("sys").modules, "h5py", None)  # where h5py is not installed
    with pytest.raises(DatasetError) as err:
        loaders.open_dataset(path, device=False)
    for word in [str(path), *words, *ACCEPTED_WORDS]:
        assert word in str(err.value), str(err.value)
    assert main(["dataset", "info", str(path)]) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("rlx: error: ") and str(path) in stderr and words[0] in stderr


def test_hdf5_layouts_without_h5py_get_a_message(tmp_path, monkeypatch, capsys):
    from rlx.cli import main

    root = write_minari(tmp_path / "m", _minari_episodes())
    d4rl = write_d4rl(tmp_path / "x.hdf5", make_arrays())
    monkeypatch.setitem(__import__("sys").modules, "h5py", None)
    for path in (root, d4rl):
        with pytest.raises(ImportError, match="needs h5py"):  # still an ImportError for code that catches one
            loaders.open_dataset(path, device=False)
        assert main(["dataset", "info", str(path)]) == 2
        assert capsys.readouterr().err.startswith("rlx: error: reading HDF5 datasets (D4RL, Minari) needs h5py")


@pytest.mark.parametrize("mmap", [False, True])
@pytest.mark.parametrize("key", ["rewards", "observations"])
def test_a_truncated_npy_file_is_named_with_its_key(tmp_path, capsys, key, mmap):
    from rlx.cli import main

    path = ds.save(tmp_path / "d", ds.from_arrays(make_arrays()), INFO)
    file = path / f"{key}.npy"
    raw = file.read_bytes()
    file.write_bytes(raw[:-20])
    want = 12 * 4 * (3 if key == "observations" else 1)
    with pytest.raises(DatasetError) as err:
        ds.load(path, device=False, mmap=mmap)
    for word in [str(file), f"key {key!r} is truncated", f"({want:,} bytes of data)", f"holds {want - 20:,}"]:
        assert word in str(err.value), str(err.value)
    assert main(["dataset", "info", str(path)]) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("rlx: error: ") and f"{key}.npy: key {key!r} is truncated" in stderr
    file.write_bytes(raw[:5])  # cut inside the header
    with pytest.raises(DatasetError, match=f"key {key!r} is not a readable .npy array"):
        ds.load(path, device=False, mmap=mmap)


def test_metadata_with_wrong_types_is_a_dataset_error(tmp_path):
    path = ds.save(tmp_path / "d", ds.from_arrays(make_arrays()), INFO)
    meta = json.loads((path / "metadata.json").read_text())
    for change, words in [
        ({"format_version": "one"}, "format_version is 'one'"),
        ({"info": [1]}, "no 'info' record (found list)"),
        ({"size": "12"}, "says size '12' but the arrays hold 12 rows"),
    ]:
        (path / "metadata.json").write_text(json.dumps({**meta, **change}))
        with pytest.raises(DatasetError, match=__import__("re").escape(words)):
            loaders.open_dataset(path, device=False)
