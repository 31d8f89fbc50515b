#!/usr/bin/env python3
"""CDK entry point: `cdk synth -c environmentSuffix=pr42` (see docs/infrastructure.md)."""

import sys

from infra.application import build_app  # importing infra quiets jsii's Node banner (node_env)
from infra.config import ConfigError

# Context comes from cdk.json and -c flags (CDK passes them in through the environment).
try:
    app = build_app()
except ConfigError as exc:  # a bad -c value: one line for the user, not a traceback
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)
app.synth()
