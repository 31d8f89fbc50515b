"""Client configuration for the emulator's tables (SPEC UX6): ``etl local up`` writes a
pyiceberg catalog named ``etl-local`` so pyiceberg's CLI, a pyiceberg script and DuckDB (over a
pyiceberg scan) reach the tables with no arguments.

Two files in the state directory, rewritten at every ``up`` (the emulator's port changes):

- ``.pyiceberg.yaml``: the ``etl-local`` catalog (Glue and S3 on the emulator, its dummy keys);
- ``client.env``: ``PYICEBERG_HOME`` pointing at that folder (``. <state>/client.env``), so a
  user's own ``~/.pyiceberg.yaml`` is never touched.
"""

from __future__ import annotations

from pathlib import Path

from etl_local import state
from etl_local.catalog import LOCAL_CREDENTIALS

CATALOG_NAME = "etl-local"
PYICEBERG_FILE = ".pyiceberg.yaml"
ENV_FILE = "client.env"


def pyiceberg_yaml(endpoint: str, region: str) -> str:
    key, secret = LOCAL_CREDENTIALS
    props = {
        "type": "glue",
        "glue.endpoint": endpoint,
        "glue.region": region,
        "glue.access-key-id": key,
        "glue.secret-access-key": secret,
        "s3.endpoint": endpoint,
        "s3.region": region,
        "s3.access-key-id": key,
        "s3.secret-access-key": secret,
    }
    lines = ["# Written by `etl local up` (rewritten at each start): the emulator's catalog.", "catalog:"]
    lines.append(f"  {CATALOG_NAME}:")
    lines.extend(f"    {k}: {v}" for k, v in props.items())
    return "\n".join(lines) + "\n"


def write_client_config(endpoint: str, region: str, directory: Path | None = None) -> dict[str, str]:
    """Write both files; returns their paths (``pyiceberg_config``, ``env_file``)."""
    folder = directory or state.STATE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    yaml = folder / PYICEBERG_FILE
    yaml.write_text(pyiceberg_yaml(endpoint, region), encoding="utf-8")
    env = folder / ENV_FILE
    env.write_text(
        "# Written by `etl local up`: `. this-file`, then `pyiceberg --catalog etl-local list`.\n"
        f"export PYICEBERG_HOME='{folder}'\n",
        encoding="utf-8",
    )
    return {"pyiceberg_config": str(yaml), "env_file": str(env), "catalog": CATALOG_NAME}
