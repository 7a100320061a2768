"""Child-process plumbing: each run and each cost measurement in a fresh process, and which machine ran it."""
from __future__ import annotations

import os
import platform
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch


def run_child(cmd: List[str], log: Path, env: Optional[Dict[str, str]] = None) -> tuple:
    """Run ``cmd`` as a child process; (seconds, peak resident memory of that child in MB)."""
    start = time.time()
    with open(log, "a") as f:
        f.write("$ " + " ".join(shlex.quote(c) for c in cmd) + "\n")
        f.flush()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"child process failed (exit {code}); its command and output are in {log}")
    return time.time() - start, usage.ru_maxrss / 1024.0


def run_parallel(fn, items: List[Any], width: int) -> List[Any]:
    """``[fn(x) for x in items]``, up to ``width`` at once (each call waits on its own child process)."""
    if width <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(width, len(items))) as pool:
        return list(pool.map(fn, items))


def cpu_model() -> str:
    """The CPU's model name ("AMD EPYC", from /proc/cpuinfo on Linux), else the architecture: two machines with
    the same core count can differ 3x in speed, so a cost must say which one measured it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({platform.machine()})"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description(*, cpu: bool = False) -> str:
    if torch.cuda.is_available() and not cpu:
        return f"{torch.cuda.get_device_name(0)}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    return f"{cpu_model()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
