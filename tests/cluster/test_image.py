"""The operator and the sidecar run from the project's image (buildah, chroot isolation, the host's
network) against the local control plane, as the image's non-root user, and decide requests: one
created with kubectl (through the operator's admission webhook), one promoted over HTTP."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import yaml

from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.localdev.image import ImageLauncher
from flightdeck_operator.localdev.processes import OperatorProcess, SidecarProcess

from .conftest import TEST_TIMINGS
from .kube import apply, get, quickstart, request, wait_decided
from .sidecar_client import action_body, quickstart_events


def shared_directory(control_plane: ControlPlane, tmp_path: Path) -> tuple[Path, Path]:
    """A directory the image's user (not root) may use, with a kubeconfig (the admin's token, the
    API server's CA) that reads nothing outside it."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    ca = shared / "ca.crt"
    shutil.copyfile(control_plane.ca_file, ca)
    ca.chmod(0o644)
    kubeconfig = shared / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "local",
                        "cluster": {"server": control_plane.server, "certificate-authority": str(ca)},
                    }
                ],
                "users": [{"name": "admin", "user": {"token": control_plane.identity("admin").token}}],
                "contexts": [{"name": "admin", "context": {"cluster": "local", "user": "admin"}}],
                "current-context": "admin",
            }
        )
    )
    kubeconfig.chmod(0o644)
    return shared, kubeconfig


def test_the_image_decides_requests_on_the_local_control_plane(
    control_plane: ControlPlane, crds: Path, namespace: str, tmp_path: Path, built_image: str
) -> None:
    shared, kubeconfig = shared_directory(control_plane, tmp_path)
    launcher = ImageLauncher(built_image, mounts=[shared])
    store = str(shared / "flightdeck.db")
    operator = OperatorProcess(
        kubeconfig=kubeconfig,
        store=store,
        log_path=tmp_path / "operator.log",
        namespaces=(namespace,),
        extra_env=TEST_TIMINGS,
        webhook_delegates=("admin",),
        cert_dir=shared / "webhook-certs",
        admin_kubeconfig=control_plane.kubeconfig("admin"),
        launcher=launcher,
    )
    sidecar = SidecarProcess(
        kubeconfig=kubeconfig,
        store=store,
        namespace=namespace,
        log_path=tmp_path / "sidecar.log",
        args=("--auth", "none"),
        launcher=launcher,
    )
    try:
        with operator, sidecar, httpx.Client(base_url=sidecar.url, timeout=60) as api:
            quickstart(control_plane, namespace)
            assert api.post("/v1/events", json={"events": quickstart_events()}).status_code == 200
            apply(control_plane, namespace, request("first", "support-local", "support-base"))
            decided = wait_decided(control_plane, namespace, "first")
            assert decided["status"]["phase"] == "Promoted"
            assert decided["spec"]["requestedBy"]["username"] == "admin"  # stamped by the image's webhook
            blocked = api.post("/v1/promote", json=action_body("support-cand"))
            assert blocked.status_code == 409, blocked.text  # the quickstart's cost breach, over HTTP
            assert get(control_plane, namespace, "releasepointer", "support-local")["status"][
                "releaseId"
            ] == ("support-base")
            for log in (operator.log_tail(400), sidecar.log_tail(400)):
                assert "Traceback" not in log, log
    finally:
        launcher.cleanup()
    # The store was written by the image's user, not by root.
    assert (shared / "flightdeck.db").stat().st_uid == 65532
