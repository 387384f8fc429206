// promql-lint checks Grafana dashboards and Prometheus rule files with Prometheus's own
// PromQL parser (github.com/prometheus/prometheus/promql/parser). It carries the checks of
// grafana/dashboard-linter and cloudflare/pint that matter for a mixin, under their names:
//
//	dashboard (dashboard-linter)
//	  uneditable-dashboard-rule     editable is false
//	  template-datasource-rule      a datasource variable named datasource, for Prometheus
//	  template-job-rule             a multi-select query variable job on $datasource, All = .+
//	  template-instance-rule        the same for instance
//	  template-label-promql-rule    every query variable is label_values(selector, label) (or
//	                                another Grafana query function) over valid PromQL
//	  panel-datasource-rule         every panel with queries uses $datasource
//	  panel-title-description-rule  every panel has a title and a description
//	  target-promql-rule            every query parses once Grafana's variables are expanded
//	  target-job-rule               every selector has job=~"$job"
//	  target-instance-rule          every selector has instance=~"$instance"
//	  target-rate-interval-rule     rate() and irate() ranges are $__rate_interval
//	  target-counter-agg-rule       a _total series appears only inside rate/irate/increase
//	dashboard (this mixin's conventions)
//	  target-cluster-rule           with a cluster variable, every selector has cluster=~"$cluster"
//	  template-metric-rule          with -metric-prefix, variables read label_values from a
//	                                metric of that prefix
//	rules (pint)
//	  promql/syntax                 every expr parses
//	  alerts/annotation             runbook_url (an http(s) URL), summary and description are set;
//	                                the legacy runbook annotation is reported
//	both (pint)
//	  promql/series                 with -series, every selected metric is exposed, recorded by
//	                                a rule given, or written by Prometheus itself (up, scrape_*)
//
// Deliberate exceptions come from -exceptions files (YAML: a list of {rule, where, what, why};
// where and what are globs, * matches anything; why is required). An exception that
// excuses nothing is itself a finding (lint/unused-exception), so the list cannot rot.
//
// Exit status: 0 clean, 1 findings, 2 unreadable input.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

type finding struct {
	File    string `json:"file"`
	Rule    string `json:"rule"`
	Where   string `json:"where"`
	What    string `json:"what,omitempty"`
	Message string `json:"message"`
	Excused string `json:"excused,omitempty"` // the exception's why, when one applies
}

type exception struct {
	Rule  string `yaml:"rule"`
	Where string `yaml:"where"`
	What  string `yaml:"what"`
	Why   string `yaml:"why"`
	file  string
	used  bool
}

type report struct {
	findings []finding
}

func (r *report) add(file, rule, where, what, format string, args ...any) {
	r.findings = append(r.findings, finding{
		File: file, Rule: rule, Where: where, What: what, Message: fmt.Sprintf(format, args...),
	})
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("promql-lint", flag.ContinueOnError)
	flags.SetOutput(stderr)
	var dashboards, rules, exceptionFiles multiFlag
	flags.Var(&dashboards, "dashboard", "Grafana dashboard JSON (repeatable)")
	flags.Var(&rules, "rules", "Prometheus rules file or PrometheusRule manifest (repeatable)")
	flags.Var(&exceptionFiles, "exceptions", "YAML list of deliberate exceptions (repeatable)")
	seriesFile := flags.String("series", "", "exposed metric names, one per line; enables promql/series")
	prefix := flags.String("metric-prefix", "", "variables must read label_values from a metric with this prefix")
	asJSON := flags.Bool("json", false, "one JSON object per finding instead of text")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if len(dashboards)+len(rules) == 0 || flags.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: promql-lint [-series FILE] [-exceptions FILE]... (-dashboard FILE | -rules FILE)...")
		return 2
	}

	groups := map[string][]ruleGroup{}
	for _, path := range rules {
		g, err := readRules(path)
		if err != nil {
			fmt.Fprintf(stderr, "promql-lint: %v\n", err)
			return 2
		}
		groups[path] = g
	}
	var series seriesCheck
	if *seriesFile != "" {
		known, err := readNames(*seriesFile)
		if err != nil {
			fmt.Fprintf(stderr, "promql-lint: %v\n", err)
			return 2
		}
		for _, name := range scrapeSeries {
			known[name] = true
		}
		for _, g := range groups {
			for _, group := range g {
				for _, rule := range group.Rules {
					if rule.Record != "" {
						known[rule.Record] = true
					}
				}
			}
		}
		series.known = known
	}
	var excs []*exception
	for _, path := range exceptionFiles {
		e, err := readExceptions(path)
		if err != nil {
			fmt.Fprintf(stderr, "promql-lint: %v\n", err)
			return 2
		}
		excs = append(excs, e...)
	}

	r := &report{}
	for _, path := range dashboards {
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(stderr, "promql-lint: %v\n", err)
			return 2
		}
		var board dashboard
		if err := json.Unmarshal(data, &board); err != nil {
			fmt.Fprintf(stderr, "promql-lint: %s: %v\n", path, err)
			return 2
		}
		lintDashboard(r, path, &board, series, *prefix)
	}
	for _, path := range rules {
		lintRules(r, path, groups[path], series)
	}

	failed := 0
	for i := range r.findings {
		f := &r.findings[i]
		for _, e := range excs {
			if e.matches(f) {
				e.used = true
				f.Excused = e.Why
				break
			}
		}
		if f.Excused == "" {
			failed++
		}
	}
	for _, e := range excs {
		if !e.used {
			r.add(e.file, "lint/unused-exception", e.Where, e.What,
				"exception for %s excuses nothing: remove it", e.Rule)
			failed++
		}
	}
	sort.SliceStable(r.findings, func(i, j int) bool {
		a, b := r.findings[i], r.findings[j]
		return a.File+"\x00"+a.Where+"\x00"+a.Rule < b.File+"\x00"+b.Where+"\x00"+b.Rule
	})
	for _, f := range r.findings {
		if *asJSON {
			line, _ := json.Marshal(f)
			fmt.Fprintln(stdout, string(line))
			continue
		}
		status := "error"
		if f.Excused != "" {
			status = "excused"
		}
		fmt.Fprintf(stdout, "%s: %s: %s: %s [%s]\n", f.File, f.Where, f.Rule, f.Message, status)
	}
	fmt.Fprintf(stderr, "promql-lint: %d findings, %d excused, %d errors\n",
		len(r.findings), len(r.findings)-failed, failed)
	if failed > 0 {
		return 1
	}
	return 0
}

func readNames(path string) (map[string]bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			names[line] = true
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s: no metric names", path)
	}
	return names, nil
}

func readExceptions(path string) ([]*exception, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var list []*exception
	if err := yaml.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for i, e := range list {
		if e.Rule == "" || e.Where == "" || strings.TrimSpace(e.Why) == "" {
			return nil, fmt.Errorf("%s: exception %d needs rule, where and why", path, i+1)
		}
		e.file = path
	}
	return list, nil
}

func glob(pattern, s string) bool {
	if pattern == "" {
		return true
	}
	parts := strings.Split(pattern, "*")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile("^" + strings.Join(parts, ".*") + "$").MatchString(s)
}

func (e *exception) matches(f *finding) bool {
	return e.Rule == f.Rule && glob(e.Where, f.Where) && glob(e.What, f.What)
}
