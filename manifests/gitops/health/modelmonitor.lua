-- Argo CD health check for ModelMonitor (ml.smarthr360.io/v1alpha1), from the operator's status.
-- Degraded: invalid spec, failed monitoring run or Job, the monitored model is unhealthy (Healthy=False:
-- latency, error rate or accuracy out of bounds), its current data lacks features (DataQuality=False)
-- or drifted (DriftDetected=True).
-- Progressing: no status yet, or no version serves the monitored stage yet (WaitingForModel).
-- Healthy: Ready=True and neither drift nor bad health reported.
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
local reason = ready.reason or ""
hs.message = reason .. ": " .. (ready.message or "")
if ready.status ~= "True" then
  if reason == "InvalidSpec" or reason == "RunFailed" or reason == "JobFailed" then
    hs.status = "Degraded"
  end
  return hs
end
-- Ready, but reporting what it found: bad health, features missing from the data, drift.
local findings = {
  { ctype = "Healthy", bad = "False" },
  { ctype = "DataQuality", bad = "False", label = "Data quality" },
  { ctype = "DriftDetected", bad = "True", label = "Drift detected" },
}
for _, finding in ipairs(findings) do
  local c = condition(st, finding.ctype)
  if c ~= nil and c.status == finding.bad then
    hs.status = "Degraded"
    hs.message = (finding.label or ("Model " .. (c.reason or "unhealthy"))) .. ": " .. (c.message or "")
    return hs
  end
end
hs.status = "Healthy"
return hs
