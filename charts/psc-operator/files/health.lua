-- Argo CD health check for policy.podsecurity.dev/v1alpha1 PodSecurityConstraints.
-- argocd-cm key: resource.customizations.health.policy.podsecurity.dev_PodSecurityConstraints
--
-- The operator reports kstatus-style status (controllers/status.go):
--   * Ready is rewritten on every reconcile, with observedGeneration set to the generation
--     it was computed for.
--   * Reconciling=True and Stalled=True are present only while true.
--   * status.observedGeneration moves only once a generation was fully handled (Ready=True)
--     or failed for good (Stalled, FeatureError). It therefore lags behind while Gatekeeper
--     catches up and while retried steps fail (GatekeeperNotInstalled, PruneFailed,
--     StatusReadFailed), even though the operator has already looked at the new spec.
--
-- Mapping:
--   no status / no Ready / Ready.observedGeneration < generation
--                                  -> Progressing "Waiting for the operator to observe generation N"
--   Stalled=True                   -> Degraded, Stalled's message (InvalidSpec, RenderFailed, Duplicate)
--   Reconciling=True               -> Progressing, Reconciling's message
--   Ready=True, status.observedGeneration current
--                                  -> Healthy, Ready's message (Enforced and MasterSwitchOff)
--   Ready=True, status.observedGeneration behind
--                                  -> Progressing "Waiting for the operator to observe generation N"
--   Ready=False, reason Progressing or GatekeeperNotInstalled
--                                  -> Progressing, Ready's message
--   Ready=False, any other reason  -> Degraded, Ready's message (FeatureError, PruneFailed, ...), among
--                                     them the admission probe's AdmissionNotEnforced (pods admitted
--                                     unchecked), AdmissionWebhookFailing (pods rejected unjudged),
--                                     AdmissionUnverified (the probe cannot run or keeps failing) and
--                                     EnforcedByAPIServerOnly (spec.validatingAdmissionPolicy: Gatekeeper
--                                     is down and only the API server's policies deny pods; workloads
--                                     at apply time, defaults, warnings and audit are lost meanwhile)
--   Ready=Unknown                  -> Progressing, Ready's message
--
-- Which generation counts as observed: Ready.observedGeneration, not status.observedGeneration.
-- Gating everything on status.observedGeneration would hide the operator's own report for a
-- new generation until it succeeded: a first install without Gatekeeper would say "Waiting
-- for the operator to observe generation 1" instead of "Gatekeeper is not installed", and a
-- PruneFailed after a spec change would never show as Degraded. status.observedGeneration
-- still gates Healthy, so an old generation's success is never reported for a new spec.
--
-- MasterSwitchOff is Healthy, not Suspended: spec.enabled=false is a desired state declared
-- in Git and fully applied (the operator reports Ready=True), not a workload paused while it
-- waits to be resumed. Suspended would also make the Application's aggregated health
-- Suspended, so `argocd app wait --health` would wait until it timed out. Ready's message
-- ("The master switch spec.enabled is off: no policies are generated.") keeps the switch
-- visible.
--
-- WorkloadsChecked does not change the health: when Gatekeeper cannot judge workloads at apply
-- time (reasons ExpansionUnavailable, ExpansionNotReported, ExpansionError, ApplyFailed), pods
-- are still enforced, so the cluster is protected and the Application is Healthy. Its message
-- is appended to Ready's so that the gap shows in the Argo CD UI. Reasons that follow from the
-- configuration (Disabled, MasterSwitchOff, NoFeatureEnabled) add nothing.
--
-- Argo CD runs custom health scripts without the string library unless useOpenLibs is set, so
-- this script uses only base functions and the .. operator.

local function findCondition(conditions, conditionType)
  if type(conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(conditions) do
    if type(c) == "table" and c.type == conditionType then
      return c
    end
  end
  return nil
end

local function number(value)
  if type(value) == "number" then
    return value
  end
  return 0
end

local function messageOf(condition, fallback)
  if condition ~= nil then
    if type(condition.message) == "string" and condition.message ~= "" then
      return condition.message
    end
    if type(condition.reason) == "string" and condition.reason ~= "" then
      return condition.reason
    end
  end
  return fallback
end

local function health(obj)
  local generation = 0
  if type(obj.metadata) == "table" then
    generation = number(obj.metadata.generation)
  end
  local waiting = {
    status = "Progressing",
    message = "Waiting for the operator to observe generation " .. tostring(generation),
  }

  local status = obj.status
  if type(status) ~= "table" then
    return waiting
  end
  local ready = findCondition(status.conditions, "Ready")
  if ready == nil or number(ready.observedGeneration) < generation then
    return waiting
  end

  local stalled = findCondition(status.conditions, "Stalled")
  if stalled ~= nil and stalled.status == "True" and number(stalled.observedGeneration) >= generation then
    return { status = "Degraded", message = messageOf(stalled, messageOf(ready, "The operator stalled.")) }
  end

  local reconciling = findCondition(status.conditions, "Reconciling")
  if reconciling ~= nil and reconciling.status == "True" and number(reconciling.observedGeneration) >= generation then
    return { status = "Progressing", message = messageOf(reconciling, messageOf(ready, "The operator is reconciling.")) }
  end

  if ready.status == "True" then
    if number(status.observedGeneration) < generation then
      return waiting
    end
    local message = messageOf(ready, "Ready.")
    local workloads = findCondition(status.conditions, "WorkloadsChecked")
    if workloads ~= nil and workloads.status == "False" and number(workloads.observedGeneration) >= generation and
        workloads.reason ~= "Disabled" and workloads.reason ~= "MasterSwitchOff" and workloads.reason ~= "NoFeatureEnabled" then
      message = message .. " Workloads are not checked at apply time: " .. messageOf(workloads, "see WorkloadsChecked.")
    end
    return { status = "Healthy", message = message }
  end

  if ready.status == "False" then
    if ready.reason == "Progressing" or ready.reason == "GatekeeperNotInstalled" then
      return { status = "Progressing", message = messageOf(ready, "Not ready yet.") }
    end
    return { status = "Degraded", message = messageOf(ready, "Not ready.") }
  end

  return { status = "Progressing", message = messageOf(ready, "Waiting for the operator to report readiness.") }
end

hs = health(obj)
return hs
