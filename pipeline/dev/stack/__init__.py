"""A local S3 endpoint on 127.0.0.1, built on SeaweedFS ``weed mini``.

:class:`LocalS3` owns a child process (tests, demo); :func:`stack_up`, :func:`stack_status` and
:func:`stack_down` manage a detached stack recorded in a state directory (``cxr stack up|env|down``).
We choose every listening port (gRPC is always port + 10000), telemetry is off, WebDAV/Iceberg/Lance
are disabled and unsigned requests get 403. Identities: ``pipeline`` (admin, read/write/list/tagging)
and ``consumer`` (read/list). :meth:`StackInfo.store_config` hands back the store settings of the stack; clients
come from the store package (:func:`pipeline.store.client.make_client`), never from here.
"""

from __future__ import annotations

from pipeline.dev.ports import FORBIDDEN_PORTS, HOST, is_port_free
from pipeline.dev.stack.background import DEFAULT_STACK_DIR, stack_down, stack_status, stack_up
from pipeline.dev.stack.info import DEFAULT_STORE_URI, StackInfo
from pipeline.dev.stack.ports import GRPC_OFFSET, PORT_RANGE, SERVICES, pick_ports
from pipeline.dev.stack.process import READY_TIMEOUT_S, STOP_GRACE_S, LocalS3, find_weed
from pipeline.errors import StackError

__all__ = [
    "DEFAULT_STACK_DIR",
    "DEFAULT_STORE_URI",
    "FORBIDDEN_PORTS",
    "GRPC_OFFSET",
    "HOST",
    "PORT_RANGE",
    "READY_TIMEOUT_S",
    "SERVICES",
    "STOP_GRACE_S",
    "LocalS3",
    "StackError",
    "StackInfo",
    "find_weed",
    "is_port_free",
    "pick_ports",
    "stack_down",
    "stack_status",
    "stack_up",
]
