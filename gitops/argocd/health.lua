-- Argo CD health check for FlightDeck objects (flightdeck.dev/v1alpha1: PromotionRequest,
-- ReleasePointer, AgentRelease, PricingTable, PromotionPolicy, PromotionApproval,
-- NotificationSubscription).
--
-- The CRD status is in kstatus format: Ready, Reconciling and Stalled conditions
-- (metav1.Condition) plus status.observedGeneration. This script reads them in kstatus' order,
-- so Argo CD, Flux and `kubectl wait` agree on every object:
--   observedGeneration behind metadata.generation -> Progressing (not judged yet)
--   Reconciling=True                              -> Progressing (Suspended while AwaitingApproval:
--                                                    a human must act; AwaitingEvidence stays Progressing)
--   Stalled=True                                  -> Degraded (blocked, failed, duplicate ...)
--   Degraded=True                                 -> Degraded (a pointer's live release failed
--                                                    its verification)
--   Ready=True                                    -> Healthy
--   Ready=False or Unknown                        -> Progressing
-- A blocked PromotionRequest is therefore Degraded, a promoted one Healthy, a pending one
-- Progressing; a ReleasePointer in sync with the audit ledger is Healthy.
-- Only Lua's base library is used: Argo CD opens no string library for health scripts.

local hs = {}

local function find(conditions, wanted)
  for _, condition in ipairs(conditions) do
    if condition.type == wanted then
      return condition
    end
  end
  return nil
end

local function describe(condition)
  local text = condition.reason or condition.type
  if condition.message ~= nil and condition.message ~= "" then
    text = text .. ": " .. condition.message
  end
  return text
end

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the FlightDeck operator to observe this object"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the FlightDeck operator to observe generation " .. tostring(generation)
  return hs
end

local conditions = obj.status.conditions
local reconciling = find(conditions, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  if reconciling.reason == "AwaitingApproval" then
    hs.status = "Suspended"
  else
    hs.status = "Progressing"
  end
  hs.message = describe(reconciling)
  return hs
end

local stalled = find(conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

-- A ReleasePointer whose live release failed its verification (failureThreshold checks in a row).
local degraded = find(conditions, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded)
  return hs
end

local ready = find(conditions, "Ready")
if ready == nil then
  hs.status = "Healthy"
  hs.message = "No Ready condition"
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
else
  hs.status = "Progressing"
end
hs.message = describe(ready)
return hs
