"""Mixpeek's task enums, as the python SDK 1.3.783 (generated from OpenAPI 0.82) has them.

A list filter naming any of these is accepted; anything else is a 422 (PROVIDERS.md part 3).
"""

from __future__ import annotations

#: ``TaskStatusEnum``: task progress words and the entity lifecycle words the enum shares.
STATUS_WORDS = (
    "PENDING",
    "QUEUED",
    "IN_PROGRESS",
    "PROCESSING",
    "COMPLETED",
    "COMPLETED_WITH_ERRORS",
    "FAILED",
    "CANCELED",
    "INTERRUPTED",
    "UNKNOWN",
    "SKIPPED",
    "DRAFT",
    "ACTIVE",
    "ARCHIVED",
    "SUSPENDED",
    "DEACTIVATED",
)

#: ``TaskType`` values (lower case on the wire; the enum *names* are upper case).
TASK_TYPES = (
    "api_namespaces_create",
    "api_namespaces_delete",
    "api_namespaces_snapshot_create",
    "api_namespaces_snapshot_restore",
    "api_namespaces_migrations_run",
    "api_buckets_objects_create",
    "api_buckets_delete",
    "api_buckets_batches_process",
    "api_buckets_batches_submit",
    "api_buckets_uploads_create",
    "api_buckets_uploads_confirm",
    "api_buckets_uploads_batch_confirm",
    "api_collections_documents_create",
    "api_collections_documents_bulk_update",
    "api_collections_documents_bulk_delete",
    "api_collections_reembed",
    "api_collections_extraction_artifacts",
    "api_taxonomies_create",
    "api_taxonomies_execute",
    "api_taxonomies_materialize",
    "api_evaluations_run",
    "api_evaluations_dataset_create",
    "api_retrievers_publish",
    "api_manifest_apply",
    "api_retrievers_execute",
    "api_collections_export",
    "api_collections_trigger",
    "engine_feature_extractor_run",
    "engine_inference_run",
    "engine_object_processing",
    "engine_cluster_build",
    "thumbnail",
    "video_segment",
    "audio_segment",
    "converted_video",
    "materialize",
    "plugin_custom",
    "model_custom",
)

#: ``FilterOperator``: the operators a filter condition may name.
FILTER_OPERATORS = (
    "eq", "ne", "gt", "lt", "gte", "lte", "in", "nin", "contains", "starts_with", "ends_with",
    "regex", "exists", "is_null", "text", "phrase", "words", "geo_radius", "geo_bounding_box",
    "geo_polygon",
)  # fmt: skip

#: ``ListTasksRequest``'s keys, plus ``include_total``, which the list also takes in the body
#: (``PaginationResponse.total``: "in the body or as ?include_total=true"). Since 2026-11-02
#: any other key is refused with a 422 ``extra_forbidden`` naming these.
BODY_KEYS = ("status", "task_type", "filters", "sort", "search", "include_total")
