package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
)

type dashboard struct {
	Title      string  `json:"title"`
	Editable   *bool   `json:"editable"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID          int             `json:"id"`
	Type        string          `json:"type"`
	Title       string          `json:"title"`
	Description string          `json:"description"`
	Datasource  json.RawMessage `json:"datasource"`
	Targets     []target        `json:"targets"`
	Panels      []panel         `json:"panels"` // a collapsed row's panels
}

type target struct {
	RefID      string          `json:"refId"`
	Expr       string          `json:"expr"`
	Datasource json.RawMessage `json:"datasource"`
}

type variable struct {
	Name       string          `json:"name"`
	Label      string          `json:"label"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Datasource json.RawMessage `json:"datasource"`
	Multi      bool            `json:"multi"`
	IncludeAll bool            `json:"includeAll"`
	AllValue   string          `json:"allValue"`
}

// uid reads a datasource reference, written as a string or as {"type", "uid"}.
func uid(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var ref struct {
		UID string `json:"uid"`
	}
	_ = json.Unmarshal(raw, &ref)
	return ref.UID
}

// queryText reads a variable's query, written as a string or as {"query": ...}.
func queryText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var q struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(raw, &q)
	return q.Query
}

func templated(ds string) bool {
	return ds == "$datasource" || ds == "${datasource}"
}

func lintDashboard(r *report, file string, d *dashboard, series seriesCheck, prefix string) {
	if d.Editable == nil || *d.Editable {
		r.add(file, "uneditable-dashboard-rule", "dashboard", "", "is editable: set \"editable\": false")
	}
	vars := map[string]*variable{}
	intervals := map[string]bool{}
	for i := range d.Templating.List {
		v := &d.Templating.List[i]
		vars[v.Name] = v
		if v.Type == "interval" {
			intervals[v.Name] = true
		}
	}
	lintDatasourceVariable(r, file, d)
	for _, name := range []string{"job", "instance"} {
		lintRequiredVariable(r, file, vars[name], name)
	}
	for i := range d.Templating.List {
		lintQueryVariable(r, file, &d.Templating.List[i], intervals, prefix)
	}
	required := [][2]string{{"job", "target-job-rule"}, {"instance", "target-instance-rule"}}
	if vars["cluster"] != nil {
		required = append(required, [2]string{"cluster", "target-cluster-rule"})
	}
	for _, p := range flatten(d.Panels) {
		lintPanel(r, file, p, intervals, required, series)
	}
}

func flatten(panels []panel) []panel {
	var all []panel
	for _, p := range panels {
		all = append(all, p)
		all = append(all, flatten(p.Panels)...)
	}
	return all
}

func lintDatasourceVariable(r *report, file string, d *dashboard) {
	for _, v := range d.Templating.List {
		if v.Type != "datasource" {
			continue
		}
		if queryText(v.Query) != "prometheus" {
			r.add(file, "template-datasource-rule", "variable "+v.Name, "",
				"datasource variable is for %q, want prometheus", queryText(v.Query))
		}
		if v.Name != "datasource" && v.Name != "prometheus_datasource" {
			r.add(file, "template-datasource-rule", "variable "+v.Name, "",
				"datasource variable should be named datasource")
		}
		if v.Label != "Data source" && v.Label != "Prometheus data source" {
			r.add(file, "template-datasource-rule", "variable "+v.Name, "",
				"datasource variable should be labelled \"Data source\", is %q", v.Label)
		}
		return
	}
	r.add(file, "template-datasource-rule", "dashboard", "", "no templated data source")
}

func lintRequiredVariable(r *report, file string, v *variable, name string) {
	rule := "template-" + name + "-rule"
	where := "variable " + name
	if v == nil {
		r.add(file, rule, "dashboard", "", "no %s variable", name)
		return
	}
	if !templated(uid(v.Datasource)) {
		r.add(file, rule, where, "", "should use datasource $datasource, uses %q", uid(v.Datasource))
	}
	if v.Type != "query" {
		r.add(file, rule, where, "", "should be a Prometheus query, is %q", v.Type)
	}
	if want := strings.ToUpper(name[:1]) + name[1:]; v.Label != want {
		r.add(file, rule, where, "", "should be labelled %q, is %q", want, v.Label)
	}
	if !v.Multi {
		r.add(file, rule, where, "", "should be a multi select")
	}
	if !v.IncludeAll || v.AllValue != ".+" {
		r.add(file, rule, where, "", "should include All with allValue .+, has includeAll %v allValue %q",
			v.IncludeAll, v.AllValue)
	}
}

// label_values(selector, label), label_values(label), query_result(expr), metrics(regex),
// label_names(): Grafana's Prometheus variable queries.
var variableQuery = regexp.MustCompile(`^\s*(label_values|label_names|metrics|query_result)\((.*)\)\s*$`)
var trailingLabel = regexp.MustCompile(`^(.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*$`)

func lintQueryVariable(r *report, file string, v *variable, intervals map[string]bool, prefix string) {
	if v.Type != "query" {
		return
	}
	where := "variable " + v.Name
	query := queryText(v.Query)
	m := variableQuery.FindStringSubmatch(query)
	if m == nil {
		r.add(file, "template-label-promql-rule", where, "", "invalid variable query %q", query)
		return
	}
	function, arg := m[1], m[2]
	selector := ""
	switch function {
	case "label_values":
		if lm := trailingLabel.FindStringSubmatch(arg); lm != nil {
			selector = lm[1]
		}
	case "query_result":
		selector = arg
	}
	if selector != "" {
		expr, err := promql.ParseExpr(expand(selector, intervals))
		if err != nil {
			r.add(file, "template-label-promql-rule", where, "", "invalid PromQL %q: %v", selector, err)
			return
		}
		if prefix != "" {
			for _, vs := range selectors(expr) {
				if name := metricName(vs); !strings.HasPrefix(name, prefix) {
					r.add(file, "template-metric-rule", where, name,
						"reads %q, not a %s metric", name, prefix)
				}
			}
		}
		return
	}
	if prefix != "" {
		r.add(file, "template-metric-rule", where, "", "%s() reads no %s metric", function, prefix)
	}
}

func lintPanel(r *report, file string, p panel, intervals map[string]bool, required [][2]string, series seriesCheck) {
	if p.Type == "row" {
		return
	}
	where := fmt.Sprintf("panel %q", p.Title)
	if p.Title == "" || strings.TrimSpace(p.Description) == "" {
		r.add(file, "panel-title-description-rule", where, "",
			"panel %d has no title or no description", p.ID)
	}
	if len(p.Targets) > 0 && !templated(uid(p.Datasource)) {
		r.add(file, "panel-datasource-rule", where, "", "uses datasource %q, not $datasource", uid(p.Datasource))
	}
	for _, t := range p.Targets {
		tw := fmt.Sprintf("panel %q %s", p.Title, t.RefID)
		if len(t.Datasource) > 0 && !templated(uid(t.Datasource)) {
			r.add(file, "panel-datasource-rule", tw, "", "target uses datasource %q", uid(t.Datasource))
		}
		if strings.TrimSpace(t.Expr) == "" {
			r.add(file, "target-promql-rule", tw, "", "empty query")
			continue
		}
		expr, err := promql.ParseExpr(expand(t.Expr, intervals))
		if err != nil {
			r.add(file, "target-promql-rule", tw, "", "invalid PromQL %q: %v", t.Expr, err)
			continue
		}
		for _, vs := range selectors(expr) {
			for _, req := range required {
				if problem := missingMatcher(vs, req[0], "$"+req[0]); problem != "" {
					r.add(file, req[1], tw, metricName(vs), "%s: %s", vs.String(), problem)
				}
			}
		}
		lintRanges(r, file, tw, expr)
		for _, name := range series.unknown(expr) {
			r.add(file, "promql/series", tw, name, "%s is not an exposed or recorded metric", name)
		}
	}
}

func lintRanges(r *report, file, where string, expr parser.Expr) {
	rateInterval := durationVariables["__rate_interval"]
	parser.Inspect(expr, func(node parser.Node, path []parser.Node) error {
		switch n := node.(type) {
		case *parser.MatrixSelector:
			if len(path) == 0 || n.Range == rateInterval {
				return nil
			}
			if call, ok := path[len(path)-1].(*parser.Call); ok && (call.Func.Name == "rate" || call.Func.Name == "irate") {
				r.add(file, "target-rate-interval-rule", where, "",
					"%s over [%s]: use [$__rate_interval]", call.Func.Name, n.Range.Round(time.Second))
			}
		case *parser.VectorSelector:
			if !strings.HasSuffix(metricName(n), "_total") {
				return nil
			}
			ok := len(path) >= 2
			if ok {
				_, ok = path[len(path)-1].(*parser.MatrixSelector)
			}
			if ok {
				call, isCall := path[len(path)-2].(*parser.Call)
				ok = isCall && (call.Func.Name == "rate" || call.Func.Name == "irate" || call.Func.Name == "increase")
			}
			if !ok {
				r.add(file, "target-counter-agg-rule", where, metricName(n),
					"counter %s is not inside rate, irate or increase", metricName(n))
			}
		}
		return nil
	})
}
