#!/usr/bin/env python3
"""Interop check between orderflow's Schema Registry and the official Confluent
Python client (confluent-kafka 2.16.1), run from a Rust integration test.

  produce: registers the order schema through AvroSerializer (default config, so it
           auto-registers under <topic>-value) and writes N Confluent-framed orders;
           prints one JSON line per order.
  consume: reads N messages and decodes them with AvroDeserializer (writer schema
           fetched by id from the registry); prints one JSON line per message.

Needs: pip install 'confluent-kafka[avro,schemaregistry]==2.16.1'
"""

import argparse
import datetime
import json
import random
import sys
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

# The seed project's order schema, as its other producers register it.
ORDER_SCHEMA = (
    '{"type":"record","name":"Order","namespace":"com.assignment","fields":['
    '{"name":"orderId","type":"string"},'
    '{"name":"product","type":"string"},'
    '{"name":"price","type":"float"}]}'
)
# orderflow's own catalogue (src/order.rs), so these orders look like its own.
PRODUCTS = ["burger", "pizza", "salad", "sushi", "taco", "ramen", "pasta", "curry"]

# The test brokers listen on 127.0.0.1, and "localhost" may resolve to ::1 first.
COMMON = {"broker.address.family": "v4"}


def fail(message):
    print(f"registry_interop: {message}", file=sys.stderr)
    sys.exit(1)


def millis(value):
    # fastavro reads timestamp-millis as an aware datetime; print it as the
    # number the writer put on the wire.
    if isinstance(value, datetime.datetime):
        return round(value.timestamp() * 1000)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value):
    return json.dumps(value, separators=(",", ":"), default=millis)


def produce(args):
    schema = ORDER_SCHEMA
    if args.schema_file:
        with open(args.schema_file, encoding="utf-8") as f:
            schema = f.read()
    registry = SchemaRegistryClient({"url": args.registry})
    serialize = AvroSerializer(registry, schema)
    producer = Producer({
        **COMMON,
        "bootstrap.servers": args.bootstrap,
        # Idempotence needs InitProducerId and sequence checks from the broker;
        # off, this works on Apache Kafka and the embedded (Tansu) broker alike.
        "enable.idempotence": False,
        "acks": "all",
        # Without a bound, an unreachable broker would hold the test for the
        # default 300 s before reporting anything.
        "message.timeout.ms": int(args.timeout * 1000),
    })

    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(f"{msg.topic()}: {err}")

    orders = []
    for _ in range(args.count):
        order = {
            "orderId": str(uuid.uuid4()),
            "product": random.choice(PRODUCTS),
            "price": random.randint(1000, 15000) / 100,
        }
        ctx = SerializationContext(args.topic, MessageField.VALUE)
        # The first call makes the registry requests; a registry error surfaces here.
        value = serialize(order, ctx)
        producer.produce(args.topic, key=order["orderId"].encode(), value=value,
                         on_delivery=on_delivery)
        producer.poll(0)
        orders.append(order)

    # A little past message.timeout.ms, so that undelivered messages come back
    # through on_delivery with librdkafka's reason.
    left = producer.flush(args.timeout + 5)
    if left:
        errors.append(f"{left} message(s) still undelivered after {args.timeout} s")
    if errors:
        fail("delivery failed:\n  " + "\n  ".join(errors))
    for order in orders:
        print(dumps(order))


def partitions(consumer, topic, timeout):
    md = consumer.list_topics(topic, timeout=timeout)
    t = md.topics.get(topic)
    if t is None or t.error is not None or not t.partitions:
        fail(f"topic {topic} not found: {t.error if t else 'no metadata'}")
    return [TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(t.partitions)]


def consume(args):
    deadline = time.monotonic() + args.timeout
    registry = SchemaRegistryClient({"url": args.registry})
    # No reader schema: values are decoded with the writer schema fetched by id.
    deserialize = AvroDeserializer(registry)
    consumer = Consumer({
        **COMMON,
        "bootstrap.servers": args.bootstrap,
        # librdkafka wants a group id even though we assign() and never join it.
        "group.id": f"registry-interop-{uuid.uuid4()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        # Tansu holds every fetch for the whole wait (500 ms by default).
        "fetch.wait.max.ms": 10,
    })
    try:
        # assign() rather than subscribe(): the test is about the registry, and
        # reading from the start needs no group coordination from the broker.
        consumer.assign(partitions(consumer, args.topic, args.timeout))
        got = 0
        while got < args.count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                fail(f"got {got} of {args.count} messages within {args.timeout} s")
            msg = consumer.poll(min(remaining, 1.0))
            if msg is None:
                continue
            if msg.error():
                if msg.error().fatal():
                    fail(f"consumer error: {msg.error()}")
                print(f"registry_interop: (transient) {msg.error()}", file=sys.stderr)
                continue
            where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
            ctx = SerializationContext(msg.topic(), MessageField.VALUE, msg.headers())
            try:
                value = deserialize(msg.value(), ctx)
            except Exception as e:
                head = (msg.value() or b"")[:16].hex()
                fail(f"cannot deserialize {where} (first bytes {head}): {type(e).__name__}: {e}")
            print(dumps(value), flush=True)
            got += 1
    finally:
        consumer.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, run in (("produce", produce), ("consume", consume)):
        p = sub.add_parser(name)
        p.set_defaults(run=run)
        p.add_argument("--bootstrap", required=True, metavar="HOST:PORT")
        p.add_argument("--registry", required=True, metavar="URL")
        p.add_argument("--topic", required=True)
        p.add_argument("--count", required=True, type=int, metavar="N")
    produce_p, consume_p = sub.choices["produce"], sub.choices["consume"]
    produce_p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                           help="time allowed to deliver the messages (default 30)")
    produce_p.add_argument("--schema-file", metavar="PATH",
                           help="Avro schema to use instead of the order schema")
    consume_p.add_argument("--timeout", type=float, required=True, metavar="SECONDS",
                           help="time allowed to receive all N messages")
    args = parser.parse_args()
    try:
        args.run(args)
    except SystemExit:
        raise
    except Exception as e:
        # SchemaRegistryError's text carries the HTTP status and the SR error code.
        fail(f"{type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
