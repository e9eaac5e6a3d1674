#!/usr/bin/env python3
"""A produce/consume round trip through a Kafka broker, with confluent-kafka.

    deploy/python tests/tools/kafka_roundtrip.py HOST:PORT [--count N] [--big-mb M]

Reads the cluster's metadata, creates a fresh topic (3 partitions), produces N small
keyed messages and one message of M MiB (default 10: the broker must accept it) with the
idempotent producer, reads them all back with a consumer group, commits, checks the
committed offsets, and deletes the topic. Prints one JSON object on stdout; exit 1 with
the reason on stderr when anything differs. Used by tests/deploy_servers.rs.
"""

import argparse
import hashlib
import json
import os
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

MAX_MESSAGE = 16 * 1024 * 1024  # deploy/kafka/server.properties.in: message.max.bytes


def fail(msg):
    print(f"kafka_roundtrip: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("broker")
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--big-mb", type=int, default=10)
    args = ap.parse_args()
    common = {"bootstrap.servers": args.broker, "client.id": "netwait-deploy-test"}
    started = time.monotonic()

    admin = AdminClient(common)
    md = admin.list_topics(timeout=15)
    brokers = sorted(f"{b.host}:{b.port}" for b in md.brokers.values())
    if args.broker not in brokers:
        fail(f"metadata lists brokers {brokers}, not {args.broker}")

    topic = f"netwait-deploy-test-{os.getpid()}-{time.time_ns()}"
    for f in admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)]).values():
        f.result(timeout=30)

    producer = Producer(
        {**common, "enable.idempotence": True, "acks": "all", "linger.ms": 5,
         "message.max.bytes": MAX_MESSAGE}
    )
    errors = []

    def delivered(err, _msg):
        if err is not None:
            errors.append(str(err))

    sent = {}
    for i in range(args.count):
        key, value = f"k{i}".encode(), json.dumps({"seq": i}).encode()
        sent[key] = hashlib.sha256(value).hexdigest()
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
    big = os.urandom(args.big_mb * 1024 * 1024)
    sent[b"big"] = hashlib.sha256(big).hexdigest()
    producer.produce(topic, big, b"big", on_delivery=delivered)
    if producer.flush(60) != 0:
        fail("messages still unsent after 60 s")
    if errors:
        fail(f"{len(errors)} deliveries failed, first: {errors[0]}")

    consumer = Consumer(
        {**common, "group.id": topic, "auto.offset.reset": "earliest",
         "enable.auto.commit": False, "max.partition.fetch.bytes": MAX_MESSAGE,
         "fetch.max.bytes": MAX_MESSAGE, "receive.message.max.bytes": 2 * MAX_MESSAGE}
    )
    consumer.subscribe([topic])
    got, offsets, deadline = {}, {}, time.monotonic() + 60
    while len(got) < len(sent) and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                continue
            fail(f"consumer error: {msg.error()}")
        if msg.key() in got:
            fail(f"message {msg.key()!r} read twice")
        got[msg.key()] = hashlib.sha256(msg.value()).hexdigest()
        offsets[msg.partition()] = msg.offset() + 1
    if got != sent:
        missing = len(set(sent) - set(got))
        fail(f"read {len(got)} of {len(sent)} messages ({missing} missing or different)")
    consumer.commit(asynchronous=False)
    committed = consumer.committed([TopicPartition(topic, p) for p in range(3)], timeout=15)
    consumer.close()
    by_partition = {tp.partition: tp.offset for tp in committed if tp.offset >= 0}
    if by_partition != offsets:
        fail(f"committed offsets {by_partition}, read up to {offsets}")

    for f in admin.delete_topics([topic]).values():
        f.result(timeout=30)
    print(json.dumps({
        "brokers": brokers, "cluster_id": md.cluster_id, "topic": topic,
        "produced": len(sent), "consumed": len(got), "big_bytes": len(big),
        "committed": sum(offsets.values()), "seconds": round(time.monotonic() - started, 2),
    }))


if __name__ == "__main__":
    main()
