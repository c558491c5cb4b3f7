-- Argo CD health check for the siembridge.io kinds (LogSource, ConsumerGroup, SiemDestination).
-- Install it under `resource.customizations.health.siembridge.io_<Kind>` in argocd-cm (see
-- charts/siembridge/README.md). Argo CD passes the live object as `obj`; the script returns
-- `hs` with `status` (Healthy, Progressing, Degraded, Suspended) and `message`.
--
-- The operator follows the Kubernetes conventions: `Ready` is the summary, `Progressing` is True
-- while collectors start or roll, and status.observedGeneration tells whether the conditions
-- describe the current spec.
local hs = { status = "Progressing", message = "Waiting for the siembridge operator" }

local function condition(conditions, kind)
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(c)
  local text = c.reason or ""
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local generation = (obj.metadata or {}).generation
if generation ~= nil and obj.status.observedGeneration ~= nil and obj.status.observedGeneration < generation then
  hs.message = "The operator has not yet seen generation " .. tostring(generation)
  return hs
end

local conditions = obj.status.conditions
local ready = condition(conditions, "Ready")
local progressing = condition(conditions, "Progressing")

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "Collection is suspended (spec.suspend); checkpoints are kept"
  return hs
end
if ready == nil then
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
  local loss = condition(conditions, "DataLoss")
  if loss ~= nil and loss.status == "True" then
    hs.message = hs.message .. " (DataLoss: " .. describe(loss) .. ")"
  end
  local dead = condition(conditions, "DeadLettered")
  if dead ~= nil and dead.status == "True" then
    hs.message = hs.message .. " (DeadLettered: " .. describe(dead) .. ")"
  end
  return hs
end
-- A destination or consumer group that no LogSource uses yet is not broken.
if ready.reason == "NoLogSources" then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end
if progressing ~= nil and progressing.status == "True" then
  hs.message = describe(progressing)
  return hs
end
if ready.status == "Unknown" or ready.reason == "AwaitingReport" or ready.reason == "Configured"
    or ready.reason == "DeploymentProgressing" then
  hs.message = describe(ready)
  return hs
end
hs.status = "Degraded"
hs.message = describe(ready)
return hs
