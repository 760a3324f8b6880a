package diskimg_test

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xen2kvm/xen2kvm/bench/benchimg"
	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

var (
	benchSize   = flag.String("bench.size", "2G", "BenchmarkConvert: virtual size of the source image (suffix M or G)")
	benchData   = flag.String("bench.data", "512M", "BenchmarkConvert: bytes of scattered data in it")
	benchDir    = flag.String("bench.dir", "", "BenchmarkConvert: directory for the images (default: a test temporary directory)")
	benchRounds = flag.Int("bench.rounds", 3, "BenchmarkConvert: rounds, each running every tool once, alternating")
)

// BenchmarkConvert copies the bench/ workload (a sparse raw image with
// scattered data, a quarter of it allocated zeros) to qcow2 with
// diskimg.Convert and, for comparison in the same run, with qemu-img
// convert (default and -W -m 16). It alternates the three for
// -bench.rounds rounds, so that changes in the machine's load hit all of
// them, and logs the medians and the ratios to qemu-img -W -m 16:
//
//	go test ./diskimg -run '^$' -bench Convert -benchtime 1x -bench.rounds 5 -v
//	go test ./diskimg -run '^$' -bench Convert -benchtime 1x -bench.size 8G -bench.data 2G -bench.dir /var/tmp
//
// ns/op and MB/s (on the source's allocated bytes) are the time until the
// output is on disk: Convert fsyncs before it returns, and qemu-img's
// output is fsynced after it exits. wall-s/op is the command alone;
// cpu-s/op is the user plus system CPU time it used, which a loaded
// machine disturbs less than the wall clock.
func BenchmarkConvert(b *testing.B) {
	size, err := benchimg.ParseSize(*benchSize)
	if err != nil {
		b.Fatal(err)
	}
	data, err := benchimg.ParseSize(*benchData)
	if err != nil {
		b.Fatal(err)
	}
	dir := *benchDir
	if dir == "" {
		dir = b.TempDir()
	}
	src := filepath.Join(dir, "bench-src.raw")
	dst := filepath.Join(dir, "bench-out.qcow2")
	allocated, _, err := benchimg.Write(src, size, data, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(src)
	defer os.Remove(dst)

	type result struct{ durable, wall, cpu []float64 }
	results := map[string]*result{}
	run := func(b *testing.B, convert func() (cpu time.Duration, err error)) {
		b.SetBytes(allocated)
		var wall, cpu time.Duration
		for b.Loop() {
			b.StopTimer()
			os.Remove(dst)
			unix.Sync() // nobody's writeback lands on the timed run
			b.StartTimer()
			start := time.Now()
			c, err := convert()
			wall += time.Since(start)
			cpu += c
			if err != nil {
				b.Fatal(err)
			}
			f, err := os.OpenFile(dst, os.O_RDWR, 0)
			if err != nil {
				b.Fatal(err)
			}
			err = f.Sync()
			f.Close()
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(wall.Seconds()/float64(b.N), "wall-s/op")
		b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
		name := b.Name()[strings.LastIndex(b.Name(), "=")+1:]
		name, _, _ = strings.Cut(name, "#")
		r := results[name]
		if r == nil {
			r = &result{}
			results[name] = r
		}
		r.durable = append(r.durable, b.Elapsed().Seconds()/float64(b.N))
		r.wall = append(r.wall, wall.Seconds()/float64(b.N))
		r.cpu = append(r.cpu, cpu.Seconds()/float64(b.N))
	}
	qemuImg, _ := exec.LookPath("qemu-img")
	for range max(1, *benchRounds) {
		benchRound(b, run, src, dst, qemuImg)
	}
	if ref := results["qemu-img-W-m16"]; ref != nil {
		for _, name := range []string{"xen2kvm", "qemu-img", "qemu-img-W-m16"} {
			r := results[name]
			b.Logf("%-15s median of %d: durable %.3f s (%.2f× qemu-img -W -m 16), wall %.3f s (%.2f×), cpu %.3f s (%.2f×)", name, len(r.durable),
				median(r.durable), median(r.durable)/median(ref.durable), median(r.wall), median(r.wall)/median(ref.wall), median(r.cpu), median(r.cpu)/median(ref.cpu))
		}
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// benchRound runs each tool once (as a sub-benchmark).
func benchRound(b *testing.B, run func(*testing.B, func() (time.Duration, error)), src, dst, qemuImg string) {

	b.Run("tool=xen2kvm", func(b *testing.B) {
		run(b, func() (time.Duration, error) {
			before := selfCPU()
			img, err := diskimg.Open(src)
			if err != nil {
				return 0, err
			}
			defer img.Close()
			err = diskimg.Convert(context.Background(), img, dst, diskimg.OutputQCOW2)
			return selfCPU() - before, err
		})
	})
	for _, q := range []struct {
		name string
		args []string
	}{
		{"tool=qemu-img", nil},
		{"tool=qemu-img-W-m16", []string{"-W", "-m", "16"}},
	} {
		b.Run(q.name, func(b *testing.B) {
			if qemuImg == "" {
				testutil.NeedTool(b, "qemu-img")
			}
			args := append([]string{"convert"}, q.args...)
			args = append(args, "-O", "qcow2", src, dst)
			run(b, func() (time.Duration, error) {
				cmd := exec.Command(qemuImg, args...)
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("%s %v: %v\n%s", qemuImg, args, err, out)
				}
				ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
				return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
			})
		})
	}
}

// selfCPU is the user plus system CPU time this process has used.
func selfCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
