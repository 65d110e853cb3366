"""terraform/README.md's Inputs and Outputs tables match variables.tf and outputs.tf.

Run with a Python that has python-hcl2 (scripts/test-launch sets one up):

    python tests/launch/test_readme.py

Fails on drift: a variable or output missing from a table or listed but gone,
a type that differs, or a literal default (one in backticks) that differs from
the default in variables.tf. A default written in words ("10 x86_64 types")
is not compared, but the variable must then have a default; "—" means
required (no default).
"""

import json
import re
import unittest
from pathlib import Path

import hcl2

REPO = Path(__file__).resolve().parents[2]
ROOT = REPO / "terraform"
README = ROOT / "README.md"


def unq(value):
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def deep_unq(value):
    """python-hcl2 keeps the quotes of string literals, also inside lists and maps."""
    if isinstance(value, list):
        return [deep_unq(v) for v in value]
    if isinstance(value, dict):
        return {unq(k): deep_unq(v) for k, v in value.items()}
    return unq(value)


def load(name):
    with (ROOT / name).open() as fh:
        return hcl2.load(fh)


def hcl_variables():
    out = {}
    for entry in load("variables.tf").get("variable", []):
        for name, body in entry.items():
            out[unq(name)] = body
    return out


def hcl_outputs():
    return {unq(name) for entry in load("outputs.tf").get("output", []) for name in entry}


def section(text, title):
    """The lines of a '## title' section, up to the next '## ' heading."""
    m = re.search(rf"(?ms)^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text)
    if not m:
        raise AssertionError(f"README has no '## {title}' section")
    return m.group(1).splitlines()


def table_rows(lines):
    """Cells of each body row of the first Markdown table in lines."""
    rows = [l for l in lines if l.startswith("|")]
    if len(rows) < 3:
        raise AssertionError("no table")
    return [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows[2:]]


def names_in(cell):
    return re.findall(r"`([a-z0-9_]+)`", cell)


def hcl_type(body):
    t = body["type"]
    if isinstance(t, str) and t.startswith("${") and t.endswith("}"):
        t = t[2:-1]
    return t


def literal(cell):
    """The Python value of a backticked literal default, or a sentinel when it is prose."""
    m = re.fullmatch(r"`([^`]*)`", cell)
    if not m:
        return PROSE
    try:
        return json.loads(m.group(1))
    except ValueError:
        return PROSE


PROSE = object()


class ReadmeTables(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        text = README.read_text()
        cls.inputs = {}
        for row in table_rows(section(text, "Inputs")):
            (name,) = names_in(row[0])
            cls.inputs[name] = row
        cls.outputs = [n for row in table_rows(section(text, "Outputs")) for n in names_in(row[0])]
        cls.variables = hcl_variables()

    def test_inputs_table_lists_every_variable_once(self):
        self.assertEqual(len(self.inputs), len(set(self.inputs)))
        missing = sorted(set(self.variables) - set(self.inputs))
        extra = sorted(set(self.inputs) - set(self.variables))
        self.assertEqual(missing, [], f"variables missing from README Inputs: {missing}")
        self.assertEqual(extra, [], f"README Inputs lists unknown variables: {extra}")

    def test_input_types(self):
        for name, row in self.inputs.items():
            if name not in self.variables:
                continue
            want = hcl_type(self.variables[name])
            got = row[1]
            with self.subTest(variable=name):
                if want.startswith("object("):
                    self.assertEqual(got, "object")
                else:
                    self.assertEqual(got, want)

    def test_input_defaults(self):
        for name, row in self.inputs.items():
            if name not in self.variables:
                continue
            body, cell = self.variables[name], row[2]
            with self.subTest(variable=name):
                if cell == "—":
                    self.assertNotIn("default", body, f"README says {name} is required")
                    continue
                self.assertIn("default", body, f"README gives {name} a default, variables.tf none")
                value = literal(cell)
                if value is PROSE:
                    continue
                self.assertEqual(value, deep_unq(body["default"]))

    def test_outputs_table_lists_every_output_once(self):
        self.assertEqual(len(self.outputs), len(set(self.outputs)), "an output is listed twice")
        have = hcl_outputs()
        self.assertEqual(sorted(have - set(self.outputs)), [], "outputs missing from README Outputs")
        self.assertEqual(sorted(set(self.outputs) - have), [], "README Outputs lists unknown outputs")


if __name__ == "__main__":
    unittest.main(verbosity=2)
