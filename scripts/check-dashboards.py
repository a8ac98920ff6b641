#!/usr/bin/env python3
"""Checks that every query of the dashboards and alert rules works against
the metrics invigil exports (issue 15, item 4).

Every `expr` of every dashboard (panels, panels nested in rows, annotations,
the queries of template variables) and of every rule is checked:

  live (--prometheus URL), against a Prometheus that scrapes invigil nodes:
    a. the expression, with Grafana's variables substituted, is sent to
       /api/v1/query; an error answer fails it;
    b. every metric name it names (invigil_*, and Prometheus' own `up`) must
       be one Prometheus has: /api/v1/label/__name__/values. Histograms
       exist only as <name>_bucket, _sum and _count, so the bare name fails.
       A recorded series (level:metric:operation) must exist or be recorded
       by one of the rule files given.
  offline (--offline), with no Prometheus: every name must be in the metric
    catalogue (docs/observability.md), and the dashboards' structure is
    checked (unique panel ids, the datasource uid, brackets that balance).

Usage:
  scripts/check-dashboards.py --prometheus http://127.0.0.1:9090 \\
      [--rules grafana/prometheus/rules/*.yml] grafana/dashboards/*.json
  scripts/check-dashboards.py --offline [--catalogue docs/observability.md] \\
      --rules grafana/prometheus/rules/*.yml grafana/dashboards/*.json
  scripts/check-dashboards.py --self-test --prometheus URL
      proves the checker catches what it should, against any Prometheus that
      scrapes itself (it uses the prometheus_* metrics): a bad name, a bad
      expression, a bare histogram name, a bad rule; a good dashboard passes.
  scripts/check-dashboards.py --serve-fake-node 127.0.0.1:PORT
      serves /metrics with one series of every catalogue metric (fake values),
      so a Prometheus can stand in for a cluster while no node runs
      (scripts/check-observability.sh uses it for a live rehearsal).

Files may be given in any order: *.json are dashboards, *.yml/*.yaml rule
files (promtool test files among them are skipped). Exit 1 on any failure,
2 on a usage error. Standard library only (PyYAML is used when present).
"""

import argparse
import http.server
import json
import os
import re
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
DEFAULT_CATALOGUE = os.path.join(ROOT, "docs", "observability.md")
DATASOURCE_UID = "invigil-prometheus"
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

# Grafana's built-in variables and what they become here.
BUILTINS = [
    ("__rate_interval_ms", "60000"),
    ("__rate_interval", "1m"),
    ("__interval_ms", "15000"),
    ("__interval", "15s"),
    ("__range_ms", "3600000"),
    ("__range_s", "3600"),
    ("__range", "1h"),
]


# --------------------------------------------------------------------------- expressions
class Expr:
    def __init__(self, source, where, text):
        self.source = source  # the file
        self.where = where  # what in it (panel, target, rule)
        self.text = text  # as written
        self.query = None  # after substitution
        self.problems = []

    def label(self):
        return f"{self.source}: {self.where}"


def dashboard_variables(board):
    """name -> the value to use outside a label matcher (None: unknown)."""
    out = {}
    for var in (board.get("templating") or {}).get("list", []):
        name = var.get("name")
        if not name:
            continue
        current = (var.get("current") or {}).get("value")
        if isinstance(current, list):
            current = current[0] if len(current) == 1 else None
        if current in (None, "", "$__all"):
            current = None
        out[name] = current
    return out


VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)(?::\w+)?\]\]")
MATCHER_WITH_VAR = re.compile(r'(=~|!~|!=|=)\s*"([^"\\]*(?:\\.[^"\\]*)*)"')


def substitute(text, variables):
    """Grafana variables -> values Prometheus accepts. Returns (query, problems)."""
    problems = []
    for name, value in BUILTINS:
        text = text.replace("${" + name + "}", value).replace("$" + name, value)

    def matcher(match):
        op, value = match.group(1), match.group(2)
        if not VAR.search(value):
            return match.group(0)
        # A variable inside a label matcher matches anything (its "All").
        regex_op = "!~" if op in ("!=", "!~") else "=~"
        return f'{regex_op}"{".*" if regex_op == "=~" else "^$"}"'

    text = MATCHER_WITH_VAR.sub(matcher, text)

    def elsewhere(match):
        name = match.group(1) or match.group(2) or match.group(3)
        value = variables.get(name)
        if value is None:
            problems.append(f"variable ${name} used outside a label matcher and has no single current value")
            return match.group(0)
        return str(value)

    text = VAR.sub(elsewhere, text)
    return text, problems


LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*\w+\s*\)\s*$", re.S)
QUERY_RESULT = re.compile(r"^\s*query_result\((.*)\)\s*$", re.S)


def variable_query_expr(query):
    """The PromQL inside a template variable's query, if any."""
    if isinstance(query, dict):
        query = query.get("query", "")
    if not isinstance(query, str) or not query.strip():
        return None
    for pattern in (LABEL_VALUES, QUERY_RESULT):
        match = pattern.match(query)
        if match:
            return match.group(1)
    return None  # label_values(label), label_names(), metrics(...): no expression


def walk_dashboard(path, board):
    exprs = []

    def visit(node, where):
        if isinstance(node, dict):
            title = node.get("title")
            here = f"{where} / {title}" if title and node.get("type") else where
            if isinstance(node.get("expr"), str) and node["expr"].strip():
                ref = node.get("refId") or node.get("name") or "expr"
                exprs.append(Expr(path, f"{here} [{ref}]", node["expr"]))
            for key, value in node.items():
                if key in ("templating",):
                    continue
                visit(value, here)
        elif isinstance(node, list):
            for item in node:
                visit(item, where)

    visit(board.get("panels", []), "panel")
    visit((board.get("annotations") or {}).get("list", []), "annotation")
    for var in (board.get("templating") or {}).get("list", []):
        inner = variable_query_expr(var.get("query"))
        if inner:
            exprs.append(Expr(path, f"variable ${var.get('name')}", inner))
    return exprs


# --------------------------------------------------------------------------- rule files
def load_yaml_rules(path):
    """[(kind, name, expr)] with PyYAML, or None when PyYAML is absent."""
    if os.environ.get("CHECK_DASHBOARDS_NO_YAML"):
        return None
    try:
        import yaml  # noqa: PLC0415
    except ImportError:
        return None
    with open(path, encoding="utf-8") as file:
        doc = yaml.safe_load(file) or {}
    if "groups" not in doc:
        return "not-rules"
    out = []
    for group in doc.get("groups") or []:
        for rule in group.get("rules") or []:
            kind = "record" if "record" in rule else "alert"
            out.append((kind, str(rule.get(kind)), str(rule.get("expr", ""))))
    return out


def unquote(value):
    value = value.strip()
    if value.startswith('"') and value.endswith('"') and len(value) >= 2:
        return json.loads(value)
    if value.startswith("'") and value.endswith("'") and len(value) >= 2:
        return value[1:-1].replace("''", "'")
    return re.sub(r"\s+#.*$", "", value)


def parse_rules_fallback(path):
    """Enough YAML for Prometheus rule files: `record:`/`alert:` names and
    `expr:` as a plain or quoted one-line scalar or a `|`/`>` block."""
    with open(path, encoding="utf-8") as file:
        lines = file.read().splitlines()
    if not any(re.match(r"^groups\s*:", line) for line in lines):
        return "not-rules"
    out, name, kind, index = [], None, None, 0
    key = re.compile(r"^(\s*)(?:-\s+)?(record|alert|expr)\s*:\s*(.*)$")
    while index < len(lines):
        match = key.match(lines[index])
        index += 1
        if not match:
            continue
        indent, field, value = len(match.group(1)), match.group(2), match.group(3)
        if field in ("record", "alert"):
            kind, name = field, unquote(value)
            continue
        if re.match(r"^[|>][+-]?\d*\s*(#.*)?$", value):
            block = []
            while index < len(lines):
                line = lines[index]
                if line.strip() and len(line) - len(line.lstrip()) <= indent:
                    break
                block.append(line.strip())
                index += 1
            text = ("\n" if value.startswith("|") else " ").join(block).strip()
        else:
            text = unquote(value)
        out.append((kind, name, text))
    return out


def load_rules(path):
    rules = load_yaml_rules(path)
    if rules is None:
        rules = parse_rules_fallback(path)
    return rules


# --------------------------------------------------------------------------- names
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
COMMENT = re.compile(r"#[^\n]*")
RECORDED = re.compile(r"(?<![\w:])([A-Za-z_]\w*:[\w:]*\w)(?![\w:])")
LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def names_in(query, prefix):
    bare = COMMENT.sub("", STRING.sub('""', query))
    metric = re.compile(r"(?<![\w:])(" + re.escape(prefix) + r"\w+|up)(?![\w:])")
    # Label lists (by, on, ...) name labels, not metrics.
    bare = LABEL_LIST.sub("", bare)
    return set(metric.findall(bare)), set(RECORDED.findall(bare))


def balanced(query):
    bare = STRING.sub('""', query)
    if bare.count('"') % 2:
        return "unbalanced quotes"
    pairs, stack = {")": "(", "]": "[", "}": "{"}, []
    for char in bare:
        if char in "([{":
            stack.append(char)
        elif char in pairs:
            if not stack or stack.pop() != pairs[char]:
                return f"unbalanced {char!r}"
    return f"unclosed {stack[-1]!r}" if stack else None


def read_catalogue(path):
    """Every exported series name in the catalogue (histograms with their suffixes)."""
    names = set()
    row = re.compile(r"^\|\s*`([a-z_][a-z0-9_]*)`\s*\|\s*([^|]+)\|")
    with open(path, encoding="utf-8") as file:
        for line in file:
            match = row.match(line)
            if not match:
                continue
            name, kind = match.group(1), match.group(2).strip()
            if kind.startswith("histogram"):
                names.update(name + suffix for suffix in HISTOGRAM_SUFFIXES)
            else:
                names.add(name)
    return names


def catalogue_entries(path):
    """(name, type, labels column) rows of the catalogue."""
    row = re.compile(r"^\|\s*`([a-z_][a-z0-9_]*)`\s*\|\s*([^|]+)\|\s*([^|]*)\|")
    with open(path, encoding="utf-8") as file:
        for line in file:
            match = row.match(line)
            if match:
                yield match.group(1), match.group(2).strip(), match.group(3).strip()


# --------------------------------------------------------------------------- prometheus
class Prometheus:
    def __init__(self, url, timeout=10):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, path, data=None):
        body = urllib.parse.urlencode(data).encode() if data else None
        request = urllib.request.Request(self.url + path, data=body)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            try:
                return json.load(error)
            except ValueError:
                return {"status": "error", "errorType": f"http {error.code}", "error": error.reason}

    def query(self, query):
        """None when it evaluates, otherwise the error."""
        answer = self._call("/api/v1/query", {"query": query})
        if answer.get("status") != "success":
            return f"{answer.get('errorType', 'error')}: {answer.get('error', answer)}"
        return None

    def names(self):
        answer = self._call("/api/v1/label/__name__/values")
        if answer.get("status") != "success":
            raise RuntimeError(f"cannot list metric names: {answer}")
        return set(answer["data"])


# --------------------------------------------------------------------------- the check
def collect(files):
    """(exprs, recorded names, structure problems, skipped files)."""
    exprs, recorded, problems, skipped = [], set(), [], []
    for path in files:
        if path.endswith(".json"):
            try:
                with open(path, encoding="utf-8") as file:
                    board = json.load(file)
            except ValueError as error:
                problems.append(f"{path}: not valid JSON: {error}")
                continue
            variables = dashboard_variables(board)
            problems.extend(structure(path, board))
            for expr in walk_dashboard(path, board):
                expr.query, expr.problems = substitute(expr.text, variables)
                exprs.append(expr)
        elif path.endswith((".yml", ".yaml")):
            rules = load_rules(path)
            if rules == "not-rules":
                skipped.append(path)
                continue
            for kind, name, text in rules:
                if kind == "record":
                    recorded.add(name)
                expr = Expr(path, f"{kind} {name}", text)
                expr.query = text
                exprs.append(expr)
        else:
            problems.append(f"{path}: neither a dashboard (.json) nor a rule file (.yml)")
    return exprs, recorded, problems, skipped


def structure(path, board):
    out = []
    for key in ("uid", "title", "schemaVersion", "panels"):
        if key not in board:
            out.append(f"{path}: no {key}")
    ids = []

    def visit(panels):
        for panel in panels:
            ids.append(panel.get("id"))
            if panel.get("type") == "row":
                visit(panel.get("panels", []))
                continue
            where = f"{path}: panel {panel.get('title')!r}"
            if "gridPos" not in panel:
                out.append(f"{where}: no gridPos")
            sources = [panel.get("datasource")] + [t.get("datasource") for t in panel.get("targets", [])]
            for source in sources:
                if isinstance(source, dict) and source.get("uid") not in (DATASOURCE_UID, None):
                    out.append(f"{where}: datasource uid {source.get('uid')!r}, expected {DATASOURCE_UID!r}")
            if panel.get("type") not in ("text", "dashlist", "alertlist", "news") and not any(
                isinstance(t.get("expr"), str) and t["expr"].strip() for t in panel.get("targets", [])
            ):
                out.append(f"{where}: no target with an expr")

    visit(board.get("panels", []))
    duplicates = sorted({i for i in ids if ids.count(i) > 1}, key=str)
    if duplicates:
        out.append(f"{path}: duplicate panel ids {duplicates}")
    return out


def check(files, prefix, prometheus=None, catalogue=None, verbose=False, out=sys.stdout):
    """Returns the list of failures (strings)."""
    exprs, recorded, failures, skipped = collect(files)
    for path in skipped:
        print(f"skipped {os.path.relpath(path)} (not a rule file: a promtool test file?)", file=out)
    if prometheus:
        known = prometheus.names()
        source = f"Prometheus at {prometheus.url}"
    else:
        known = read_catalogue(catalogue)
        if not known:
            failures.append(f"{catalogue}: no metric names found in the catalogue")
        source = os.path.relpath(catalogue)
    warnings = []
    for expr in exprs:
        problems = list(expr.problems)
        if prometheus:
            error = prometheus.query(expr.query)
            if error:
                problems.append(f"query failed: {error}")
        else:
            broken = balanced(expr.query)
            if broken:
                problems.append(f"does not parse: {broken}")
        names, recorded_here = names_in(expr.query, prefix)
        for name in sorted(names):
            if name == "up" or name in known:
                continue
            hint = ""
            if all(name + suffix in known for suffix in HISTOGRAM_SUFFIXES):
                hint = " (a histogram: query it as _bucket, _sum or _count)"
            problems.append(f"metric {name} is not in {source}{hint}")
        for name in sorted(recorded_here):
            if name in known:
                continue
            if name in recorded:
                warnings.append(f"{expr.label()}: {name} is recorded by the rules but has no series yet")
            else:
                problems.append(f"recorded series {name} is neither in {source} nor recorded by the rule files given")
        if verbose:
            print(f"{'FAIL' if problems else 'ok  '} {expr.label()}: {' '.join(expr.query.split())}", file=out)
        for problem in problems:
            failures.append(f"{expr.label()}: {problem}\n    {' '.join(expr.query.split())}")
    for warning in warnings:
        print(f"warning: {warning}", file=out)
    dashboards = sum(1 for f in files if f.endswith(".json"))
    rule_files = sum(1 for f in files if f.endswith((".yml", ".yaml"))) - len(skipped)
    if failures:
        print(f"\n{len(failures)} failure(s):", file=out)
        for failure in failures:
            print(f"  - {failure}", file=out)
    mode = "live" if prometheus else "offline"
    print(
        f"check-dashboards ({mode}): {len(exprs)} expressions checked "
        f"({dashboards} dashboards, {rule_files} rule files) against {source}: "
        f"{'FAILED, ' + str(len(failures)) + ' failure(s)' if failures else 'all good'}",
        file=out,
    )
    return failures


# --------------------------------------------------------------------------- self-test
def self_test(prometheus):
    """Runs the checker on planted faults; exit status 0 when every verdict is right."""
    var = {
        "name": "instance", "type": "query",
        "query": {"query": "label_values(up, instance)"},
        "current": {"text": ["All"], "value": ["$__all"]}, "includeAll": True, "multi": True,
    }

    def board(exprs, nested=False, annotation=None):
        panels = [
            {"id": i + 2, "type": "timeseries", "title": f"p{i}", "gridPos": {"h": 8, "w": 12, "x": 0, "y": i},
             "datasource": {"type": "prometheus", "uid": DATASOURCE_UID},
             "targets": [{"refId": "A", "expr": e, "datasource": {"type": "prometheus", "uid": DATASOURCE_UID}}]}
            for i, e in enumerate(exprs)
        ]
        if nested:
            panels = [{"id": 1, "type": "row", "title": "row", "collapsed": True, "gridPos": {"h": 1, "w": 24, "x": 0, "y": 0}, "panels": panels}]
        return {
            "uid": "t", "title": "t", "schemaVersion": 39, "panels": panels,
            "templating": {"list": [var]},
            "annotations": {"list": [annotation] if annotation else []},
        }

    good = board(
        [
            'sum by (handler) (rate(prometheus_http_requests_total{instance=~"$instance"}[$__rate_interval]))',
            'histogram_quantile(0.99, sum by (le) (rate(prometheus_http_request_duration_seconds_bucket{instance="$instance"}[$__rate_interval])))',
            'count(up{job=~".*"} == 1) or vector(0)',
            "sum(rate(prometheus_http_request_duration_seconds_count[$__interval])) / sum(rate(prometheus_http_request_duration_seconds_sum[$__range]))",
        ],
        nested=True,
        annotation={"name": "a", "expr": 'changes(prometheus_config_last_reload_successful{instance=~"$instance"}[1m]) > 0'},
    )
    cases = [
        ("a good dashboard (nested row, variables, annotation) passes", {"good.json": good}, []),
        ("an unknown metric name fails", {"name.json": board(["sum(rate(prometheus_does_not_exist_total[$__rate_interval]))"])},
         ["metric prometheus_does_not_exist_total is not in"]),
        ("a planted name in a nested panel fails", {"nested.json": board(["up", "prometheus_nope_nested"], nested=True)},
         ["metric prometheus_nope_nested is not in"]),
        ("an expression Prometheus cannot parse fails", {"syntax.json": board(["sum(rate(up[$__rate_interval])"])},
         ["query failed: bad_data"]),
        ("a wrong function fails at Prometheus", {"function.json": board(["rate(up)"])},
         ["query failed"]),
        ("a bare histogram name fails with a hint", {"histogram.json": board(["rate(prometheus_http_request_duration_seconds[5m])"])},
         ["a histogram: query it as _bucket"]),
        ("a bad annotation fails", {"annotation.json": board(["up"], annotation={"name": "a", "expr": "prometheus_gone_total > 0"})},
         ["metric prometheus_gone_total is not in"]),
        ("a rule file: a bad name in a block expr fails, a good one passes, a recorded series is known",
         {"rules.yml": (
             "groups:\n"
             "  - name: t\n"
             "    rules:\n"
             "      - record: job:prometheus_http_requests:rate5m\n"
             "        expr: sum by (job) (rate(prometheus_http_requests_total[5m]))\n"
             "      - alert: Good\n"
             "        expr: |\n"
             "          job:prometheus_http_requests:rate5m > 1000\n"
             "          and on (job) up == 1\n"
             "        for: 1m\n"
             "      - alert: Bad\n"
             "        expr: >-\n"
             "          rate(prometheus_nope_total[5m])\n"
             "            > 0\n"
             "        for: 1m\n"
             "      - alert: Quoted\n"
             "        expr: \"up{job=\\\"x\\\"} == 0\"\n"),
          "rules.test.yml": "rule_files: [rules.yml]\ntests: []\n"},
         ["alert Bad: metric prometheus_nope_total is not in"]),
        ("an unknown recorded series fails", {"recorded.json": board(["job:prometheus_never:recorded"])},
         ["recorded series job:prometheus_never:recorded"]),
    ]
    needed = {"up", "prometheus_http_requests_total", "prometheus_http_request_duration_seconds_bucket"}
    deadline = time.time() + 30
    while not needed <= prometheus.names():
        if time.time() > deadline:
            print(f"self-test: {prometheus.url} does not scrape itself (no {', '.join(sorted(needed))} after 30 s)")
            return 1
        time.sleep(0.5)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for title, files, expected in cases:
            paths = []
            for name, content in files.items():
                path = os.path.join(tmp, name)
                with open(path, "w", encoding="utf-8") as file:
                    file.write(content if isinstance(content, str) else json.dumps(content))
                paths.append(path)
            sink = open(os.devnull, "w")
            failures = check(paths, "prometheus_", prometheus=prometheus, out=sink)
            sink.close()
            right = len(failures) == len(expected) and all(
                any(e in f for f in failures) for e in expected
            )
            ok &= right
            print(f"{'PASS' if right else 'FAIL'} {title}")
            if not right:
                print(f"     expected {len(expected)} failure(s) containing {expected}, got:")
                for failure in failures:
                    print(f"       {failure}")
        # The fallback parser reads the repository's rule files as PyYAML does.
        try:
            import yaml  # noqa: F401, PLC0415
        except ImportError:
            print("skip the fallback parser against PyYAML (PyYAML absent)")
        else:
            rules_dir = os.path.join(ROOT, "grafana", "prometheus", "rules")
            ours = sorted(os.path.join(rules_dir, f) for f in os.listdir(rules_dir)) if os.path.isdir(rules_dir) else []
            for path in ours + [os.path.join(tmp, "rules.yml")]:
                with_yaml = load_yaml_rules(path)
                without = parse_rules_fallback(path)
                norm = (lambda rules: rules if isinstance(rules, str) else
                        [(k, n, " ".join(t.split())) for k, n, t in rules])
                right = norm(with_yaml) == norm(without)
                ok &= right
                print(f"{'PASS' if right else 'FAIL'} the fallback YAML parser reads {os.path.basename(path)} as PyYAML does")
    print("self-test: " + ("all verdicts right" if ok else "WRONG VERDICTS"))
    return 0 if ok else 1


# --------------------------------------------------------------------------- fake node
def braces(text):
    return "{" + text + "}" if text else ""


def fake_exposition(catalogue, started):
    """One series per catalogue metric (the first listed value of each label)."""
    lines, seen = [], {}
    elapsed = time.time() - started
    for name, kind, labels_column in catalogue_entries(catalogue):
        labels = {}
        # `label` = value, value ... ; parenthesised remarks are prose.
        for match in re.finditer(r"`(\w+)`(\s*=\s*(\w+))?", re.sub(r"\([^)]*\)", "", labels_column)):
            label, value = match.group(1), match.group(3)
            if value:
                seen.setdefault(label, value)
            labels[label] = value or seen.get(label) or "example"
        text = ",".join(f'{k}="{v}"' for k, v in labels.items())
        lines.append(f"# HELP {name} fake, from {os.path.basename(catalogue)}")
        if kind.startswith("histogram"):
            lines.append(f"# TYPE {name} histogram")
            count = int(elapsed * 10)
            for le in ("0.005", "0.05", "0.25", "1", "+Inf"):
                lab = ",".join(filter(None, [text, f'le="{le}"']))
                lines.append(f"{name}_bucket{{{lab}}} {count if le in ('1', '+Inf') else count // 2}")
            lines.append(f"{name}_sum{braces(text)} {count * 0.02:.3f}")
            lines.append(f"{name}_count{braces(text)} {count}")
        elif kind.startswith("counter"):
            lines.append(f"# TYPE {name} counter")
            lines.append(f"{name}{braces(text)} {int(elapsed * 5)}")
        else:
            lines.append(f"# TYPE {name} gauge")
            lines.append(f"{name}{braces(text)} 1")
    return "\n".join(lines) + "\n"


def serve_fake_node(address, catalogue):
    host, _, port = address.rpartition(":")
    started = time.time()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = fake_exposition(catalogue, started).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer((host or "127.0.0.1", int(port)), Handler)
    print(f"fake node: http://{host or '127.0.0.1'}:{port}/metrics (from {os.path.relpath(catalogue)})", flush=True)
    server.serve_forever()


# --------------------------------------------------------------------------- main
def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("files", nargs="*", help="dashboards (*.json) and rule files (*.yml)")
    parser.add_argument("--rules", nargs="+", default=[], help="rule files (may also be given as plain arguments)")
    parser.add_argument("--prometheus", help="base URL of a Prometheus, e.g. http://127.0.0.1:9090")
    parser.add_argument("--offline", action="store_true", help="check names against the catalogue, no Prometheus")
    parser.add_argument("--catalogue", default=DEFAULT_CATALOGUE, help="the metric catalogue (markdown)")
    parser.add_argument("--metric-prefix", default="invigil_", help="names starting with this are checked (and `up`)")
    parser.add_argument("--self-test", action="store_true", help="prove the checker catches planted faults")
    parser.add_argument("--serve-fake-node", metavar="HOST:PORT", help="serve fake /metrics from the catalogue")
    parser.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                        help="wait up to this long for Prometheus to know a name with the prefix")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every expression")
    args = parser.parse_args()

    if args.serve_fake_node:
        serve_fake_node(args.serve_fake_node, args.catalogue)
        return 0
    if args.self_test:
        if not args.prometheus:
            parser.error("--self-test needs --prometheus (any Prometheus scraping itself)")
        return self_test(Prometheus(args.prometheus))
    files = args.rules + args.files
    if not files:
        parser.error("no dashboards or rule files given")
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        parser.error(f"no such file: {', '.join(missing)}")
    if bool(args.prometheus) == bool(args.offline):
        parser.error("give either --prometheus URL or --offline")
    prometheus = Prometheus(args.prometheus) if args.prometheus else None
    if prometheus and args.wait:
        deadline = time.time() + args.wait
        while True:
            try:
                if any(n.startswith(args.metric_prefix) for n in prometheus.names()):
                    break
            except (OSError, RuntimeError):
                pass
            if time.time() > deadline:
                print(f"Prometheus at {args.prometheus} knows no {args.metric_prefix}* metric after {args.wait:g} s", file=sys.stderr)
                return 1
            time.sleep(0.5)
    try:
        failures = check(files, args.metric_prefix, prometheus=prometheus,
                         catalogue=None if prometheus else args.catalogue, verbose=args.verbose)
    except (OSError, RuntimeError) as error:
        print(f"check-dashboards: {error}", file=sys.stderr)
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
