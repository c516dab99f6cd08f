"""An offline agent refuses a dataset it cannot learn from (actions outside [-1, 1], observation or
action sizes other than the env's) when it is built, before any model is trained: through the
Python API (mopo / mobile / morec ``agent``) and ``rlx train mopo|mobile|morec_* --dataset``."""

import numpy as np
import pytest

from rlx.agents import mobile, model_based, mopo, morec
from rlx.buffers import dataset as ds
from rlx.core.config import ConfigError
from rlx.models import dynamics_reward as drw
from rlx.models import ensemble as ens

pytestmark = pytest.mark.timeout(120)

ENV = "gymnax/Pendulum-v1"  # observations of size 3, one action in [-1, 1] after rescaling


def tiny(rows=40, obs_dim=3, act_dim=1, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(rows + 1, obs_dim)).astype(np.float32)
    terminals, timeouts = np.zeros(rows, bool), np.zeros(rows, bool)
    timeouts[[19, rows - 1]] = True
    return ds.Dataset(
        observations=obs[:-1], actions=(scale * rng.uniform(-1, 1, size=(rows, act_dim))).astype(np.float32),
        rewards=rng.normal(size=rows).astype(np.float32), next_observations=obs[1:],
        terminals=terminals, timeouts=timeouts,
    )


BAD = {
    "actions_x5": (dict(scale=5.0), ["field 'actions' holds values in [", "allowed: [-1, 1]"]),
    "action_size": (dict(act_dim=2), [f"field 'actions' holds actions of size 2; allowed: 1, the action size of the env {ENV}"]),
    "observation_size": (dict(obs_dim=4), [f"field 'observations' holds observations of size 4; allowed: 3, the observation size of the env {ENV}"]),
}


@pytest.fixture
def no_training(monkeypatch):
    """Any model training fails the test: the refusal must come first."""

    def trained(*args, **kwargs):
        raise AssertionError("a model was trained before the dataset was checked")

    monkeypatch.setattr(ens, "train_dynamics", trained)
    monkeypatch.setattr(drw, "train_dynamics_reward", trained)


def test_a_matching_dataset_passes_the_check():
    model_based.check_dataset(tiny(), ENV)
    model_based.check_dataset(tiny()._replace(actions=np.ones((40, 1), np.float32)), ENV)  # the bounds are allowed


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("build", ["mopo", "mobile", "morec_mopo", "morec_mobile"])
def test_python_api_refuses_before_training(no_training, case, build):
    changes, words = BAD[case]
    data = tiny(**changes)
    info = ds.DatasetInfo(env=ENV, kind="medium", size=data.size)
    agents = {
        "mopo": lambda **kw: mopo.agent(data, **kw),
        "mobile": lambda **kw: mobile.agent(data, **kw),
        "morec_mopo": lambda **kw: morec.agent("mopo", data, **kw),
        "morec_mobile": lambda **kw: morec.agent("mobile", data, **kw),
    }
    with pytest.raises(ConfigError) as err:
        agents[build](env=ENV, info=info, progress=False)
    for word in ["the medium dataset of gymnax/Pendulum-v1", *words]:
        assert word in str(err.value), str(err.value)
    if case == "actions_x5":  # needs no env: the agents act in [-1, 1]
        with pytest.raises(ConfigError, match=r"allowed: \[-1, 1\]"):
            agents[build](progress=False)


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("algo", ["mopo", "mobile", "morec_mopo", "morec_mobile"])
def test_rlx_train_refuses_before_training(tmp_path, capsys, no_training, case, algo):
    from rlx.cli import main

    changes, words = BAD[case]
    path = ds.save(tmp_path / "data", tiny(**changes), ds.DatasetInfo(env=ENV, kind="medium", size=40))
    code = main(["train", algo, "--env", ENV, "--dataset", str(path), "--out", str(tmp_path / "run"), "--no-progress"])
    stderr = capsys.readouterr().err
    assert code == 2, stderr
    assert stderr.startswith(f"rlx: error: dataset {path}: "), stderr
    for word in words:
        assert word in stderr, stderr


def test_rlx_train_names_a_d4rl_file(tmp_path, capsys, no_training):
    h5py = pytest.importorskip("h5py")
    from rlx.cli import main

    path = tmp_path / "pendulum-medium-v2.hdf5"
    with h5py.File(path, "w") as f:
        for key, value in tiny(scale=5.0)._asdict().items():
            f.create_dataset(key, data=value)
    assert main(["train", "mopo", "--env", ENV, "--dataset", str(path), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert f"rlx: error: dataset {path}: field 'actions' holds values in [" in capsys.readouterr().err


def test_a_dynamics_model_of_other_sizes_is_refused_before_the_dynamics_reward_is_trained(no_training):
    class Dynamics:  # only the sizes are read before training
        obs_dim, action_dim = 5, 1

    with pytest.raises(ConfigError, match="dynamics model predicts observations of size 5 from actions of size 1; the dataset has 3 and 1"):
        morec.agent("mopo", tiny(), Dynamics())
