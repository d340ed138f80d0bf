#!/usr/bin/python3
"""Checks a Prometheus text exposition (format 0.0.4) file strictly.

Parsed by the Prometheus project's own Python client parser
(prometheus_client.parser), then checked beyond what it enforces: every
family has HELP and TYPE before its samples and appears once, counters end
in _total, every histogram series has rising `le` buckets ending in +Inf,
cumulative counts, and _count equal to the +Inf bucket.  Prints
`family value` for each sample named on the command line (name{labels}
as Prometheus prints them are matched on the name and the label values
given as NAME:label=value,...).  Exit 1 with the reason on stderr.
"""
import math
import re
import sys

from prometheus_client.parser import text_string_to_metric_families


def fail(msg):
    sys.stderr.write("prom_check: %s\n" % msg)
    sys.exit(1)


def structure(text):
    seen, current, typed = set(), None, {}
    for n, line in enumerate(text.split("\n"), 1):
        if line == "":
            continue
        m = re.match(r"# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$", line)
        if m:
            if m.group(1) == "HELP":
                if m.group(2) in seen:
                    fail("line %d: family %s appears twice" % (n, m.group(2)))
                seen.add(m.group(2))
                current = m.group(2)
            elif m.group(2) != current:
                fail("line %d: TYPE of %s without its HELP" % (n, m.group(2)))
            else:
                typed[current] = m.group(3)
            continue
        if line.startswith("#"):
            fail("line %d: stray comment" % n)
        name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
        if current is None or current not in typed:
            fail("line %d: sample before HELP and TYPE" % n)
        kind = typed[current]
        ok = {"counter": [current], "gauge": [current],
              "histogram": [current + s for s in ("_bucket", "_sum", "_count")]}
        if name not in ok.get(kind, []):
            fail("line %d: sample %s outside its family %s" % (n, name, current))
        if kind == "counter" and not current.endswith("_total"):
            fail("line %d: counter %s does not end in _total" % (n, current))
    if not text.endswith("\n"):
        fail("no newline at the end")


def histograms(families):
    for fam in families:
        if fam.type != "histogram":
            continue
        series = {}
        for s in fam.samples:
            key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            series.setdefault(key, []).append(s)
        for key, samples in series.items():
            buckets = [s for s in samples if s.name.endswith("_bucket")]
            count = [s.value for s in samples if s.name.endswith("_count")]
            les = [float(s.labels["le"]) for s in buckets]
            if not buckets or not math.isinf(les[-1]) or les != sorted(les):
                fail("%s %s: buckets not rising to +Inf" % (fam.name, key))
            vals = [s.value for s in buckets]
            if vals != sorted(vals) or count != [vals[-1]]:
                fail("%s %s: buckets not cumulative or _count != +Inf"
                     % (fam.name, key))


def main():
    text = open(sys.argv[1]).read()
    structure(text)
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as e:  # the parser's own refusal
        fail("parser: %s" % e)
    histograms(families)
    for want in sys.argv[2:]:
        name, _, sel = want.partition(":")
        labels = dict(p.split("=", 1) for p in sel.split(",") if p)
        total = 0.0
        for fam in families:
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v
                                          for k, v in labels.items()):
                    total += s.value
        print("%s %g" % (want, total))


main()
