"""Which task sizes an environment may run: the CPU and memory pairs Fargate offers, and
production's floor of one task per availability zone."""

from __future__ import annotations

from collections.abc import Sequence

from infra_cdk.environments.config import ConfigurationError, TaskSize

# Fargate's task sizes: CPU units -> the memory sizes (MiB) allowed with them (Linux tasks).
FARGATE_MEMORY_MIB: dict[int, Sequence[int]] = {
    256: (512, 1024, 2048),
    512: range(1024, 4096 + 1, 1024),
    1024: range(2048, 8192 + 1, 1024),
    2048: range(4096, 16384 + 1, 1024),
    4096: range(8192, 30720 + 1, 1024),
    8192: range(16384, 61440 + 1, 4096),
    16384: range(32768, 122880 + 1, 8192),
}
# Production runs a task in each of its two availability zones, at the least.
PRODUCTION_MIN_TASKS = 2


def _describe(memory: Sequence[int]) -> str:
    if isinstance(memory, range):
        return f"{memory.start} to {memory[-1]} in steps of {memory.step}"
    return ", ".join(str(m) for m in memory)


def validate_size(size: TaskSize, environment_type: str) -> TaskSize:
    """Return `size` if Fargate can run it for `environment_type`, else raise a clear error."""
    if size.cpu not in FARGATE_MEMORY_MIB:
        raise ConfigurationError(
            f"task_cpu={size.cpu} is not a Fargate CPU size; use one of "
            f"{', '.join(str(cpu) for cpu in FARGATE_MEMORY_MIB)}"
        )
    memory = FARGATE_MEMORY_MIB[size.cpu]
    if size.memory_mib not in memory:
        raise ConfigurationError(
            f"task_memory_mib={size.memory_mib} does not go with task_cpu={size.cpu} on Fargate; "
            f"with {size.cpu} CPU units use {_describe(memory)} MiB"
        )
    if size.min_tasks > size.max_tasks:
        raise ConfigurationError(f"min_tasks {size.min_tasks} is above max_tasks {size.max_tasks}")
    if environment_type == "production" and size.min_tasks < PRODUCTION_MIN_TASKS:
        raise ConfigurationError(
            f"min_tasks={size.min_tasks} is too few for production, which runs at least "
            f"{PRODUCTION_MIN_TASKS} tasks (one per availability zone); use min_tasks={PRODUCTION_MIN_TASKS} "
            "or more"
        )
    return size
