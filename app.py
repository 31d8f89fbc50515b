#!/usr/bin/env python3
"""CDK entry point: `cdk synth -c environmentSuffix=pr42` (see docs/infrastructure.md)."""

from infra.application import build_app

# Context comes from cdk.json and -c flags (CDK passes them in through the environment).
build_app().synth()
