"""Running a command under ``torchrun --nproc_per_node=2`` (gloo on the CPU) from a test."""

import os
import signal
import subprocess
import sys


def torchrun_two_processes(*command: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node=2 COMMAND``; on a timeout (a hang) the launcher and both workers are killed."""
    import socket

    with socket.socket() as probe:  # a free port, so a leftover or parallel run cannot collide with this one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
                "--master_addr=127.0.0.1"]
    process = subprocess.Popen(torchrun + list(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise AssertionError(f"torchrun did not finish in {timeout} s (a hang between the processes?)") from None
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
