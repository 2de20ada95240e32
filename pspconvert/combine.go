package pspconvert

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
)

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

// combine joins several policies into one set of blocks that admits what any of them admits,
// per feature: a feature that one policy leaves off is off; otherwise each setting takes its
// most permissive value.
func combine(convs []*conversion) *conversion {
	out := &conversion{name: "combined", blocks: map[string]block{}, notes: map[string][]string{}}
	for _, c := range convs {
		for feature, notes := range c.notes {
			out.notes[feature] = append(out.notes[feature], notes...)
		}
	}
	features := map[string]bool{}
	for _, c := range convs {
		for f := range c.blocks {
			features[f] = true
		}
	}
	var names []string
	for f := range features {
		names = append(names, f)
	}
	sort.Strings(names)
	for _, f := range names {
		merged := block(nil)
		var offIn []string
		for _, c := range convs {
			b := c.blocks[f]
			if b == nil {
				offIn = append(offIn, c.name)
				continue
			}
			if merged == nil {
				merged = cloneBlock(b)
				continue
			}
			merged = mergeBlocks(f, merged, b)
		}
		if len(offIn) > 0 {
			out.note(f, "Left off: %v does not enforce %s.", offIn, f)
			continue
		}
		out.blocks[f] = merged
	}
	return out
}

func cloneBlock(b block) block {
	data, _ := json.Marshal(b)
	out := block{}
	_ = json.Unmarshal(data, &out)
	return out
}

// Lists that restrict (absent means nothing is required): the permissive join is their
// intersection. allowedSysctls absent means every sysctl: absent wins.
var restrictingLists = map[string]bool{"requiredDropCapabilities": true, "forbiddenSysctls": true}

func mergeBlocks(feature string, a, b block) block {
	out := block{"enabled": true}
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	for k := range keys {
		av, aok := a[k]
		bv, bok := b[k]
		switch {
		case k == "enabled":
		case restrictingLists[k]:
			if aok && bok {
				if common := intersect(av, bv); len(common) > 0 {
					out[k] = common
				}
			}
		case k == "allowedSysctls":
			if aok && bok {
				out[k] = union(av, bv)
			}
		case k == "allowHostNetwork":
			out[k] = av == true || bv == true
		case k == "procMount":
			out[k] = "Default"
			if av == "Unmasked" || bv == "Unmasked" {
				out[k] = "Unmasked"
			}
		case feature == "usersAndGroups":
			// A rule one policy does not set is not checked.
			if aok && bok {
				if r := mergeRule(av, bv); r != nil {
					out[k] = r
				}
			}
		default: // allow lists: absent is empty
			out[k] = union(av, bv)
		}
	}
	return out
}

// mergeRule joins two ID rules: equal rules keep their joined ranges; otherwise the more
// permissive of MustRunAs and MayRunAs (with joined ranges), else no check.
func mergeRule(a, b interface{}) interface{} {
	am, _ := a.(map[string]interface{})
	bm, _ := b.(map[string]interface{})
	ar, br := fmt.Sprint(am["rule"]), fmt.Sprint(bm["rule"])
	ranged := func(r string) bool { return r == "MustRunAs" || r == "MayRunAs" }
	switch {
	case ar == br && !ranged(ar):
		return am
	case ranged(ar) && ranged(br):
		rule := "MustRunAs"
		if ar == "MayRunAs" || br == "MayRunAs" {
			rule = "MayRunAs"
		}
		return map[string]interface{}{"rule": rule, "ranges": union(am["ranges"], bm["ranges"])}
	default:
		return nil
	}
}

func union(a, b interface{}) []interface{} {
	out := []interface{}{}
	seen := map[string]bool{}
	for _, list := range []interface{}{a, b} {
		items, _ := list.([]interface{})
		for _, item := range items {
			key, _ := json.Marshal(item)
			if !seen[string(key)] {
				seen[string(key)] = true
				out = append(out, item)
			}
		}
	}
	return out
}

func intersect(a, b interface{}) []interface{} {
	as, _ := a.([]interface{})
	bs, _ := b.([]interface{})
	out := []interface{}{}
	for _, item := range as {
		if slices.Contains(bs, item) {
			out = append(out, item)
		}
	}
	return out
}
