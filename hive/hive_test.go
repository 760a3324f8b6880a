package hive_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/hive"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// mergeReg merges reg into an empty hive with hivexregedit (the oracle)
// and returns the file's path.
func mergeReg(t *testing.T, reg string) string {
	t.Helper()
	return testutil.MergeReg(t, hive.New("SYSTEM"), reg)
}

func export(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("hivexregedit", "--export", path, `\`).CombinedOutput()
	if err != nil {
		t.Fatalf("hivexregedit --export %s: %v\n%s", path, err, out)
	}
	return string(out)
}

// testHive merges testReg into an empty hive and parses it: it returns
// the hive, its file, the file's bytes and hivexregedit's export of it
// before any edit.
func testHive(t *testing.T) (h *hive.Hive, path string, b []byte, before string) {
	t.Helper()
	path = mergeReg(t, testReg)
	before = export(t, path)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if h, err = hive.Parse(b); err != nil {
		t.Fatal(err)
	}
	return h, path, b, before
}

// writeBack writes the edited hive h over path and returns its bytes;
// the test fails unless it kept the size of the original b.
func writeBack(t *testing.T, h *hive.Hive, path string, b []byte) []byte {
	t.Helper()
	out := h.Bytes()
	if len(out) != len(b) {
		t.Fatalf("hive grew from %d to %d bytes", len(b), len(out))
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// sameExport fails the test unless the parsed export after (what an edit
// added taken out) holds exactly the keys and values of before.
func sameExport(t *testing.T, before, after map[string]string) {
	t.Helper()
	if len(after) != len(before) {
		t.Errorf("%d keys and values after besides the added, %d before", len(after), len(before))
	}
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s changed: %q -> %q", k, v, after[k])
		}
	}
}

var testReg = `[\ControlSet001]

[\ControlSet001\Services]

[\ControlSet001\Services\xenvbd]
"Start"=dword:00000000
"ImagePath"="system32\\DRIVERS\\xenvbd.sys"
@="default"

[\ControlSet001\Control]

[\ControlSet001\Control\Class]

[\ControlSet001\Control\Class\{4D36E967-E325-11CE-BFC1-08002BE10318}]
"UpperFilters"=hex(7):78,00,65,00,6e,00,66,00,69,00,6c,00,74,00,00,00,50,00,61,00,72,00,74,00,4d,00,67,00,72,00,00,00,00,00
"Big"=hex:` + strings.Repeat("ab,", 20000) + `cd

[\Select]
"Current"=dword:00000001
`

func TestReadHivexHive(t *testing.T) {
	p := mergeReg(t, testReg)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	h, err := hive.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	k, err := h.Open(`controlset001\SERVICES\XenVbd`)
	if err != nil {
		t.Fatal(err)
	}
	v, err := k.Value("start")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := v.DWORD(); err != nil || n != 0 {
		t.Errorf("Start = %d, %v", n, err)
	}
	v, _ = k.Value("ImagePath")
	if s, err := v.String(); err != nil || s != `system32\DRIVERS\xenvbd.sys` {
		t.Errorf("ImagePath = %q, %v", s, err)
	}
	v, _ = k.Value("")
	if s, err := v.String(); err != nil || s != "default" {
		t.Errorf("default value = %q, %v", s, err)
	}
	if _, err := v.DWORD(); !errors.Is(err, hive.ErrType) {
		t.Errorf("DWORD of a string: %v", err)
	}
	c, err := h.Open(`ControlSet001\Control\Class\{4d36e967-e325-11ce-bfc1-08002be10318}`)
	if err != nil {
		t.Fatal(err)
	}
	v, _ = c.Value("UpperFilters")
	if ss, err := v.Strings(); err != nil || !slices.Equal(ss, []string{"xenfilt", "PartMgr"}) {
		t.Errorf("UpperFilters = %q, %v", ss, err)
	}
	v, _ = c.Value("Big")
	d, err := v.Data()
	if err != nil || len(d) != 20001 || d[0] != 0xab || d[20000] != 0xcd {
		t.Errorf("big value: %d bytes, %v", len(d), err)
	}
	if _, err := h.Open(`ControlSet002`); !errors.Is(err, hive.ErrNotFound) {
		t.Errorf("missing key: %v", err)
	}
	if _, err := k.Value("nope"); !errors.Is(err, hive.ErrNotFound) {
		t.Errorf("missing value: %v", err)
	}
}

// TestManySubkeys reads a key whose subkey list hivex splits into an
// index of lists.
func TestManySubkeys(t *testing.T) {
	var reg strings.Builder
	reg.WriteString("[\\Many]\n\n")
	for i := range 1200 {
		fmt.Fprintf(&reg, "[\\Many\\k%04d]\n\"N\"=dword:%08x\n\n", i, i)
	}
	p := mergeReg(t, reg.String())
	b, _ := os.ReadFile(p)
	h, err := hive.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	m, err := h.Open("Many")
	if err != nil {
		t.Fatal(err)
	}
	ks, err := m.Subkeys()
	if err != nil || len(ks) != 1200 {
		t.Fatalf("%d subkeys, %v", len(ks), err)
	}
	k, err := m.Subkey("K0777")
	if err != nil {
		t.Fatal(err)
	}
	v, _ := k.Value("N")
	if n, _ := v.DWORD(); n != 777 {
		t.Errorf("N = %d", n)
	}
}

// TestEditInPlace changes values in place and checks with hivexregedit
// that exactly those changed, and that the file kept its size.
func TestEditInPlace(t *testing.T) {
	h, p, b, before := testHive(t)
	k, _ := h.Open(`ControlSet001\Services\xenvbd`)
	v, _ := k.Value("Start")
	if err := h.SetDWORD(v, 4); err != nil {
		t.Fatal(err)
	}
	c, _ := h.Open(`ControlSet001\Control\Class\{4D36E967-E325-11CE-BFC1-08002BE10318}`)
	v, _ = c.Value("UpperFilters")
	if err := h.SetData(v, hive.EncodeMultiSZ([]string{"PartMgr"})); err != nil {
		t.Fatal(err)
	}
	if err := h.SetData(v, hive.EncodeMultiSZ([]string{"PartMgr", "a-much-longer-name-than-fits"})); !errors.Is(err, hive.ErrNoRoom) {
		t.Errorf("growing a value: %v", err)
	}
	v, _ = k.Value("ImagePath")
	if err := h.SetDWORD(v, 1); !errors.Is(err, hive.ErrType) {
		t.Errorf("SetDWORD on a string: %v", err)
	}
	out := writeBack(t, h, p, b)
	if seq := out[4]; seq != b[4]+1 || out[8] != seq {
		t.Errorf("sequence numbers %d/%d, were %d", out[4], out[8], b[4])
	}
	after := export(t, p)
	want := strings.Replace(before, `"Start"=dword:00000000`, `"Start"=dword:00000004`, 1)
	want = strings.Replace(want,
		`"UpperFilters"=hex(7):78,00,65,00,6e,00,66,00,69,00,6c,00,74,00,00,00,50,00,61,00,72,00,74,00,4d,00,67,00,72,00,00,00,00,00`,
		`"UpperFilters"=hex(7):50,00,61,00,72,00,74,00,4d,00,67,00,72,00,00,00,00,00`, 1)
	if want == before {
		t.Fatal("test edits matched nothing in the export")
	}
	if after != want {
		t.Errorf("hivexregedit --export after the edit:\n%s\nwant:\n%s", after, want)
	}
	// hivexget reads the edited value too.
	got, err := exec.Command("hivexget", p, `\ControlSet001\Services\xenvbd`, "Start").CombinedOutput()
	if err != nil || strings.TrimSpace(string(got)) != "4" {
		t.Errorf("hivexget Start = %q, %v", got, err)
	}
}

func TestDirtyAndCorrupt(t *testing.T) {
	b := hive.New("SYSTEM")
	if _, err := hive.Parse(b); err != nil {
		t.Fatalf("empty hive: %v", err)
	}
	dirty := bytes.Clone(b)
	dirty[4] = 7
	// Fix the checksum so that the sequence numbers are what is wrong.
	var x uint32
	for i := 0; i < 0x1fc; i += 4 {
		x ^= uint32(dirty[i]) | uint32(dirty[i+1])<<8 | uint32(dirty[i+2])<<16 | uint32(dirty[i+3])<<24
	}
	dirty[0x1fc], dirty[0x1fd], dirty[0x1fe], dirty[0x1ff] = byte(x), byte(x>>8), byte(x>>16), byte(x>>24)
	if _, err := hive.Parse(dirty); !errors.Is(err, hive.ErrDirty) {
		t.Errorf("dirty hive: %v", err)
	}
	bad := bytes.Clone(b)
	bad[0x30] ^= 1
	if _, err := hive.Parse(bad); !errors.Is(err, hive.ErrFormat) {
		t.Errorf("bad checksum: %v", err)
	}
	if _, err := hive.Parse([]byte("regf")); !errors.Is(err, hive.ErrFormat) {
		t.Errorf("short: %v", err)
	}
}

// TestAddValue adds values in the hive's free space and checks with
// hivexregedit that they are there and nothing else changed.
func TestAddValue(t *testing.T) {
	h, p, b, before := testHive(t)
	k, _ := h.Open(`ControlSet001\Services\xenvbd`)
	cmd := `cmd.exe /c echo hello`
	data := hive.EncodeMultiSZ([]string{cmd})[:2*len(cmd)+2] // REG_SZ: the string and one NUL
	if err := h.AddValue(k, "xen2kvm", hive.SZ, data); err != nil {
		t.Fatal(err)
	}
	if err := h.AddValue(k, "Tiny", hive.DWORD, []byte{7, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	sel, _ := h.Open("Select")
	if err := h.AddValue(sel, "current", hive.DWORD, []byte{1, 0, 0, 0}); !errors.Is(err, hive.ErrExists) {
		t.Errorf("adding an existing value: %v", err)
	}
	if err := h.AddValue(sel, "Huge", hive.Binary, make([]byte, 9000)); !errors.Is(err, hive.ErrNoRoom) {
		t.Errorf("adding more than the free space: %v", err)
	}
	out := writeBack(t, h, p, b)
	bm, am := testutil.ParseRegExport(before), testutil.ParseRegExport(export(t, p))
	key := `controlset001\services\xenvbd\`
	if am[key+"tiny"] != "dword:00000007" || !strings.HasPrefix(am[key+"xen2kvm"], "hex(1):63,00,6d,00,64,00") {
		t.Errorf("added values: tiny %q, xen2kvm %q", am[key+"tiny"], am[key+"xen2kvm"])
	}
	delete(am, key+"tiny")
	delete(am, key+"xen2kvm")
	sameExport(t, bm, am)
	h2, err := hive.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := h2.Open(`ControlSet001\Services\xenvbd`)
	v, err := k2.Value("XEN2KVM")
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := v.String(); s != cmd {
		t.Errorf("read back %q", s)
	}
}

// TestAddKey adds keys (first, middle and last in their lists, a key
// under a new key, a key under a key without subkeys) with values, and
// checks with hivexregedit and hivexget that exactly those appeared, that
// the lists stay in Windows' order and that the file kept its size.
func TestAddKey(t *testing.T) {
	h, p, b, before := testHive(t)
	free := h.Free()
	svcs, _ := h.Open(`ControlSet001\Services`)
	ctl, _ := h.Open(`ControlSet001\Control`)
	xenvbd, _ := h.Open(`ControlSet001\Services\xenvbd`)
	add := func(k hive.Key, name string) hive.Key {
		t.Helper()
		n, err := h.AddKey(k, name)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	viostor := add(svcs, "viostor")
	add(svcs, "zzlast")
	add(svcs, "Aafirst")
	cdd := add(ctl, "CriticalDeviceDatabase")
	dev := add(cdd, `pci#ven_1af4&dev_1001&subsys_00021af4&rev_00`)
	add(cdd, `pci#ven_1af4&dev_1001&subsys_00000000`)
	add(xenvbd, "Parameters")
	if err := h.AddValue(viostor, "Start", hive.DWORD, []byte{4, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	if err := h.AddValue(viostor, "ImagePath", hive.ExpandSZ, hive.EncodeSZ(`system32\drivers\viostor.sys`)); err != nil {
		t.Fatal(err)
	}
	if err := h.AddValue(dev, "Service", hive.SZ, hive.EncodeSZ("viostor")); err != nil {
		t.Fatal(err)
	}
	if _, err := h.AddKey(svcs, "VIOSTOR"); !errors.Is(err, hive.ErrExists) {
		t.Errorf("adding an existing key: %v", err)
	}
	if got := h.Free(); got >= free {
		t.Errorf("free space %d, was %d", got, free)
	}
	out := writeBack(t, h, p, b)
	bm, am := testutil.ParseRegExport(before), testutil.ParseRegExport(export(t, p))
	added := map[string]string{
		`controlset001\services\viostor`:                                                                    "(key)",
		`controlset001\services\viostor\start`:                                                              "dword:00000004",
		`controlset001\services\viostor\imagepath`:                                                          regHex(2, hive.EncodeSZ(`system32\drivers\viostor.sys`)),
		`controlset001\services\zzlast`:                                                                     "(key)",
		`controlset001\services\aafirst`:                                                                    "(key)",
		`controlset001\services\xenvbd\parameters`:                                                          "(key)",
		`controlset001\control\criticaldevicedatabase`:                                                      "(key)",
		`controlset001\control\criticaldevicedatabase\pci#ven_1af4&dev_1001&subsys_00000000`:                "(key)",
		`controlset001\control\criticaldevicedatabase\pci#ven_1af4&dev_1001&subsys_00021af4&rev_00`:         "(key)",
		`controlset001\control\criticaldevicedatabase\pci#ven_1af4&dev_1001&subsys_00021af4&rev_00\service`: regHex(1, hive.EncodeSZ("viostor")),
	}
	for k, v := range added {
		if am[k] != v {
			t.Errorf("%s = %q, want %q", k, am[k], v)
		}
		delete(am, k)
	}
	sameExport(t, bm, am)
	if got := strings.TrimSpace(string(testutil.Run(t, "hivexget", p, `\ControlSet001\Services\viostor`, "Start"))); got != "4" {
		t.Errorf("hivexget viostor Start = %q", got)
	}
	// Read back: the lists are in Windows' order (upper-case names).
	h2, err := hive.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{`ControlSet001\Services`, `ControlSet001\Control`, `ControlSet001\Control\CriticalDeviceDatabase`} {
		k, _ := h2.Open(path)
		ks, err := k.Subkeys()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range ks {
			names = append(names, strings.ToUpper(s.Name()))
		}
		if !slices.IsSorted(names) {
			t.Errorf("%s subkeys out of order: %v", path, names)
		}
	}
	if _, err := h2.Open(`ControlSet001\Services\xenvbd\Parameters`); err != nil {
		t.Error(err)
	}
}

// TestAddKeyNoRoom fills a small hive's free space: the call that does
// not fit returns ErrNoRoom and leaves the hive as it was.
func TestAddKeyNoRoom(t *testing.T) {
	h, err := hive.Parse(hive.New("SYSTEM"))
	if err != nil {
		t.Fatal(err)
	}
	root := h.Root()
	var i int
	for i = 0; i < 1000; i++ {
		before := h.Bytes()
		_, err := h.AddKey(root, fmt.Sprintf("pci#ven_1af4&dev_1001&subsys_%08x", i))
		if errors.Is(err, hive.ErrNoRoom) {
			if !bytes.Equal(h.Bytes(), before) {
				t.Error("a failed AddKey changed the hive")
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if i == 0 || i == 1000 {
		t.Fatalf("%d keys added before ErrNoRoom", i)
	}
	ks, err := h.Root().Subkeys()
	if err != nil || len(ks) != i {
		t.Errorf("%d subkeys after %d added: %v", len(ks), i, err)
	}
	if len(h.Bytes()) != 8192 {
		t.Errorf("hive is %d bytes", len(h.Bytes()))
	}
}

// regHex is data as hivexregedit --export writes it: hex(TYPE):bytes.
func regHex(typ int, b []byte) string {
	var hx []string
	for _, c := range b {
		hx = append(hx, fmt.Sprintf("%02x", c))
	}
	return fmt.Sprintf("hex(%d):%s", typ, strings.Join(hx, ","))
}
