"""Run the shipped GitOps health checks the way Argo CD and Flux do (shared by the unit and
cluster tiers).

* Argo CD: ``gitops/argocd/health.lua`` in Lua 5.1 (gopher-lua's dialect) through lupa, with only
  the libraries Argo CD opens for health scripts (base, table, a safe ``os``; no ``string``
  library and no string methods).
* Flux: the ``healthCheckExprs`` of ``gitops/flux/kustomization.yaml`` in a CEL interpreter, given
  the object's top-level fields as variables, in Flux's order (fluxcd/pkg runtime/cel
  StatusEvaluator: observedGeneration, then inProgress, failed, current; none true: InProgress).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import celpy
import yaml
from lupa import lua51

REPO_ROOT = Path(__file__).resolve().parents[1]
HEALTH_LUA = REPO_ROOT / "gitops" / "argocd" / "health.lua"
ARGOCD_CM = REPO_ROOT / "gitops" / "argocd" / "argocd-cm.yaml"
FLUX_KUSTOMIZATION = REPO_ROOT / "gitops" / "flux" / "kustomization.yaml"

SANDBOX = """
-- What Argo CD's gopher-lua VM offers a health script: base, table, a safe os; no string library.
getmetatable("").__index = nil
local safe_os = {time = os.time, clock = os.clock, date = os.date, difftime = os.difftime}
local env = {
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
  rawequal = rawequal, rawget = rawget, rawset = rawset, select = select, tonumber = tonumber,
  tostring = tostring, type = type, unpack = unpack, getmetatable = getmetatable,
  setmetatable = setmetatable, table = table, os = safe_os,
}
return function(source, obj)
  local chunk = assert(loadstring(source, "=health.lua"))
  env.obj = obj
  setfenv(chunk, env)
  return chunk()
end
"""


def sandboxed_runner(runtime: Any) -> Callable[[str, Any], Any]:
    """A function ``(lua source, obj table) -> result`` in Argo CD's library sandbox."""
    run: Callable[[str, Any], Any] = runtime.execute(SANDBOX)
    return run


@functools.cache
def _argocd() -> tuple[Any, Callable[[str, Any], Any]]:
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    return runtime, sandboxed_runner(runtime)


def argocd_health(body: Mapping[str, Any]) -> dict[str, str]:
    """``{"status": ..., "message": ...}`` as Argo CD computes it for ``body`` (a JSON object)."""
    runtime, run = _argocd()
    result = run(HEALTH_LUA.read_text(), runtime.table_from(_drop_nulls(body), recursive=True))
    return {str(key): str(value) for key, value in result.items()}


def _drop_nulls(value: Any) -> Any:
    # Argo CD decodes JSON null as Lua nil: the key is simply absent.
    if isinstance(value, Mapping):
        return {key: _drop_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_drop_nulls(item) for item in value]
    return value


def flux_checks() -> dict[str, dict[str, str]]:
    document = yaml.safe_load(FLUX_KUSTOMIZATION.read_text())
    return {check["kind"]: check for check in document["spec"]["healthCheckExprs"]}


def flux_status(body: Mapping[str, Any]) -> str:
    """kstatus' verdict (InProgress, Failed, Current) from the Kustomization's CEL expressions."""
    check = flux_checks()[str(body["kind"])]
    status = body.get("status") or {}
    generation = (body.get("metadata") or {}).get("generation")
    if "observedGeneration" in status and status["observedGeneration"] != generation:
        return "InProgress"
    environment = celpy.Environment()
    activation = {key: celpy.json_to_cel(value) for key, value in body.items()}
    for field, verdict in (("inProgress", "InProgress"), ("failed", "Failed"), ("current", "Current")):
        if field in check and bool(
            environment.program(environment.compile(check[field])).evaluate(activation)
        ):
            return verdict
    return "InProgress"
