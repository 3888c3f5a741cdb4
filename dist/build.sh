#!/bin/sh
# Builds the release binary of fedrelay: static (CGO_ENABLED=0), with the
# version and the commit written in by the linker, so that `fedrelay version`
# names the commit even where Go cannot read it from git (-buildvcs=false:
# a source tarball, a Docker build context without .git).
#
#   dist/build.sh [OUTPUT]          default OUTPUT: ./fedrelay
#
# VERSION and COMMIT come from the environment, or else from git, or else
# "devel" and nothing. The Dockerfile (dist/docker/Dockerfile) runs this
# script; README.md and docs/operators.md document it. Run from anywhere.
set -eu
cd "$(dirname "$0")/.."
out=${1:-fedrelay}
if [ -z "${VERSION:-}" ]; then
	VERSION=$(git describe --tags --always --dirty 2>/dev/null || echo devel)
fi
if [ -z "${COMMIT:-}" ]; then
	COMMIT=$(git rev-parse HEAD 2>/dev/null || true)
fi
CGO_ENABLED=0 exec go build -trimpath -buildvcs=false \
	-ldflags "-s -w -X main.version=$VERSION -X main.commit=$COMMIT" \
	-o "$out" ./cmd/fedrelay
