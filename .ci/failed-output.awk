# failed-output.awk: given the output of `go test -v`, prints the output of
# each failed test that has no failed sub-test (where its failure messages
# are), at most its last 200 lines. go test -v prints messages as they
# happen, far above the summary that the tail of a CI log shows.
/^=== (RUN|CONT|NAME) / { cur = $3; next }
/^ *--- FAIL: / { failed[$3] = 1; next }
/^ *--- (PASS|SKIP): / { next }
cur != "" { n[cur]++; line[cur, n[cur]] = $0 }
END {
  for (t in failed) {
    leaf = 1
    for (u in failed) if (index(u, t "/") == 1) leaf = 0
    if (!leaf) continue
    first = (n[t] > 200) ? n[t] - 199 : 1
    note = (first > 1) ? ", the last 200" : ""
    printf "\n== output of failed test %s (%d lines%s)\n", t, n[t], note
    for (i = first; i <= n[t]; i++) print line[t, i]
  }
}
