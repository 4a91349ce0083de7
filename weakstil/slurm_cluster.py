"""What a SLURM cluster offers (partitions, nodes, CPUs, memory, GPUs) and whether a job fits.

Read from ``scontrol --all --oneliner show partition`` and ``... show node``: parsing
is pure (text in, dataclasses out), so it is tested on outputs captured from a real cluster;
:func:`query_cluster` runs the two commands. :func:`check_request` says, before anything is
submitted, why a job could never start: the partition is missing or closed, or no node of it
has the CPUs, memory, GPUs (of the model asked for) or wall time the job asks for. SLURM would
refuse such a job at ``sbatch`` (``Invalid generic resource (gres) specification``,
``Requested node configuration is not available``) or, worse, leave it pending for ever.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field

#: ``Key=value`` pairs of a ``--oneliner`` record; values may hold spaces (``OS=Linux 6.1 #1 SMP``)
#: and ``=`` (``TRES=cpu=2,mem=1000M``), so a value runs until the next `` Key=``.
_PAIR = re.compile(r"(?:^|\s)([A-Za-z][\w/.:]*)=(.*?)(?=\s+[A-Za-z][\w/.:]*=|\s*$)")
#: Node states in which a node takes no new job (``DOWN*``: not responding).
_UNUSABLE_STATES = ("DOWN", "DRAIN", "FAIL", "INVAL", "NOT_RESPONDING", "POWERED_DOWN", "FUTURE", "MAINT")
#: Partition states in which ``sbatch`` refuses jobs; ``DOWN`` queues them but starts none.
_CLOSED_PARTITION_STATES = ("INACTIVE", "DRAIN")
_UNLIMITED = ("UNLIMITED", "INFINITE", "NONE", "N/A", "", "(null)")


class ClusterQueryError(RuntimeError):
    """``scontrol`` is missing or failed (not on a SLURM login node, controller down)."""


@dataclass(frozen=True)
class Node:
    name: str
    cpus: int
    memory_mb: int
    #: GPU type ('' when the node does not name one) -> count
    gpus: dict[str, int] = field(default_factory=dict)
    state: str = "IDLE"
    partitions: tuple[str, ...] = ()

    @property
    def gpu_count(self) -> int:
        return sum(self.gpus.values())

    @property
    def usable(self) -> bool:
        """Takes new jobs now (IDLE, MIXED, ALLOCATED...), as opposed to down, drained or failed."""
        state = self.state.upper()
        return not state.endswith("*") and not any(s in state for s in _UNUSABLE_STATES)

    def gpus_of(self, model: str | None) -> int:
        """GPUs of ``model`` (any type when None); types compare case-insensitively."""
        if not model:
            return self.gpu_count
        return sum(n for t, n in self.gpus.items() if t.lower() == model.lower())


@dataclass(frozen=True)
class Partition:
    name: str
    state: str = "UP"
    default: bool = False
    max_time_min: float | None = None
    max_mem_per_node_mb: int | None = None
    max_mem_per_cpu_mb: int | None = None
    max_cpus_per_node: int | None = None
    nodes: tuple[str, ...] = ()


@dataclass
class Cluster:
    partitions: dict[str, Partition]
    nodes: dict[str, Node]

    def nodes_of(self, partition: str) -> list[Node]:
        return [n for n in self.nodes.values() if partition in n.partitions]


@dataclass(frozen=True)
class JobRequest:
    """What one kind of job asks of SLURM, and the workflow settings that decide it."""

    rules: tuple[str, ...]
    partition: str
    cpus: int
    mem_mb: int
    runtime_min: int
    gpus: int = 0
    gpu_model: str | None = None
    #: config keys to name in the fix, e.g. {"partition": "slurm.gpu_partition", "mem": "slurm.embed_mem_mb"}
    keys: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def plural(self) -> bool:
        return len(self.rules) > 1 or self.rules[0] in _PER_SLIDE

    @property
    def what(self) -> str:
        return f"{', '.join(self.rules)} job{'s' if self.plural else ''}"

    @property
    def asks(self) -> str:
        """``the embed jobs ask`` / ``the train job asks``."""
        return f"the {self.what} {'ask' if self.plural else 'asks'}"


_PER_SLIDE = ("tile", "embed", "tumorbed")


@dataclass(frozen=True)
class Problem:
    """One reason a job cannot run, and the setting that fixes it."""

    message: str
    fix: str


# --- parsing (pure) -----------------------------------------------------------------------
def parse_oneliner(text: str) -> list[dict[str, str]]:
    """One dict per non-empty line of ``scontrol show ... --oneliner`` output."""
    return [{m.group(1): m.group(2).strip() for m in _PAIR.finditer(line)} for line in text.splitlines()
            if "=" in line]


def parse_gres(text: str) -> dict[str, int]:
    """GPUs in a node's ``Gres``: ``gpu:a100:4(S:0-1),gpu:v100:2,shard:8`` -> {'a100': 4, 'v100': 2}.

    An untyped ``gpu:2`` counts under ''. Other generic resources (shard, mps) are not GPUs."""
    gpus: dict[str, int] = {}
    if text.strip() in _UNLIMITED:
        return gpus
    # commas inside "(S:0,2)" socket lists do not separate entries
    for entry in re.split(r",(?![^()]*\))", text):
        entry = re.sub(r"\(.*?\)", "", entry).strip()
        parts = entry.split(":")
        if parts[0] != "gpu":
            continue
        count, kind = 1, ""
        if len(parts) >= 2 and _count(parts[-1]) is not None:
            count = _count(parts[-1])
            kind = ":".join(parts[1:-1])
        elif len(parts) >= 2:
            kind = ":".join(parts[1:])
        gpus[kind] = gpus.get(kind, 0) + count
    return gpus


def _count(text: str) -> int | None:
    m = re.fullmatch(r"(\d+)([KMG]?)", text.strip())
    if not m:
        return None
    return int(m.group(1)) * {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[m.group(2)]


def parse_time_minutes(text: str) -> float | None:
    """A SLURM time limit in minutes (``UNLIMITED`` -> None), in any of SLURM's forms:
    ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``."""
    text = text.strip()
    if text.upper() in _UNLIMITED:
        return None
    if "-" in text:
        days, rest = text.split("-", 1)
        h, m, s = ([int(p) for p in rest.split(":")] + [0, 0])[:3]
        return int(days) * 1440 + h * 60 + m + s / 60
    parts = [int(p) for p in text.split(":")]
    if len(parts) == 3:
        return parts[0] * 60 + parts[1] + parts[2] / 60
    return parts[0] + (parts[1] / 60 if len(parts) == 2 else 0)


def _limit(text: str | None) -> int | None:
    if text is None or text.strip().upper() in _UNLIMITED:
        return None
    m = re.fullmatch(r"(\d+)([KMGT]?)", text.strip())
    if not m:
        return None
    return int(int(m.group(1)) * {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2}[m.group(2)])


def parse_partitions(text: str) -> dict[str, Partition]:
    """``scontrol show partition --oneliner`` -> name -> :class:`Partition`."""
    out = {}
    for rec in parse_oneliner(text):
        name = rec.get("PartitionName")
        if not name:
            continue
        out[name] = Partition(
            name=name, state=rec.get("State", "UP").upper(), default=rec.get("Default", "NO").upper() == "YES",
            max_time_min=parse_time_minutes(rec.get("MaxTime", "UNLIMITED")),
            max_mem_per_node_mb=_limit(rec.get("MaxMemPerNode")), max_mem_per_cpu_mb=_limit(rec.get("MaxMemPerCPU")),
            max_cpus_per_node=_limit(rec.get("MaxCPUsPerNode")),
            nodes=tuple(n for n in rec.get("Nodes", "").split(",") if n and n != "(null)"),
        )
    return out


def parse_nodes(text: str) -> dict[str, Node]:
    """``scontrol show node --oneliner`` -> name -> :class:`Node` (CPUs, RealMemory, GPUs, state, partitions)."""
    out = {}
    for rec in parse_oneliner(text):
        name = rec.get("NodeName")
        if not name:
            continue
        cpus = rec.get("CPUEfctv") or rec.get("CPUTot") or "0"
        out[name] = Node(
            name=name, cpus=int(cpus), memory_mb=_limit(rec.get("RealMemory", "0")) or 0,
            gpus=parse_gres(rec.get("Gres", "")), state=rec.get("State", "UNKNOWN").upper(),
            partitions=tuple(p for p in rec.get("Partitions", "").split(",") if p),
        )
    return out


def parse_cluster(partitions_text: str, nodes_text: str) -> Cluster:
    return Cluster(parse_partitions(partitions_text), parse_nodes(nodes_text))


def query_cluster(timeout_s: float = 30) -> Cluster:
    """The cluster as this machine's ``scontrol`` sees it; :class:`ClusterQueryError` when it cannot."""
    if shutil.which("scontrol") is None:
        raise ClusterQueryError("scontrol not found: this machine is not a SLURM login node")
    texts = []
    for what in ("partition", "node"):
        try:
            # --all: hidden partitions take jobs too
            proc = subprocess.run(["scontrol", "--all", "--oneliner", "show", what], capture_output=True,
                                  text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise ClusterQueryError(f"scontrol show {what} did not answer within {timeout_s:.0f} s") from None
        if proc.returncode != 0:
            msg = (proc.stderr or proc.stdout).strip().splitlines()
            raise ClusterQueryError(f"scontrol show {what} failed: {msg[-1] if msg else proc.returncode}")
        texts.append(proc.stdout)
    return parse_cluster(*texts)


# --- checking (pure) ----------------------------------------------------------------------
def node_memory_mb(node: Node, partition: Partition) -> int:
    """The most memory one job can get on ``node`` in ``partition`` (its limits included)."""
    cap = node.memory_mb
    if partition.max_mem_per_node_mb is not None:
        cap = min(cap, partition.max_mem_per_node_mb)
    if partition.max_mem_per_cpu_mb is not None:  # SLURM adds CPUs to satisfy memory, up to the node's
        cap = min(cap, partition.max_mem_per_cpu_mb * node.cpus)
    return cap


def partition_memory_mb(cluster: Cluster, partition: str) -> int | None:
    """The most memory one job can get in ``partition`` (None: unknown partition or no nodes)."""
    part = cluster.partitions.get(partition)
    nodes = cluster.nodes_of(partition)
    return max(node_memory_mb(n, part) for n in nodes) if part is not None and nodes else None


def _key(request: JobRequest, what: str, default: str) -> str:
    return request.keys.get(what, default)


def check_request(request: JobRequest, cluster: Cluster) -> list[Problem]:
    """Why ``request`` can never start on ``cluster`` (empty: it can)."""
    part = cluster.partitions.get(request.partition)
    pkey = _key(request, "partition", "slurm.partition")
    if part is None:
        known = ", ".join(sorted(cluster.partitions)) or "none"
        return [Problem(f"partition '{request.partition}' ({pkey}, for the {request.what}) does not exist on this "
                        f"cluster (partitions: {known})", f"set {pkey} to one of {known}")]
    if part.state in _CLOSED_PARTITION_STATES:
        return [Problem(f"partition '{part.name}' ({pkey}) is {part.state} and takes no jobs",
                        f"set {pkey} to another partition, or ask the cluster's admins")]
    nodes = cluster.nodes_of(part.name)
    if not nodes:
        return [Problem(f"partition '{part.name}' ({pkey}) has no nodes", f"set {pkey} to another partition")]
    problems: list[Problem] = []
    if request.runtime_min and part.max_time_min is not None and request.runtime_min > part.max_time_min:
        rkey = _key(request, "runtime", "slurm.runtime")
        problems.append(Problem(f"{request.asks} {request.runtime_min} min but partition '{part.name}' "
                                f"allows at most {part.max_time_min:g} min", f"set {rkey} to {int(part.max_time_min)} "
                                "or less"))
    if request.gpus:
        gkey = _key(request, "gpus", "slurm.gpus_per_embed")
        with_gpus = [n for n in nodes if n.gpus_of(request.gpu_model) >= request.gpus]
        if not with_gpus:
            most = max(n.gpus_of(request.gpu_model) for n in nodes)
            kind = f"{request.gpu_model} GPUs" if request.gpu_model else "GPUs"
            elsewhere = sorted({p for n in cluster.nodes.values() if n.gpus_of(request.gpu_model) >= request.gpus
                                for p in n.partitions})
            have = f"at most {most} {kind} per node" if most else f"no {kind}"
            fix = f"set {gkey}: 0 to run them on CPUs"
            if elsewhere:
                fix += f", or {pkey} to a partition with them: {', '.join(elsewhere)}"
            elif most:
                fix = f"set {gkey} to {most} or less"
            return [*problems, Problem(f"{request.asks} {request.gpus} GPU{'s' if request.gpus > 1 else ''}"
                                       f"{' (' + request.gpu_model + ')' if request.gpu_model else ''} per job but "
                                       f"partition '{part.name}' ({pkey}) has {have}", fix)]
        nodes = with_gpus
    cpu_cap = [min(n.cpus, part.max_cpus_per_node or n.cpus) for n in nodes]
    if max(cpu_cap) < request.cpus:
        ckey = _key(request, "cpus", "threads")
        problems.append(Problem(f"{request.asks} {request.cpus} CPUs but the nodes of partition "
                                f"'{part.name}' have at most {max(cpu_cap)}", f"set {ckey} to {max(cpu_cap)} or less"))
    fit = [n for n, c in zip(nodes, cpu_cap) if c >= request.cpus] or nodes

    most_mem = max(node_memory_mb(n, part) for n in fit)
    if most_mem < request.mem_mb:
        mkey = _key(request, "mem", "slurm.mem_mb")
        problems.append(Problem(f"{request.asks} {request.mem_mb} MB of memory but the largest node of "
                                f"partition '{part.name}' has {most_mem} MB", f"set {mkey} to {most_mem} or less"))
    return problems


def unusable_warning(request: JobRequest, cluster: Cluster) -> str | None:
    """A note when every node that could run ``request`` is down or drained (jobs would wait)."""
    nodes = cluster.nodes_of(request.partition)
    if nodes and not any(n.usable for n in nodes):
        states = ", ".join(sorted({n.state for n in nodes}))
        return (f"every node of partition '{request.partition}' is {states}: the {request.what} will wait until an "
                "admin brings one back")
    return None
