"""A batch job request, parsed and checked before anything is queued.

Each bad value raises :class:`~oceandata.errors.UsageError` with one line that names
the option, the value, what is wrong with it and what is valid::

    --walltime '1:75:00': minutes must be 00-59; give HH:MM:SS, MM:SS or D-HH:MM:SS,
    e.g. 1:00:00
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from .notebook import check_parameters, is_notebook

#: bytes per unit of ``--memory`` (case-insensitive)
MEMORY_UNITS: dict[str, int] = {
    "KB": 10**3, "MB": 10**6, "GB": 10**9,
    "KIB": 2**10, "MIB": 2**20, "GIB": 2**30,
}
_UNITS_TEXT = "KB, MB, GB, KiB, MiB or GiB"
_WALLTIME_FORMS = "HH:MM:SS, MM:SS or D-HH:MM:SS, e.g. 1:00:00"


@dataclass(frozen=True)
class JobSpec:
    """What a job asks for.

    Attributes
    ----------
    script
        The script to run (an existing file), or a notebook (``.ipynb``).
    args
        Its arguments (a notebook's: ``-p NAME VALUE`` triples).
    cores
        Cores (``--cpus-per-task`` on Slurm).
    memory_mb
        Memory in MiB (rounded up).
    walltime_s
        Longest run time in seconds.
    name
        A short name (default the script's file name).
    workers
        Dask workers of the job's cluster (``--workers``; 0: none, the job's own
        LocalCluster). On Slurm each is a Slurm job of its own; on the local backend
        they share the job's cores and memory.
    worker_cores, worker_memory_mb
        Cores and memory (MiB) of each worker (``--worker-cores``, ``--worker-memory``).
    """

    script: Path
    cores: int
    memory_mb: int
    walltime_s: int
    args: tuple[str, ...] = field(default_factory=tuple)
    name: str | None = None
    workers: int = 0
    worker_cores: int = 1
    worker_memory_mb: int = 2048

    @property
    def memory_gb(self) -> float:
        """Memory in GiB, as the allocation's ``memory_per_job_gb`` counts it."""
        return self.memory_mb / 1024

    @property
    def hours(self) -> float:
        """Walltime in hours."""
        return self.walltime_s / 3600

    @property
    def worker_memory_gb(self) -> float:
        """Memory of one worker in GiB."""
        return self.worker_memory_mb / 1024


def format_walltime(seconds: int) -> str:
    """Return *seconds* as Slurm's ``D-HH:MM:SS`` (``HH:MM:SS`` under a day).

    Parameters
    ----------
    seconds
        A duration.

    Returns
    -------
    str
        The duration as ``sbatch --time`` takes it.
    """
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{text}" if days else text


def parse_cores(value: object, max_cores: int | None, *, option: str = "--cores") -> int:
    """Check a number of cores.

    Parameters
    ----------
    value
        What was given (an int or its text).
    max_cores
        The largest the machine or partition allows (None: no upper bound).
    option
        The option's name in messages.

    Returns
    -------
    int
        The cores.
    """
    return _count(value, option=option, noun="cores", most=max_cores,
                  most_is="this machine or partition has")


def _count(value: object, *, option: str, noun: str, most: int | None, most_is: str,
           below: str = "") -> int:
    """A whole number from 1 to *most* (None: no upper bound) of *noun*, or one line.

    *most_is* says whose bound it is ("the 4 <most_is>"); *below* is added to the
    message of a number under 1.
    """
    valid = f"give a whole number from 1 to {most}" if most else \
        "give a whole number, 1 or more"
    if isinstance(value, bool):
        raise UsageError(f"{option} {value!r} is not a number of {noun}; {valid}")
    text = str(value).strip()
    if not re.fullmatch(r"[+-]?\d+", text):
        raise UsageError(f"{option} {text!r} is not a whole number of {noun}; {valid}")
    count = int(text)
    if count < 1:
        raise UsageError(f"{option} {count} is less than 1; {valid}{below}")
    if most is not None and count > most:
        raise UsageError(f"{option} {count} is more than the {most} {most_is}; {valid}")
    return count


def parse_memory(value: object, *, option: str = "--memory") -> int:
    """Parse a memory size such as ``4GB`` or ``512MiB`` into MiB (rounded up).

    Parameters
    ----------
    value
        The size with its unit (KB, MB, GB, KiB, MiB, GiB; any case).
    option
        The option's name in messages.

    Returns
    -------
    int
        MiB, at least 1.
    """
    text = str(value).strip()
    match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)", text)
    if not match:
        raise UsageError(f"{option} {text!r} is not a size; give a number and a unit "
                         f"({_UNITS_TEXT}), e.g. 4GB")
    number, unit = float(match.group(1)), match.group(2)
    if not unit:
        raise UsageError(f"{option} {text!r} has no unit; give one of {_UNITS_TEXT}, "
                         f"e.g. {match.group(1)}GB")
    factor = MEMORY_UNITS.get(unit.upper())
    if factor is None:
        raise UsageError(f"{option} {text!r}: unknown unit {unit!r}; give one of "
                         f"{_UNITS_TEXT}, e.g. 4GB")
    if number <= 0 or not math.isfinite(number):
        raise UsageError(f"{option} {text!r} must be more than 0, e.g. 4GB")
    return max(1, math.ceil(number * factor / 2**20))


def parse_walltime(value: object, max_s: int | None, *, option: str = "--walltime") -> int:
    """Parse a walltime (``HH:MM:SS``, ``MM:SS`` or ``D-HH:MM:SS``) into seconds.

    Parameters
    ----------
    value
        The walltime.
    max_s
        The longest allowed, in seconds (None: no upper bound).
    option
        The option's name in messages.

    Returns
    -------
    int
        Seconds, more than 0.
    """
    text = str(value).strip()
    match = re.fullmatch(r"(?:(\d+)-(\d+):(\d+):(\d+))|(?:(\d+):(\d+):(\d+))|(?:(\d+):(\d+))",
                         text)
    if not match:
        raise UsageError(f"{option} {text!r} is not a duration; give {_WALLTIME_FORMS}")
    groups = match.groups()
    if groups[0] is not None:
        days, hours, minutes, seconds = (int(g) for g in groups[0:4])
    elif groups[4] is not None:
        days, (hours, minutes, seconds) = 0, (int(g) for g in groups[4:7])
    else:
        days, hours, (minutes, seconds) = 0, 0, (int(g) for g in groups[7:9])
    if groups[0] is not None and hours > 23:
        raise UsageError(f"{option} {text!r}: hours must be 00-23 after the days; give "
                         f"{_WALLTIME_FORMS}")
    if (groups[0] is not None or groups[4] is not None) and minutes > 59:
        raise UsageError(f"{option} {text!r}: minutes must be 00-59; give {_WALLTIME_FORMS}")
    if seconds > 59:
        raise UsageError(f"{option} {text!r}: seconds must be 00-59; give {_WALLTIME_FORMS}")
    total = days * 86400 + hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise UsageError(f"{option} {text!r} must be longer than 0; give {_WALLTIME_FORMS}")
    if max_s is not None and total > max_s:
        raise UsageError(f"{option} {text!r} is longer than the maximum "
                         f"{format_walltime(max_s)}; give at most that")
    return total


def check_script(path: object, *, option: str = "SCRIPT") -> Path:
    """Check that the script exists and is a regular file.

    Parameters
    ----------
    path
        The script's path.
    option
        The argument's name in messages.

    Returns
    -------
    Path
        The absolute path.
    """
    text = str(path).strip() if path is not None else ""
    if not text:
        raise UsageError(f"{option} is empty; give the path of a script file, e.g. run.py")
    script = Path(text).expanduser()
    if not script.exists():
        raise UsageError(f"{option} {text!r} does not exist; give the path of a script file")
    if not script.is_file():
        raise UsageError(f"{option} {text!r} is not a file (a folder or a device?); give the "
                         "path of a script file")
    return script.resolve()


def parse_workers(value: object, max_workers: int | None = None, *,
                  option: str = "--workers") -> int:
    """Check a number of Dask workers (1 or more).

    Parameters
    ----------
    value
        What was given (an int or its text).
    max_workers
        The most a job may ask for (None: no upper bound).
    option
        The option's name in messages.

    Returns
    -------
    int
        The workers.
    """
    return _count(value, option=option, noun="workers", most=max_workers,
                  most_is="a job may have",
                  below=" (leave it out for the job's own LocalCluster)")


def check_workers(workers: object = None, worker_cores: object = None,
                  worker_memory: object = None, *, max_workers: int | None = None,
                  max_worker_cores: int | None = None) -> tuple[int, int, int]:
    """Check ``--workers``, ``--worker-cores`` and ``--worker-memory`` together.

    Parameters
    ----------
    workers, worker_cores, worker_memory
        As given (None or ``""``: not given). The worker options need ``--workers``.
    max_workers
        The most workers a job may have.
    max_worker_cores
        The most cores a worker may have (a node's, on Slurm).

    Returns
    -------
    tuple of int
        Workers (0 when not asked for), cores and memory (MiB) of each worker.
    """
    given = {name: value for name, value in (("--worker-cores", worker_cores),
                                             ("--worker-memory", worker_memory))
             if value not in (None, "")}
    if workers in (None, ""):
        if given:
            option = next(iter(given))
            raise UsageError(f"{option} {given[option]!s}: give --workers N too (the worker "
                             "options size the workers of --workers)")
        return 0, 1, 2048
    count = parse_workers(workers, max_workers)
    cores = parse_cores(worker_cores if worker_cores not in (None, "") else 1,
                        max_worker_cores, option="--worker-cores")
    memory = parse_memory(worker_memory if worker_memory not in (None, "") else "2GB",
                          option="--worker-memory")
    return count, cores, memory


def make_spec(script: object, args: list[str] | tuple[str, ...] = (), *, cores: object = 1,
              memory: object = "2GB", walltime: object = "1:00:00",
              max_cores: int | None = None, max_walltime_s: int | None = 7 * 86400,
              name: str | None = None, workers: object = None, worker_cores: object = None,
              worker_memory: object = None, max_workers: int | None = None) -> JobSpec:
    """Parse and check a whole request.

    Parameters
    ----------
    script, args
        The script and its arguments; for a notebook (``.ipynb``) the arguments are
        ``-p NAME VALUE`` triples, checked against the notebook's parameters
        (:func:`oceandata.jobs.notebook.check_parameters`).
    cores, memory, walltime
        As given on the command line (``4``, ``4GB``, ``1:00:00``).
    max_cores, max_walltime_s
        Upper bounds of the machine or partition (None: none).
    name
        A short name for the job.
    workers, worker_cores, worker_memory, max_workers
        Dask workers of the job (:func:`check_workers`; a worker has at most
        *max_cores* cores).

    Returns
    -------
    JobSpec
        The checked request.

    Raises
    ------
    UsageError
        On the first bad value, with a one-line message.
    """
    if name is not None and not re.fullmatch(r"[\w.+-]{1,64}", name):
        raise UsageError(f"--name {name!r}: use 1-64 letters, digits, '.', '_', '+' or '-'")
    path = check_script(script)
    args = [str(a) for a in args]
    if is_notebook(path):  # a notebook's arguments are its -p NAME VALUE parameters
        args = check_parameters(path, args)
    job_cores = parse_cores(cores, max_cores)
    memory_mb = parse_memory(memory)
    walltime_s = parse_walltime(walltime, max_walltime_s)
    n, per_worker, worker_mb = check_workers(workers, worker_cores, worker_memory,
                                             max_workers=max_workers,
                                             max_worker_cores=max_cores)
    return JobSpec(
        script=path,
        args=tuple(args),
        cores=job_cores,
        memory_mb=memory_mb,
        walltime_s=walltime_s,
        name=name,
        workers=n,
        worker_cores=per_worker,
        worker_memory_mb=worker_mb,
    )
