package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// batchFixture is three fake guests (good1, good2, nodisk whose images
// are missing) and a config that does not parse, in one manifest.
func batchFixture(t *testing.T) (*fakes, *Manifest, string) {
	t.Helper()
	good1 := newFixture(t, "good1")
	good2 := newFixture(t, "good2")
	nodisk := newFixture(t, "nodisk")
	for _, img := range nodisk.images {
		os.Remove(img)
	}
	f := good1.f
	for _, fx := range []*fixture{good2, nodisk} {
		for k, v := range fx.f.domains {
			f.domains[k] = v
		}
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "kvm")
	spec := func(fx *fixture) GuestSpec {
		return GuestSpec{Config: fx.cfg, Output: out, Format: "raw", BootCheck: true,
			DiskMap: []PathMap{{Old: "/var/lib/xen/images", New: filepath.Join(fx.dir, "images")}}}
	}
	m := &Manifest{Path: filepath.Join(dir, "guests.yaml"), Guests: []GuestSpec{
		spec(good1), spec(nodisk), {Config: filepath.Join(dir, "corrupt"), Output: out, Format: "raw"}, spec(good2),
	}}
	return f, m, out
}

func TestBatchGoesOnAfterFailuresAndResumes(t *testing.T) {
	f, m, out := batchFixture(t)
	res, err := runBatch(context.Background(), f.parts(), m, BatchOptions{Jobs: 2, RunOptions: RunOptions{Workers: 3}})
	if !errors.Is(err, ErrBatchFailed) {
		t.Fatalf("err = %v, want ErrBatchFailed", err)
	}
	want := []GuestStatus{GuestMigrated, GuestFailed, GuestFailed, GuestMigrated}
	for i, g := range res.Guests {
		if g.Status != want[i] {
			t.Errorf("guest %d (%s): %s %s, want %s", i, g.Name, g.Status, g.Error, want[i])
		}
	}
	if res.Failed != 2 || !strings.Contains(res.Guests[1].Error, "disk xvda") || !strings.Contains(res.Guests[2].Error, "no such config") {
		t.Errorf("failures: %+v", res.Guests)
	}
	for _, name := range []string{"good1", "good2"} {
		if _, err := os.Stat(filepath.Join(out, name, name+".report.json")); err != nil {
			t.Errorf("%s not migrated: %v", name, err)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(out, "nodisk")); len(ents) != 0 {
		t.Errorf("the failed guest left %d files", len(ents))
	}
	logs := strings.TrimSuffix(m.Path, ".yaml") + ".logs"
	data, err := os.ReadFile(filepath.Join(logs, "nodisk.log"))
	if err != nil || !strings.Contains(string(data), "migration failed") {
		t.Errorf("nodisk.log: %v %q", err, data)
	}
	if data, err := os.ReadFile(filepath.Join(logs, "good1.log")); err != nil || !strings.Contains(string(data), "copied disk") {
		t.Errorf("good1.log: %v %q", err, data)
	}

	// Re-run: the migrated guests are skipped; the fixed one is resumed
	// even though its earlier run left its folder behind.
	st, err := loadState(strings.TrimSuffix(m.Path, ".yaml") + ".state.json")
	if err != nil || st.get(stateKey(m.Guests[0])).Status != GuestMigrated || st.get(stateKey(m.Guests[1])).Status != GuestFailed {
		t.Fatalf("state: %v %+v", err, st)
	}
	nd := f.domains[m.Guests[1].Config]
	for _, d := range nd.Disks[:2] {
		path := strings.Replace(d.Source, "/var/lib/xen/images", m.Guests[1].DiskMap[0].New, 1)
		os.WriteFile(path, make([]byte, 4096), 0o644)
	}
	os.WriteFile(filepath.Join(out, "nodisk", "nodisk.xml"), []byte("half"), 0o644) // as if killed mid-commit
	m.Guests = append(m.Guests[:2], m.Guests[3])
	res, err = runBatch(context.Background(), f.parts(), m, BatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want = []GuestStatus{GuestSkipped, GuestMigrated, GuestSkipped}
	for i, g := range res.Guests {
		if g.Status != want[i] {
			t.Errorf("re-run guest %d (%s): %s %s, want %s", i, g.Name, g.Status, g.Error, want[i])
		}
	}
}

func TestBatchDryRunWritesNothing(t *testing.T) {
	f, m, out := batchFixture(t)
	m.Guests = []GuestSpec{m.Guests[0], m.Guests[3]}
	res, err := runBatch(context.Background(), f.parts(), m, BatchOptions{RunOptions: RunOptions{DryRun: true}})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range res.Guests {
		if g.Status != GuestPlanned || g.Report == nil || len(g.Report.Edits) == 0 {
			t.Errorf("%s: %+v", g.Name, g)
		}
	}
	for _, p := range []string{out, strings.TrimSuffix(m.Path, ".yaml") + ".state.json", strings.TrimSuffix(m.Path, ".yaml") + ".logs"} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("dry run wrote %s", p)
		}
	}
	js, _ := json.Marshal(res)
	if !strings.Contains(string(js), `"status":"planned"`) {
		t.Errorf("JSON: %s", js)
	}
}

func TestBatchBlockedGuest(t *testing.T) {
	f, m, _ := batchFixture(t)
	f.blockers = []string{"only Xen kernels installed"}
	m.Guests = m.Guests[:1]
	res, err := runBatch(context.Background(), f.parts(), m, BatchOptions{})
	if !errors.Is(err, ErrBatchFailed) || res.Guests[0].Status != GuestBlocked || !strings.Contains(res.Guests[0].Error, "only Xen kernels") {
		t.Errorf("%v %+v", err, res.Guests[0])
	}
}

func TestBatchSameNameTwice(t *testing.T) {
	f, m, out := batchFixture(t)
	twin := m.Guests[0]
	twin.Config += "-copy"
	twin.Line = 12
	f.domains[twin.Config] = f.domains[m.Guests[0].Config]
	m.Guests = []GuestSpec{m.Guests[0], twin}
	res, err := runBatch(context.Background(), f.parts(), m, BatchOptions{Jobs: 2})
	if !errors.Is(err, ErrBatchFailed) || res.Failed != 1 {
		t.Fatalf("%v, %+v", err, res)
	}
	var ok, dup int
	for _, g := range res.Guests {
		switch {
		case g.Status == GuestMigrated:
			ok++
		case strings.Contains(g.Error, "would be written to "+filepath.Join(out, "good1")):
			dup++
		}
		if g.Seconds <= 0 {
			t.Errorf("%s: no time measured", g.Config)
		}
	}
	if ok != 1 || dup != 1 {
		t.Errorf("%+v", res.Guests)
	}
}

// TestBatchRedoesGuestWithMissingOutput: a guest recorded as migrated
// is skipped only while every file its report lists is still there.
func TestBatchRedoesGuestWithMissingOutput(t *testing.T) {
	for _, lost := range []string{"good1-vda.raw", "good1.xml", "good1.sh", "good1.report.json"} {
		t.Run(lost, func(t *testing.T) {
			f, m, out := batchFixture(t)
			m.Guests = m.Guests[:1]
			if _, err := runBatch(context.Background(), f.parts(), m, BatchOptions{}); err != nil {
				t.Fatal(err)
			}
			os.Remove(filepath.Join(out, "good1", lost))
			res, err := runBatch(context.Background(), f.parts(), m, BatchOptions{})
			if err != nil || res.Guests[0].Status != GuestMigrated {
				t.Fatalf("re-run: %v %+v", err, res.Guests)
			}
			if _, err := os.Stat(filepath.Join(out, "good1", lost)); err != nil {
				t.Errorf("%s not written again: %v", lost, err)
			}
			res, err = runBatch(context.Background(), f.parts(), m, BatchOptions{})
			if err != nil || res.Guests[0].Status != GuestSkipped {
				t.Errorf("third run: %v %+v", err, res.Guests)
			}
		})
	}
}

// TestBatchRefusesHostileNames: a guest whose name is not a plain file
// name fails (naming the config) and nothing is written for it.
func TestBatchRefusesHostileNames(t *testing.T) {
	f, m, out := batchFixture(t)
	g := m.Guests[0]
	var specs []GuestSpec
	for i, name := range []string{"../../../../tmp/x/pwn", "..", ".", "--force", "a/b", "a\nb", "a\x00b", "\xff\xfe"} {
		s := g
		s.Config = fmt.Sprintf("%s-evil%d", g.Config, i)
		d := *f.domains[g.Config]
		d.Name = name
		d.Source.File = s.Config
		f.domains[s.Config] = &d
		specs = append(specs, s)
	}
	m.Guests = specs
	res, err := runBatch(context.Background(), f.parts(), m, BatchOptions{Jobs: 2})
	if !errors.Is(err, ErrBatchFailed) || res.Failed != len(specs) {
		t.Fatalf("%v, %+v", err, res)
	}
	for _, r := range res.Guests {
		if !strings.Contains(r.Error, "guest name") || !strings.Contains(r.Error, filepath.Base(r.Config)) || r.OutDir != "" {
			t.Errorf("%s: %+v", r.Config, r)
		}
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Errorf("output folder holds %d entries", len(ents))
	}
}
