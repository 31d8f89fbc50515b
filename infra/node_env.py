"""The environment every process that loads the CDK (jsii's Node runtime) runs with.

jsii prints an end-of-life banner when Node is older than it supports (this machine: Node 20),
and silences it only when ``JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION`` is a
comma-separated list that holds the running Node *major* version (``"1"`` silences nothing).
:func:`jsii_quiet_env` computes that value from ``node --version``; it is applied by
``app.py`` (``cdk synth``), ``etl`` (its in-process synth), ``infra/template_tools.py``
(tests) and, through ``node -p``, the Makefile.

Never imports aws_cdk: jsii reads the variable when it starts its Node child, so this must
run before the first ``import aws_cdk``.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess

END_OF_LIFE = "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"
DEPRECATED = "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION"


@functools.lru_cache(maxsize=1)
def node_major() -> str | None:
    """The major version of the ``node`` on PATH (``"20"``), or None without a usable node."""
    node = os.environ.get("JSII_NODE") or shutil.which("node")
    if not node:
        return None
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.match(r"v?(\d+)\.", out.stdout.strip())
    return m.group(1) if m else None


def with_major(current: str | None, major: str) -> str:
    """``current`` (a comma-separated list, possibly empty or a stray ``"1"``) plus ``major``."""
    items = [v.strip() for v in (current or "").split(",") if v.strip()]
    if major not in items:
        items.append(major)
    return ",".join(items)


def jsii_quiet_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The variables to add to ``environ`` (default: this process's) so jsii stays quiet."""
    environ = dict(os.environ if environ is None else environ)
    updates = {DEPRECATED: environ.get(DEPRECATED) or "1"}
    major = node_major()
    if major:
        updates[END_OF_LIFE] = with_major(environ.get(END_OF_LIFE), major)
    return updates


def quiet_jsii() -> None:
    """Set :func:`jsii_quiet_env` in this process (before the first ``import aws_cdk``)."""
    os.environ.update(jsii_quiet_env())


if __name__ == "__main__":  # `python -m infra.node_env`: the value, for shells
    print(jsii_quiet_env().get(END_OF_LIFE, ""))
