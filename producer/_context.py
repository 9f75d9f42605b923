"""Who is logging: the run, the experiment, and this process's place in a distributed job.

Run id precedence, first found wins:
1. the `run_id` argument of `start_run`;
2. `RUNSTREAM_RUN_ID` (set by `runstream run` for the command it launches, and so inherited by
   every rank that `torchrun` or another launcher spawns from it);
3. the launcher's job id: `TORCHELASTIC_RUN_ID` (torchrun; ignored when it is "none"), then
   `SLURM_JOB_ID` (with `SLURM_STEP_ID`), then `OMPI_MCA_ess_base_jobid`;
4. a new id (uuid4 hex): a single-process run.

Rank and world size come from `RANK`/`WORLD_SIZE` (torchrun, DeepSpeed, Accelerate), else
`SLURM_PROCID`/`SLURM_NTASKS`, else `OMPI_COMM_WORLD_RANK`/`OMPI_COMM_WORLD_SIZE`, else 0 and 1.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from runstream._errors import ConfigError
from runstream.schemas import check_name, check_run_id

_JOB_IDS = ("TORCHELASTIC_RUN_ID", "SLURM_JOB_ID", "OMPI_MCA_ess_base_jobid")
_RANKS = (
    ("RANK", "WORLD_SIZE"),
    ("SLURM_PROCID", "SLURM_NTASKS"),
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
)


@dataclass(frozen=True, slots=True)
class RunContext:
    """The identity every event of this process carries."""

    run_id: str
    experiment: str
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    name: str | None = None

    def __post_init__(self) -> None:
        check_run_id(self.run_id)
        check_name("experiment", self.experiment)
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ConfigError(
                f"rank={self.rank}, world_size={self.world_size}: need 0 <= rank < size"
            )


def new_run_id() -> str:
    """A fresh run id."""
    return uuid.uuid4().hex


def launcher_run_id(env: Mapping[str, str]) -> str | None:
    """The run id a distributed launcher's job id implies (3. above); `RUNSTREAM_RUN_ID` (2.)
    is read with the other settings, by `runstream._settings`.
    """
    for variable in _JOB_IDS:
        value = env.get(variable, "")
        if value and value != "none":
            step = env.get("SLURM_STEP_ID") if variable == "SLURM_JOB_ID" else None
            job = f"{value}.{step}" if step else value
            return "".join(c if c.isalnum() or c in "._:-" else "-" for c in job)
    return None


def ranks_from(env: Mapping[str, str]) -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from the launcher's variables."""
    for rank_var, size_var in _RANKS:
        if rank_var in env and size_var in env:
            try:
                rank, size = int(env[rank_var]), int(env[size_var])
            except ValueError as exc:
                raise ConfigError(f"{rank_var}/{size_var} are not whole numbers") from exc
            local = int(env.get("LOCAL_RANK", env.get("SLURM_LOCALID", "0")) or 0)
            return rank, size, local
    return 0, 1, 0
