# Shared by every policy of psc-operator; the renderer adds it to each template's libs.
package lib.psc

# is_update is true for UPDATE admission requests. Audit reviews carry no operation and are
# checked like creations.
is_update if input.review.operation == "UPDATE"

adds_ephemeral_containers if {
	is_update
	input.review.subResource == "ephemeralcontainers"
}

# pod_fields_checked: pod-level fields are checked on creation and in audit. A pod's security
# fields cannot change after creation, so updates (labels, finalizers, status) are never
# blocked, even for a pod that predates the policy.
pod_fields_checked if not is_update

pod := input.review.object

# containers_to_check are the containers a request must be checked for, as
# {"container": c, "kind": "container" | "initContainer" | "ephemeralContainer"}: all of them on
# creation and in audit; on an UPDATE of the pods/ephemeralcontainers subresource (kubectl
# debug) only the ephemeral containers it adds. Containers whose image is exempt are left out.
containers_to_check contains {"container": c, "kind": kind} if {
	pod_fields_checked
	some field, kind in container_fields
	some c in object.get(pod.spec, field, [])
	not exempt(c)
}

containers_to_check contains {"container": c, "kind": "ephemeralContainer"} if {
	adds_ephemeral_containers
	some c in object.get(pod.spec, "ephemeralContainers", [])
	not c.name in existing_ephemeral_names
	not exempt(c)
}

container_fields := {
	"containers": "container",
	"initContainers": "initContainer",
	"ephemeralContainers": "ephemeralContainer",
}

existing_ephemeral_names contains c.name if {
	some c in object.get(object.get(input.review, ["oldObject", "spec"], {}), "ephemeralContainers", [])
}

# exempt: the container's image matches parameters.exemptImages (exact, or prefix with a
# trailing "*").
exempt(c) if {
	some pattern in object.get(input.parameters, "exemptImages", [])
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

# describe names a container for messages, e.g. `container "app"`.
describe(entry) := sprintf("%s %q", [entry.kind, entry.container.name])
