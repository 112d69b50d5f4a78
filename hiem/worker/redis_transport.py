"""kombu's Redis transport, with a guard so that ``hiem worker`` survives Redis dying while it holds a message.

With celery 5.7.0 + kombu 5.7.0 (the newest releases) Celery's ``on_connection_error_after_connected`` first
``collect()``-s the connection, which detaches the transport (its ``client`` becomes None) but can leave the BRPOP
channel open; closing that channel then restores its unacked messages with a new Redis client, whose
``_connparams`` raised ``AttributeError: 'NoneType' object has no attribute 'hostname'`` (the error of
celery/kombu#582, by another path), and Celery stopped the worker for good ("Unrecoverable error").
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

#: for Celery's ``broker_transport`` setting
TRANSPORT = "hiem.worker.redis_transport:Transport"


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        transport = self.connection
        if transport is None or transport.client is None:
            # The channel outlived its connection. A connection error is what kombu and Celery recover from:
            # the worker reconnects, and the messages it could not restore or ack stay in Redis's unacked hash
            # for the visibility timeout (and hiem's sweeper) to bring back.
            raise RedisConnectionError("the broker connection of this channel is closed")
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)
        return params


class Transport(kombu_redis.Transport):
    Channel = Channel
