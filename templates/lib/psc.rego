# Shared by every feature of psc-operator; the renderer adds it to the policy template's libs,
# where each feature's rules run with input.parameters set to the feature's own parameters.
#
# Admission latency: every pod creation evaluates every enabled template. In OPA's evaluator a
# policy pays mostly for the rules and functions it evaluates (each one allocates cache entries
# and bindings; rules of this package sit four levels deep in the data tree) and for builtin
# calls, far less for plain references into the input. So templates test each container or the
# pod directly on input.review.object first, with the violation's own condition, and only for
# a container or pod that fails it ask this library whether it is checked at all (update rules,
# exemptImages) and format the message: a compliant pod rarely reaches this package.
#
# Templates iterate a pod's containers as
#
#	some field, kind in {"containers": "container", "initContainers": "initContainer", "ephemeralContainers": "ephemeralContainer"}
#	some c in input.review.object.spec[field]
#	<the container's own test>
#	psc.checked(field, c)
#
# The object is written inline because a literal costs nothing to evaluate while a rule holding
# it would be evaluated per request.
package lib.psc

# is_pod_update: an UPDATE of a stored pod. The API server always sends the stored pod as
# oldObject with an UPDATE. A workload judged through a Gatekeeper ExpansionTemplate arrives as
# the Pod it would create, with the workload's operation (UPDATE when the workload is updated)
# and no oldObject: that pod template is new and is checked like a creation. Audit reviews
# carry no operation and are checked like creations.
is_pod_update if {
	input.review.operation == "UPDATE"
	is_object(input.review.oldObject)
}

adds_ephemeral_containers if {
	is_pod_update
	input.review.subResource == "ephemeralcontainers"
}

# pod_fields_checked: pod-level fields are checked on creation, for expanded workloads and in
# audit. A pod's security fields cannot change after creation, so updates of a stored pod
# (labels, finalizers, status) are never blocked, even for a pod that predates the policy.
pod_fields_checked if not is_pod_update

pod := input.review.object

# is_windows_pod: the pod declares spec.os.name windows. The API server rejects Linux-only
# securityContext fields on such pods (readOnlyRootFilesystem, allowPrivilegeEscalation,
# capabilities, procMount, runAsUser, runAsGroup, supplementalGroups, fsGroup, seLinuxOptions,
# seccompProfile, appArmorProfile, sysctls; runAsNonRoot is allowed), so checks that require
# one of them to be set skip Windows pods, as the Pod Security Standards do. A plain reference,
# undefined (false) when spec.os is absent; templates test it after the violation's own
# condition, like checked.
is_windows_pod if input.review.object.spec.os.name == "windows"

# checked(field, c): container c, found in pod.spec[field], must be checked: every container on
# creation, for expanded workloads and in audit; on an UPDATE of the pods/ephemeralcontainers subresource (kubectl
# debug) only the ephemeral containers it adds. Containers whose image is exempt never are.
checked(_, c) if {
	not is_pod_update
	not exempt(c)
}

checked("ephemeralContainers", c) if {
	adds_ephemeral_containers
	not c.name in existing_ephemeral_names
	not exempt(c)
}

existing_ephemeral_names contains c.name if {
	some c in object.get(object.get(input.review, ["oldObject", "spec"], {}), "ephemeralContainers", [])
}

# exempt: the container's image matches parameters.exemptImages (exact, or prefix with a
# trailing "*").
exempt(c) if {
	some pattern in input.parameters.exemptImages
	matches_pattern(c.image, pattern)
}

# matches_pattern: exact match, or a prefix match where the pattern ends in "*".
matches_pattern(value, pattern) if value == pattern

matches_pattern(value, pattern) if {
	endswith(pattern, "*")
	startswith(value, trim_suffix(pattern, "*"))
}

# security_context of a container, empty when absent.
security_context(c) := object.get(c, "securityContext", {})

pod_security_context := object.get(pod.spec, "securityContext", {})

# describe names a container for messages, e.g. `container "app"`; kind is the value of the
# container field map above.
describe(kind, c) := sprintf("%s %q", [kind, c.name])
