#!/usr/bin/env python3
"""An independent Kafka client (confluent-kafka) for netwait's aggregator tests.

    deploy/python tests/tools/kafka_events.py BROKER create TOPIC [--partitions N]
    deploy/python tests/tools/kafka_events.py BROKER produce TOPIC FILE [--lines-per-message N]
        [--rate EVENTS_PER_S] [--content-type TYPE]
    deploy/python tests/tools/kafka_events.py BROKER poison TOPIC
    deploy/python tests/tools/kafka_events.py BROKER read TOPIC [--timeout S]
    deploy/python tests/tools/kafka_events.py BROKER committed TOPIC GROUP

`create` makes a topic (default 3 partitions). `produce` sends an NDJSON file's lines
with the idempotent producer (acks=all): one line a message keyed by its call_id (the
ingest role's shape), or N lines a message (keyed by the first line's call_id); prints
{"messages": M, "lines": L}; with --content-type, every message carries that header (a
producer misconfigured: `application/avro`, say). `poison` sends the poison messages of the acceptance (not
JSON, bad fields, a 10 MB message, a wrong protobuf) and prints their partition and
offset per name. `read` reads a whole topic from the start (a fresh group) and prints
its records as JSON lines (value as text or base64, headers). `committed` prints a
group's committed offsets per partition. Exit 1 with the reason on stderr on failure.
"""

import argparse
import base64
import json
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

MAX_MESSAGE = 16 * 1024 * 1024


def fail(msg):
    print(f"kafka_events: {msg}", file=sys.stderr)
    sys.exit(1)


def producer(broker):
    # A broker restarted under it (tests/kafka_broker_restart.rs) is reconnected to within
    # a second of its return (librdkafka's backoff otherwise grows to 10 s).
    return Producer({"bootstrap.servers": broker, "enable.idempotence": True, "acks": "all",
                     "linger.ms": 20, "batch.size": 1 << 20, "compression.type": "lz4",
                     "message.max.bytes": MAX_MESSAGE, "queue.buffering.max.messages": 1000000,
                     "reconnect.backoff.max.ms": 1000})


def call_id(line):
    try:
        v = json.loads(line).get("call_id")
        return v.encode() if isinstance(v, str) else None
    except (ValueError, AttributeError):
        return None


def send(p, topic, value, key=None, headers=None, errors=None, on_delivery=None):
    def done(err, msg):
        if err is not None:
            errors.append(str(err))
        elif on_delivery:
            on_delivery(msg)
    while True:
        try:
            p.produce(topic, value, key, headers=headers, on_delivery=done)
            return
        except BufferError:
            p.poll(0.05)


def flush(p, errors):
    if p.flush(120) != 0:
        fail("messages still unsent after 120 s")
    if errors:
        fail(f"{len(errors)} deliveries failed, first: {errors[0]}")


def cmd_create(args):
    admin = AdminClient({"bootstrap.servers": args.broker})
    fs = admin.create_topics([NewTopic(args.topic, num_partitions=args.partitions,
                                       replication_factor=1)])
    for f in fs.values():
        f.result(timeout=30)
    print(json.dumps({"topic": args.topic, "partitions": args.partitions}))


def cmd_produce(args):
    p = producer(args.broker)
    errors = []
    messages = lines = 0
    started = time.monotonic()
    headers = [("content-type", args.content_type.encode())] if args.content_type else None
    with open(args.file, "rb") as f:
        batch = []
        for line in f:
            line = line.rstrip(b"\r\n")
            batch.append(line)
            if len(batch) < args.lines_per_message:
                continue
            send(p, args.topic, b"\n".join(batch), call_id(batch[0]), headers=headers, errors=errors)
            messages += 1
            lines += len(batch)
            batch = []
            if args.rate:
                ahead = lines / args.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            p.poll(0)
        if batch:
            send(p, args.topic, b"\n".join(batch), call_id(batch[0]), headers=headers, errors=errors)
            messages += 1
            lines += len(batch)
    flush(p, errors)
    print(json.dumps({"messages": messages, "lines": lines,
                      "seconds": round(time.monotonic() - started, 3)}))


def cmd_poison(args):
    p = producer(args.broker)
    errors = []
    where = {}
    valid = b'{"call_id":"poison-ok","type":"offered","ts":"2019-03-04T09:00:00+01:00","line":"cup"}'
    cases = [
        ("not_json", b"this is not JSON", None),
        ("bad_fields", b'{"call_id":"p1","type":"teleported","ts":0}', None),
        ("missing_ts", b'{"call_id":"p2","type":"offered"}', None),
        ("big", b'{"call_id":"big","pad":"' + b"x" * (10 * 1024 * 1024) + b'"}', None),
        ("wrong_protobuf", b"\x0a\xff\xff\xff\xff\xff", [("content-type", b"application/x-protobuf; message=netwait.v1.CallEvent")]),
        ("mixed", valid + b"\nnot json either", None),
        ("unknown_type", b"{}", [("content-type", b"application/avro")]),
    ]
    for name, value, headers in cases:
        def noted(msg, name=name):
            where[name] = {"partition": msg.partition(), "offset": msg.offset()}
        send(p, args.topic, value, name.encode(), headers=headers, errors=errors, on_delivery=noted)
    flush(p, errors)
    print(json.dumps(where))


def records(broker, topic, timeout, group=None):
    c = Consumer({"bootstrap.servers": broker, "group.id": group or f"reader-{time.time_ns()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "max.partition.fetch.bytes": MAX_MESSAGE})
    c.subscribe([topic])
    quiet_since = time.monotonic()
    out = []
    while time.monotonic() - quiet_since < timeout:
        msg = c.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            continue
        quiet_since = time.monotonic()
        out.append(msg)
    c.close()
    return out


def cmd_read(args):
    for msg in records(args.broker, args.topic, args.timeout):
        value = msg.value() or b""
        rec = {"partition": msg.partition(), "offset": msg.offset(),
               "key": (msg.key() or b"").decode("utf-8", "replace"),
               "headers": {k: (v or b"").decode("utf-8", "replace") for k, v in (msg.headers() or [])},
               "size": len(value)}
        try:
            rec["value"] = value.decode("utf-8")[:512]
        except UnicodeDecodeError:
            rec["value_base64"] = base64.b64encode(value[:512]).decode()
        print(json.dumps(rec))


def cmd_committed(args):
    c = Consumer({"bootstrap.servers": args.broker, "group.id": args.group})
    md = c.list_topics(args.topic, timeout=15)
    parts = [TopicPartition(args.topic, p) for p in md.topics[args.topic].partitions]
    got = c.committed(parts, timeout=15)
    print(json.dumps({str(tp.partition): tp.offset for tp in got}))
    c.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("broker")
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("create")
    a.add_argument("topic")
    a.add_argument("--partitions", type=int, default=3)
    a = sub.add_parser("produce")
    a.add_argument("topic")
    a.add_argument("file")
    a.add_argument("--lines-per-message", type=int, default=1)
    a.add_argument("--rate", type=float, default=0)
    a.add_argument("--content-type", help="the content-type header of every message")
    a = sub.add_parser("poison")
    a.add_argument("topic")
    a = sub.add_parser("read")
    a.add_argument("topic")
    a.add_argument("--timeout", type=float, default=5)
    a = sub.add_parser("committed")
    a.add_argument("topic")
    a.add_argument("group")
    args = ap.parse_args()
    {"create": cmd_create, "produce": cmd_produce, "poison": cmd_poison,
     "read": cmd_read, "committed": cmd_committed}[args.cmd](args)


if __name__ == "__main__":
    main()
