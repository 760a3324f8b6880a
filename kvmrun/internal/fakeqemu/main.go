// Command fakeqemu stands in for qemu-system-x86_64 in kvmrun's tests. It
// understands the options kvmrun passes (the serial chardev, the QMP
// socket, -accel, -bios) and plays a scenario set by environment
// variables:
//
//	FAKEQEMU_KVM=works|hang|fail   how a guest under -accel kvm behaves
//	FAKEQEMU_TCG=works|fail        how the probe guest under -accel tcg behaves
//	FAKEQEMU_SERIAL=FILE           canned serial output, written line by line
//	FAKEQEMU_LINE_DELAY=DURATION   pause between serial lines (10ms)
//	FAKEQEMU_AFTER=run|exit:N      after the serial output: keep running, or exit with N
//	FAKEQEMU_POWERDOWN=off|ignore  whether the guest powers off on system_powerdown
//	FAKEQEMU_ARGV=FILE             write the argv there, one argument per line
//	FAKEQEMU_QMP_LOG=FILE          append each QMP command executed
//
// A serial line "@reset" is not written: it stands for a guest reboot,
// reported as a QMP RESET event (guest-reset) before the answer to the
// next command.
//
// Probe mode (-bios given) prints the probe firmware's marker and exits
// with the isa-debug-exit status the real firmware produces.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// resets are the times of the "@reset" lines played so far.
var resets struct {
	sync.Mutex
	at []time.Time
}

func main() {
	argv := os.Args[1:]
	if f := os.Getenv("FAKEQEMU_ARGV"); f != "" {
		os.WriteFile(f, []byte(strings.Join(argv, "\n")+"\n"), 0o644)
	}
	var accel, bios, serialPath, qmpPath string
	serialStdio := false
	for i := 0; i+1 < len(argv); i++ {
		v := argv[i+1]
		switch argv[i] {
		case "-accel":
			accel = v
		case "-bios":
			bios = v
		case "-chardev":
			kind, opts := parseOpts(v)
			switch {
			case kind == "file" && opts["id"] == "serial0":
				serialPath = opts["path"]
			case kind == "stdio":
				serialStdio = true
			case kind == "socket" && opts["id"] == "qmp":
				qmpPath = opts["path"]
			}
		}
	}

	if bios != "" {
		probe(accel)
		return
	}
	if accel == "kvm" && os.Getenv("FAKEQEMU_KVM") == "hang" {
		select {}
	}
	if accel == "kvm" && os.Getenv("FAKEQEMU_KVM") == "fail" {
		fmt.Fprintln(os.Stderr, "fakeqemu: Could not access KVM kernel module: No such file or directory")
		os.Exit(1)
	}

	var serial io.Writer = io.Discard
	switch {
	case serialPath != "":
		f, err := os.Create(serialPath)
		if err != nil {
			fmt.Fprintf(os.Stderr, "fakeqemu: %v\n", err)
			os.Exit(1)
		}
		defer f.Close()
		serial = f
	case serialStdio:
		serial = os.Stdout
	}

	exit := make(chan int, 1)
	if qmpPath != "" {
		l, err := net.Listen("unix", qmpPath)
		if err != nil {
			fmt.Fprintf(os.Stderr, "fakeqemu: -chardev socket: %v\n", err)
			os.Exit(1)
		}
		defer os.Remove(qmpPath)
		go serveQMP(l, exit)
	}

	go func() {
		if f := os.Getenv("FAKEQEMU_SERIAL"); f != "" {
			data, err := os.ReadFile(f)
			if err != nil {
				fmt.Fprintf(os.Stderr, "fakeqemu: %v\n", err)
				exit <- 1
				return
			}
			delay := 10 * time.Millisecond
			if d, err := time.ParseDuration(os.Getenv("FAKEQEMU_LINE_DELAY")); err == nil {
				delay = d
			}
			for _, line := range strings.SplitAfter(string(data), "\n") {
				if strings.TrimSpace(line) == "@reset" {
					resets.Lock()
					resets.at = append(resets.at, time.Now())
					resets.Unlock()
					continue
				}
				io.WriteString(serial, line)
				time.Sleep(delay)
			}
		}
		if after := os.Getenv("FAKEQEMU_AFTER"); strings.HasPrefix(after, "exit:") {
			n, _ := strconv.Atoi(strings.TrimPrefix(after, "exit:"))
			if n != 0 {
				fmt.Fprintf(os.Stderr, "fakeqemu: guest died (status %d)\n", n)
			}
			exit <- n
		}
	}()
	os.Exit(<-exit)
}

func probe(accel string) {
	mode := os.Getenv("FAKEQEMU_KVM")
	if accel == "tcg" {
		mode = os.Getenv("FAKEQEMU_TCG")
	}
	switch mode {
	case "hang":
		os.Stdout.WriteString("R")
		select {}
	case "fail":
		fmt.Fprintf(os.Stderr, "fakeqemu: -accel %s: no accelerator found\n", accel)
		os.Exit(1)
	}
	os.Stdout.WriteString("RPL\n")
	os.Exit(0x31<<1 | 1)
}

// parseOpts splits "kind,key=value,..." (",," is a literal comma).
func parseOpts(s string) (string, map[string]string) {
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			if i+1 < len(s) && s[i+1] == ',' {
				cur.WriteByte(',')
				i++
				continue
			}
			parts = append(parts, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteByte(s[i])
	}
	parts = append(parts, cur.String())
	m := map[string]string{}
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(p, "=")
		m[k] = v
	}
	return parts[0], m
}

var qmpLog sync.Mutex

func serveQMP(l net.Listener, exit chan<- int) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go handleQMP(c, exit)
	}
}

func handleQMP(c net.Conn, exit chan<- int) {
	defer c.Close()
	enc := json.NewEncoder(c)
	enc.Encode(map[string]any{"QMP": map[string]any{
		"version":      map[string]any{"qemu": map[string]int{"major": 7, "minor": 2, "micro": 0}, "package": "fakeqemu"},
		"capabilities": []string{"oob"},
	}})
	negotiated := false
	sent := 0 // RESET events sent on this connection
	r := bufio.NewReader(c)
	dec := json.NewDecoder(r)
	for {
		var cmd struct {
			Execute string          `json:"execute"`
			ID      json.RawMessage `json:"id"`
		}
		if err := dec.Decode(&cmd); err != nil {
			return
		}
		if f := os.Getenv("FAKEQEMU_QMP_LOG"); f != "" {
			qmpLog.Lock()
			lf, _ := os.OpenFile(f, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
			fmt.Fprintln(lf, cmd.Execute)
			lf.Close()
			qmpLog.Unlock()
		}
		reply := func(v map[string]any) {
			if cmd.ID != nil {
				v["id"] = cmd.ID
			}
			enc.Encode(v)
		}
		event := func(name string) {
			now := time.Now()
			enc.Encode(map[string]any{"event": name, "timestamp": map[string]int64{"seconds": now.Unix(), "microseconds": int64(now.Nanosecond() / 1000)}})
		}
		if !negotiated && cmd.Execute != "qmp_capabilities" {
			reply(map[string]any{"error": map[string]string{"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}})
			continue
		}
		resets.Lock()
		pending := resets.at[min(sent, len(resets.at)):]
		sent = len(resets.at)
		resets.Unlock()
		for _, at := range pending {
			enc.Encode(map[string]any{"event": "RESET", "data": map[string]any{"guest": true, "reason": "guest-reset"},
				"timestamp": map[string]int64{"seconds": at.Unix(), "microseconds": int64(at.Nanosecond() / 1000)}})
		}
		switch cmd.Execute {
		case "qmp_capabilities":
			negotiated = true
			reply(map[string]any{"return": map[string]any{}})
		case "query-status":
			reply(map[string]any{"return": map[string]any{"status": "running", "running": true}})
		case "system_powerdown":
			reply(map[string]any{"return": map[string]any{}})
			event("POWERDOWN")
			if os.Getenv("FAKEQEMU_POWERDOWN") != "ignore" {
				time.Sleep(100 * time.Millisecond)
				event("SHUTDOWN")
				exit <- 0
			}
		case "quit":
			reply(map[string]any{"return": map[string]any{}})
			event("SHUTDOWN")
			exit <- 0
		default:
			reply(map[string]any{"error": map[string]string{"class": "CommandNotFound", "desc": "The command " + cmd.Execute + " has not been found"}})
		}
	}
}
