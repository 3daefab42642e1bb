"""The control-plane harness: clear failures, and nothing left behind after stop()."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from flightdeck_operator.localdev.controlplane import ControlPlane, ControlPlaneError, find_binaries


def test_missing_binaries_fail_with_a_clear_message(tmp_path: Path) -> None:
    (tmp_path / "etcd").write_text("")
    with pytest.raises(ControlPlaneError, match=r"not found .*make control-plane"):
        find_binaries(tmp_path)


def test_a_taken_port_fails_with_a_clear_message(bin_dir: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(ControlPlaneError, match=rf"port {port} for kube-apiserver is already in use"):
            ControlPlane(bin_dir=bin_dir, apiserver_port=port).start()


def test_stop_leaves_no_process_and_no_directory(bin_dir: Path) -> None:
    control_plane = ControlPlane(bin_dir=bin_dir)
    control_plane.start()
    pids = [process.pid for _, process in control_plane._processes]
    run_dir = control_plane.run_dir
    assert len(pids) == 2
    assert control_plane.kubectl("get", "namespaces", "-o", "name").stdout.count("namespace/") >= 1
    control_plane.stop()
    assert not run_dir.exists()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
