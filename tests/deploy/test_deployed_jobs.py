"""The deployed configuration drives a working pipeline.

The four ECS task definitions are rendered from terraform/ (container command and
environment, exactly as Terraform would send them to ECS), then those commands run here,
in the order the schedules run them - ingest -> transform -> check (the Step Functions
pipeline), then compact - against the exchange simulators and an S3 lake with DynamoDB
leases on the moto server. The only additions to the rendered environment are what the
test network needs: the simulators' URLs and the local AWS endpoint with test credentials.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemahub.simulator.server import Simulator
from tests.conftest import SimFactory
from tests.deploy.hcl import Config, Evaluator
from tests.deploy.test_terraform import APPLY_TIME, EXAMPLE, TERRAFORM
from tests.helpers import TRADED, assert_table_matches_truth
from tests.lakes import LakeRef, aws_env, s3_client

pytestmark = pytest.mark.slow

PRODUCTS = ["BTC-USD", "BTC-USDT"]  # every exchange lists at least one of them
ORDER = ["ingest", "transform", "check", "compact"]
Metric = tuple[str, frozenset[tuple[str, str]]]  # name, dimensions (a "*" value: any)


def _render(config: Config, variables: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each job's container definition, as Terraform renders the task definition."""
    evaluator = Evaluator(config, variables, APPLY_TIME)
    rendered = {}
    for job in evaluator.local("jobs"):
        text = evaluator.resource_attribute("aws_ecs_task_definition.job", job, "container_definitions")
        (container,) = json.loads(text)
        rendered[job] = container
    return rendered


def _metrics_watched(config: Config, variables: dict[str, Any]) -> set[Metric]:
    """Every (metric, dimensions) of our namespace that an alarm or a dashboard widget reads."""
    evaluator = Evaluator(config, variables, APPLY_TIME)
    namespace = evaluator.local("metrics_namespace")
    watched: set[Metric] = set()
    for address, block in config.resources.items():
        if not address.startswith("aws_cloudwatch_metric_alarm."):
            continue
        for one in evaluator.instances(block).values():
            if one.eval(block.attributes["namespace"]) != namespace:
                continue
            dimensions = one.eval(block.attributes["dimensions"])
            watched.add((one.eval(block.attributes["metric_name"]), frozenset(dimensions.items())))
    dashboard = evaluator.resource_attribute("aws_cloudwatch_dashboard.schemahub", None, "dashboard_body")
    body = json.loads(dashboard)
    for widget in body["widgets"]:
        for metric in widget.get("properties", {}).get("metrics", []):
            if isinstance(metric[0], dict):  # SEARCH('{Namespace,Dim,...} MetricName="X"', ...)
                found = re.fullmatch(r"SEARCH\('\{([^}]*)\} MetricName=\"(\w+)\"', '\w+', \d+\)",
                                     metric[0]["expression"])
                assert found, metric
                ns, *dims = found.group(1).split(",")
                assert ns == namespace
                watched.add((found.group(2), frozenset((d, "*") for d in dims)))
            elif metric[0] == namespace:
                fields = [m for m in metric[2:] if not isinstance(m, dict)]
                watched.add((metric[1], frozenset(zip(fields[::2], fields[1::2], strict=True))))
    return watched


def _write_patterns(config: Config, variables: dict[str, Any], known: dict[str, Any], job: str) -> list[str]:
    """The object keys the job's IAM role may write or delete, as glob patterns."""
    policy = config.data_sources["data.aws_iam_policy_document.job"]
    evaluator = Evaluator(config, variables, known).instances(policy)[job]
    statements = policy.nested("statement")
    (write,) = [s for s in statements if evaluator.attribute(s, "sid") == "WriteItsPartOfTheLake"]
    assert evaluator.attribute(write, "actions") == ["s3:PutObject", "s3:DeleteObject"]
    prefix = f"arn:aws:s3:::{variables['lake_bucket']}/"
    resources = evaluator.attribute(write, "resources")
    assert all(r.startswith(prefix) for r in resources), resources
    return [r.removeprefix(prefix) for r in resources]


def _objects(client: Any, bucket: str) -> dict[str, str]:
    """Every object of the bucket: key -> ETag."""
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        found.update({o["Key"]: o["ETag"] for o in page.get("Contents", [])})
    return found


def _emitted(stderr: str) -> set[Metric]:
    emitted: set[Metric] = set()
    for line in stderr.splitlines():
        if not line.startswith('{"_aws"') and '"_aws"' not in line[:200]:
            continue
        doc = orjson.loads(line)
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            for dimension_set in directive["Dimensions"]:
                for metric in directive["Metrics"]:
                    emitted.add((metric["Name"], frozenset((d, doc[d]) for d in dimension_set)))
    return emitted


def _matches(watched: Metric, emitted: set[Metric]) -> bool:
    name, dims = watched
    for got_name, got_dims in emitted:
        if got_name == name and {d for d, _ in got_dims} == {d for d, _ in dims} and \
                all(v == "*" or (d, v) in got_dims for d, v in dims):
            return True
    return False


def test_the_rendered_task_definitions_run_the_pipeline(tmp_path: Path, make_sim: SimFactory,
                                                        moto_url: str) -> None:
    config = Config.load(TERRAFORM)
    suffix = uuid.uuid4().hex[:8]
    variables = {**EXAMPLE, "name": f"deploy-{suffix}", "lake_bucket": f"deploy-lake-{suffix}",
                 "products": PRODUCTS, "ingest_since": "3650d"}
    jobs = _render(config, variables)
    assert sorted(jobs) == sorted(ORDER)
    env_of = {job: {e["name"]: e["value"] for e in c["environment"]} for job, c in jobs.items()}
    lake_url = env_of["ingest"]["SCHEMAHUB_LAKE"]
    assert lake_url == f"s3://deploy-lake-{suffix}/lake"
    assert all(env == env_of["ingest"] for env in env_of.values())
    assert jobs["ingest"]["command"][:3] == ["ingest", "--exchange", "coinbase,binance,kraken"]

    # What `terraform apply` provides: the bucket; the lock table and Glue tables (init-cloud
    # creates the same definitions - tests/deploy/test_terraform.py compares them).
    now = time.time()  # fresh trades, so check's freshness rule (8h) passes as in production
    sims: dict[str, Simulator] = {ex: make_sim(exchange=ex, start=now)
                                  for ex in ("coinbase", "binance", "kraken")}
    local = {**aws_env(moto_url), **{f"SCHEMAHUB_{ex.upper()}_URL": s.url for ex, s in sims.items()}}
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SCHEMAHUB_", "AWS_"))}
    s3_client(moto_url).create_bucket(Bucket=variables["lake_bucket"])

    def run(command: list[str], env: dict[str, str]) -> str:
        done = subprocess.run([sys.executable, "-m", "schemahub", *command], env={**base, **env, **local},
                              capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, f"{command}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stderr

    run(["init-cloud"], env_of["ingest"])
    # Each job's least-privilege role (iam.tf) must cover every object the job creates,
    # replaces or deletes: compare the bucket before and after each run with its policy.
    known = {**APPLY_TIME, "aws_s3_bucket.lake.arn": f"arn:aws:s3:::{variables['lake_bucket']}"}
    client = s3_client(moto_url)
    emitted: set[Metric] = set()
    for job in ORDER:
        before = _objects(client, variables["lake_bucket"])
        emitted |= _emitted(run(jobs[job]["command"], env_of[job]))
        after = _objects(client, variables["lake_bucket"])
        touched = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        patterns = _write_patterns(config, variables, known, job)
        outside = sorted(k for k in touched if not any(fnmatch.fnmatchcase(k, p) for p in patterns))
        assert touched and not outside, f"{job} wrote outside its IAM policy {patterns}: {outside[:5]}"

    lake = LakeRef(lake_url, {**aws_env(moto_url), "SCHEMAHUB_LOCKS": env_of["ingest"]["SCHEMAHUB_LOCKS"]})
    for exchange, sim in sims.items():
        symbols = [p for p in PRODUCTS if p in TRADED[exchange]]
        rows = assert_table_matches_truth(lake, sim, symbols)
        assert {r["symbol"] for r in rows} == set(symbols)

    watched = _metrics_watched(config, variables)
    assert ("FreshnessLagMax", frozenset({("Command", "ingest")})) in watched
    missing = sorted((name, sorted(dims)) for name, dims in watched if not _matches((name, dims), emitted))
    assert not missing, f"alarms or dashboard widgets read metrics no job emits: {missing}"
