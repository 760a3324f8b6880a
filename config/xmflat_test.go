package config

import "testing"

// TestXMListOrString checks the keys that take a string or a list of
// values: cpus (joined by commas) and bootargs / bootloader_args (joined
// by spaces, the later key winning); None leaves them unset.
func TestXMListOrString(t *testing.T) {
	tests := []struct {
		name     string
		src      string
		cpus     string
		bootArgs string
	}{
		{name: "strings", src: "cpus = '0-3,^1'\nbootloader_args = '--entry=1'\n", cpus: "0-3,^1", bootArgs: "--entry=1"},
		{name: "lists", src: "cpus = [0, '2-3']\nbootargs = ['-q', '--entry=xvda1:/boot/vmlinuz']\n", cpus: "0,2-3", bootArgs: "-q --entry=xvda1:/boot/vmlinuz"},
		{name: "number", src: "cpus = 2\n", cpus: "2"},
		{name: "none", src: "cpus = None\nbootargs = None\n"},
		{name: "bootloader_args after bootargs", src: "bootargs = '-a'\nbootloader_args = ['-b', '-c']\n", bootArgs: "-b -c"},
		{name: "None does not clear", src: "bootargs = '-a'\nbootloader_args = None\n", bootArgs: "-a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Parse([]byte("name = 'g'\nmemory = 256\n"+tc.src), "g", WithFormat(FormatXM))
			if err != nil {
				t.Fatal(err)
			}
			if d.CPUs != tc.cpus || d.BootloaderArgs != tc.bootArgs {
				t.Errorf("cpus %q, bootloader args %q; want %q, %q", d.CPUs, d.BootloaderArgs, tc.cpus, tc.bootArgs)
			}
		})
	}
}
