"""OPS2 on the emulator: a burst of files under admission control (maxFilesInFlight=3).

The stack is synthesized with ``-c maxFilesInFlight=3``; 30 small files land at once. The S3 rule
buffers every event and wakes StartFiles; the relay fires the 1-minute schedule every 0.2 s
(compressed time; the execution-end rule is not delivered by the emulator). A sampler polls
``ListExecutions`` throughout and records how many executions are RUNNING.
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from etl_cli.pipeline import Pipeline
from etl_local.datagen import generate_csv
from etl_local.deploy import LOCAL_SUFFIX, deploy, synth_primary_template
from etl_local.emulator import Emulator
from etl_local.harness import local_session

from .conftest import SMALL_CHUNK, WAIT_TIMEOUT, Stack

pytestmark = pytest.mark.e2e

LIMIT = 3
FILES = 30


@pytest.fixture(scope="module")
def admission_template() -> dict[str, Any]:
    return synth_primary_template(LOCAL_SUFFIX, context={"maxFilesInFlight": str(LIMIT)})


@pytest.fixture
def small_stack(emulator: Emulator, admission_template: dict[str, Any]) -> Iterator[Stack]:
    emulator.reset()
    assert emulator.relay is not None
    interval = emulator.relay.schedule_interval
    emulator.relay.schedule_interval = 0.2
    session = local_session()
    outputs = deploy(
        admission_template, session, emulator.endpoint, chunk_size_bytes=SMALL_CHUNK, stack_name="e2e"
    )
    st = Stack(emulator, Pipeline(session, outputs))
    try:
        yield st
    finally:
        emulator.relay.schedule_interval = interval
        deadline = time.monotonic() + WAIT_TIMEOUT
        while time.monotonic() < deadline and any(e["status"] == "RUNNING" for e in st.executions()):
            time.sleep(0.1)
        emulator.reset()


class RunningSampler:
    """Polls ListExecutions(RUNNING) on its own thread; keeps (time, count) samples."""

    def __init__(self, st: Stack) -> None:
        self.st = st
        self.samples: list[tuple[float, int]] = []
        self.full = threading.Event()  # set once LIMIT executions were seen RUNNING together
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        sfn = self.st.pipeline.client("stepfunctions")
        t0 = time.monotonic()
        while not self._stop.is_set():
            running = sfn.list_executions(
                stateMachineArn=self.st.outputs.state_machine_arn, statusFilter="RUNNING"
            )["executions"]
            self.samples.append((time.monotonic() - t0, len(running)))
            if len(running) >= LIMIT:
                self.full.set()
            self._stop.wait(0.02)

    def __enter__(self) -> RunningSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_OPS2_burst_of_30_files_never_more_than_3_running_all_succeed_once(
    small_stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = small_stack
    # On a quiet machine a 200-row file finishes before StartFiles admits the next one, so the
    # chunks wait until the sampler has seen every slot taken (or 10 s: admission that never
    # fills the slots fails the test below). Afterwards files take different times (0, 0.3 or
    # 0.6 s more per chunk), so executions end one by one and StartFiles often finds one or two
    # slots free, not only all three.
    from etl.handlers import process_chunk

    real = process_chunk.handler
    sampler = RunningSampler(st)

    def uneven(event: Any, context: Any = None) -> Any:
        sampler.full.wait(timeout=10)
        name = str(event["file"].get("original_key", ""))
        time.sleep(0.3 * (sum(name.encode()) % 3))
        return real(event, context)

    monkeypatch.setattr(process_chunk, "handler", uneven)
    env = st.pipeline.client("lambda").get_function_configuration(
        FunctionName=st.outputs.functions.get("StartFiles") or f"etl-start-files-{LOCAL_SUFFIX}"
    )["Environment"]["Variables"]
    assert env["MAX_FILES_IN_FLIGHT"] == str(LIMIT)  # the context value reached the starter
    paths = []
    for i in range(FILES):
        path = tmp_path / f"burst-{i:02d}.csv"
        generate_csv(path, rows=200, seed=100 + i)
        paths.append(path)

    started = time.monotonic()
    with sampler:
        # All 30 land at once (8 concurrent uploads).
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            infos = list(pool.map(lambda p: st.upload(p, "default"), paths))
        file_ids = [i["file_id"] for i in infos]
        assert len(set(file_ids)) == FILES
        reports = [st.wait(fid) for fid in file_ids]
        st.wait_all_executions_stopped(FILES)
    wall = time.monotonic() - started

    counts = [c for _, c in sampler.samples]
    assert len(counts) > 50, "the sampler must have watched the whole burst"
    assert max(counts) <= LIMIT, f"up to {max(counts)} executions ran at once (limit {LIMIT})"
    assert max(counts) == LIMIT, "the burst should have filled every slot"
    assert [r.status for r in reports] == ["SUCCEEDED"] * FILES, [r.error for r in reports if r.error]

    # Exactly once: one execution per file, each SUCCEEDED, one result message per file.
    executions = st.executions()
    assert len(executions) == FILES
    assert {e["status"] for e in executions} == {"SUCCEEDED"}
    inputs = [
        json.loads(st.sfn.describe_execution(executionArn=e["executionArn"])["input"]) for e in executions
    ]
    keys = sorted(i["detail"]["object"]["key"] for i in inputs)
    assert keys == sorted(i["key"] for i in infos)
    # One successful Finalize per file. Files committing to the same Iceberg table at the same
    # moment can conflict: a commit that still loses after its bounded retries raises
    # TransientError and Step Functions retries the Task (SPEC DATA2), so extra attempts may
    # exist, and only of that kind.
    finalize = st.calls("Finalize")
    assert sorted(c.event["file"]["file_id"] for c in finalize if c.error_type is None) == sorted(file_ids)
    assert {c.error_type for c in finalize if c.error_type is not None} <= {"TransientError"}
    results: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while len(results) < FILES and time.monotonic() < deadline:
        batch = st.sqs.receive_message(QueueUrl=st.outputs.results_queue_url, MaxNumberOfMessages=10)
        for m in batch.get("Messages", []):
            results.append(json.loads(m["Body"]))
            st.sqs.delete_message(QueueUrl=st.outputs.results_queue_url, ReceiptHandle=m["ReceiptHandle"])
    assert sorted(r["file_id"] for r in results) == sorted(file_ids)
    # The buffer is empty and nothing went to a dead-letter queue.
    buffer_url = st.sqs.get_queue_url(QueueName=f"etl-buffer-{LOCAL_SUFFIX}")["QueueUrl"]
    attrs = st.sqs.get_queue_attributes(QueueUrl=buffer_url, AttributeNames=["All"])["Attributes"]
    assert (
        attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
    )
    print(f"\nOPS2 burst: {FILES} files, limit {LIMIT}, max running {max(counts)}, {wall:.1f} s")
