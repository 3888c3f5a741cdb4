package app

import (
	"html/template"
	"net/http"
	"time"
)

// statusPage serves GET /: the relay at a glance, as plain server-rendered
// HTML (no script, no external asset), built from the same data as the API.
func (r *Relay) statusPage(w http.ResponseWriter, _ *http.Request) {
	data := struct {
		Status   Status
		Streams  []StreamInfo
		Breakers []BreakerInfo
		Queue    []QueueEntry
		Now      time.Time
	}{r.status(), r.Server.Streams(), r.Router.Breakers(), r.queue(), time.Now()}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	if err := statusTemplate.Execute(w, data); err != nil {
		r.log.Warn("status page", "err", err)
	}
}

// Round makes a duration readable, for the status page and the CLI: whole
// minutes past an hour, whole seconds past a second, else milliseconds.
func Round(d time.Duration) string {
	switch {
	case d >= time.Hour:
		return d.Round(time.Minute).String()
	case d >= time.Second:
		return d.Round(time.Second).String()
	}
	return d.Round(time.Millisecond).String()
}

var statusTemplate = template.Must(template.New("status").Funcs(template.FuncMap{"round": Round}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fedrelay status</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.5em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}
th{background:#f3f3f3}.num{text-align:right}.open{color:#a00;font-weight:bold}
</style></head><body>
<h1>fedrelay {{.Status.Version}}</h1>
<p id="summary">{{if .Status.Ready}}ready{{else}}not ready{{end}}, up {{round .Status.Uptime}};
{{len .Streams}} streams; {{.Status.Queued}} stanzas queued; {{len .Status.BreakersOpen}} breakers open.
{{if not .Status.LastReload.IsZero}}Last reload {{.Status.LastReload.Format "2006-01-02 15:04:05 MST"}}{{if .Status.LastReloadError}}: refused ({{.Status.LastReloadError}}){{else}}: applied{{end}}.{{end}}</p>

<h2>Counters</h2>
<table id="counters"><tr>{{range $k, $v := .Status.Counters}}<th>{{$k}}</th>{{end}}</tr>
<tr>{{range $k, $v := .Status.Counters}}<td class="num">{{$v}}</td>{{end}}</tr></table>

<h2>Streams</h2>
<table id="streams"><tr><th>face</th><th>dir</th><th>local</th><th>remote</th><th>auth</th><th>cert</th><th>TLS</th>
<th>peer</th><th>age</th><th>idle</th><th>stanzas in</th><th>stanzas out</th><th>queue</th></tr>
{{range .Streams}}<tr><td>{{.Face}}</td><td>{{.Direction}}{{if .Bidi}}/bidi{{end}}</td><td>{{range .Local}}{{.}} {{end}}</td>
<td>{{range .Remote}}{{.}} {{end}}</td><td>{{.Auth}}</td><td>{{if .CertVerified}}verified{{else}}-{{end}}</td>
<td>{{.TLSVersion}}</td><td>{{.Peer}}</td><td>{{round .Age}}</td><td>{{round .Idle}}</td>
<td class="num">{{.StanzasIn}}</td><td class="num">{{.StanzasOut}}</td><td class="num">{{.Queue}}</td></tr>
{{else}}<tr><td colspan="13">no streams</td></tr>{{end}}</table>

<h2>Circuit breakers</h2>
<table id="breakers"><tr><th>domain</th><th>state</th><th>failures</th><th>next probe</th><th>last error</th></tr>
{{range .Breakers}}<tr><td>{{.Domain}}</td><td{{if eq .State "open"}} class="open"{{end}}>{{.State}}</td>
<td class="num">{{.Failures}}</td><td>{{if not .NextProbe.IsZero}}{{.NextProbe.Format "15:04:05"}}{{end}}</td><td>{{.LastError}}</td></tr>
{{else}}<tr><td colspan="5">no breakers</td></tr>{{end}}</table>

<h2>Queues</h2>
<table id="queue"><tr><th>from</th><th>to</th><th>face</th><th>up</th><th>stanzas</th><th>bytes</th><th>oldest</th></tr>
{{range .Queue}}<tr><td>{{.From}}</td><td>{{.To}}</td><td>{{.Face}}</td><td>{{.Up}}</td><td class="num">{{.Stanzas}}</td>
<td class="num">{{.Bytes}}</td><td>{{round .OldestQueued}}</td></tr>
{{else}}<tr><td colspan="7">nothing queued</td></tr>{{end}}</table>
<p><small>Rendered {{.Now.Format "2006-01-02 15:04:05 MST"}}. JSON: /api/status, /api/streams, /api/breakers, /api/queue.</small></p>
</body></html>
`))
