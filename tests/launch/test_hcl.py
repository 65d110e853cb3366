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
        mods = [m for doc in self.tf.values() for entry in doc.get("module", []) for m in entry.items()]
        (name, body), = [(unq(n), b) for n, b in mods]
        self.assertEqual(name, "userdata")
        self.assertEqual(unq(body["source"]), "./modules/userdata")

    def test_no_wildcard_action_or_resource(self):
        docs = [(n, b) for t, n, b in blocks(self.tf, "data") if t == "aws_iam_policy_document"]
        self.assertGreaterEqual(len(docs), 2)
        seen = 0
        for name, body in docs:
            for st, _ in statements(body):
                seen += 1
                for action in as_list(st.get("actions", [])):
                    self.assertNotIn("*", action, f"{name}: wildcard action {action}")
                for res in as_list(st.get("resources", [])):
                    self.assertNotEqual(res, "*", f"{name}: resource *")
                self.assertNotIn("not_actions", st, f"{name}: NotAction is a wildcard in disguise")
                self.assertNotIn("not_resources", st, f"{name}: NotResource is a wildcard in disguise")
        self.assertGreater(seen, 5)
        # No inline JSON policies that would dodge the checks above.
        self.assertNotRegex(self.text, r'"Action"\s*[:=]\s*"\*"')
        self.assertNotRegex(self.text, r'"Resource"\s*[:=]\s*"\*"')

    def test_s3_access_is_scoped(self):
        (body,) = [b for t, n, b in blocks(self.tf, "data") if (t, n) == ("aws_iam_policy_document", "agent")]
        by_sid = {unq(st["sid"]): st for st, _ in statements(body)}
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

    def test_ssm_is_optional(self):
        att = resource(self.tf, "aws_iam_role_policy_attachment", "ssm")
        self.assertEqual(att["count"], "${var.enable_ssm ? 1 : 0}")
        self.assertIn("AmazonSSMManagedInstanceCore", att["policy_arn"])

    def test_spot_asg(self):
        asg = resource(self.tf, "aws_autoscaling_group", "agent")
        self.assertEqual(asg["min_size"], 0)
        self.assertIs(asg["capacity_rebalance"], True)
        (mip,) = asg["mixed_instances_policy"]
        (dist,) = mip["instances_distribution"]
        self.assertEqual(dist["on_demand_base_capacity"], 0)
        self.assertEqual(dist["on_demand_percentage_above_base_capacity"], 0)
        self.assertEqual(unq(dist["spot_allocation_strategy"]), "price-capacity-optimized")
        (lt,) = mip["launch_template"]
        (spec,) = lt["launch_template_specification"]
        self.assertEqual(spec["version"], "${aws_launch_template.agent.latest_version}")
        (hook,) = asg["initial_lifecycle_hook"]
        self.assertEqual(unq(hook["lifecycle_transition"]), "autoscaling:EC2_INSTANCE_TERMINATING")
        self.assertEqual(unq(hook["default_result"]), "CONTINUE")
        self.assertEqual(hook["heartbeat_timeout"], "${var.termination_hook_heartbeat_seconds}")
        (refresh,) = asg["instance_refresh"]
        self.assertEqual(unq(refresh["strategy"]), "Rolling")

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
        for path, need_validation in ((ROOT, True), (USERDATA, False)):
            for doc in load_dir(path).values():
                for entry in doc.get("variable", []):
                    for name, body in entry.items():
                        name = unq(name)
                        self.assertTrue(unq(body.get("description", "")), f"{path.name}: {name} has no description")
                        self.assertIn("type", body, f"{path.name}: {name} has no type")
                        if need_validation:
                            self.assertIn("validation", body, f"{name} has no validation")


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

    def test_lifecycle_hook_floor(self):
        self.assert_rejected("termination_hook_heartbeat_seconds", termination_hook_heartbeat_seconds=60)


if __name__ == "__main__":
    unittest.main(verbosity=2)
