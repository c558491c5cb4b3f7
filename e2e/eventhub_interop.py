#!/usr/bin/env python3
"""Drive the Event Hubs stand-in with the official Python SDK (azure-eventhub, pure-Python AMQP).

Used by tests/eventhub_python.rs so that the stand-in is exercised by a second official client,
not only by the Rust SDK. Connection strings use emulator mode (`UseDevelopmentEmulator=true`,
`Endpoint=sb://127.0.0.1:PORT`): plain AMQP, no TLS.

    eventhub_interop.py publish CONN PARTITION KEY COUNT
        A batch of COUNT events to partition PARTITION and a batch of COUNT events with partition
        key KEY, each event with application properties. Prints {"partition": n, "key": n}.

    eventhub_interop.py receive CONN GROUP PARTITION FROM_SEQUENCE EXPECTED
        Hub and partition properties, then the partition's events from the start ("-1") and
        after sequence number FROM_SEQUENCE (exclusive), each with EventHubConsumerClient.
        receive_batch. Checks that sequence numbers, offsets and enqueued times come typed and
        in order, then prints everything as JSON for the Rust test to compare with the stand-in.

Exit status: 0 on success, 1 when a check fails (the reason on stderr), 3 when azure-eventhub
cannot be imported.
"""

import json
import socket
import sys
import threading
import time
from datetime import datetime

try:
    from azure.eventhub import EventData, EventHubConsumerClient, EventHubProducerClient
    from azure.eventhub._pyamqp import _transport as pyamqp_transport
except ImportError as err:  # the Rust test skips (or fails in CI) on this status
    print(f"azure-eventhub is not importable: {err}", file=sys.stderr)
    sys.exit(3)

RECEIVE_TIMEOUT_S = 30


def _loopback_safe_socket_defaults(self, sock):
    """Client-side workaround, not a service behaviour: pyamqp reads every TCP option back with
    getsockopt and writes it again; on loopback (MTU 64 KiB) the TCP_MAXSEG it reads can be
    32768, which Linux refuses to set (EINVAL, "OSError 22"), so connecting fails at random.
    Upstream removed the read-back (Azure/azure-sdk-for-python PR 45418); this does the same:
    only the SDK's explicit defaults are applied."""
    del self, sock
    return {
        getattr(socket, name): value
        for name, value in pyamqp_transport.DEFAULT_SOCKET_SETTINGS.items()
        if hasattr(socket, name)
    }


pyamqp_transport._AbstractTransport._get_tcp_socket_defaults = _loopback_safe_socket_defaults


class CheckFailed(Exception):
    pass


def check(cond, message):
    if not cond:
        raise CheckFailed(message)


def publish(conn, partition, key, count):
    producer = EventHubProducerClient.from_connection_string(conn)
    with producer:
        by_partition = producer.create_batch(partition_id=partition)
        for n in range(count):
            event = EventData(json.dumps({"interop": "partition", "n": n}))
            event.properties = {"source": "python-sdk", "n": n}
            by_partition.add(event)
        producer.send_batch(by_partition)
        by_key = producer.create_batch(partition_key=key)
        for n in range(count):
            event = EventData(json.dumps({"interop": "key", "n": n}))
            event.properties = {"source": "python-sdk", "n": n, "key": key}
            by_key.add(event)
        producer.send_batch(by_key)
    print(json.dumps({"partition": len(by_partition), "key": len(by_key)}))


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _event(e):
    check(isinstance(e.sequence_number, int), f"sequence number {e.sequence_number!r} is not an int")
    check(isinstance(e.offset, str) and e.offset.isdigit(), f"offset {e.offset!r} is not a decimal string")
    check(isinstance(e.enqueued_time, datetime) and e.enqueued_time.tzinfo is not None,
          f"enqueued time {e.enqueued_time!r} is not an aware datetime")
    return {
        "sequence_number": e.sequence_number,
        "offset": e.offset,
        "enqueued_ms": round(e.enqueued_time.timestamp() * 1000),
        "body": e.body_as_str(),
        "partition_key": e.partition_key,
        "properties": {_text(k): _text(v) for k, v in (e.properties or {}).items()},
    }


def _receive(conn, group, partition, starting_position, expected):
    """Events of one partition from `starting_position`, until `expected` arrived (or timeout)."""
    client = EventHubConsumerClient.from_connection_string(conn, consumer_group=group)
    got = []
    done = threading.Event()

    def on_batch(context, events):
        # Checks run after the receive: the SDK would swallow an exception raised in here.
        got.extend((context.partition_id, e) for e in events)
        if len(got) >= expected and not done.is_set():
            done.set()
            threading.Thread(target=client.close).start()

    def on_error(context, error):
        print(f"receive error on partition {getattr(context, 'partition_id', None)}: {error!r}", file=sys.stderr)

    timer = threading.Timer(RECEIVE_TIMEOUT_S, client.close)
    timer.start()
    try:
        with client:
            client.receive_batch(
                on_event_batch=on_batch,
                on_error=on_error,
                partition_id=partition,
                starting_position=starting_position,
                max_wait_time=1,
            )
    finally:
        timer.cancel()
    check(len(got) >= expected, f"received {len(got)} of {expected} events from {starting_position!r}")
    check(all(p == partition for p, _ in got), f"events from other partitions: {sorted({p for p, _ in got})}")
    got = [_event(e) for _, e in got]
    seqs = [e["sequence_number"] for e in got]
    check(seqs == sorted(seqs) and len(set(seqs)) == len(seqs), f"sequence numbers out of order: {seqs}")
    offsets = [int(e["offset"]) for e in got]
    check(offsets == sorted(offsets), f"offsets out of order: {offsets}")
    times = [e["enqueued_ms"] for e in got]
    check(times == sorted(times), f"enqueued times out of order: {times}")
    return got


def receive(conn, group, partition, from_sequence, expected):
    client = EventHubConsumerClient.from_connection_string(conn, consumer_group=group)
    with client:
        hub = client.get_eventhub_properties()
        part = client.get_partition_properties(partition)
    check(partition in hub["partition_ids"], f"partition {partition} not in {hub['partition_ids']}")
    check(isinstance(hub["created_at"], datetime), f"created_at {hub['created_at']!r}")
    check(isinstance(part["last_enqueued_sequence_number"], int), "last_enqueued_sequence_number not an int")
    check(isinstance(part["last_enqueued_time_utc"], datetime), "last_enqueued_time_utc not a datetime")

    started = time.monotonic()
    earliest = _receive(conn, group, partition, "-1", expected)
    check(earliest[0]["sequence_number"] == part["beginning_sequence_number"],
          f"'-1' started at {earliest[0]['sequence_number']}, not at {part['beginning_sequence_number']}")
    after = _receive(conn, group, partition, from_sequence, expected - from_sequence - 1)
    check(after[0]["sequence_number"] == from_sequence + 1,
          f"after sequence number {from_sequence} came {after[0]['sequence_number']} first")
    print(json.dumps({
        "hub": {"name": hub["eventhub_name"], "partition_ids": hub["partition_ids"],
                "created_ms": round(hub["created_at"].timestamp() * 1000)},
        "partition": {
            "id": part["id"],
            "beginning_sequence_number": part["beginning_sequence_number"],
            "last_enqueued_sequence_number": part["last_enqueued_sequence_number"],
            "last_enqueued_offset": part["last_enqueued_offset"],
            "last_enqueued_ms": round(part["last_enqueued_time_utc"].timestamp() * 1000),
            "is_empty": part["is_empty"],
        },
        "earliest": earliest,
        "after_sequence": after,
        "seconds": round(time.monotonic() - started, 2),
    }))


def main(argv):
    try:
        if len(argv) == 6 and argv[1] == "publish":
            publish(argv[2], argv[3], argv[4], int(argv[5]))
        elif len(argv) == 7 and argv[1] == "receive":
            receive(argv[2], argv[3], argv[4], int(argv[5]), int(argv[6]))
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except CheckFailed as err:
        print(f"check failed: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
