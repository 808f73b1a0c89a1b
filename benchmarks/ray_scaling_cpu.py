"""Where a benchmark run's CPU time goes, read from /proc (Linux): per process of the run's tree
(the driver, Ray's embed actors and decode workers, Ray's daemons), and the CPU time the machine
spent on given cores, whoever ran there (the rest is other processes' load)."""

from __future__ import annotations

import os
from pathlib import Path


def process_cpu(root: int) -> dict[int, tuple[str, float, str]]:
    """pid -> (role, CPU seconds, command) for `root` and every process descended from it."""
    tick = os.sysconf("SC_CLK_TCK")
    parent, cpu, name = {}, {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
            cmd = (
                Path(f"/proc/{d}/cmdline")
                .read_bytes()
                .replace(b"\0", b" ")
                .decode(errors="replace")
            )
        except OSError:  # ended meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()
        pid = int(d)
        parent[pid], cpu[pid], name[pid] = int(fields[1]), (int(fields[11]) + int(fields[12])), cmd
    out = {}
    for pid in cpu:
        p = pid
        while p not in (root, 0, 1) and p in parent:
            p = parent[p]
        if p == root:
            out[pid] = (_role(pid, root, name[pid]), cpu[pid] / tick, name[pid][:80])
    return out


def busy_cores(cores: set[int]) -> float:
    """CPU seconds the machine has spent busy on `cores` since boot, whoever ran (/proc/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cores:
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
            total += user + nice + system + irq + softirq + steal
    return total / tick


def _role(pid: int, root: int, cmd: str) -> str:
    if pid == root:
        return "driver"
    if cmd.startswith("ray::EmbedWorker"):
        return "embed actors"
    if cmd.startswith(("ray::DecodeWorker", "ray::IDLE", "ray::decode")):
        return "decode workers"
    return "ray daemons"  # gcs_server, raylet, log monitor, Ray's agents


def cpu_by_role(before: dict, after: dict) -> tuple[dict[str, float], list]:
    """CPU seconds spent between two `process_cpu` readings: by role, and by process."""
    out: dict[str, float] = {}
    procs = []
    for pid, (role, s, cmd) in after.items():
        used = s - before.get(pid, (role, 0.0, cmd))[1]
        out[role] = out.get(role, 0.0) + used
        procs.append((round(used, 2), role, cmd, pid))
    return {k: round(v, 2) for k, v in sorted(out.items())}, sorted(procs, reverse=True)[:10]
