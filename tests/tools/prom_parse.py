"""Parses Prometheus text (stdin) with prometheus_client's own parser and prints each
sample as one JSON object a line: {"family", "type", "name", "labels", "value"}.
Fails (exit 1) on text the parser refuses, or on a family without a TYPE line."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families

text = sys.stdin.read()
for family in text_string_to_metric_families(text):
    if family.type == "unknown":
        sys.exit(f"family {family.name} has no TYPE")
    for s in family.samples:
        print(json.dumps({
            "family": family.name,
            "type": family.type,
            "name": s.name,
            "labels": s.labels,
            "value": s.value,
        }))
