package pspconvert

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/podsecurity/psc-operator/api/v1alpha1/validation"
	"github.com/podsecurity/psc-operator/profiles"
)

// block is one feature block in its JSON form.
type block = map[string]interface{}

// conversion is one policy's feature blocks and the notes on what they cannot say. Notes keyed
// by a feature name are written above that feature; those keyed "" above the spec.
type conversion struct {
	name   string
	blocks map[string]block
	notes  map[string][]string
}

func (c *conversion) note(feature, format string, args ...interface{}) {
	c.notes[feature] = append(c.notes[feature], fmt.Sprintf(format, args...))
}

// Convert reads one or more PodSecurityPolicy documents and returns the PodSecurityConstraints
// manifest that enforces them, with comments. Input that is not a PodSecurityPolicy, or a
// result the CRD would reject, is an error.
func Convert(ctx context.Context, input []byte) ([]byte, error) {
	policies, err := parse(input)
	if err != nil {
		return nil, err
	}
	var convs []*conversion
	for _, p := range policies {
		convs = append(convs, convertOne(p))
	}
	combined := convs[0]
	if len(convs) > 1 {
		combined = combine(convs)
	}
	spec := map[string]interface{}{}
	for name, b := range combined.blocks {
		spec[name] = b
	}
	if err := validate(ctx, spec); err != nil {
		return nil, err
	}
	return write(spec, combined, convs)
}

func parse(input []byte) ([]podSecurityPolicy, error) {
	reader := utilyaml.NewYAMLReader(bufioReader(input))
	var out []podSecurityPolicy
	for i := 1; ; i++ {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading document %d: %w", i, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			return nil, fmt.Errorf("document %d is not YAML: %w", i, err)
		}
		if meta.Kind != "PodSecurityPolicy" || (meta.APIVersion != "policy/v1beta1" && meta.APIVersion != "extensions/v1beta1") {
			return nil, fmt.Errorf("document %d is a %q %q, want a policy/v1beta1 PodSecurityPolicy", i, meta.APIVersion, meta.Kind)
		}
		var p podSecurityPolicy
		if err := yaml.UnmarshalStrict(doc, &p); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if p.Metadata.Name == "" {
			p.Metadata.Name = fmt.Sprintf("document-%d", i)
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, errors.New("no PodSecurityPolicy found in the input")
	}
	return out, nil
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' && string(t) != "---" {
			b.Write(line)
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

func on() block { return block{"enabled": true} }

func ranges(rs []pspRange) []interface{} {
	out := []interface{}{}
	for _, r := range rs {
		out = append(out, map[string]interface{}{"min": r.Min, "max": r.Max})
	}
	return out
}

// capability writes a PSP capability the way the CRD wants it: upper case, no CAP_ prefix.
func capability(c string) string { return strings.TrimPrefix(strings.ToUpper(c), "CAP_") }

func stringsAny(in []string) []interface{} {
	out := []interface{}{}
	for _, s := range in {
		if !slices.Contains(out, interface{}(s)) {
			out = append(out, s)
		}
	}
	return out
}

// knownVolumes are the volume types volumeTypes accepts.
var knownVolumes = []string{"*", "awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "configMap", "csi",
	"downwardAPI", "emptyDir", "ephemeral", "fc", "flexVolume", "flocker", "gcePersistentDisk", "gitRepo", "glusterfs",
	"hostPath", "image", "iscsi", "nfs", "persistentVolumeClaim", "photonPersistentDisk", "portworxVolume", "projected",
	"quobyte", "rbd", "scaleIO", "secret", "storageos", "vsphereVolume"}

// convertOne maps one policy onto the features, field by field.
func convertOne(p podSecurityPolicy) *conversion {
	c := &conversion{name: p.Metadata.Name, blocks: map[string]block{}, notes: map[string][]string{}}
	s := p.Spec

	if !s.Privileged {
		c.blocks["privilegedContainers"] = on()
	}
	switch {
	case !s.HostPID && !s.HostIPC:
		c.blocks["hostNamespaces"] = on()
	case s.HostPID != s.HostIPC:
		c.note("hostNamespaces", "%s allows only one of hostPID and hostIPC; hostNamespaces denies both or neither, so it is left off: review.", c.name)
	}

	hn := on()
	if s.HostNetwork {
		hn["allowHostNetwork"] = true
	}
	if len(s.HostPorts) > 0 {
		hn["hostPorts"] = ranges(s.HostPorts)
	}
	c.blocks["hostNetworking"] = hn

	vt := on()
	allowed := []string{}
	for _, v := range s.Volumes {
		switch {
		case v == "none":
		case slices.Contains(knownVolumes, v):
			allowed = append(allowed, v)
		default:
			c.note("volumeTypes", "%s allows volume type %q, which volumeTypes does not know: left out.", c.name, v)
		}
	}
	vt["allowed"] = stringsAny(allowed)
	c.blocks["volumeTypes"] = vt

	if len(s.AllowedHostPaths) > 0 {
		paths := []interface{}{}
		for _, hp := range s.AllowedHostPaths {
			e := map[string]interface{}{"pathPrefix": hp.PathPrefix}
			if hp.ReadOnly {
				e["readOnly"] = true
			}
			paths = append(paths, e)
		}
		c.blocks["hostFilesystem"] = block{"enabled": true, "allowedHostPaths": paths}
	}
	if len(s.AllowedFlexVolumes) > 0 {
		var drivers []string
		for _, f := range s.AllowedFlexVolumes {
			drivers = append(drivers, f.Driver)
		}
		c.blocks["flexVolumeDrivers"] = block{"enabled": true, "allowedDrivers": stringsAny(drivers)}
	}
	if len(s.AllowedCSIDrivers) > 0 {
		c.note("volumeTypes", "%s restricts CSI drivers (allowedCSIDrivers), which no feature can express: any CSI driver is allowed where csi volumes are.", c.name)
	}
	if s.ReadOnlyRootFilesystem {
		c.blocks["readOnlyRootFilesystem"] = on()
	}

	ug := on()
	for field, st := range map[string]*pspStrategy{"runAsUser": s.RunAsUser, "runAsGroup": s.RunAsGroup, "supplementalGroups": s.SupplementalGroups, "fsGroup": s.FSGroup} {
		if st == nil || st.Rule == "" || st.Rule == "RunAsAny" {
			continue
		}
		r := map[string]interface{}{"rule": st.Rule}
		if st.Rule == "MustRunAs" || st.Rule == "MayRunAs" {
			r["ranges"] = ranges(st.Ranges)
		}
		if field == "runAsUser" && st.Rule == "MayRunAs" {
			c.note("usersAndGroups", "%s uses runAsUser rule MayRunAs, which runAsUser does not have: left out.", c.name)
			continue
		}
		ug[field] = r
		if st.Rule == "MustRunAs" {
			c.note("usersAndGroups", "%s: PodSecurityPolicy filled in %s from the first range when a pod did not set it; the operator does not change pods, so such pods are now denied until they set it.", c.name, field)
		}
		if field == "runAsUser" && st.Rule == "MustRunAsNonRoot" {
			c.note("usersAndGroups", "%s: PodSecurityPolicy set runAsNonRoot: true on pods that set neither runAsNonRoot nor runAsUser; the operator does not change pods, so such pods are now denied until they set it.", c.name)
		}
	}
	if len(ug) > 1 {
		c.blocks["usersAndGroups"] = ug
	}

	if s.AllowPrivilegeEscalation != nil && !*s.AllowPrivilegeEscalation {
		c.blocks["privilegeEscalation"] = on()
		c.note("privilegeEscalation", "%s: PodSecurityPolicy set allowPrivilegeEscalation: false on containers that did not set it; now each container must set it.", c.name)
	}
	if s.DefaultAllowPrivilegeEscalation != nil {
		c.note("privilegeEscalation", "%s sets defaultAllowPrivilegeEscalation, a default the operator does not apply (it does not change pods).", c.name)
	}

	caps := on()
	var allowedCaps []string
	for _, cp := range append(append([]string{}, s.AllowedCapabilities...), s.DefaultAddCapabilities...) {
		allowedCaps = append(allowedCaps, capability(cp))
	}
	if len(s.DefaultAddCapabilities) > 0 {
		c.note("capabilities", "%s adds defaultAddCapabilities %v to every container; the operator does not change pods: they are allowed here, and containers must add them themselves.", c.name, s.DefaultAddCapabilities)
	}
	if len(allowedCaps) > 0 {
		caps["allowedCapabilities"] = stringsAny(allowedCaps)
	}
	if len(s.RequiredDropCapabilities) > 0 {
		var drops []string
		for _, cp := range s.RequiredDropCapabilities {
			drops = append(drops, capability(cp))
		}
		caps["requiredDropCapabilities"] = stringsAny(drops)
		c.note("capabilities", "%s: PodSecurityPolicy added requiredDropCapabilities to each container's drop list; now each container must drop them itself.", c.name)
	}
	c.blocks["capabilities"] = caps

	if s.SELinux != nil && s.SELinux.Rule == "MustRunAs" {
		opts := map[string]interface{}{}
		if o := s.SELinux.SELinuxOptions; o != nil {
			for k, v := range map[string]string{"user": o.User, "role": o.Role, "type": o.Type, "level": o.Level} {
				if v != "" {
					opts[k] = v
				}
			}
		}
		if len(opts) > 0 {
			c.blocks["seLinux"] = block{"enabled": true, "allowedSELinuxOptions": []interface{}{opts}}
			c.note("seLinux", "%s: PodSecurityPolicy set these SELinux options on pods that did not set them; the operator does not change pods.", c.name)
		} else {
			c.note("seLinux", "%s uses seLinux MustRunAs without seLinuxOptions: nothing to check.", c.name)
		}
	}

	pm := on()
	pm["procMount"] = "Default"
	if slices.Contains(s.AllowedProcMountTypes, "Unmasked") {
		pm["procMount"] = "Unmasked"
	}
	c.blocks["procMount"] = pm

	if v, ok := p.Metadata.Annotations[appArmorAllowedAnnotation]; ok {
		var profiles []string
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				profiles = append(profiles, name)
			}
		}
		if len(profiles) > 0 {
			c.blocks["appArmor"] = block{"enabled": true, "allowedProfiles": stringsAny(profiles)}
		}
	}
	if v, ok := p.Metadata.Annotations[seccompAllowedAnnotation]; ok {
		c.blocks["seccomp"] = seccompBlock(c, v)
	}
	for _, a := range []string{seccompDefaultAnnotation, appArmorDefaultAnnotation} {
		if v, ok := p.Metadata.Annotations[a]; ok {
			c.note("", "%s sets %s=%s, a default the operator does not apply (it does not change pods).", c.name, a, v)
		}
	}

	// Sysctls: PodSecurityPolicy allowed the safe set, plus allowedUnsafeSysctls, minus
	// forbiddenSysctls.
	sc := on()
	if !slices.Contains(s.AllowedUnsafeSysctls, "*") {
		var allowedSysctls []string
		for _, name := range profiles.SafeSysctls(profiles.LatestMinor) {
			allowedSysctls = append(allowedSysctls, string(name))
		}
		sc["allowedSysctls"] = stringsAny(append(allowedSysctls, s.AllowedUnsafeSysctls...))
	}
	if len(s.ForbiddenSysctls) > 0 {
		sc["forbiddenSysctls"] = stringsAny(s.ForbiddenSysctls)
	}
	c.blocks["sysctls"] = sc

	if len(s.RuntimeClass) > 0 {
		c.note("", "%s restricts runtimeClass, which no feature can express.", c.name)
	}
	return c
}

func seccompBlock(c *conversion, value string) block {
	var types, files []string
	for _, name := range strings.Split(value, ",") {
		switch name = strings.TrimSpace(name); {
		case name == "*":
			return block{"enabled": true, "allowedProfiles": []interface{}{"*"}}
		case name == "runtime/default", name == "docker/default":
			types = append(types, "RuntimeDefault")
		case name == "unconfined":
			types = append(types, "Unconfined")
		case strings.HasPrefix(name, "localhost/"):
			types = append(types, "Localhost")
			files = append(files, strings.TrimPrefix(name, "localhost/"))
		case name != "":
			c.note("seccomp", "%s allows seccomp profile %q, which is not a known form: left out.", c.name, name)
		}
	}
	if len(types) == 0 {
		c.note("seccomp", "%s allows no usable seccomp profile: left off.", c.name)
		return nil
	}
	b := block{"enabled": true, "allowedProfiles": stringsAny(types)}
	if len(files) > 0 {
		b["allowedLocalhostFiles"] = stringsAny(files)
	}
	return b
}

func validate(ctx context.Context, spec map[string]interface{}) error {
	for name, b := range spec {
		if b == nil || len(b.(block)) == 0 {
			delete(spec, name)
		}
	}
	v, err := validation.New()
	if err != nil {
		return err
	}
	data, err := json.Marshal(spec)
	if err != nil {
		return fmt.Errorf("encoding spec: %w", err)
	}
	specCopy := map[string]interface{}{}
	if err := json.Unmarshal(data, &specCopy); err != nil {
		return fmt.Errorf("decoding spec: %w", err)
	}
	obj := map[string]interface{}{"apiVersion": "policy.podsecurity.dev/v1alpha1", "kind": "PodSecurityConstraints",
		"metadata": map[string]interface{}{"name": "cluster"}, "spec": specCopy}
	if _, errs := v.DefaultAndValidate(ctx, obj); len(errs) > 0 {
		return fmt.Errorf("the converted PodSecurityConstraints would be invalid: %w", errs.ToAggregate())
	}
	return nil
}

// write renders the manifest with its comments: what is never expressible first, then how
// policies were combined, then the notes of each feature above its block.
func write(spec map[string]interface{}, combined *conversion, convs []*conversion) ([]byte, error) {
	var names []string
	for _, c := range convs {
		names = append(names, c.name)
	}
	head := []string{
		"Converted from PodSecurityPolicy " + strings.Join(names, ", ") + " by `psc convert-psp`.",
		"Not expressible: PodSecurityPolicy applied to the pods whose creator or service account was",
		"granted `use` on it (RBAC). PodSecurityConstraints apply to every namespace except",
		"spec.excludedNamespaces; exclude the namespaces that relied on a more permissive policy.",
		"Not expressible: PodSecurityPolicy changed pods (defaults for runAsUser, fsGroup, capabilities,",
		"allowPrivilegeEscalation, seccomp, ...); the operator only admits or denies.",
	}
	if len(convs) > 1 {
		head = append(head,
			"Combined: PodSecurityPolicy admitted a pod that any one of its policies admitted, so each",
			"feature here takes the most permissive setting of the policies (a feature one policy leaves",
			"off is off; allow lists are joined). A pod that mixes allowances of different policies is",
			"admitted here although no single policy admitted it: review, or convert one policy at a time.")
	}
	head = append(head, combined.notes[""]...)

	doc := map[string]interface{}{
		"apiVersion": "policy.podsecurity.dev/v1alpha1",
		"kind":       "PodSecurityConstraints",
		"metadata":   map[string]interface{}{"name": "cluster"},
		"spec":       spec,
	}
	var node yamlv3.Node
	if err := node.Encode(doc); err != nil {
		return nil, fmt.Errorf("encoding manifest: %w", err)
	}
	node.HeadComment = strings.Join(head, "\n")
	for i := 0; i+1 < len(node.Content); i += 2 {
		if node.Content[i].Value != "spec" {
			continue
		}
		specNode := node.Content[i+1]
		for j := 0; j+1 < len(specNode.Content); j += 2 {
			if notes := combined.notes[specNode.Content[j].Value]; len(notes) > 0 {
				specNode.Content[j].HeadComment = strings.Join(notes, "\n")
			}
		}
		// Features with notes but no block (left off) get their notes on the spec key.
		var orphan []string
		for feature, notes := range combined.notes {
			if feature != "" && spec[feature] == nil {
				orphan = append(orphan, notes...)
			}
		}
		sort.Strings(orphan)
		if len(orphan) > 0 {
			node.Content[i].HeadComment = strings.Join(orphan, "\n")
		}
	}
	var buf bytes.Buffer
	enc := yamlv3.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&node); err != nil {
		return nil, fmt.Errorf("encoding manifest: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encoding manifest: %w", err)
	}
	return buf.Bytes(), nil
}
