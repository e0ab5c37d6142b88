"""The remote jobs behind ML Commons' ``BATCH_PREDICTION`` tasks of remote models (2.17+).

``_batch_predict`` on a remote model starts a job on the model's service (SageMaker batch
transform, Bedrock model invocation job, OpenAI batch) and indexes a task in state ``RUNNING``
whose ``remote_job`` is the service's create answer plus ``dlq`` (``MLPredictTaskRunner``).
From then on the stored task moves only when ML Commons asks the service: a GET of the task
calls the service's status API, merges the answer into ``remote_job``, sets ``state`` from
the first status field (``status``, ``Status``, ``TransformJobStatus``) that matches one of the
``remote_job.status_regex`` settings, and writes the task back with a new
``last_update_time`` (``GetTaskTransportAction.processTaskResponse``); the ``BATCH_TASK_UPDATE``
job does the same every minute for tasks still ``RUNNING`` or ``CANCELLING``
(``MLBatchTaskUpdateProcessor``). A search shows the task as last written.

The simulator task has one ``RUNNING`` phase (the job queued, then running: ML Commons cannot
tell them apart) and then the final ML Commons state the service's last word maps to.
"""

from __future__ import annotations

import copy
import random
import re
import string
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from typing import Any

from webapp.simulators.core import Phase
from webapp.simulators.core import SimTask

#: Seconds between runs of ML Commons' BATCH_TASK_UPDATE job.
POLL_SECONDS = 60.0
#: ``plugins.ml_commons.remote_job.status_field``'s default.
STATUS_FIELDS = ("status", "Status", "TransformJobStatus")
#: ``plugins.ml_commons.remote_job.status_regex.*``'s defaults, in the order they are tried.
STATE_PATTERNS = (
    ("CANCELLING", re.compile("(stopping|cancelling)", re.IGNORECASE)),
    ("CANCELLED", re.compile("(stopped|cancelled)", re.IGNORECASE)),
    ("COMPLETED", re.compile("(complete|completed|partiallyCompleted)", re.IGNORECASE)),
    ("EXPIRED", re.compile("(expired|timeout)", re.IGNORECASE)),
    ("FAILED", re.compile("(failed)", re.IGNORECASE)),
)
#: Each service's own status word while queued, while running, and for each final state.
WORDS: dict[str, dict[str, str]] = {
    "sagemaker": {
        **{"queued": "InProgress", "running": "InProgress", "COMPLETED": "Completed"},
        **{"FAILED": "Failed", "CANCELLING": "Stopping", "CANCELLED": "Stopped"},
    },
    "bedrock": {
        **{"queued": "Submitted", "running": "InProgress", "COMPLETED": "Completed"},
        **{"FAILED": "Failed", "CANCELLING": "Stopping", "CANCELLED": "Stopped"},
        "EXPIRED": "Expired",
    },
    "openai": {
        **{"queued": "validating", "running": "in_progress", "COMPLETED": "completed"},
        **{"FAILED": "failed", "CANCELLING": "cancelling", "CANCELLED": "cancelled"},
        "EXPIRED": "expired",
    },
}
SERVICES = tuple(WORDS)
#: Seconds a job the service was asked to stop stays stopping before it is stopped.
STOP_SECONDS = 5.0
_ACCOUNT = "802041417063"
_S3 = "s3://offlinebatch"
_ALNUM = string.ascii_letters + string.digits
#: When a job was submitted, started running and ended (epoch seconds; ``None``: not yet).
Moments = tuple[float, float | None, float | None]


@dataclass
class RemoteJob:
    """One task's remote job, and the task document as the index last stored it."""

    service: str
    name: str
    job_id: str
    created_ms: int
    #: ``remote_job`` as stored in the task document.
    stored: dict[str, Any]
    state: str = "RUNNING"
    updated_ms: int = 0
    version: int = 1
    #: Simulator-clock second of the last write (for the minutely update job).
    written_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _alnum(
    rng: random.Random, size: int, alphabet: str = string.ascii_letters + string.digits
) -> str:
    return "".join(rng.choice(alphabet) for _ in range(size))


def start(service: str, rng: random.Random, started_at: float, queued_seconds: float) -> RemoteJob:
    """The job the service creates, with its create answer stored as ``remote_job``; it waits
    ``queued_seconds`` in the service's queue before it runs."""
    created_ms = int(started_at * 1000)
    stamp = datetime.fromtimestamp(started_at, UTC).strftime("%m-%d-%H-%M")
    if service == "sagemaker":
        name = f"SM-offline-batch-transform-{stamp}-{_alnum(rng, 4, string.digits)}"
        job_id = f"arn:aws:sagemaker:us-east-1:{_ACCOUNT}:transform-job/{name}"
        created: dict[str, Any] = {"TransformJobArn": job_id}
    elif service == "bedrock":
        name = f"bedrock-batch-{stamp}"
        job_id = f"arn:aws:bedrock:us-east-1:{_ACCOUNT}:model-invocation-job/" + _alnum(
            rng, 12, string.ascii_lowercase + string.digits
        )
        created = {"jobArn": job_id}
    else:
        name = job_id = f"batch_{_alnum(rng, 24)}"
        created = {}
    job = RemoteJob(service, name, job_id, created_ms, created, updated_ms=created_ms)
    job.extra = {
        "file": f"file-{_alnum(rng, 24)}",
        "records": rng.choice([500, 1000, 4000]),
        "queued_seconds": queued_seconds,
    }
    job.written_at = started_at
    if service == "openai":
        job.stored = _openai(job, "validating", (started_at, None, None))
    job.stored["dlq"] = None
    return job


def _moments(task: SimTask, job: RemoteJob, at: float) -> Moments:
    """When the job was submitted, started running and ended, as of ``at``."""
    history = task.history(at)
    running = task.started_at + job.extra["queued_seconds"]
    # A job that was asked to stop has not ended while it stops.
    ended = history[-1][1] if len(history) > 1 and history[-1][0] != "CANCELLING" else None
    return task.started_at, running if at >= running else None, ended


def word_at(task: SimTask, job: RemoteJob, at: float) -> str:
    """The service's status word at ``at``: the task's one ``RUNNING`` phase is the job's time
    in the queue, then its run; the last phase is the final state."""
    index, _ = task.progress(at)
    if index > 0:
        # Past the one RUNNING phase: stopping (after a cancel) or the final state.
        return WORDS[job.service][task.phases[index].status]
    queued = at < task.started_at + job.extra["queued_seconds"]
    return WORDS[job.service]["queued" if queued else "running"]


def status_answer(task: SimTask, job: RemoteJob, at: float) -> dict[str, Any]:
    """The service's status API answer for the job at simulator time ``at``."""
    word = word_at(task, job, at)
    moments = _moments(task, job, at)
    if job.service == "sagemaker":
        return _sagemaker(job, word, moments)
    if job.service == "bedrock":
        return _bedrock(job, word, moments)
    return _openai(job, word, moments)


def state_for(remote_job: dict[str, Any], current: str) -> str:
    """``GetTaskTransportAction.updateTaskState`` for every status field present."""
    state = current
    for name in STATUS_FIELDS:
        if name in remote_job:
            value = str(remote_job[name])
            state = next((s for s, rx in STATE_PATTERNS if rx.search(value)), state)
    return state


def refresh(task: SimTask, job: RemoteJob, at: float) -> None:
    """What a GET (or the minutely job) writes: the service's answer merged into ``remote_job``,
    the state its status maps to, and ``last_update_time``."""
    job.stored.update(status_answer(task, job, at))
    job.state = state_for(job.stored, job.state)
    job.updated_ms = int(at * 1000)
    job.version += 1
    job.written_at = at


def catch_up(task: SimTask, job: RemoteJob, now: float) -> None:
    """Apply the BATCH_TASK_UPDATE runs due by ``now`` (one a minute while the task is
    ``RUNNING`` or ``CANCELLING``)."""
    while job.state in ("RUNNING", "CANCELLING"):
        due = task.started_at + POLL_SECONDS * (
            int((job.written_at - task.started_at) // POLL_SECONDS) + 1
        )
        if due > now:
            return
        refresh(task, job, due)


def cancel(task: SimTask, job: RemoteJob, at: float) -> tuple[int, dict[str, Any]] | None:
    """Ask the service to stop the job (ML Commons' ``CANCEL_BATCH_PREDICT`` connector action):
    ``None`` when it took the request, else its error (status, body) for a job that has ended.

    ML Commons writes nothing to the task here: the next GET or minutely update reads the
    service's stopping word (``CANCELLING``), later the stopped one (``CANCELLED``). A job
    already stopping takes the request again.
    """
    index, _ = task.progress(at)
    status = task.phases[index].status
    if index > 0 and status != "CANCELLING":
        return 400, _cannot_stop(job, WORDS[job.service][status])
    if index == 0:
        ran = at - task.started_at
        task.phases = [Phase("RUNNING", ran), Phase("CANCELLING", STOP_SECONDS), Phase("CANCELLED")]
        job.extra["stopping_at"] = at
    return None


def _cannot_stop(job: RemoteJob, word: str) -> dict[str, Any]:
    """The service's 400 for a stop request on an ended job (wording not verified against the
    services; the status and the shape of each service's error body are theirs)."""
    if job.service == "sagemaker":
        message = f"Transform job {job.name} is in status {word} and cannot be stopped."
        return {"__type": "ValidationException", "message": message}
    if job.service == "bedrock":
        return {"message": f"The job {job.job_id} is in status {word} and cannot be stopped."}
    error = {"message": f"Cannot cancel a batch with status '{word}'."}
    return {"error": {**error, "type": "invalid_request_error", "param": None, "code": None}}


def stored_remote_job(job: RemoteJob) -> dict[str, Any]:
    return copy.deepcopy(job.stored)


def _iso(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _sagemaker(job: RemoteJob, word: str, moments: Moments) -> dict[str, Any]:
    submitted, running, ended = moments
    answer: dict[str, Any] = {
        "TransformJobName": job.name,
        "TransformJobArn": job.job_id,
        "TransformJobStatus": word,
        "ModelName": "DJL-Text-Embedding-Model-imageforjsonlines",
        "MaxConcurrentTransforms": 1,
        "ModelClientConfig": {"InvocationsTimeoutInSeconds": 600, "InvocationsMaxRetries": 3},
        "MaxPayloadInMB": 6,
        "BatchStrategy": "SingleRecord",
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"{_S3}/msmarco.jsonl"}
            },
            "ContentType": "application/json",
            "CompressionType": "None",
            "SplitType": "Line",
        },
        "TransformOutput": {
            "S3OutputPath": f"{_S3}/output",
            "Accept": "application/json",
            "AssembleWith": "Line",
            "KmsKeyId": "",
        },
        "TransformResources": {"InstanceCount": 1, "InstanceType": "ml.c5.xlarge"},
        "CreationTime": round(submitted, 3),
        "DataProcessing": {"InputFilter": "$.content", "OutputFilter": "$", "JoinSource": "Input"},
    }
    if running is not None:
        answer["TransformStartTime"] = round(running, 3)
    if ended is not None:
        answer["TransformEndTime"] = round(ended, 3)
    if word == "Failed":
        answer["FailureReason"] = "ClientError: See job logs for more information"
    return answer


def _bedrock(job: RemoteJob, word: str, moments: Moments) -> dict[str, Any]:
    submitted, running, ended = moments
    answer: dict[str, Any] = {
        "jobArn": job.job_id,
        "jobName": job.name,
        "modelId": "amazon.titan-embed-text-v2:0",
        "clientRequestToken": job.extra["file"][5:17],
        "roleArn": f"arn:aws:iam::{_ACCOUNT}:role/bedrock-batch-inference",
        "status": word,
        "submitTime": _iso(submitted),
        "lastModifiedTime": _iso(ended or running or submitted),
        "inputDataConfig": {
            "s3InputDataConfig": {"s3InputFormat": "JSONL", "s3Uri": f"{_S3}/bedrock/input.jsonl"}
        },
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": f"{_S3}/bedrock/output/"}},
        "timeoutDurationInHours": 24,
        "jobExpirationTime": _iso(submitted + 86400),
    }
    if ended is not None:
        answer["endTime"] = _iso(ended)
    if word == "Failed":
        answer["message"] = "Input file format is invalid: expected JSONL records with recordId"
    return answer


def _openai(job: RemoteJob, word: str, moments: Moments) -> dict[str, Any]:
    submitted, running, ended = moments
    total = job.extra["records"] if running is not None else 0
    done = total if word == "completed" else total // 2 if running is not None else 0
    end = None if ended is None else int(ended)
    answer: dict[str, Any] = {
        "id": job.job_id,
        "object": "batch",
        "endpoint": "/v1/embeddings",
        "errors": None,
        "input_file_id": job.extra["file"],
        "completion_window": "24h",
        "status": word,
        "output_file_id": f"file-{job.extra['file'][5:][::-1]}" if word == "completed" else None,
        "error_file_id": None,
        "created_at": int(submitted),
        "in_progress_at": None if running is None else int(running),
        "expires_at": int(submitted) + 86400,
        "finalizing_at": end if word == "completed" else None,
        "completed_at": end if word == "completed" else None,
        "failed_at": end if word == "failed" else None,
        "expired_at": end if word == "expired" else None,
        "cancelling_at": _stopping(job, end) if word in ("cancelling", "cancelled") else None,
        "cancelled_at": end if word == "cancelled" else None,
        "request_counts": {"total": total, "completed": done, "failed": 0},
        "metadata": None,
    }
    if word == "failed":
        error = {"code": "invalid_json_line", "message": "This line is not parseable as JSON."}
        answer["errors"] = {"object": "list", "data": [{**error, "param": None, "line": 1}]}
    return answer


def _stopping(job: RemoteJob, end: int | None) -> int | None:
    """When the job was asked to stop: the cancel request's moment, else when it ended."""
    at = job.extra.get("stopping_at")
    return end if at is None else int(at)
