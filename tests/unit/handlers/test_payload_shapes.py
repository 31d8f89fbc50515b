"""DX1: what the handlers actually pass and store has the shapes etl/payloads.py declares.

mypy (``make lint``: ``mypy --strict etl``) checks the code against the TypedDicts; this
checks the TypedDicts against the running code: a key a handler adds, drops or retypes
without changing etl/payloads.py fails here."""

from __future__ import annotations

from typing import Any, ForwardRef

from etl import payloads

SIMPLE = {
    "str": (str,),
    "int": (int,),
    "bool": (bool,),
    "float": (float, int),
    "str | None": (str, type(None)),
    "int | None": (int, type(None)),
    "list[str]": (list,),
}


def _annotation(value: Any) -> str:
    if isinstance(value, ForwardRef):
        return value.__forward_arg__
    return value if isinstance(value, str) else getattr(value, "__name__", repr(value))


def _problems(shape: Any, value: Any, where: str) -> list[str]:
    """Keys outside the shape, required keys missing, simple-typed values of another type."""
    if not isinstance(value, dict):
        return [f"{where}: not a dict: {value!r}"]
    hints = {k: _annotation(v) for k, v in shape.__annotations__.items()}
    found = [f"{where}: unknown key {k!r}" for k in sorted(set(value) - set(hints))]
    found += [f"{where}: missing {k!r}" for k in sorted(shape.__required_keys__ - set(value))]
    for key, hint in hints.items():
        types = SIMPLE.get(hint)
        if key in value and types is not None:
            ok = isinstance(value[key], types) and not (types == (int,) and isinstance(value[key], bool))
            if not ok:
                found.append(f"{where}: {key}={value[key]!r} is not {hint}")
    return found


def test_DX1_the_success_path_matches_the_declared_shapes(chain: Any, etl_aws: Any) -> None:
    run = chain.upload_and_run("incoming/default/tx.csv", chain.make_csv(200, bad=(5,)))
    assert run.error is None, run.failure
    state = run.state
    problems = _problems(payloads.FileRef, state["file"], "$.file")
    problems += _problems(payloads.HeaderInfo, state["header"], "$.header")
    problems += _problems(payloads.Plan, state["plan"], "$.plan")
    assert len(state["plan"]["chunks"]) > 1
    for entry in state["plan"]["chunks"]:
        problems += _problems(payloads.ChunkEntry, entry, "$.plan.chunks[]")
    for result in run.chunk_results:
        problems += _problems(payloads.ChunkCounts, result, "ProcessChunk result")
    problems += _problems(payloads.FileResult, state["result"], "$.result")
    fid = state["file"]["file_id"]
    item = etl_aws.repo.get_file(fid)
    problems += _problems(payloads.FileItem, item, "file item")
    problems += _problems(payloads.FileResult, item["result"], "file item result")
    for chunk in etl_aws.repo.list_chunks(fid):
        problems += _problems(payloads.ChunkItem, chunk, "chunk item")
    assert problems == []


def test_DX1_the_failure_path_matches_the_declared_shapes(chain: Any, etl_aws: Any) -> None:
    run = chain.upload_and_run("incoming/default/tx.csv", b"not,the,header\n1,2,3\n")
    assert run.error is not None and run.failure is not None
    problems = _problems(payloads.FailureResult, run.failure, "$.failure")
    problems += _problems(payloads.AlertAttributes, run.failure["attributes"], "$.failure.attributes")
    problems += _problems(payloads.FileItem, etl_aws.repo.get_file(run.failure["file_id"]), "file item")
    assert problems == []


def test_DX1_the_checker_sees_drift() -> None:
    entry = {"chunk_id": "CHUNK#00001", "index": "1", "key": "k", "start": 0, "end": 10, "extra": 1}
    assert _problems(payloads.ChunkEntry, entry, "e") == [
        "e: unknown key 'extra'",
        "e: missing 'first_line'",
        "e: index='1' is not int",
    ]
