#!/usr/bin/env bash
# Pull+unpack throughput of a ~200 MB, 5-layer image from a loopback registry
# into a cold store, against go-containerregistry's fetch+decompress to
# /dev/null measured in the same run. Prints medians of N runs and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-5}
out=$(go test -run '^$' -bench '^BenchmarkPull(Reference)?$' -benchtime 1x -count "$runs" ./pkg/images/ 2>&1)
echo "$out" | grep -E '^Benchmark' || { echo "$out"; exit 1; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.2f\n", (a[NR/2]+a[NR/2+1])/2}'; }
mbps() { echo "$out" | awk -v name="$1" '$1 ~ "^"name"(-[0-9]+)?$" {for (i=1;i<=NF;i++) if ($(i+1)=="MB/s") print $i}' | median; }
berth=$(mbps BenchmarkPull)
ref=$(mbps BenchmarkPullReference)
echo "pull+unpack (berth, cold store): median ${berth} MB/s over ${runs} runs"
echo "fetch+decompress (ggcr, no unpack): median ${ref} MB/s over ${runs} runs"
awk -v a="$berth" -v b="$ref" 'BEGIN {printf "ratio berth/reference: %.2f\n", a/b}'
