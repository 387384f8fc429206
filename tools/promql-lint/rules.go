package main

import (
	"fmt"
	"net/url"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

type ruleGroup struct {
	Name  string `yaml:"name"`
	Rules []rule `yaml:"rules"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	Annotations map[string]string `yaml:"annotations"`
}

// readRules reads a Prometheus rules file ({groups: ...}) or a PrometheusRule ({spec: {groups}}).
func readRules(path string) ([]ruleGroup, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Groups []ruleGroup `yaml:"groups"`
		Kind   string      `yaml:"kind"`
		Spec   struct {
			Groups []ruleGroup `yaml:"groups"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	groups := doc.Groups
	if doc.Kind == "PrometheusRule" {
		groups = doc.Spec.Groups
	}
	if len(groups) == 0 {
		return nil, fmt.Errorf("%s: no rule groups", path)
	}
	return groups, nil
}

var requiredAnnotations = []string{"summary", "description", "runbook_url"}

func lintRules(r *report, file string, groups []ruleGroup, series seriesCheck) {
	for _, g := range groups {
		for _, rl := range g.Rules {
			where := "record " + rl.Record
			if rl.Alert != "" {
				where = "alert " + rl.Alert
			}
			expr, err := promql.ParseExpr(rl.Expr)
			if err != nil {
				r.add(file, "promql/syntax", where, "", "%v", err)
			} else {
				for _, name := range series.unknown(expr) {
					r.add(file, "promql/series", where, name, "%s is not an exposed or recorded metric", name)
				}
			}
			if rl.Alert == "" {
				continue
			}
			for _, key := range requiredAnnotations {
				if strings.TrimSpace(rl.Annotations[key]) == "" {
					r.add(file, "alerts/annotation", where, key, "%s annotation is missing", key)
				}
			}
			if link := rl.Annotations["runbook_url"]; link != "" {
				u, err := url.Parse(link)
				if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
					r.add(file, "alerts/annotation", where, "runbook_url", "runbook_url %q is not an http(s) URL", link)
				}
			}
			if _, legacy := rl.Annotations["runbook"]; legacy {
				r.add(file, "alerts/annotation", where, "runbook", "runbook annotation: name it runbook_url")
			}
		}
	}
}
