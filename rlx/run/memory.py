"""``rlx train ... --dry-run``: build, estimate and compile a run without training, and report
the compiled programs' memory analysis (``jax.jit(...).lower(...).compile().memory_analysis()``).
The programs are those of the :class:`rlx.run.compiled.CompiledRun` that :func:`rlx.run.run`
trains with, compiled from shapes alone. The estimates and refusals themselves are
:mod:`rlx.core.memory`'s."""

from __future__ import annotations

import dataclasses
from typing import Any

from rlx.core.memory import DeviceMemory, StateEstimate, device_memory, format_bytes, state_estimate

# ---------------------------------------------------------------------------------------------
# --dry-run
# ---------------------------------------------------------------------------------------------
_ANALYSIS_FIELDS = (
    ("argument_size_in_bytes", "arguments"),
    ("output_size_in_bytes", "outputs"),
    ("alias_size_in_bytes", "aliased (donated) arguments"),
    ("temp_size_in_bytes", "temporaries"),
    ("generated_code_size_in_bytes", "generated code"),
)


def memory_analysis(compiled) -> dict[str, int] | None:
    """The fields of ``compiled.memory_analysis()`` as a dict (None where the backend has none)."""
    try:
        analysis = compiled.memory_analysis()
    except Exception:  # noqa: BLE001  (not every backend implements it)
        return None
    if analysis is None:
        return None
    return {field: int(getattr(analysis, field)) for field, _ in _ANALYSIS_FIELDS if hasattr(analysis, field)}


def _analysis_lines(title: str, fields: dict[str, int] | None) -> list[str]:
    if fields is None:
        return [f"  {title}: the backend gives no memory analysis"]
    lines = [f"  {title}:"]
    for field, label in _ANALYSIS_FIELDS:
        if field in fields:
            lines.append(f"    {label:<40} {format_bytes(fields[field]):>14}")
    peak = fields.get("argument_size_in_bytes", 0) + fields.get("output_size_in_bytes", 0) - fields.get(
        "alias_size_in_bytes", 0
    ) + fields.get("temp_size_in_bytes", 0)
    lines.append(f"    {'peak (args + outputs - aliased + temps)':<40} {format_bytes(peak):>14}")
    return lines


@dataclasses.dataclass
class DryRunReport:
    estimate: StateEstimate
    memory: DeviceMemory
    init_analysis: dict[str, int] | None
    chunk_analysis: dict[str, int] | None
    blocks_per_chunk: int
    num_runs: int
    compile_seconds: float

    @property
    def fits(self) -> bool:
        return self.memory.free_bytes is None or self.estimate.bytes_per_device <= self.memory.free_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "state_bytes_per_run": self.estimate.bytes_per_run,
            "state_bytes_per_device": self.estimate.bytes_per_device,
            "state_parts_per_run": self.estimate.parts,
            "runs": self.num_runs,
            "runs_per_device": self.estimate.runs_per_device,
            "device": self.memory.device,
            "device_free_bytes": self.memory.free_bytes,
            "device_total_bytes": self.memory.total_bytes,
            "fits": self.fits,
            "init_memory_analysis": self.init_analysis,
            "chunk_memory_analysis": self.chunk_analysis,
            "blocks_per_chunk": self.blocks_per_chunk,
            "compile_seconds": round(self.compile_seconds, 3),
        }

    def text(self) -> str:
        lines = [
            f"training state: {self.estimate.describe(top=6)}",
            f"device: {self.memory.describe()}",
            "fits" if self.fits else "DOES NOT FIT: training would be refused",
            f"compiled programs ({self.num_runs} run(s), {self.estimate.runs_per_device} per device; "
            f"compiled in {self.compile_seconds:.1f} s):",
            *_analysis_lines("init", self.init_analysis),
            *_analysis_lines(f"training chunk ({self.blocks_per_chunk} evaluation block(s))", self.chunk_analysis),
            "dry run: nothing was trained or written",
        ]
        return "\n".join(lines)


def dry_run(agent, config, env, env_params=None, *, env_kwargs=None, seed: int = 0, num_seeds: int = 1,
            blocks_per_chunk: int = 1, devices: int | None = None) -> DryRunReport:
    """Build, estimate and compile a run exactly as :func:`rlx.run.run` would, without training.

    Nothing is allocated but the keys: ``init`` and the chunk are lowered on abstract shapes.
    """
    import time

    from rlx.run.compiled import CompiledRun
    from rlx.run.driver import _resolve_env, seed_keys
    from rlx.run.mesh import runs_layout
    from rlx.run.train import make_train

    if num_seeds < 1:
        raise ValueError(f"num_seeds must be >= 1, got {num_seeds}")
    if blocks_per_chunk < 1:
        raise ValueError(f"blocks_per_chunk must be >= 1, got {blocks_per_chunk}")
    _, env, env_params = _resolve_env(env, env_params, env_kwargs)
    train = make_train(agent, config, env, env_params)
    layout = runs_layout(num_seeds, devices)
    estimate = state_estimate(train, layout.runs_per_device)
    memory = device_memory()
    compiled = CompiledRun.of_train(train, layout, num_seeds)  # what rlx.run.run trains with
    keys = seed_keys(seed, num_seeds)
    inputs = keys if num_seeds > 1 else keys[0]
    t0 = time.perf_counter()
    init_compiled = compiled.lower_init(inputs)
    n = min(blocks_per_chunk, train.schedule.num_evals)
    chunk_compiled = compiled.lower_chunk(n, inputs)
    return DryRunReport(
        estimate, memory, memory_analysis(init_compiled), memory_analysis(chunk_compiled), n, num_seeds,
        time.perf_counter() - t0,
    )
