// Package templates holds the operator's policies, one folder per feature (the folder name is
// the feature's field name in the PodSecurityConstraints spec), and renders the Gatekeeper
// objects that a spec asks for.
//
// Adding a feature takes a folder here (template.yaml and cases.yaml), one line in
// Features, and one field in the API.
package templates

import (
	"strings"
	"unicode"
)

// Feature is one pod security feature.
type Feature struct {
	// Name is the feature's field name in the spec and the name of its folder.
	Name string
	// ContainerLevel features check each container and accept exemptImages.
	ContainerLevel bool
}

// Features lists every feature in API order. It returns a new slice on each call.
func Features() []Feature {
	return []Feature{
		{Name: "privilegedContainers", ContainerLevel: true},
		{Name: "hostProcess", ContainerLevel: true},
		{Name: "hostNamespaces"},
		{Name: "hostNetworking", ContainerLevel: true},
		{Name: "probeHosts", ContainerLevel: true},
		{Name: "volumeTypes"},
		{Name: "hostFilesystem"},
		{Name: "flexVolumeDrivers"},
		{Name: "readOnlyRootFilesystem", ContainerLevel: true},
		{Name: "usersAndGroups", ContainerLevel: true},
		{Name: "privilegeEscalation", ContainerLevel: true},
		{Name: "capabilities", ContainerLevel: true},
		{Name: "seLinux", ContainerLevel: true},
		{Name: "procMount", ContainerLevel: true},
		{Name: "appArmor", ContainerLevel: true},
		{Name: "seccomp", ContainerLevel: true},
		{Name: "sysctls"},
	}
}

// FeatureByName finds a feature.
func FeatureByName(name string) (Feature, bool) {
	for _, f := range Features() {
		if f.Name == name {
			return f, true
		}
	}
	return Feature{}, false
}

// ObjectName names the feature's own objects, e.g. psc-privileged-containers: its mutators
// (with a suffix), and its constraint when it has excludedNamespaces of its own.
func (f Feature) ObjectName() string {
	var b strings.Builder
	b.WriteString("psc")
	for _, r := range f.Name {
		if unicode.IsUpper(r) {
			b.WriteByte('-')
			r = unicode.ToLower(r)
		} else if b.Len() == 3 {
			b.WriteByte('-')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	r := []rune(s)
	r[0] = unicode.ToUpper(r[0])
	return string(r)
}
