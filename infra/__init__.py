"""The CDK app: one construct per module, composed by stack.py.

Importing any module here first quiets jsii's Node end-of-life banner (see node_env.py): every
process that loads the CDK (``cdk synth`` via app.py, tests, ``etl local``) imports infra first.
"""

from infra.node_env import quiet_jsii

quiet_jsii()
