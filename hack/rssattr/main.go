// Command rssattr attributes the resident pages of a running Go program's executable to Go
// packages, to find out which code a process keeps in memory (its file-backed RSS).
//
//	go run ./hack/rssattr -binary UNSTRIPPED PID
//
// It reads which pages of the executable's mappings are present in the process's page table
// (/proc/PID/pagemap, the present bit; no privileges needed for one's own processes) and maps
// each page to what lies there, from an unstripped build of the same source: functions and
// data from the ELF symbol table, and the runtime's function table (.gopclntab) and stack maps
// (go:func.*) split by the function they describe. Build the two with the same flags except
// -s -w (which drop only sections that are not loaded); the tool checks that their loadable
// segments are the same. Type descriptors and string data have no symbols in a Go binary and
// are counted as one line.
package main

import (
	"bufio"
	"debug/elf"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
)

func main() {
	binPath := flag.String("binary", "", "unstripped build of the program the process runs (required)")
	top := flag.Int("top", 30, "number of packages to list")
	flag.Parse()
	if *binPath == "" || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: rssattr -binary UNSTRIPPED [-top N] PID")
		os.Exit(2)
	}
	if err := run(*binPath, flag.Arg(0), *top); err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
}

// region is a range of the executable owned by one function or data symbol.
type region struct {
	addr, size uint64
	kind       string // text, pclntab, funcdata, data
	name       string
}

func run(binPath, pid string, top int) error {
	f, err := elf.Open(binPath)
	if err != nil {
		return err
	}
	defer f.Close()
	exe, err := os.Readlink("/proc/" + pid + "/exe")
	if err != nil {
		return err
	}
	if err := sameLoadSegments(f, exe); err != nil {
		return err
	}
	regions, err := symbolRegions(f)
	if err != nil {
		return err
	}
	resident, err := residentPages(pid, exe)
	if err != nil {
		return err
	}

	byGroup := map[string]map[string]float64{}
	byPkg := map[string]float64{}
	total := 0.0
	add := func(pkg, kind string, n float64) {
		g := group(pkg)
		if byGroup[g] == nil {
			byGroup[g] = map[string]float64{}
		}
		byGroup[g][kind] += n
		byPkg[pkg] += n
	}
	for _, p := range resident {
		total += pageSize
		i := sort.Search(len(regions), func(i int) bool { return regions[i].addr+regions[i].size > p })
		covered := uint64(0)
		for ; i < len(regions) && regions[i].addr < p+pageSize; i++ {
			r := regions[i]
			lo, hi := max(r.addr, p), min(r.addr+r.size, p+pageSize)
			if hi <= lo {
				continue
			}
			covered += hi - lo
			add(packageOf(r.name), r.kind, float64(hi-lo))
		}
		if covered < pageSize {
			add("(type descriptors, strings: no symbols)", "rodata", float64(pageSize-covered))
		}
	}

	mib := func(v float64) string { return fmt.Sprintf("%6.2f", v/(1<<20)) }
	fmt.Printf("resident pages of %s: %s MiB\n\n", exe, mib(total))
	fmt.Printf("%-62s %6s %6s %7s %8s %6s %6s\n", "MiB by group", "total", "text", "pclntab", "funcdata", "rodata", "data")
	type kv struct {
		k string
		v float64
	}
	var groups []kv
	for g, m := range byGroup {
		t := 0.0
		for _, v := range m {
			t += v
		}
		groups = append(groups, kv{g, t})
	}
	sort.Slice(groups, func(i, j int) bool { return groups[i].v > groups[j].v })
	for _, g := range groups {
		m := byGroup[g.k]
		fmt.Printf("%-62s %s %s %7s %8s %s %s\n", g.k, mib(g.v), mib(m["text"]), mib(m["pclntab"]), mib(m["funcdata"]), mib(m["rodata"]), mib(m["data"]))
	}
	var pkgs []kv
	for k, v := range byPkg {
		pkgs = append(pkgs, kv{k, v})
	}
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].v > pkgs[j].v })
	fmt.Printf("\nMiB by package (top %d)\n", top)
	for i := 0; i < top && i < len(pkgs); i++ {
		fmt.Printf("%s %s\n", mib(pkgs[i].v), pkgs[i].k)
	}
	return nil
}

const pageSize = 4096

// sameLoadSegments checks that the unstripped build loads at the addresses of the running one.
func sameLoadSegments(f *elf.File, exe string) error {
	g, err := elf.Open(exe)
	if err != nil {
		return err
	}
	defer g.Close()
	loads := func(e *elf.File) []string {
		var out []string
		for _, p := range e.Progs {
			if p.Type == elf.PT_LOAD {
				out = append(out, fmt.Sprintf("%x+%x", p.Vaddr, p.Memsz))
			}
		}
		return out
	}
	a, b := loads(f), loads(g)
	if strings.Join(a, " ") != strings.Join(b, " ") {
		return fmt.Errorf("the loadable segments differ (%v in the unstripped build, %v in %s): build both from the same source with the same flags but -s -w", a, b, exe)
	}
	return nil
}

// residentPages lists the addresses of the executable's pages present in the process.
func residentPages(pid, exe string) ([]uint64, error) {
	maps, err := os.Open("/proc/" + pid + "/maps")
	if err != nil {
		return nil, err
	}
	defer maps.Close()
	pm, err := os.Open("/proc/" + pid + "/pagemap")
	if err != nil {
		return nil, err
	}
	defer pm.Close()
	var pages []uint64
	sc := bufio.NewScanner(maps)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 6 || fs[5] != exe {
			continue
		}
		var lo, hi uint64
		if _, err := fmt.Sscanf(fs[0], "%x-%x", &lo, &hi); err != nil {
			return nil, fmt.Errorf("parsing %q: %w", fs[0], err)
		}
		buf := make([]byte, (hi-lo)/pageSize*8)
		if _, err := pm.ReadAt(buf, int64(lo/pageSize*8)); err != nil {
			return nil, fmt.Errorf("reading pagemap: %w", err)
		}
		for p := lo; p < hi; p += pageSize {
			if binary.LittleEndian.Uint64(buf[(p-lo)/pageSize*8:])&(1<<63) != 0 {
				pages = append(pages, p)
			}
		}
	}
	return pages, sc.Err()
}

// symbolRegions returns the executable's symbols and the function table's parts, sorted.
func symbolRegions(f *elf.File) ([]region, error) {
	syms, err := f.Symbols()
	if err != nil {
		return nil, fmt.Errorf("reading the symbol table (is the binary unstripped?): %w", err)
	}
	var regions []region
	var funcdata, funcdataSize uint64
	var inPclntab []elf.Symbol // symbols inside .gopclntab: boundaries of its parts
	for _, s := range syms {
		if s.Size == 0 || int(s.Section) >= len(f.Sections) || s.Section == elf.SHN_UNDEF {
			continue
		}
		if s.Name == "go:func.*" {
			funcdata, funcdataSize = s.Value, s.Size
		}
		if f.Sections[s.Section].Name == ".gopclntab" {
			inPclntab = append(inPclntab, s)
			continue
		}
		kind := "data"
		switch sec := f.Sections[s.Section].Name; {
		case sec == ".text":
			kind = "text"
		case sec == ".rodata" || sec == ".typelink" || sec == ".itablink" || sec == ".gopclntab":
			kind = "rodata"
		}
		regions = append(regions, region{s.Value, s.Size, kind, s.Name})
	}
	pcln, err := pclntabRegions(f, funcdata, funcdataSize, inPclntab)
	if err != nil {
		return nil, err
	}
	regions = append(regions, pcln...)
	sort.Slice(regions, func(i, j int) bool { return regions[i].addr < regions[j].addr })
	return regions, nil
}

// pclntabRegions splits the function table (Go 1.20+ layout, runtime/symtab.go) and the stack
// maps by function: each function's _func record, name, pc tables and funcdata start a part
// that reaches to the next part's start.
func pclntabRegions(f *elf.File, funcdata, funcdataSize uint64, syms []elf.Symbol) ([]region, error) {
	sec := f.Section(".gopclntab")
	if sec == nil {
		return nil, fmt.Errorf("no .gopclntab section")
	}
	d, err := sec.Data()
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	if le.Uint32(d) != 0xfffffff1 {
		return nil, fmt.Errorf("unknown pclntab magic %#x (Go 1.20+ expected)", le.Uint32(d))
	}
	word := func(i int) uint64 { return le.Uint64(d[8+8*i:]) }
	nfunc, funcnameOff, cuOff, filetabOff, pctabOff, pclnOff := word(0), word(3), word(4), word(5), word(6), word(7)
	base := sec.Addr
	type start struct {
		addr uint64
		name string
		kind string
	}
	starts := []start{{base, "(pclntab header)", "pclntab"}, {base + cuOff, "(pclntab cutab)", "pclntab"},
		{base + filetabOff, "(pclntab filetab)", "pclntab"}, {base + pclnOff, "(pclntab functab)", "pclntab"}}
	for _, s := range syms {
		if s.Name != "go:func.*" {
			starts = append(starts, start{s.Value, "(" + s.Name + ")", "pclntab"})
		}
	}
	cstring := func(o uint64) string {
		e := o
		for e < uint64(len(d)) && d[e] != 0 {
			e++
		}
		return string(d[o:e])
	}
	for i := uint64(0); i < nfunc; i++ {
		fo := pclnOff + uint64(le.Uint32(d[pclnOff+i*8+4:]))
		nameOff := uint64(le.Uint32(d[fo+4:]))
		name := cstring(funcnameOff + nameOff)
		starts = append(starts, start{base + fo, name, "pclntab"}, start{base + funcnameOff + nameOff, name, "pclntab"})
		for _, k := range []uint64{16, 20, 24} { // pcsp, pcfile, pcln
			if v := uint64(le.Uint32(d[fo+k:])); v != 0 {
				starts = append(starts, start{base + pctabOff + v, name, "pclntab"})
			}
		}
		npcdata, nfuncdata := uint64(le.Uint32(d[fo+28:])), uint64(d[fo+43])
		for j := uint64(0); j < npcdata; j++ {
			if v := uint64(le.Uint32(d[fo+44+4*j:])); v != 0 {
				starts = append(starts, start{base + pctabOff + v, name, "pclntab"})
			}
		}
		for j := uint64(0); j < nfuncdata && funcdataSize > 0; j++ {
			if v := le.Uint32(d[fo+44+4*npcdata+4*j:]); v != ^uint32(0) {
				starts = append(starts, start{funcdata + uint64(v), name, "funcdata"})
			}
		}
	}
	// Each part reaches to the next part's start, within the section.
	sort.Slice(starts, func(i, j int) bool { return starts[i].addr < starts[j].addr })
	var out []region
	for i, s := range starts {
		e := base + sec.Size
		if i+1 < len(starts) {
			e = starts[i+1].addr
		}
		if e > s.addr {
			out = append(out, region{s.addr, e - s.addr, s.kind, s.name})
		}
	}
	return out, nil
}

// packageOf returns the package path of a symbol or function name.
func packageOf(name string) string {
	if strings.HasPrefix(name, "(") {
		return name
	}
	n := name
	for _, p := range []string{"type:.eq.", "type:.hash.", "go:itab.", "go:string.", "type:"} {
		if strings.HasPrefix(n, p) {
			n = strings.TrimLeft(strings.TrimPrefix(n, p), "*[]0123456789")
			break
		}
	}
	i := strings.LastIndex(n, "/")
	j := strings.Index(n[i+1:], ".")
	if j < 0 {
		return "(" + name + ")"
	}
	return n[:i+1+j]
}

// group puts packages into the groups the README's memory table uses.
func group(pkg string) string {
	has := func(prefixes ...string) bool {
		for _, p := range prefixes {
			if strings.HasPrefix(pkg, p) {
				return true
			}
		}
		return false
	}
	switch {
	case strings.HasPrefix(pkg, "("):
		if strings.HasPrefix(pkg, "(pclntab") || strings.HasPrefix(pkg, "(type descriptors") {
			return pkg
		}
		return "(other unnamed)"
	case has("github.com/podsecurity/psc-operator"), pkg == "main":
		return "psc-operator"
	case has("k8s.io/api/"):
		return "k8s.io/api"
	case has("github.com/google/cel-go", "cel.dev/", "github.com/antlr4-go", "k8s.io/apiserver", "k8s.io/apiextensions-apiserver/pkg/apiserver"):
		return "CEL stack (cel-go, antlr, apiserver, apiextensions-apiserver)"
	case has("k8s.io/apimachinery", "k8s.io/client-go", "sigs.k8s.io/controller-runtime", "k8s.io/apiextensions-apiserver"):
		return "client-go, apimachinery, controller-runtime"
	case has("google.golang.org/protobuf", "google.golang.org/genproto"):
		return "protobuf"
	case has("github.com/prometheus", "go.uber.org", "github.com/go-logr", "k8s.io/kube-openapi"):
		return "prometheus, zap, logr, kube-openapi"
	case strings.Contains(strings.SplitN(pkg, "/", 2)[0], "."):
		return "other third-party"
	default:
		return "Go runtime and standard library"
	}
}
