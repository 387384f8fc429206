// flux-oracle answers "which tag would Flux pick?" with the very libraries source-controller
// links (fluxcd/pkg/version and Masterminds/semver/v3 at the versions its go.mod requires),
// for the exporter's differential tests.
//
// One JSON object per input line:
//
//	{"flavor": "oci"|"oci-chart"|"helm"|"oci-flux-2.6"|"oci-chart-flux-2.6",
//	 "range": "...", "filter": "...", "tags": ["..."]}
//
// and one JSON object per output line, in the same order:
//
//	{"tag": "..."|null, "error": "..."|null, "ties": ["..."], "matches": N}
//
// "tag" is the reference Flux would pull: the registry tag for OCIRepository, the chart
// version for a HelmChart. "ties" lists every matching tag of the same precedence as "tag"
// (it included): Flux sorts with sort.Sort, so which of them wins is unspecified. "matches"
// counts the tags that pass the filter and the range.
//
// The few lines of controller glue below are copied, not imported: source-controller's
// internal packages cannot be imported, and Helm's registry client only filters tags it
// has just listed from a live registry.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/Masterminds/semver/v3"
	"github.com/fluxcd/pkg/version"
)

type request struct {
	Flavor string   `json:"flavor"`
	Range  string   `json:"range"`
	Filter string   `json:"filter"`
	Tags   []string `json:"tags"`
}

type response struct {
	Tag     *string  `json:"tag"`
	Error   *string  `json:"error"`
	Ties    []string `json:"ties"`
	Matches int      `json:"matches"`
}

// pick is a matching version and the text Flux would use for it.
type pick struct {
	v   *semver.Version
	ref string
}

// source-controller internal/controller/ocirepository_controller.go filterTags.
func filterTags(filter string, tags []string) ([]string, error) {
	if filter == "" {
		return tags, nil
	}
	match, err := regexp.Compile(filter)
	if err != nil {
		return nil, err
	}
	valid := []string{}
	for _, tag := range tags {
		if match.MatchString(tag) {
			valid = append(valid, tag)
		}
	}
	return valid, nil
}

// fluxcd/pkg/version v0.7.0 ParseVersion, the rule of Flux 2.6 and earlier.
func parseVersionFlux26(v string) (*semver.Version, error) {
	vLessV := strings.TrimPrefix(v, "v")
	if _, err := semver.StrictNewVersion(vLessV); err != nil {
		return nil, err
	}
	return semver.NewVersion(v)
}

// source-controller getTagBySemver, with convertOCIToSemVerTag and convertSemVerToOCITag
// (chart is whether the layerSelector is Helm's chart layer).
func getTagBySemver(tags []string, exp, filter string, chart bool,
	parse func(string) (*semver.Version, error)) ([]pick, error) {
	validTags, err := filterTags(filter, tags)
	if err != nil {
		return nil, err
	}
	constraint, err := semver.NewConstraint(exp)
	if err != nil {
		return nil, fmt.Errorf("semver '%s' parse error: %w", exp, err)
	}
	var matching []pick
	for _, ociTag := range validTags {
		semVerTag := ociTag
		if chart {
			semVerTag = strings.ReplaceAll(ociTag, "_", "+")
		}
		v, err := parse(semVerTag)
		if err != nil {
			continue
		}
		if constraint.Check(v) {
			ref := v.Original()
			if chart {
				ref = strings.ReplaceAll(ref, "+", "_")
			}
			matching = append(matching, pick{v, ref})
		}
	}
	if len(matching) == 0 {
		return nil, fmt.Errorf("no match found for semver: %s", exp)
	}
	return matching, nil
}

// Helm v4 pkg/registry Client.Tags after the listing: keep the tags that are strict
// semver once `_` reads as `+`, highest first, as their String().
func helmTags(tags []string) []string {
	var tagVersions []*semver.Version
	for _, tag := range tags {
		tagVersion, err := semver.StrictNewVersion(strings.ReplaceAll(tag, "_", "+"))
		if err == nil {
			tagVersions = append(tagVersions, tagVersion)
		}
	}
	sort.Sort(sort.Reverse(semver.Collection(tagVersions)))
	out := make([]string, len(tagVersions))
	for i, tv := range tagVersions {
		out[i] = tv.String()
	}
	return out
}

// source-controller internal/helm/repository/oci_chart_repository.go getChartVersion
// (the pinned shortcut, getTags) and getLastMatchingVersionOrConstraint.
func getChartVersion(tags []string, ver string) ([]pick, error) {
	if v, err := version.ParseVersion(ver); err == nil {
		return []pick{{v, ver}}, nil
	}
	cvs := helmTags(tags)
	if len(cvs) == 0 {
		return nil, fmt.Errorf("unable to locate any tags in provided repository")
	}
	if ver != "" {
		for _, cv := range cvs {
			if ver == cv {
				v, _ := version.ParseVersion(cv)
				return []pick{{v, cv}}, nil
			}
		}
	}
	verConstraint, err := semver.NewConstraint("*")
	if err != nil {
		return nil, err
	}
	if !(ver == "" || ver == "*") {
		verConstraint, err = semver.NewConstraint(ver)
		if err != nil {
			return nil, err
		}
	}
	var matching []pick
	for _, cv := range cvs {
		v, err := version.ParseVersion(cv)
		if err != nil {
			continue
		}
		if !verConstraint.Check(v) {
			continue
		}
		matching = append(matching, pick{v, v.Original()})
	}
	if len(matching) == 0 {
		return nil, fmt.Errorf("could not locate a version matching provided version string %s", ver)
	}
	return matching, nil
}

func answer(req request) response {
	var matching []pick
	var err error
	switch req.Flavor {
	case "oci":
		matching, err = getTagBySemver(req.Tags, req.Range, req.Filter, false, version.ParseVersion)
	case "oci-chart":
		matching, err = getTagBySemver(req.Tags, req.Range, req.Filter, true, version.ParseVersion)
	case "oci-flux-2.6":
		matching, err = getTagBySemver(req.Tags, req.Range, req.Filter, false, parseVersionFlux26)
	case "oci-chart-flux-2.6":
		matching, err = getTagBySemver(req.Tags, req.Range, req.Filter, true, parseVersionFlux26)
	case "helm":
		matching, err = getChartVersion(req.Tags, req.Range)
	default:
		err = fmt.Errorf("unknown flavor %q", req.Flavor)
	}
	if err != nil {
		text := err.Error()
		return response{Error: &text, Ties: []string{}}
	}
	// The controllers' own sort: sort.Sort(sort.Reverse(semver.Collection(...))), first wins.
	versions := make([]*semver.Version, len(matching))
	refs := make(map[*semver.Version]string, len(matching))
	for i, m := range matching {
		versions[i] = m.v
		refs[m.v] = m.ref
	}
	sort.Sort(sort.Reverse(semver.Collection(versions)))
	best := versions[0]
	tag := refs[best]
	ties := []string{}
	for _, v := range versions {
		if v.Compare(best) == 0 {
			ties = append(ties, refs[v])
		}
	}
	return response{Tag: &tag, Ties: ties, Matches: len(matching)}
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 0, 1<<20), 1<<28)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	for in.Scan() {
		var req request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			fmt.Fprintf(os.Stderr, "flux-oracle: bad input line: %v\n", err)
			os.Exit(2)
		}
		if err := enc.Encode(answer(req)); err != nil {
			fmt.Fprintf(os.Stderr, "flux-oracle: %v\n", err)
			os.Exit(1)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "flux-oracle: %v\n", err)
		os.Exit(2)
	}
}
