"""rlx.envs: every environment behind one functional interface (gymnax 1.0).

    env, params = rlx.envs.make("gymnax/Pendulum-v1")
    obs, state = env.reset(key, params)
    obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)

Steps auto-reset on terminated | truncated; `info["final_observation"]` is the last
observation of the finished episode, so a value target bootstraps through a time-limit
truncation but not through a termination.
"""

from .brax_adapter import BraxAdapter, BraxParams, BraxState
from .contract import EnvContractError, check_env_contract
from .playground import (
    PlaygroundAdapter,
    PlaygroundParams,
    PlaygroundState,
    PlaygroundUnavailableError,
)
from .registry import (
    UnknownEnvironmentError,
    import_env_module,
    make,
    register,
    registered_names,
)
from .spaces import Box, Discrete, action_dim, episode_limit, is_continuous, obs_shape
from .wrappers import (
    EpisodeStatistics,
    EpisodeStatisticsState,
    NormalizeObservation,
    NormalizeObservationState,
    RescaleAction,
    VecEnv,
    Wrapper,
    make_vec_env,
)

__all__ = [
    "Box",
    "BraxAdapter",
    "BraxParams",
    "BraxState",
    "Discrete",
    "EnvContractError",
    "EpisodeStatistics",
    "EpisodeStatisticsState",
    "NormalizeObservation",
    "NormalizeObservationState",
    "PlaygroundAdapter",
    "PlaygroundParams",
    "PlaygroundState",
    "PlaygroundUnavailableError",
    "RescaleAction",
    "UnknownEnvironmentError",
    "VecEnv",
    "Wrapper",
    "action_dim",
    "check_env_contract",
    "episode_limit",
    "import_env_module",
    "is_continuous",
    "make",
    "make_vec_env",
    "obs_shape",
    "register",
    "registered_names",
]

# Our own environments (rlx/...), registered at import.
from .household import make_household  # noqa: E402
from .keydoor import make_keydoor  # noqa: E402
from .maze import make_point_maze  # noqa: E402
from .tabular import make_linear_mixture_mdp, make_tabular_mdp  # noqa: E402

register("rlx/KeyDoor-v0", make_keydoor, overwrite=True)
register("rlx/Household-v0", make_household, overwrite=True)

from .probes import PROBES, make_probe  # noqa: E402

for _probe in PROBES:  # rlx/ProbeOneStep-v0, rlx/ProbeTwoStep-v0, rlx/ProbeTruncation-v0
    register(_probe, lambda _name=_probe, **kw: make_probe(_name, **kw), overwrite=True)
register("rlx/PointMaze-v0", make_point_maze, overwrite=True)
register("rlx/TabularMDP-v0", make_tabular_mdp, overwrite=True)
register("rlx/LinearMixtureMDP-v0", make_linear_mixture_mdp, overwrite=True)
