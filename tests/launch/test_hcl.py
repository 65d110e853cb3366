"""Offline checks of the Terraform root module that checkov does not make.

Run with a Python that has python-hcl2 (scripts/test-launch sets one up):

    python tests/launch/test_hcl.py

The root module needs the aws provider, which cannot be downloaded here, so
`terraform validate` is out of reach. Instead this parses the HCL and asserts
the launch-side invariants directly, and evaluates the real variable
validations with `terraform plan` on a provider-free copy of variables.tf.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

import hcl2

REPO = Path(__file__).resolve().parents[2]
ROOT = REPO / "terraform"
USERDATA = ROOT / "modules" / "userdata"
SETTINGS = ROOT / "modules" / "settings"

# The only statement allowed a "*" resource: its one action has no
# resource-level permissions (Service Authorization Reference).
NO_RESOURCE_LEVEL = {"autoscaling:DescribeAutoScalingInstances"}
# The agent's Auto Scaling calls on its own group (docs/launch.md).
OWN_GROUP_ACTIONS = {
    "autoscaling:CompleteLifecycleAction",
    "autoscaling:RecordLifecycleActionHeartbeat",
    "autoscaling:SetInstanceHealth",
}


def unq(value):
    """Strip the quotes python-hcl2 keeps around string literals."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def load_dir(path):
    """Parse every .tf file in a directory (not recursively)."""
    parsed = {}
    for f in sorted(path.glob("*.tf")):
        with f.open() as fh:
            parsed[f.name] = hcl2.load(fh)
    return parsed


def blocks(parsed, kind):
    """Yield (type, name, body) for every resource/data block of a kind."""
    for doc in parsed.values():
        for entry in doc.get(kind, []):
            for rtype, named in entry.items():
                for name, body in named.items():
                    yield unq(rtype), unq(name), body


def resource(parsed, rtype, name):
    for t, n, body in blocks(parsed, "resource"):
        if (t, n) == (rtype, name):
            return body
    raise AssertionError(f"resource {rtype}.{name} not found")


def statements(doc_body):
    """Yield (statement, enclosing dynamic for_each or None) of a policy document."""
    for st in doc_body.get("statement", []):
        yield st, None
    for dyn in doc_body.get("dynamic", []):
        for label, body in dyn.items():
            if unq(label) != "statement":
                continue
            for content in body.get("content", []):
                yield content, body.get("for_each")


def as_list(value):
    if isinstance(value, list):
        return [unq(v) for v in value]
    return [unq(value)]


def variable_blocks(path):
    """Raw text of every variable block in a variables.tf, by name."""
    text = (path / "variables.tf").read_text()
    return {m.group(1): m.group(0) for m in re.finditer(r'(?ms)^variable "([a-z0-9_]+)" \{.*?^\}\n', text)}


def agent_policy(tf):
    (body,) = [b for t, n, b in blocks(tf, "data") if (t, n) == ("aws_iam_policy_document", "agent")]
    return {unq(st["sid"]): st for st, _ in statements(body)}


class RootModule(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tf = load_dir(ROOT)
        cls.text = "\n".join(f.read_text() for f in ROOT.glob("*.tf"))

    def test_ebs_is_encrypted(self):
        lt = resource(self.tf, "aws_launch_template", "agent")
        mappings = lt["block_device_mappings"]
        self.assertTrue(mappings, "launch template has no block device mapping")
        for m in mappings:
            for ebs in m["ebs"]:
                self.assertIs(ebs["encrypted"], True, "EBS volume not encrypted")
                self.assertTrue(ebs.get("delete_on_termination"), "volumes must not outlive workers")

    def test_power_off_terminates(self):
        # The agent's fallback when SetInstanceHealth is out of reach.
        lt = resource(self.tf, "aws_launch_template", "agent")
        self.assertEqual(unq(lt["instance_initiated_shutdown_behavior"]), "terminate")

    def test_imds_settings(self):
        lt = resource(self.tf, "aws_launch_template", "agent")
        (md,) = lt["metadata_options"]
        self.assertEqual(unq(md["http_endpoint"]), "enabled")
        self.assertEqual(unq(md["http_tokens"]), "required")
        self.assertEqual(md["http_put_response_hop_limit"], 1)
        self.assertEqual(unq(md["instance_metadata_tags"]), "enabled")

    def test_tags_at_launch_on_instance_volume_and_eni(self):
        lt = resource(self.tf, "aws_launch_template", "agent")
        kinds = {unq(ts["resource_type"]) for ts in lt["tag_specifications"]}
        self.assertEqual(kinds, {"instance", "volume", "network-interface"})
        for ts in lt["tag_specifications"]:
            self.assertEqual(ts["tags"], "${local.launch_tags}")

    def test_user_data_comes_from_the_module(self):
        lt = resource(self.tf, "aws_launch_template", "agent")
        self.assertEqual(lt["user_data"], "${module.userdata.user_data_base64gzip}")
        mods = {unq(n): b for doc in self.tf.values() for entry in doc.get("module", []) for n, b in entry.items()}
        self.assertEqual(set(mods), {"userdata", "settings"})
        self.assertEqual(unq(mods["userdata"]["source"]), "./modules/userdata")
        self.assertEqual(unq(mods["settings"]["source"]), "./modules/settings")

    def test_no_wildcard_action_or_resource(self):
        docs = [(n, b) for t, n, b in blocks(self.tf, "data") if t == "aws_iam_policy_document"]
        self.assertGreaterEqual(len(docs), 2)
        seen = 0
        for name, body in docs:
            for st, _ in statements(body):
                seen += 1
                actions = as_list(st.get("actions", []))
                for action in actions:
                    self.assertNotIn("*", action, f"{name}: wildcard action {action}")
                for res in as_list(st.get("resources", [])):
                    if res == "*":
                        self.assertEqual(set(actions), NO_RESOURCE_LEVEL,
                                         f"{name}: resource * for actions that support resource-level permissions")
                self.assertNotIn("not_actions", st, f"{name}: NotAction is a wildcard in disguise")
                self.assertNotIn("not_resources", st, f"{name}: NotResource is a wildcard in disguise")
        self.assertGreater(seen, 5)
        # No inline JSON policies that would dodge the checks above.
        self.assertNotRegex(self.text, r'"Action"\s*[:=]\s*"\*"')
        self.assertNotRegex(self.text, r'"Resource"\s*[:=]\s*"\*"')

    def test_autoscaling_calls_are_on_the_own_group_only(self):
        by_sid = agent_policy(self.tf)
        own = by_sid["OwnGroupLifecycle"]
        self.assertEqual(set(as_list(own["actions"])), OWN_GROUP_ACTIONS)
        self.assertEqual(as_list(own["resources"]), ["${aws_autoscaling_group.agent.arn}"])
        self.assertNotIn("effect", own)  # Allow
        find = by_sid["FindOwnGroup"]
        self.assertEqual(set(as_list(find["actions"])), NO_RESOURCE_LEVEL)
        self.assertEqual(as_list(find["resources"]), ["*"])
        # No other statement grants any autoscaling action, and none is wildcarded.
        for sid, st in by_sid.items():
            actions = {a for a in as_list(st.get("actions", [])) if a.lower().startswith("autoscaling:")}
            if sid not in {"OwnGroupLifecycle", "FindOwnGroup"}:
                self.assertEqual(actions, set(), f"{sid} grants {actions}")
        # Both are unconditional statements, present whatever the variables.
        (body,) = [b for t, n, b in blocks(self.tf, "data") if (t, n) == ("aws_iam_policy_document", "agent")]
        static = {unq(st["sid"]) for st, for_each in statements(body) if for_each is None}
        self.assertLessEqual({"OwnGroupLifecycle", "FindOwnGroup"}, static)

    def test_role_is_optional_and_shaped_by_the_inputs(self):
        role = resource(self.tf, "aws_iam_role", "agent")
        profile = resource(self.tf, "aws_iam_instance_profile", "agent")
        policy = resource(self.tf, "aws_iam_role_policy", "agent")
        for r in (role, profile, policy):
            self.assertEqual(r["count"], "${var.create_iam_instance_profile ? 1 : 0}")
        self.assertEqual(role["path"], "${module.settings.iam_role.path}")
        self.assertEqual(role["permissions_boundary"], "${module.settings.iam_role.permissions_boundary}")
        self.assertEqual(profile["path"], "${module.settings.iam_role.path}")
        # Existing fleets keep their role: state moves to the [0] addresses.
        moved = [(m["from"], m["to"]) for doc in self.tf.values() for m in doc.get("moved", [])]
        for r in ("aws_iam_role.agent", "aws_iam_instance_profile.agent", "aws_iam_role_policy.agent"):
            self.assertIn(("${%s}" % r, "${%s[0]}" % r), moved)
        lt = resource(self.tf, "aws_launch_template", "agent")
        (prof,) = lt["iam_instance_profile"]
        self.assertEqual(prof["arn"], "${local.instance_profile_arn}")
        self.assertEqual(prof["name"], "${local.instance_profile_name}")
        self.assertIn("iam_policy_json", self.text)

    def test_extra_security_groups(self):
        lt = resource(self.tf, "aws_launch_template", "agent")
        self.assertEqual(lt["vpc_security_group_ids"],
                         "${concat([aws_security_group.agent.id], module.settings.security_group_ids)}")

    def test_s3_access_is_scoped(self):
        by_sid = agent_policy(self.tf)
        read = by_sid["ReadInputs"]
        self.assertEqual(as_list(read["actions"]), ["s3:GetObject"])
        self.assertIn("${i.bucket}/${i.prefix}*", read["resources"])
        write = by_sid["WriteResults"]
        self.assertEqual(as_list(write["actions"]), ["s3:PutObject"])
        listing = [st for sid, st in by_sid.items() if sid.startswith("ListInputs")]
        self.assertEqual(len(listing), 1)
        (cond,) = listing[0]["condition"]
        self.assertEqual(unq(cond["variable"]), "s3:prefix")
        sqs = by_sid["LeaseJobs"]
        self.assertEqual(
            sorted(as_list(sqs["actions"])),
            sorted(["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                    "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]),
        )
        self.assertEqual(as_list(sqs["resources"]), ["${aws_sqs_queue.jobs.arn}"])
        self.assertIn("sqs:SendMessage", as_list(by_sid["DeadLetter"]["actions"]))
        self.assertEqual(as_list(by_sid["DeadLetter"]["resources"]), ["${aws_sqs_queue.dlq.arn}"])

    def test_create_tags_only_with_publish_tags_and_only_on_self(self):
        found = []
        for t, n, body in blocks(self.tf, "data"):
            if t != "aws_iam_policy_document":
                continue
            for st, for_each in statements(body):
                actions = as_list(st.get("actions", []))
                if any(a.lower().startswith("ec2:") for a in actions):
                    found.append((st, for_each))
        self.assertEqual(len(found), 1, "exactly one EC2 statement expected")
        st, for_each = found[0]
        self.assertEqual(as_list(st["actions"]), ["ec2:CreateTags"])
        self.assertIsNotNone(for_each, "CreateTags must sit in a dynamic block")
        # Present only when publish_tags is on: the for_each is empty otherwise.
        self.assertRegex(for_each, r"^\$\{var\.publish_tags && .*\? \[1\] : \[\]\}$")
        conds = {unq(c["variable"]): c for c in st["condition"]}
        self.assertIn("aws:ARN", conds)
        self.assertEqual(as_list(conds["aws:ARN"]["values"]), ["$${ec2:SourceInstanceARN}"])
        self.assertIn("aws:TagKeys", conds)
        for res in as_list(st["resources"]):
            self.assertIn(":instance/", res)

    def test_journal_shipping_only_on_the_own_log_group(self):
        found = []
        for t, n, body in blocks(self.tf, "data"):
            if t != "aws_iam_policy_document":
                continue
            for st, for_each in statements(body):
                actions = as_list(st.get("actions", []))
                if any(a.lower().startswith("logs:") for a in actions):
                    found.append((st, for_each))
        self.assertEqual(len(found), 1, "exactly one CloudWatch Logs statement expected")
        st, for_each = found[0]
        self.assertEqual(sorted(as_list(st["actions"])), ["logs:CreateLogStream", "logs:PutLogEvents"])
        # Present only with journal_log_group.
        self.assertEqual(for_each, "${var.journal_log_group.name == null ? [] : [local.journal_log_group_arn]}")
        self.assertEqual(as_list(st["resources"]), ["${statement.value}", "${statement.value}:log-stream:*"])
        groups = [b for t, n, b in blocks(self.tf, "resource") if t == "aws_cloudwatch_log_group"]
        self.assertEqual(len(groups), 1)
        self.assertEqual(groups[0]["name"], "${local.journal_log_group_name}")
        self.assertEqual(groups[0]["count"], "${var.journal_log_group.name == null ? 0 : 1}")

    def test_ssm_is_optional(self):
        att = resource(self.tf, "aws_iam_role_policy_attachment", "ssm")
        self.assertEqual(att["count"], "${var.create_iam_instance_profile && var.enable_ssm ? 1 : 0}")
        self.assertIn("AmazonSSMManagedInstanceCore", att["policy_arn"])

    def test_spot_asg(self):
        asg = resource(self.tf, "aws_autoscaling_group", "agent")
        self.assertEqual(asg["min_size"], 0)
        self.assertIs(asg["capacity_rebalance"], True)
        (mip,) = asg["mixed_instances_policy"]
        (dist,) = mip["instances_distribution"]
        self.assertEqual(dist["on_demand_base_capacity"],
                         "${module.settings.instances_distribution.on_demand_base_capacity}")
        self.assertEqual(dist["on_demand_percentage_above_base_capacity"],
                         "${module.settings.instances_distribution.on_demand_percentage_above_base_capacity}")
        self.assertEqual(unq(dist["spot_allocation_strategy"]), "price-capacity-optimized")
        self.assertEqual(unq(dist["on_demand_allocation_strategy"]), "lowest-price")
        (lt,) = mip["launch_template"]
        (spec,) = lt["launch_template_specification"]
        # A numbered version: rollback is impossible with $Latest or $Default.
        self.assertEqual(spec["version"], "${aws_launch_template.agent.latest_version}")
        # Two override sources, and the settings module lets exactly one be non-empty.
        overrides = {unq(k): v for d in lt["dynamic"] for k, v in d.items()}
        self.assertEqual(set(overrides), {"override"})
        for_eaches = sorted(d[k]["for_each"] for d in lt["dynamic"] for k in d)
        self.assertEqual(for_eaches, sorted([
            "${module.settings.instance_types}",
            "${module.settings.instance_requirements == null ? [] : [module.settings.instance_requirements]}",
        ]))
        # Defaults: all spot, ten x86_64 types.
        defaults = {unq(n): b for doc in load_dir(ROOT).values() for e in doc.get("variable", []) for n, b in e.items()}
        self.assertEqual(defaults["on_demand_base_capacity"]["default"], 0)
        self.assertEqual(defaults["on_demand_percentage_above_base_capacity"]["default"], 0)
        self.assertEqual(defaults["instance_requirements"]["default"], {})

    def test_drain_hook_is_its_own_resource(self):
        asg = resource(self.tf, "aws_autoscaling_group", "agent")
        # initial_lifecycle_hook is read only when a group is created.
        self.assertNotIn("initial_lifecycle_hook", asg)
        (lc,) = asg["lifecycle"]
        self.assertEqual(set(lc["ignore_changes"]), {"desired_capacity", "initial_lifecycle_hook"})
        hook = resource(self.tf, "aws_autoscaling_lifecycle_hook", "drain")
        self.assertEqual(hook["autoscaling_group_name"], "${aws_autoscaling_group.agent.name}")
        self.assertEqual(unq(hook["lifecycle_transition"]), "autoscaling:EC2_INSTANCE_TERMINATING")
        self.assertEqual(unq(hook["default_result"]), "CONTINUE")
        self.assertEqual(hook["heartbeat_timeout"], "${var.termination_hook_heartbeat_seconds}")
        self.assertEqual(hook["name"], "${local.drain_hook_name}")
        self.assertIn('drain_hook_name = "rangefleet-drain"', self.text)

    def test_refresh_rolls_back_on_the_unhealthy_alarm(self):
        asg = resource(self.tf, "aws_autoscaling_group", "agent")
        (refresh,) = asg["instance_refresh"]
        self.assertEqual(unq(refresh["strategy"]), "Rolling")
        (prefs,) = refresh["preferences"]
        self.assertIs(prefs["auto_rollback"], True)
        (spec,) = prefs["alarm_specification"]
        self.assertEqual(spec["alarms"], ["${local.unhealthy_alarm_name}"])
        alarm = resource(self.tf, "aws_cloudwatch_metric_alarm", "unhealthy")
        self.assertEqual(alarm["alarm_name"], "${local.unhealthy_alarm_name}")
        metrics = {unq(q["id"]): q["metric"][0] for q in alarm["metric_query"] if "metric" in q}
        self.assertEqual({unq(m["metric_name"]) for m in metrics.values()},
                         {"GroupDesiredCapacity", "GroupInServiceInstances"})
        for m in metrics.values():
            self.assertEqual(unq(m["namespace"]), "AWS/AutoScaling")
            self.assertEqual(m["dimensions"], {"AutoScalingGroupName": "${aws_autoscaling_group.agent.name}"})
        self.assertEqual(unq(metrics["inservice"]["stat"]), "Minimum")
        # The metrics the alarm reads are collected.
        self.assertLessEqual({"GroupDesiredCapacity", "GroupInServiceInstances"}, set(as_list(asg["enabled_metrics"])))
        self.assertEqual(unq(asg["metrics_granularity"]), "1Minute")
        self.assertEqual(alarm["evaluation_periods"], "${module.settings.alarms.unhealthy_minutes}")
        self.assertEqual(alarm["threshold"], "${module.settings.alarms.unhealthy_percent}")

    def test_operator_alarms(self):
        dlq = resource(self.tf, "aws_cloudwatch_metric_alarm", "dead_letters")
        self.assertEqual(unq(dlq["metric_name"]), "ApproximateNumberOfMessagesVisible")
        self.assertEqual(dlq["dimensions"], {"QueueName": "${aws_sqs_queue.dlq.name}"})
        self.assertEqual(unq(dlq["comparison_operator"]), "GreaterThanThreshold")
        self.assertEqual(dlq["threshold"], 0)
        age = resource(self.tf, "aws_cloudwatch_metric_alarm", "queue_age")
        self.assertEqual(unq(age["metric_name"]), "ApproximateAgeOfOldestMessage")
        self.assertEqual(age["dimensions"], {"QueueName": "${aws_sqs_queue.jobs.name}"})
        self.assertEqual(age["threshold"], "${module.settings.alarms.queue_age_seconds}")
        for name in ("unhealthy", "dead_letters", "queue_age"):
            alarm = resource(self.tf, "aws_cloudwatch_metric_alarm", name)
            self.assertEqual(alarm["alarm_actions"], "${module.settings.alarm_actions}", name)
            self.assertEqual(alarm["ok_actions"], "${module.settings.alarm_actions}", name)
        # The scaling alarms drive the scaling policies only.
        self.assertEqual(resource(self.tf, "aws_cloudwatch_metric_alarm", "backlog")["alarm_actions"],
                         ["${aws_autoscaling_policy.scale_out.arn}"])

    def test_scaling_on_backlog(self):
        alarm = resource(self.tf, "aws_cloudwatch_metric_alarm", "backlog")
        self.assertEqual(unq(alarm["metric_name"]), "ApproximateNumberOfMessagesVisible")
        self.assertEqual(alarm["alarm_actions"], ["${aws_autoscaling_policy.scale_out.arn}"])
        idle = resource(self.tf, "aws_cloudwatch_metric_alarm", "idle")
        names = {unq(m["metric"][0]["metric_name"]) for m in idle["metric_query"] if "metric" in m}
        self.assertEqual(names, {"ApproximateNumberOfMessagesVisible", "ApproximateNumberOfMessagesNotVisible"})

    def test_queues(self):
        jobs = resource(self.tf, "aws_sqs_queue", "jobs")
        dlq = resource(self.tf, "aws_sqs_queue", "dlq")
        self.assertEqual(jobs["visibility_timeout_seconds"], "${var.lease_seconds}")
        self.assertIn("maxReceiveCount = 20", jobs["redrive_policy"])
        self.assertIn("aws_sqs_queue.dlq.arn", jobs["redrive_policy"])
        self.assertEqual(dlq["message_retention_seconds"], 1209600)  # 14 days, the SQS maximum
        self.assertEqual(jobs["message_retention_seconds"], "${var.queue_message_retention_seconds}")
        for q in (jobs, dlq):
            self.assertEqual(q["sqs_managed_sse_enabled"], "${var.sqs_kms_key_id == null ? true : null}")
            self.assertEqual(q["kms_master_key_id"], "${var.sqs_kms_key_id}")

    def test_security_group_is_egress_only(self):
        sg = resource(self.tf, "aws_security_group", "agent")
        self.assertNotIn("ingress", sg)
        self.assertTrue(sg["egress"])
        for t, _, _ in blocks(self.tf, "resource"):
            self.assertNotIn(t, {"aws_security_group_rule", "aws_vpc_security_group_ingress_rule"})

    def test_every_variable_is_described_typed_and_validated(self):
        for path, need_validation in ((ROOT, True), (SETTINGS, True), (USERDATA, False)):
            for doc in load_dir(path).values():
                for entry in doc.get("variable", []):
                    for name, body in entry.items():
                        name = unq(name)
                        self.assertTrue(unq(body.get("description", "")), f"{path.name}: {name} has no description")
                        self.assertIn("type", body, f"{path.name}: {name} has no type")
                        if need_validation:
                            self.assertIn("validation", body, f"{name} has no validation")
                        # terraform-aws-modules convention: collections are never null.
                        if re.match(r"^\$\{(list|map|set|object)\(", body["type"]):
                            self.assertIs(body.get("nullable"), False, f"{path.name}: {name} must be nullable = false")

    def test_settings_module_checks_the_same_rules(self):
        """modules/settings re-checks the root's inputs offline (terraform test); same text, or it tests nothing."""
        root, settings = variable_blocks(ROOT), variable_blocks(SETTINGS)
        self.assertGreaterEqual(len(settings), 15)
        for name, block in settings.items():
            self.assertIn(name, root, f"modules/settings has {name}, the root does not")
            self.assertEqual(root[name], block, f"{name} differs between variables.tf and modules/settings")
        call = [b for doc in self.tf.values() for e in doc.get("module", []) for n, b in e.items() if unq(n) == "settings"]
        (call,) = call
        for name in settings:
            self.assertEqual(call.get(name), "${var.%s}" % name, f"module.settings does not get var.{name}")


class VariableValidations(unittest.TestCase):
    """Runs the root module's real validation rules through `terraform plan`.

    variables.tf holds only variable blocks, so a copy of it on its own is a
    provider-free configuration that Terraform can plan offline.
    """

    BASE = {
        "name": "trips",
        "subnet_ids": ["subnet-0123456789abcdef0"],
        "inputs": ["s3://trips-data/trips/"],
        "results": "s3://trips-data/results/run-42/",
        "agent_url": "https://artifacts.example.com/rangefleet-x86_64-linux",
        "agent_sha256": "0" * 64,
    }

    @classmethod
    def setUpClass(cls):
        cls.dir = Path(tempfile.mkdtemp(prefix="rangefleet-vars-"))
        shutil.copy(ROOT / "variables.tf", cls.dir / "variables.tf")
        cls.env = dict(os.environ, CHECKPOINT_DISABLE="1", TF_IN_AUTOMATION="1",
                       TF_DATA_DIR=str(cls.dir / ".terraform"))
        cls.env.pop("TF_CLI_CONFIG_FILE", None)
        subprocess.run(["terraform", "init", "-backend=false", "-input=false", "-no-color"],
                       cwd=cls.dir, env=cls.env, check=True, capture_output=True)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def plan(self, **overrides):
        values = dict(self.BASE, **overrides)
        (self.dir / "terraform.tfvars.json").write_text(json.dumps(values))
        return subprocess.run(["terraform", "plan", "-input=false", "-no-color", "-lock=false"],
                              cwd=self.dir, env=self.env, capture_output=True, text=True)

    def assert_accepted(self, **overrides):
        r = self.plan(**overrides)
        self.assertEqual(r.returncode, 0, f"{overrides} rejected:\n{r.stdout}{r.stderr}")

    def assert_rejected(self, variable, **overrides):
        r = self.plan(**overrides)
        self.assertNotEqual(r.returncode, 0, f"{overrides} accepted")
        self.assertIn("Invalid value for variable", r.stderr)
        self.assertIn(f"var.{variable}", r.stderr)

    def test_defaults_are_valid(self):
        self.assert_accepted()

    def test_x86_64_types_accepted(self):
        self.assert_accepted(instance_types=["m5.large", "c6i.xlarge", "m7i-flex.large", "r6a.2xlarge", "g5.xlarge"])

    def test_arm64_types_rejected(self):
        for t in ("m6g.large", "t4g.micro", "a1.medium", "c7gn.large", "r8g.large", "x2gd.large", "im4gn.large"):
            with self.subTest(instance_type=t):
                self.assert_rejected("instance_types", instance_types=["m5.large", t])

    def test_tag_rules(self):
        self.assert_accepted(tags={"team": "a: b # c \"d\"", "Name": "worker-{instance_id}"})
        self.assert_rejected("tags", tags={"aws:cost": "x"})
        self.assert_rejected("tags", tags={"has space": "x"})

    def test_urls_and_sha(self):
        self.assert_rejected("agent_sha256", agent_sha256="abc")
        self.assert_rejected("inputs", inputs=["https://example.com/data/"])
        self.assert_rejected("results", results="file:///srv/results/")
        self.assert_rejected("subnet_ids", subnet_ids=[])

    def test_journal_log_group(self):
        self.assert_accepted(journal_log_group={})
        self.assert_accepted(journal_log_group={"name": "/rangefleet/trips", "retention_in_days": 7})
        self.assert_rejected("journal_log_group", journal_log_group={"name": "/rangefleet/trips", "retention_in_days": 10})
        self.assert_rejected("journal_log_group", journal_log_group={"name": "trips logs"})
        self.assert_rejected("journal_log_group", journal_log_group={"kms_key_arn": "alias/logs"})

    def test_lifecycle_hook_floor(self):
        self.assert_rejected("termination_hook_heartbeat_seconds", termination_hook_heartbeat_seconds=60)

    def test_required_lists_refuse_null(self):
        for name in ("subnet_ids", "inputs"):
            with self.subTest(variable=name):
                r = self.plan(**{name: None})
                self.assertNotEqual(r.returncode, 0, f"{name}=null accepted")
                self.assertIn("may not be set to null", r.stderr)

    def test_optional_lists_never_see_null(self):
        # nullable = false with a default: null means the default, and the
        # validations (which would fail on null) pass.
        self.assert_accepted(instance_types=None, security_group_ids=None, tags=None,
                             egress_cidr_blocks=None, s3_kms_key_arns=None,
                             s3_gateway_endpoint_route_table_ids=None, instance_requirements=None)

    def test_new_inputs(self):
        self.assert_accepted(
            instance_types=[],
            instance_requirements={"vcpu_count": {"min": 2, "max": 8}, "memory_mib": {"min": 4096}},
            on_demand_base_capacity=1, on_demand_percentage_above_base_capacity=20,
            security_group_ids=["sg-0123456789abcdef0"],
            iam_role_path="/rangefleet/",
            iam_role_permissions_boundary="arn:aws:iam::123456789012:policy/boundary",
            alarm_sns_topic_arn="arn:aws:sns:us-east-1:123456789012:alerts",
        )
        self.assert_rejected("instance_requirements", instance_requirements={"vcpu_count": {"min": 2}})
        self.assert_rejected("on_demand_percentage_above_base_capacity", on_demand_percentage_above_base_capacity=150)
        self.assert_rejected("security_group_ids", security_group_ids=["default"])
        self.assert_rejected("alarm_sns_topic_arn", alarm_sns_topic_arn="arn:aws:sns:us-east-1:123456789012:a.fifo")
        self.assert_rejected("iam_instance_profile_arn", iam_instance_profile_arn="arn:aws:iam::123456789012:role/x")


if __name__ == "__main__":
    unittest.main(verbosity=2)
