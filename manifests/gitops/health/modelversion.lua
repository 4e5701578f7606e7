-- Argo CD health check for ModelVersion (ml.smarthr360.io/v1alpha1), from the operator's status.
-- Healthy: Ready=True (the version holds its stage and serves), or a settled end state that is
-- what git asked for (Superseded by a higher version, Archived, Registered without a served stage,
-- ScaledToZero: the version holds a served stage with serving.replicas 0).
-- Degraded: a failure only a new commit can fix (invalid spec, failed training, version conflict,
-- failed promotion gate, stuck rollout, a model its server refuses, a changed spec.training on a
-- registered version, a progressive rollout aborted on its live numbers: RolloutAborted).
-- Suspended: the gate passed but promotion.policy is Manual, or a rollout paused on a failed bound
-- (RolloutPaused). Progressing: everything else (RollingOut: shadow or canary steps in progress).
local hs = {}

local function condition(status, ctype)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local degraded = {
  InvalidSpec = true,
  TrainingFailed = true,
  VersionConflict = true,
  ModelOwnedElsewhere = true,
  RunNotFound = true,
  VersionDeleted = true,
  ChildNameConflict = true,
  GateFailed = true,
  ProgressDeadlineExceeded = true,
  FrameworkVersionMismatch = true,
  UntrustedModel = true,
  IncompatibleModel = true,
  RolloutAborted = true,
}
local settled = { Superseded = true, Archived = true, Registered = true }

hs.status = "Progressing"
hs.message = "Waiting for the modelops operator"
local st = obj.status
if st == nil then
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and st.observedGeneration ~= nil and st.observedGeneration < generation then
  hs.message = "Waiting for the operator to handle generation " .. tostring(generation)
  return hs
end
local ready = condition(st, "Ready")
if ready == nil then
  return hs
end
local phase = st.phase or ""
local reason = ready.reason or ""
local message = ready.message or ""
local text = phase
if reason ~= "" and reason ~= phase then
  text = text .. " (" .. reason .. ")"
end
if message ~= "" then
  text = text .. ": " .. message
end
hs.message = text

local registered = condition(st, "Registered")
if registered ~= nil and registered.reason == "ImmutableVersion" then
  hs.status = "Degraded"
  hs.message = "ImmutableVersion: " .. (registered.message or "")
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
elseif degraded[reason] or phase == "Failed" then
  hs.status = "Degraded"
elseif reason == "ManualApprovalRequired" or reason == "RolloutPaused" then
  hs.status = "Suspended"
elseif reason == "ScaledToZero" then
  hs.status = "Healthy"
elseif settled[phase] and reason ~= "Pending" then
  hs.status = "Healthy"
else
  hs.status = "Progressing"
end
return hs
