"""Installs the agent in the container as a fleet instance gets it.

On an instance, terraform/modules/userdata renders cloud-init/cloud-config.yaml.tftpl
(the config, the unit, the install script), cloud-init writes its `write_files` and
runs its `runcmd`: /usr/local/sbin/rangefleet-install, which downloads the binary,
checks its sha256, installs the unit and runs `systemctl enable --now --no-block`.

Here the same template text is rendered with the same substitutions (Terraform's
`indent` and `jsonencode`), served as user-data by imds-mock (the agent reads its config
from there, as on an instance), and its write_files and runcmd are carried out in the
container with the paths and permissions the template gives. The one addition is a
drop-in, written before runcmd, that points the agent at the test doubles: the
imds-mock endpoint (never 169.254.169.254) and write access to /srv/rangefleet, where
the drill's SQLite queue and file:// store live.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from dataclasses import dataclass
from pathlib import Path

from .container import Container

REPO = Path(__file__).resolve().parents[3]
TEMPLATE = REPO / "cloud-init/cloud-config.yaml.tftpl"
UNIT = REPO / "agent/systemd/rangefleet-agent.service"
# The agent unit's OnFailure= handler: a gz+b64 write_files entry beside UNIT_SRC.
FAILED_UNIT = REPO / "agent/systemd/rangefleet-agent-failed.service"
INSTALL_SCRIPT = REPO / "cloud-init/install-agent.sh"
USERDATA_MODULE = REPO / "terraform/modules/userdata/main.tf"

UNIT_NAME = "rangefleet-agent.service"
DROPIN = "/etc/systemd/system/rangefleet-agent.service.d/50-rangefleet-harness.conf"
SHARED = "/srv/rangefleet"

# The module's install_argv (terraform/modules/userdata/main.tf); checked below.
DEST = "/usr/local/bin/rangefleet"
UNIT_SRC = "/usr/local/share/rangefleet/rangefleet-agent.service"


class TemplateDrift(AssertionError):
    """The template or the module changed in a way this harness does not follow."""


def tf_indent(spaces: int, text: str) -> str:
    """Terraform's indent(): every line but the first gets `spaces` spaces."""
    lines = text.split("\n")
    pad = " " * spaces
    return "\n".join([lines[0]] + [pad + line if line else line for line in lines[1:]])


def install_argv(url: str, sha256: str) -> list[str]:
    module = USERDATA_MODULE.read_text()
    for pair in (f'"--dest", "{DEST}"', f'"--unit-src", "{UNIT_SRC}"',
                 '"/usr/local/sbin/rangefleet-install"'):
        if pair not in module:
            raise TemplateDrift(f"{USERDATA_MODULE} no longer has {pair}; update the harness")
    return ["/usr/local/sbin/rangefleet-install", "--url", url, "--sha256", sha256,
            "--dest", DEST, "--unit-src", UNIT_SRC]


def render(agent_config: str, url: str, sha256: str) -> str:
    """The user-data the module would render for `agent_config` (YAML text)."""
    text = TEMPLATE.read_text()
    values = {
        "${indent(6, agent_config)}": tf_indent(6, agent_config.rstrip("\n")),
        "${indent(6, unit)}": tf_indent(6, UNIT.read_text()),
        "${indent(6, install_script)}": tf_indent(6, INSTALL_SCRIPT.read_text()),
        "${failed_unit_base64gzip}": base64.b64encode(
            gzip.compress(FAILED_UNIT.read_bytes())).decode(),
        "${jsonencode(install_argv)}": json.dumps(install_argv(url, sha256),
                                                  separators=(",", ":")),
    }
    unknown = set(re.findall(r"\$\{[^}]*\}|%\{[^}]*\}", text)) - set(values)
    if unknown:
        raise TemplateDrift(f"{TEMPLATE} has template expressions the harness does not "
                            f"render: {sorted(unknown)}")
    for placeholder, value in values.items():
        if placeholder not in text:
            raise TemplateDrift(f"{TEMPLATE} has no {placeholder}; update the harness")
        # Substituted values are not templates themselves (the install script's ${…}).
        text = text.replace(placeholder, value)
    return text


@dataclass
class WriteFile:
    path: str
    owner: str
    permissions: int
    variable: str


def write_files() -> list[WriteFile]:
    """The template's write_files entries, read from the template itself."""
    text = TEMPLATE.read_text()
    entries = re.findall(
        r'- path: (\S+)\n\s+owner: (\S+)\n\s+permissions: "(\d+)"\n\s+content: \|\n'
        r"\s+\$\{indent\(6, (\w+)\)\}",
        text,
    )
    found = [WriteFile(p, o, int(m, 8), v) for p, o, m, v in entries]
    if {w.variable for w in found} != {"agent_config", "unit", "install_script"}:
        raise TemplateDrift(f"{TEMPLATE}'s write_files changed: {found}")
    if "runcmd:\n  - ${jsonencode(install_argv)}" not in text:
        raise TemplateDrift(f"{TEMPLATE}'s runcmd changed")
    return found


def dropin(imds_url: str) -> str:
    return (
        "# tests/systemd: the test doubles, not part of a fleet's install.\n"
        "[Service]\n"
        f"Environment=AWS_EC2_METADATA_SERVICE_ENDPOINT={imds_url}\n"
        f"ReadWritePaths={SHARED}\n"
    )


def install(c: Container, agent_config: str, url: str, sha256: str, imds_url: str,
            start: bool = True, timeout: float = 120) -> str:
    """Carries out the rendered cloud-config's write_files and runcmd in `c`.
    Returns the install script's stderr (what cloud-init-output.log would hold)."""
    contents = {
        "agent_config": agent_config,
        "unit": UNIT.read_text(),
        "install_script": INSTALL_SCRIPT.read_text(),
    }
    for w in write_files():
        if w.owner != "root:root":
            raise TemplateDrift(f"{w.path} is owned by {w.owner}; the harness writes as root")
        c.write(w.path, contents[w.variable], w.permissions)
    c.write(UNIT_SRC.rsplit("/", 1)[0] + "/" + FAILED_UNIT.name, FAILED_UNIT.read_text(), 0o644)
    c.write(DROPIN, dropin(imds_url))
    argv = install_argv(url, sha256)
    if not start:
        argv.append("--no-start")
    r = c.exec(argv, timeout=timeout, check=False)
    if r.rc != 0:
        raise AssertionError(f"the install script failed in the container:\n{r!r}")
    return r.stderr
