package main

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// The PromQL parser every check shares, with Prometheus's default options (no experimental
// functions), as the server that evaluates the queries would have them.
var promql = parser.NewParser(parser.Options{})

// Grafana's global variables that stand for a duration. Each gets a distinct duration no
// dashboard would write by hand, so target-rate-interval-rule can tell $__rate_interval
// from a literal range after parsing.
var durationVariables = map[string]time.Duration{
	"__rate_interval": 11277964 * time.Second,
	"__interval":      11277965 * time.Second,
	"__range":         11277966 * time.Second,
	"__interval_ms":   11277967 * time.Second,
	"__range_ms":      11277968 * time.Second,
	"__range_s":       11277969 * time.Second,
}

// Grafana's variable syntaxes: $name, ${name}, ${name:format}, [[name]].
var variableRef = regexp.MustCompile(`\$\{([A-Za-z0-9_.]+)(?::[^}]*)?\}|\$([A-Za-z0-9_]+)|\[\[([A-Za-z0-9_.]+)(?::[^\]]*)?\]\]`)

// expand replaces Grafana's variables outside PromQL string literals, as dashboard-linter
// does: durations by a duration, anything else by an identifier-safe placeholder. Inside a
// string ("$job" in job=~"$job") a variable is left as written, so matchers keep the
// variable's name for the required-matcher rules. intervals names template variables of
// type interval, which stand for durations too.
func expand(expr string, intervals map[string]bool) string {
	var out strings.Builder
	var quote byte
	start := 0
	flush := func(end int) {
		segment := expr[start:end]
		if quote == 0 {
			segment = variableRef.ReplaceAllStringFunc(segment, func(ref string) string {
				m := variableRef.FindStringSubmatch(ref)
				name := m[1] + m[2] + m[3]
				if d, ok := durationVariables[name]; ok {
					return fmt.Sprintf("%ds", int64(d/time.Second))
				}
				if intervals[name] {
					return "11277970s"
				}
				return "grafana_variable_" + strings.ReplaceAll(name, ".", "_")
			})
		}
		out.WriteString(segment)
		start = end
	}
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case quote == 0 && (c == '"' || c == '\'' || c == '`'):
			flush(i)
			quote = c
		case quote != 0 && c == '\\' && quote != '`':
			i++
		case quote != 0 && c == quote:
			flush(i + 1)
			quote = 0
		}
	}
	flush(len(expr))
	return out.String()
}

// selectors lists every vector selector of an expression, in order.
func selectors(expr parser.Expr) []*parser.VectorSelector {
	var found []*parser.VectorSelector
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok {
			found = append(found, vs)
		}
		return nil
	})
	return found
}

// metricName is the selector's metric name, or "" when it selects by other labels only.
func metricName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}

// missingMatcher says why vs lacks name=~"value" (dashboard-linter's checkForMatcher), or "".
func missingMatcher(vs *parser.VectorSelector, name, value string) string {
	problem := name + " matcher missing"
	for _, m := range vs.LabelMatchers {
		if m.Name != name {
			continue
		}
		if m.Type == labels.MatchRegexp && m.Value == value {
			return ""
		}
		problem = fmt.Sprintf("%s matcher is %s, want %s=~%q", name, m.String(), name, value)
	}
	return problem
}

// seriesCheck reports every selected metric that is neither exposed nor recorded.
type seriesCheck struct {
	known map[string]bool // nil: the check is off
}

// Series Prometheus writes itself for every scrape target.
var scrapeSeries = []string{
	"up", "scrape_duration_seconds", "scrape_samples_scraped",
	"scrape_samples_post_metric_relabeling", "scrape_series_added", "ALERTS", "ALERTS_FOR_STATE",
}

func (s seriesCheck) unknown(expr parser.Expr) []string {
	if s.known == nil {
		return nil
	}
	var missing []string
	seen := map[string]bool{}
	for _, vs := range selectors(expr) {
		name := metricName(vs)
		if name == "" || s.known[name] || seen[name] {
			continue
		}
		seen[name] = true
		missing = append(missing, name)
	}
	return missing
}
