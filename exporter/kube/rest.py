"""Plain JSON calls to the API server, through the official client's ``ApiClient``.

The exporter reads and writes JSON objects (dicts) only, yet the client's generated API
classes import a pydantic model for every type they mention: ``CoreV1Api`` alone loads
about 250 of them, 20 MB of resident memory, for the three calls made on it here (read a
Secret, read a ServiceAccount, create an Event). These calls go through the same
``ApiClient`` as the generated methods do (``param_serialize``, then ``call_api``): the same
configuration (kubeconfig or in-cluster token, TLS, proxy, credentials refreshed when they
expire), connection pool, headers, URL quoting and JSON body, and
``kubernetes.client.exceptions.ApiException`` for an answer outside 2xx, as the generated
methods raise it. Only the model classes are left out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
Timeout = float | tuple[float, float] | None


def call(
    api: k8s.ApiClient,
    method: str,
    path: str,
    *,
    params: Mapping[str, str] | None = None,
    query: Sequence[tuple[str, Any]] = (),
    body: Any = None,
    content_type: str | None = None,
    timeout: Timeout = None,
) -> Any:
    """The answer's JSON. ``path`` may hold ``{name}`` fields, filled from ``params`` and
    quoted as the generated methods quote them; ``query`` keeps only the values set."""
    response = _send(api, method, path, params, query, body, content_type, timeout)
    data: bytes = response.read()
    return json.loads(data) if data else None


def stream(
    api: k8s.ApiClient,
    path: str,
    *,
    params: Mapping[str, str] | None = None,
    query: Sequence[tuple[str, Any]] = (),
    timeout: Timeout = None,
) -> Any:
    """A GET whose answer is read as it comes (a watch): the urllib3 response, unread;
    the caller releases its connection."""
    return _send(api, "GET", path, params, query, None, None, timeout, preload=False).response


def _send(
    api: k8s.ApiClient,
    method: str,
    path: str,
    params: Mapping[str, str] | None,
    query: Sequence[tuple[str, Any]],
    body: Any,
    content_type: str | None,
    timeout: Timeout,
    *,
    preload: bool = True,
) -> Any:
    headers = {"Accept": JSON}
    if content_type is not None:
        headers["Content-Type"] = content_type
    request = api.param_serialize(
        method=method,
        resource_path=path,
        path_params=dict(params or {}),
        query_params=[(k, v) for k, v in query if v is not None],
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    response: Any = api.call_api(*request, _request_timeout=timeout)
    if preload or not 200 <= response.status <= 299:
        response.read()
    if not 200 <= response.status <= 299:
        raise ApiException.from_response(http_resp=response, body=None, data=None)
    return response
