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
# The unit's optional EnvironmentFile=. The drills follow jobs through their entries
# (job_started, job_done), which are debug: turned on as docs/operations.md says.
AGENT_ENV = "/etc/rangefleet/agent.env"
JOB_LINES = "RUST_LOG=info,rangefleet::jobs=debug\n"
SHARED = "/srv/rangefleet"

# Where the module's install_argv puts the binary (terraform/modules/userdata/main.tf).
DEST = "/usr/local/bin/rangefleet"


class TemplateDrift(AssertionError):
    """The template or the module changed in a way this harness does not follow."""


def tf_indent(spaces: int, text: str) -> str:
    """Terraform's indent(): every line but the first gets `spaces` spaces."""
    lines = text.split("\n")
    pad = " " * spaces
    return "\n".join([lines[0]] + [pad + line if line else line for line in lines[1:]])


# The files the module hands the template (terraform/modules/userdata/main.tf), by the
# template variable that carries each.
FILES = {
    "unit": UNIT,
    "failed_unit": FAILED_UNIT,
    "install_script": INSTALL_SCRIPT,
    "catalog": REPO / "agent/systemd/rangefleet.catalog",
}


def install_argv(url: str, sha256: str) -> list[str]:
    """The module's install_argv, read from the module: the fixed arguments it passes
    (every `"--flag", "/path"` pair after `--sha256`), with this run's URL and sha256."""
    module = USERDATA_MODULE.read_text()
    m = re.search(r"install_argv = \[(.*?)\]", module, re.S)
    if not m:
        raise TemplateDrift(f"{USERDATA_MODULE} has no install_argv list; update the harness")
    body = m.group(1)
    if '"/usr/local/sbin/rangefleet-install"' not in body or f'"--dest", "{DEST}"' not in body:
        raise TemplateDrift(f"{USERDATA_MODULE}'s install_argv changed: {body}")
    fixed = re.findall(r'"(--[a-z-]+)",\s*"(/[^"]+)"', body)
    argv = ["/usr/local/sbin/rangefleet-install", "--url", url, "--sha256", sha256]
    for flag, value in fixed:
        argv += [flag, value]
    return argv


def module_vars() -> set[str]:
    """The variables the module passes to templatefile()."""
    module = USERDATA_MODULE.read_text()
    m = re.search(r"templatefile\([^{]*\{(.*?)\n\s*\}\)", module, re.S)
    if not m:
        raise TemplateDrift(f"{USERDATA_MODULE} has no templatefile() call; update the harness")
    return set(re.findall(r"^\s*(\w+)\s*=", m.group(1), re.M))


def file_text(variable: str, agent_config: str) -> str:
    if variable == "agent_config":
        return agent_config
    if variable not in FILES:
        raise TemplateDrift(f"the template uses {variable}, which the harness does not know")
    return FILES[variable].read_text()


# The template's only conditional: journal shipping, off unless the module's
# journal_log_group is set (the drills run without it).
JOURNAL_BLOCK = re.compile(r"^%\{ if journal_config != null ~\}\n.*?^%\{ endif ~\}\n", re.S | re.M)


def template_text() -> str:
    """The template as the module renders it with journal shipping off."""
    return JOURNAL_BLOCK.sub("", TEMPLATE.read_text())


def render(agent_config: str, url: str, sha256: str) -> str:
    """The user-data the module would render for `agent_config` (YAML text)."""
    text = template_text()
    values = {"${jsonencode(install_argv)}": json.dumps(install_argv(url, sha256),
                                                        separators=(",", ":"))}
    for w in write_files():
        if w.encoding == "gz+b64":
            raw = file_text(w.variable.removesuffix("_base64gzip"), agent_config)
            values[f"${{{w.variable}}}"] = base64.b64encode(
                gzip.compress(raw.encode(), mtime=0)).decode()
        else:
            values[f"${{indent(6, {w.variable})}}"] = tf_indent(
                6, file_text(w.variable, agent_config).rstrip("\n")
                if w.variable == "agent_config" else file_text(w.variable, agent_config))
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
    encoding: str


def write_files() -> list[WriteFile]:
    """The template's write_files entries, read from the template itself."""
    text = template_text()
    entries = re.findall(
        r'- path: (\S+)\n\s+owner: (\S+)\n\s+permissions: "(\d+)"\n'
        r"(?:\s+encoding: (\S+)\n)?"
        r"\s+content: (?:\|\n\s+\$\{indent\(6, (\w+)\)\}|\$\{(\w+)\})",
        text,
    )
    found = [WriteFile(p, o, int(m, 8), a or b, enc or "")
             for p, o, m, enc, a, b in entries]
    n_entries = len(re.findall(r"^  - path: ", text, re.M))
    if len(found) != n_entries:
        raise TemplateDrift(f"{TEMPLATE}'s write_files has {n_entries} entries, the harness "
                            f"read {len(found)}: {found}")
    for w in found:
        if w.encoding not in ("", "gz+b64"):
            raise TemplateDrift(f"{w.path}: encoding {w.encoding} is not rendered by the harness")
        base = w.variable.removesuffix("_base64gzip")
        if base != "agent_config" and base not in FILES:
            raise TemplateDrift(f"{w.path} carries {w.variable}, unknown to the harness")
    # journal_config and journal_argv are used only inside the journal-shipping blocks.
    used = {w.variable for w in found} | {"install_argv", "journal_config", "journal_argv"}
    if used != module_vars():
        raise TemplateDrift(f"the module passes {sorted(module_vars())}, the template's "
                            f"write_files and runcmd use {sorted(used)}")
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


FAILED_DROPIN = "/etc/systemd/system/rangefleet-agent-failed.service.d/50-rangefleet-harness.conf"
# Where the failed-agent handler's power-off lands instead of powering the container off.
POWERED_OFF = f"{SHARED}/powered-off"
# Where the handler's own result lands: the unit's ExecStopPost= would power the
# container off when the handler fails, so the harness records the result instead.
HANDLER_RESULT = f"{SHARED}/failed-handler-result"


def failed_dropin(imds_url: str) -> str:
    """The OnFailure= handler's doubles: the same IMDS, and a power-off that leaves a
    mark instead of ending the container (there is no auto-scaling group here, so the
    handler takes its fallback)."""
    return (
        "# tests/systemd: the test doubles, not part of a fleet's install.\n"
        "[Service]\n"
        f"Environment=AWS_EC2_METADATA_SERVICE_ENDPOINT={imds_url}\n"
        f"Environment=\"RANGEFLEET_POWER_OFF_COMMAND=/usr/bin/touch {POWERED_OFF}\"\n"
        "ExecStopPost=\n"
        f"ExecStopPost=/bin/sh -c 'echo \"$SERVICE_RESULT\" > {HANDLER_RESULT}'\n"
        f"ReadWritePaths={SHARED}\n"
    )


def install(c: Container, agent_config: str, url: str, sha256: str, imds_url: str,
            start: bool = True, timeout: float = 120) -> str:
    """Carries out the rendered cloud-config's write_files and runcmd in `c`.
    Returns the install script's stderr (what cloud-init-output.log would hold)."""
    for w in write_files():
        if w.owner != "root:root":
            raise TemplateDrift(f"{w.path} is owned by {w.owner}; the harness writes as root")
        c.write(w.path, file_text(w.variable.removesuffix("_base64gzip"), agent_config),
                w.permissions)
    c.write(DROPIN, dropin(imds_url))
    c.write(FAILED_DROPIN, failed_dropin(imds_url))
    c.write(AGENT_ENV, JOB_LINES)
    argv = install_argv(url, sha256)
    if not start:
        argv.append("--no-start")
    r = c.exec(argv, timeout=timeout, check=False)
    if r.rc != 0:
        raise AssertionError(f"the install script failed in the container:\n{r!r}")
    return r.stderr
