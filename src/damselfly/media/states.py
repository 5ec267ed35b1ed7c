"""Statuses, subtask kinds and the error codes users see (the MPS vocabulary)."""

from __future__ import annotations

from enum import StrEnum


class TaskStatus(StrEnum):
    WAITING = "WAITING"  # queued
    PROCESSING = "PROCESSING"  # a subtask runs
    FINISH = "FINISH"  # nothing runs; `failed` says whether something went wrong


class SubtaskStatus(StrEnum):
    WAITING = "WAITING"
    PROCESSING = "PROCESSING"
    SUCCESS = "SUCCESS"
    FAIL = "FAIL"


class SubtaskType(StrEnum):
    TRANSCODE = "transcode"
    SNAPSHOT = "snapshot"
    SAMPLED_SNAPSHOT = "sampled_snapshot"
    IMAGE_SPRITE = "image_sprite"
    ANIMATED_IMAGE = "animated_image"
    HLS = "hls"
    UNDERSTANDING = "content_understanding"
    REVIEW = "review"
    ENHANCEMENT = "enhancement"


# kinds whose result is data, not files in the output directory
RESULT_ONLY = frozenset({SubtaskType.UNDERSTANDING, SubtaskType.REVIEW})


class ErrorCode(StrEnum):
    CONTENT_MALFORMED = "SourceFileError.ContentMalformed"
    NO_VIDEO = "SourceFileError.NoVideoMedia"
    NOT_ACCESSIBLE = "SourceFileError.DownloadNotAccessible"
    TEMPLATE_NOT_EXIST = "ResourceNotFound.TemplateNotExist"
    TASK_NOT_FOUND = "ResourceNotFound.TaskNotFound"
    ABORTED = "TaskAborted"
    WORKER_STOPPED = "InternalError.WorkerStopped"
    INTERNAL = "InternalError"
