package report

import (
	"html/template"
	"io"
	"strings"
	"time"
)

// WriteHTML writes the guests' reports as one self-contained HTML page:
// inline CSS, no scripts, no external resources, so it can be mailed or
// attached to a ticket as it is.
func WriteHTML(w io.Writer, guests ...*Guest) error {
	return page.Execute(w, struct {
		Guests    []*Guest
		Generated string
	}{guests, time.Now().UTC().Format("2006-01-02 15:04 UTC")})
}

// diffLine is one line of a unified diff with its CSS class.
type diffLine struct {
	Class string
	Text  string
}

func diffLines(diff string) []diffLine {
	diff = strings.TrimSuffix(diff, "\n")
	if diff == "" {
		return nil
	}
	var out []diffLine
	for _, l := range strings.Split(diff, "\n") {
		c := "ctx"
		switch {
		case strings.HasPrefix(l, "+++"), strings.HasPrefix(l, "---"):
			c = "hdr"
		case strings.HasPrefix(l, "@@"):
			c = "hunk"
		case strings.HasPrefix(l, "+"):
			c = "add"
		case strings.HasPrefix(l, "-"):
			c = "del"
		}
		out = append(out, diffLine{c, l})
	}
	return out
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"bytes":   Bytes,
	"seconds": Seconds,
	"diff":    diffLines,
	"upper":   strings.ToUpper,
	"utc": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"title": func(gs []*Guest) string {
		if len(gs) == 1 {
			return gs[0].Name
		}
		return "batch"
	},
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>xen2kvm report: {{title .Guests}}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f4f6f8;color:#1d2630}
header{background:#16324f;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#c8d6e5;font-size:13px}
main{padding:20px 28px;max-width:1200px}
section.guest{background:#fff;border:1px solid #d5dde5;border-radius:8px;margin-bottom:28px;padding:18px 22px;box-shadow:0 1px 2px rgba(0,0,0,.05)}
h2{margin:0 0 10px;font-size:20px}
h3{font-size:15px;margin:22px 0 8px;color:#16324f;border-bottom:1px solid #e3e8ee;padding-bottom:4px}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;font-size:12px;font-weight:600;vertical-align:middle;margin-left:8px}
.planned{background:#e0ecff;color:#1a4c9c}.migrated{background:#dcf5e3;color:#16652f}
.failed,.blocked{background:#fde2e1;color:#9b1c1c}
table{border-collapse:collapse;font-size:13px;width:100%}
th,td{text-align:left;padding:5px 10px;border-bottom:1px solid #e8edf2}
th{background:#f0f3f7;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
dl{display:grid;grid-template-columns:max-content auto;gap:4px 16px;font-size:14px;margin:0}
dt{color:#5a6877}dd{margin:0}
.edit{margin:10px 0 16px}
.edit .path{font-family:ui-monospace,Menlo,Consolas,monospace;font-weight:600}
.edit .why{color:#5a6877;font-size:13px}
pre{background:#0f1b26;color:#dde6ee;padding:10px 12px;border-radius:6px;overflow-x:auto;font-size:12.5px;line-height:1.45;margin:6px 0}
pre.diff{background:#fbfcfd;color:#1d2630;border:1px solid #e3e8ee}
pre.diff span{display:block;white-space:pre}
.add{background:#e6ffec;color:#116329}.del{background:#ffebe9;color:#a40e26}
.hunk{color:#6639ba;background:#f5f0ff}.hdr{color:#57606a;font-weight:600}
ul.warn li{color:#8a5300}ul.block li{color:#9b1c1c;font-weight:600}
.error{background:#fde2e1;color:#9b1c1c;padding:8px 12px;border-radius:6px}
.ok{color:#16652f;font-weight:600}.fail{color:#9b1c1c;font-weight:600}
</style>
</head>
<body>
<header>
<h1>xen2kvm migration report</h1>
<p>{{len .Guests}} guest(s) · generated {{.Generated}}</p>
</header>
<main>
{{range .Guests}}
<section class="guest" id="guest-{{.Name}}">
<h2>{{.Name}}<span class="badge {{.Status}}">{{.Status}}{{if .DryRun}} · dry run{{end}}</span></h2>
{{if .Error}}<p class="error">{{.Error}}</p>{{end}}
<h3>Source config</h3>
<dl>
<dt>File</dt><dd>{{.Source.File}} ({{.Source.Format}})</dd>
<dt>Type</dt><dd>{{.Source.Type}}</dd>
<dt>Memory</dt><dd>{{.Source.MemoryMiB}} MiB (max {{.Source.MaxMemoryMiB}} MiB)</dd>
<dt>vCPUs</dt><dd>{{.Source.VCPUs}}</dd>
{{if .Source.Bootloader}}<dt>Boot loader</dt><dd>{{.Source.Bootloader}}</dd>{{end}}
{{if .Source.Kernel}}<dt>Kernel</dt><dd>{{.Source.Kernel}}</dd>{{end}}
{{range .Source.NICs}}<dt>NIC</dt><dd>{{or .MAC "no MAC"}} on {{or .Bridge "-"}}: {{or .Model "netfront"}} → {{or .NewModel "-"}}{{if and .NewMAC (ne .NewMAC .MAC)}}, MAC {{.NewMAC}} ({{.MACFrom}}){{end}}</dd>{{end}}
{{with .OS}}<dt>Guest OS</dt><dd>{{.Distro}} {{.Version}} {{.Arch}}</dd>
{{if .Kernel}}<dt>KVM kernel</dt><dd>{{.Kernel}} (virtio: {{.Virtio}})</dd>{{end}}{{range .Details}}<dd>{{.}}</dd>{{end}}{{end}}
</dl>
{{if .Disks}}
<h3>Disks</h3>
<table>
<tr><th>Xen</th><th>KVM</th><th>Source</th><th>Virtual size</th><th>Allocated</th><th>Format</th><th>Est. output</th><th>Est. copy time</th></tr>
{{range .Disks}}<tr><td>{{.Target}}</td><td>{{.NewTarget}} ({{.Bus}})</td><td>{{.Path}}</td><td class="num">{{bytes .VirtualSize}}</td><td class="num">{{bytes .Allocated}}</td><td>{{.Format}}</td><td class="num">{{bytes .EstimatedSize}}</td><td class="num">{{seconds .EstimatedCopySeconds}}</td></tr>
{{end}}</table>
{{end}}
{{if and .Warm .DryRun}}{{with .Warm}}<h3>Warm migration planned</h3>
<p class="warm-plan">Pass 1, while the guest runs, would copy at most {{bytes .PlannedBytes}} ({{.Pass1.Blocks}} blocks of {{bytes .BlockSize}}; blocks of zeros are not moved){{if .Folder}} into {{.Folder}}{{end}}; then {{if eq .ShutdownBy "xen2kvm"}}xen2kvm would stop the guest (xm shutdown -w){{else}}xen2kvm would wait for the guest to stop{{end}} and pass 2 move the blocks that changed, hashed on the host by {{.HashMethod}}.</p>
{{end}}{{else}}{{with .Warm}}<h3>Warm migration</h3>
<p>Blocks of {{bytes .BlockSize}}, hashed on the host by {{.HashMethod}}{{with .Hash}} with {{upper .}}{{end}}{{with .HashHelpers}}, {{.}} at once a disk{{end}}{{if .Resumed}}; pass 1 was done by an earlier run{{end}}.</p>
<table class="warm">
<tr><th>Pass</th><th>Guest</th><th>Started</th><th>Time</th><th>Moved over the network</th><th>Blocks</th><th>Changed blocks</th><th>Now zero</th></tr>
<tr><td>pass 1</td><td>running</td><td>{{utc .Pass1.Started}}</td><td class="num">{{seconds .Pass1.Seconds}}</td><td class="num">{{bytes .Pass1.BytesRead}}</td><td class="num">{{.Pass1.Blocks}}</td><td class="num">-</td><td class="num">-</td></tr>
<tr><td>pass 2</td><td>stopped</td><td>{{utc .Pass2.Started}}</td><td class="num">{{seconds .Pass2.Seconds}}</td><td class="num">{{bytes .Pass2.BytesRead}}</td><td class="num">{{.Pass2.Blocks}}</td><td class="num">{{.Pass2.ChangedBlocks}}</td><td class="num">{{.Pass2.ZeroBlocks}}</td></tr>
</table>
<dl>
<dt>Stopped</dt><dd>{{if eq .ShutdownBy "xen2kvm"}}by xen2kvm (xm shutdown -w){{else if eq .ShutdownBy "user"}}by the user (xen2kvm waited){{else}}already stopped{{end}}{{if not .Stopped.IsZero}} at {{utc .Stopped}}{{end}}</dd>
<dt>Downtime</dt><dd class="downtime">{{seconds .DowntimeSeconds}} (guest stopped to converted guest ready)</dd>
{{if .OutputFromPasses}}<dt>Output images</dt><dd>of {{.OutputFromPasses}} disks written by the passes, patched with {{bytes .PatchedBytes}} of the conversion's changes</dd>{{end}}
</dl>
{{end}}{{end}}
{{if .Edits}}
<h3>Edits inside the guest ({{len .Edits}})</h3>
{{range .Edits}}<div class="edit"><span class="path">/{{.Path}}</span>{{if .Rule}} <span class="why">[{{.Rule}}]</span>{{end}}{{if .Why}} <span class="why">{{.Why}}</span>{{end}}
<pre class="diff">{{range diff .Diff}}<span class="{{.Class}}">{{.Text}}</span>{{end}}</pre></div>
{{end}}{{end}}
{{if .Warnings}}<h3>Warnings</h3><ul class="warn">{{range .Warnings}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{if .Blockers}}<h3>Blockers</h3><ul class="block">{{range .Blockers}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{if .Notes}}<h3>Notes</h3><ul>{{range .Notes}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{if .Validation}}<h3>Validation of the output</h3><table>
{{range .Validation}}<tr><td>{{if .OK}}<span class="ok">ok</span>{{else}}<span class="fail">FAIL</span>{{end}}</td><td>{{.Name}}</td><td>{{.Detail}}</td></tr>{{end}}</table>{{end}}
{{with .Boot}}<h3>Boot check</h3><p>{{if not .Ran}}Skipped: {{.Skipped}}{{else if .OK}}<span class="ok">Login prompt reached</span> in {{seconds .Seconds}} ({{.Accel}}){{else}}<span class="fail">Failed</span>: {{.Detail}}{{end}}</p>
{{if .Ran}}<dl>
{{if .Reboots}}<dt>Reboots</dt><dd>{{.Reboots}} on its own before the login prompt</dd>{{end}}
{{if .Shutdown}}<dt>Power-off</dt><dd>{{if or (eq .Shutdown "powerdown") (eq .Shutdown "exited")}}clean, after the ACPI power button{{else}}<span class="fail">not clean</span>: stopped by {{.Shutdown}}, filesystems not cleanly unmounted{{end}}</dd>{{end}}
{{with .Network}}<dt>Network</dt><dd>{{if .OK}}<span class="ok">proven by {{.Proof}}</span>{{else}}<span class="fail">not proven</span>{{end}}: {{.Detail}}{{if .Config}} (guest: {{.Config}}){{end}}</dd>{{end}}
</dl>
{{if .Findings}}<h3>Console findings ({{len .Findings}})</h3><table><tr><th>Line</th><th>Time</th><th>Kind</th><th>Text</th></tr>
{{range .Findings}}<tr><td class="num">{{.Line}}</td><td class="num">{{seconds .Seconds}}</td><td>{{.Kind}}</td><td><code>{{.Text}}</code></td></tr>{{end}}</table>{{end}}
{{if .Warnings}}<ul class="warn">{{range .Warnings}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{with .Drift}}<h3>First-boot drift ({{len .Files}} files, {{.Flagged}} flagged{{if .Allowed}}, allowed{{end}})</h3>
{{if .Error}}<p class="error">{{.Error}}</p>{{end}}
{{range .Files}}<div class="edit"><span class="path">/{{.Path}}</span> <span class="why">{{.Change}}</span>{{if .Flag}} <span class="fail">{{.Flag}}</span>{{end}}
{{if .Diff}}<pre class="diff">{{range diff .Diff}}<span class="{{.Class}}">{{.Text}}</span>{{end}}</pre>{{end}}</div>
{{end}}{{end}}{{end}}{{end}}
{{if .TargetXML}}<h3>Target KVM domain (libvirt XML)</h3><pre>{{.TargetXML}}</pre>{{end}}
{{if .Files}}<h3>Output in {{.OutDir}}</h3><ul>{{range .Files}}<li>{{.}}</li>{{end}}</ul>{{end}}
</section>
{{end}}
</main>
</body>
</html>
`))
