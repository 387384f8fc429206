// flux-push pushes a directory as an OCI artifact with fluxcd/pkg/oci, the library
// `flux push artifact` calls, with the options the CLI passes by default: the metadata
// (source, revision, created) and the paths it ignores unless told otherwise.
//
//	flux-push [-created RFC3339] [-ignore-paths P,...] DIR oci://HOST/REPOSITORY:TAG SOURCE REVISION
//
// It prints the pushed artifact's digest URL. The registry is reached over plain HTTP
// (flux push artifact --insecure-registry), as the tests' loopback registries serve it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/fluxcd/pkg/oci"
	"github.com/fluxcd/pkg/sourceignore"
	"github.com/google/go-containerregistry/pkg/crane"
)

// excludeOCI is the default of flux push artifact --ignore-paths (cmd/flux/build_artifact.go).
var excludeOCI = append(strings.Split(sourceignore.ExcludeVCS, ","), strings.Split(sourceignore.ExcludeExt, ",")...)

func main() {
	created := flag.String("created", "", "org.opencontainers.image.created (RFC 3339); default: now, as flux does")
	ignore := flag.String("ignore-paths", strings.Join(excludeOCI, ","), "paths to ignore in .gitignore format, comma-separated")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: flux-push [-created RFC3339] [-ignore-paths P,...] DIR oci://HOST/REPOSITORY:TAG SOURCE REVISION")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 4 {
		flag.Usage()
		os.Exit(2)
	}
	dir, artifactURL, source, revision := flag.Arg(0), flag.Arg(1), flag.Arg(2), flag.Arg(3)
	if err := push(dir, artifactURL, source, revision, *created, *ignore); err != nil {
		fmt.Fprintln(os.Stderr, "flux-push:", err)
		os.Exit(1)
	}
}

func push(dir, artifactURL, source, revision, created, ignore string) error {
	url, err := oci.ParseArtifactURL(artifactURL)
	if err != nil {
		return err
	}
	var ignorePaths []string
	if ignore != "" {
		ignorePaths = strings.Split(ignore, ",")
	}
	meta := oci.Metadata{Source: source, Revision: revision, Annotations: map[string]string{}, Created: created}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := oci.NewClient(append(oci.DefaultOptions(), crane.Insecure))
	digestURL, err := client.Push(ctx, url, dir, oci.WithPushMetadata(meta), oci.WithPushIgnorePaths(ignorePaths...))
	if err != nil {
		return err
	}
	fmt.Println(digestURL)
	return nil
}
