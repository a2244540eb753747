"""Static gates on terraform/: it parses, every reference resolves, inputs are documented and
validated, and what it registers is what ``schemahub init-cloud`` registers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest

from schemahub.cloud import CloudTargets, lock_table_definition, raw_table_input, trades_table_input
from tests.deploy.hcl import Block, Config, Evaluator, load_tfvars, validation_errors

TERRAFORM = Path(__file__).resolve().parents[2] / "terraform"
EXAMPLE = load_tfvars(TERRAFORM / "terraform.tfvars.example")
# Attributes Terraform learns only when it applies (ids, ARNs, URLs).
APPLY_TIME = {"aws_ecr_repository.schemahub.repository_url": "123456789012.dkr.ecr.us-east-1.amazonaws.com/x",
              "aws_sfn_state_machine.pipeline.arn": "arn:aws:states:us-east-1:123456789012:stateMachine:x"}
# References that are not declarations: Terraform's own objects.
BUILTIN_ROOTS = {"each", "count", "path", "self", "terraform"}


@pytest.fixture(scope="module")
def config() -> Config:
    return Config.load(TERRAFORM)


def test_every_file_parses_and_each_concern_has_its_own(config: Config) -> None:
    files = sorted(p.name for p in TERRAFORM.glob("*.tf"))
    for name in files:
        with open(TERRAFORM / name) as handle:
            assert hcl2.load(handle), name  # python-hcl2's own loader accepts it too
    assert files == ["budgets.tf", "catalog.tf", "compute.tf", "encryption.tf", "iam.tf", "jobs.tf",
                     "locks.tf", "monitoring.tf", "outputs.tf", "registry.tf", "schedules.tf",
                     "storage.tf", "variables.tf", "versions.tf"]
    kinds = {b.labels[0] for b in config.of_kind("resource")}
    for wanted in ("aws_s3_bucket", "aws_glue_catalog_table", "aws_athena_workgroup", "aws_dynamodb_table",
                   "aws_ecr_repository", "aws_ecs_cluster", "aws_ecs_task_definition",
                   "aws_scheduler_schedule", "aws_cloudwatch_log_group", "aws_cloudwatch_dashboard",
                   "aws_cloudwatch_metric_alarm", "aws_sns_topic", "aws_budgets_budget", "aws_iam_role"):
        assert wanted in kinds, wanted


def test_every_reference_is_declared_and_every_declaration_used(config: Config) -> None:
    variables, locals_ = set(config.variables), set(config.locals)
    resources, data = set(config.resources), set(config.data_sources)
    undeclared, used = [], set()
    for ref, bound in config.references():
        where = f"{ref.file}:{ref.line}: {ref.address}"
        if ref.root in bound or ref.root in BUILTIN_ROOTS:
            continue
        used.add(ref.address)
        known = {"var": variables, "local": locals_, "data": data}.get(ref.root)
        if known is not None:
            name = ref.address if ref.root == "data" else str(ref.parts[0]) if ref.parts else ""
            if name not in known:
                undeclared.append(where)
        elif ref.address not in resources:
            undeclared.append(where)
    assert not undeclared, "undeclared references:\n" + "\n".join(undeclared)
    assert not {f"var.{v}" for v in variables} - used, "variables nothing uses"
    assert not {f"local.{name}" for name in locals_} - used, "locals nothing uses"
    assert not {f"{d}" for d in data} - used, "data sources nothing uses"


def test_the_checker_catches_an_undeclared_reference(tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text('variable "a" {\n  type = string\n}\nresource "aws_x" "y" {\n'
                                      '  name = "${var.a}-${var.b}"\n  arn  = aws_z.w.arn\n}\n')
    refs = {ref.address for ref, _ in Config.load(tmp_path).references()}
    assert refs == {"var.a", "var.b", "aws_z.w"}


def test_variables_are_described_typed_and_validated(config: Config) -> None:
    for name, variable in config.variables.items():
        assert {"description", "type"} <= variable.attribute_names(), name
        assert Evaluator(config).eval(variable.attributes["description"]).endswith("."), name
    # Every input a user can get wrong in a way the AWS API would only report at apply time.
    unvalidated = {name for name, v in config.variables.items() if not v.nested("validation")}
    assert unvalidated == {"tags", "assign_public_ip", "fargate_spot", "allow_destroy_with_data"}


@pytest.mark.parametrize(("name", "bad"), [
    ("lake_bucket", "My_Bucket"), ("lake_bucket", "a..b"), ("lake_prefix", "a/b"),
    ("exchanges", ["FTX!"]), ("exchanges", []), ("products", ["btcusd"]), ("ingest_since", "yesterday"),
    ("pipeline_schedule", "every 6 hours"), ("freshness_hours", 0), ("freshness_hours", 2.5),
    ("log_retention_days", 10), ("raw_infrequent_access_days", 7), ("subnet_ids", ["sn-1"]),
    ("task_sizes", {"ingest": {"cpu": 300, "memory": 1024}}), ("alarm_email", "ops"),
    ("budget_alert_thresholds_usd", [0]), ("region", "US-EAST-1"), ("name", "Schema Hub"),
])
def test_validation_rejects_bad_values(config: Config, name: str, bad: Any) -> None:
    assert validation_errors(config, name, bad), f"{name}={bad!r} was accepted"


def test_the_example_tfvars_sets_every_required_variable_validly(config: Config) -> None:
    required = {name for name, v in config.variables.items() if "default" not in v.attributes}
    assert required == {"lake_bucket", "vpc_id", "subnet_ids"}
    assert required <= set(EXAMPLE) <= set(config.variables)
    for name, value in EXAMPLE.items():
        assert not validation_errors(config, name, value), name
    defaults = Evaluator(config)
    for name, variable in config.variables.items():  # and the defaults are valid too
        if "default" in variable.attributes:
            assert not validation_errors(config, name, defaults.attribute(variable, "default")), name


def _blocks(block: Block, path: str) -> list[Block]:
    found = [block]
    for part in path.split("."):
        found = [n for b in found for n in b.nested(part)]
    return found


def _glue_table(config: Config, evaluator: Evaluator, address: str) -> dict[str, Any]:
    """The Glue TableInput the provider sends for ``address``."""
    block = config.resource(address)
    value = evaluator.attribute
    (sd,) = block.nested("storage_descriptor")
    storage: dict[str, Any] = {"Columns": [{"Name": value(c, "name"), "Type": value(c, "type")}
                                           for c in sd.nested("columns")],
                               "Location": value(sd, "location")}
    for key, field in (("InputFormat", "input_format"), ("OutputFormat", "output_format")):
        if field in sd.attributes:
            storage[key] = value(sd, field)
    for serde in sd.nested("ser_de_info"):
        storage["SerdeInfo"] = {"SerializationLibrary": value(serde, "serialization_library"),
                                "Parameters": value(serde, "parameters")}
    table: dict[str, Any] = {"Name": value(block, "name"), "Description": value(block, "description"),
                             "TableType": value(block, "table_type"),
                             "Parameters": value(block, "parameters"), "StorageDescriptor": storage}
    keys = block.nested("partition_keys")
    if keys:
        table["PartitionKeys"] = [{"Name": value(k, "name"), "Type": value(k, "type")} for k in keys]
    return table


def test_glue_tables_are_the_ones_init_cloud_registers(config: Config) -> None:
    evaluator = Evaluator(config, EXAMPLE, APPLY_TIME)
    lake_url = evaluator.local("lake_url")
    assert lake_url == f"s3://{EXAMPLE['lake_bucket']}/lake"
    targets = CloudTargets(lake=lake_url, lock_table=None, database=EXAMPLE.get("glue_database", "schemahub"))
    assert _glue_table(config, evaluator, "aws_glue_catalog_table.trades") == trades_table_input(targets)
    assert _glue_table(config, evaluator, "aws_glue_catalog_table.raw_trades") == raw_table_input(targets)


def test_the_lock_table_is_the_one_init_cloud_creates(config: Config) -> None:
    evaluator = Evaluator(config, EXAMPLE, APPLY_TIME)
    table = config.resource("aws_dynamodb_table.locks")
    value = evaluator.attribute
    (attribute,) = table.nested("attribute")
    (ttl,) = table.nested("ttl")
    name = value(table, "name")
    assert lock_table_definition(name) == {
        "TableName": name, "KeySchema": [{"AttributeName": value(table, "hash_key"), "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": value(attribute, "name"),
                                  "AttributeType": value(attribute, "type")}],
        "BillingMode": value(table, "billing_mode")}
    assert value(ttl, "attribute_name") == "expires_ttl" and value(ttl, "enabled") is True
    assert evaluator.local("job_environment")[1] == {"name": "SCHEMAHUB_LOCKS", "value": f"dynamodb://{name}"}


def _terraform() -> tuple[str, str]:
    binary = shutil.which("terraform") or shutil.which("tofu")
    mirror = os.environ.get("SCHEMAHUB_TF_PROVIDER_MIRROR", "/opt/tf-plugins")
    if binary is None or not (Path(mirror) / "registry.terraform.io" / "hashicorp" / "aws").is_dir():
        pytest.skip("terraform and an offline mirror of the hashicorp/aws provider are needed "
                    "(SCHEMAHUB_TF_PROVIDER_MIRROR); the python-hcl2 gates above run regardless")
    return binary, mirror


@pytest.mark.slow
def test_terraform_validates_and_plans_offline(config: Config, tmp_path: Path, moto_url: str) -> None:
    """Where terraform itself is available: `validate`, and a `plan` of the example against moto
    (for the account id); the plan's known values must equal this module's evaluation."""
    binary, mirror = _terraform()
    rc = tmp_path / "terraformrc"
    rc.write_text(f'provider_installation {{\n  filesystem_mirror {{\n    path = "{mirror}"\n  }}\n}}\n')
    work = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, work, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    (work / "terraform.tfvars").write_text((TERRAFORM / "terraform.tfvars.example").read_text())
    env = {**os.environ, "TF_CLI_CONFIG_FILE": str(rc), "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1",
           "AWS_ENDPOINT_URL": moto_url, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}

    def terraform(*args: str) -> str:
        done = subprocess.run([binary, *args], cwd=work, env=env, capture_output=True, text=True, timeout=300,
                              check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    terraform("fmt", "-check", "-recursive", "-no-color")
    terraform("init", "-backend=false", "-input=false", "-no-color")
    terraform("validate", "-no-color")
    terraform("plan", "-input=false", "-no-color", "-lock=false", "-out=plan.bin")
    plan = json.loads(terraform("show", "-json", "plan.bin"))
    planned = {r["address"]: r.get("values", {}) for r in plan["planned_values"]["root_module"]["resources"]}
    evaluator = Evaluator(config, EXAMPLE, APPLY_TIME)
    assert plan["planned_values"]["outputs"]["lake_url"]["value"] == evaluator.local("lake_url")
    for address in ("aws_glue_catalog_table.trades", "aws_glue_catalog_table.raw_trades"):
        mine = _glue_table(config, evaluator, address)
        assert planned[address]["parameters"] == mine["Parameters"]
        (sd,) = planned[address]["storage_descriptor"]
        assert sd["location"] == mine["StorageDescriptor"]["Location"]
    assert planned["aws_dynamodb_table.locks"]["name"] == f"{EXAMPLE['name']}-locks"
    assert sorted(a for a in planned if a.startswith("aws_ecs_task_definition.")) == [
        f'aws_ecs_task_definition.job["{job}"]' for job in sorted(evaluator.local("jobs"))]


def _state_machine(config: Config) -> dict[str, Any]:
    known = {**APPLY_TIME, "data.aws_partition.current.partition": "aws",
             "aws_ecs_cluster.schemahub.arn": "arn:aws:ecs:us-east-1:123456789012:cluster/x",
             "aws_security_group.tasks.id": "sg-1",
             "aws_ecs_task_definition.job.arn_without_revision":
                 lambda job: f"arn:aws:ecs:us-east-1:123456789012:task-definition/x-{job}"}
    evaluator = Evaluator(config, EXAMPLE, known)
    text = evaluator.resource_attribute("aws_sfn_state_machine.pipeline", None, "definition")
    return dict(json.loads(text))


def _execute(machine: dict[str, Any], exit_codes: dict[str, int]) -> list[str]:
    """The states an execution passes through when each job's container exits with its code."""
    states, path, name = machine["States"], [], machine["StartAt"]
    data: dict[str, Any] = {}
    while True:
        path.append(name)
        state = states[name]
        if state["Type"] in ("Succeed", "Fail"):
            return path
        if state["Type"] == "Task":
            job = name.lower()
            assert state["Parameters"]["TaskDefinition"].endswith(f"-{job}")
            assert state["ResultSelector"] == {"exit_code.$": "$.Containers[0].ExitCode"}
            data[state["ResultPath"].removeprefix("$.")] = {"exit_code": exit_codes[job]}
            name = state["Next"]
        else:
            assert state["Type"] == "Choice"
            name = state["Default"]
            for choice in state["Choices"]:
                job, field = choice["Variable"].removeprefix("$.").split(".")
                if data[job][field] == choice["NumericEquals"]:
                    name = choice["Next"]
                    break


@pytest.mark.parametrize(("codes", "path"), [
    ({"ingest": 0, "transform": 0, "check": 0},
     ["Ingest", "Transform", "TransformResult", "Check", "CheckResult", "Done"]),
    ({"ingest": 1, "transform": 4, "check": 0},  # a partial ingest and quarantined files: still checked
     ["Ingest", "Transform", "TransformResult", "Check", "CheckResult", "Done"]),
    ({"ingest": 0, "transform": 1, "check": 0},
     ["Ingest", "Transform", "TransformResult", "TransformFailed"]),
    ({"ingest": 0, "transform": 0, "check": 1},
     ["Ingest", "Transform", "TransformResult", "Check", "CheckResult", "CheckFailed"]),
])
def test_the_pipeline_checks_after_each_transform_and_fails_on_bad_exits(
        config: Config, codes: dict[str, int], path: list[str]) -> None:
    machine = _state_machine(config)
    assert _execute(machine, codes) == path
    ingest = machine["States"]["Ingest"]
    assert ingest["Catch"][0]["Next"] == "Transform"  # a task that cannot even start: still transform
    for state in machine["States"].values():
        targets = [state.get("Next"), state.get("Default"), *(c["Next"] for c in state.get("Choices", []))]
        assert all(t is None or t in machine["States"] for t in targets)
