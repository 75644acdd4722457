"""How much CPU the broker itself takes while a steady trickle of records flows through it.

Independent of auditstream's code: a plain librdkafka producer (confluent-kafka) writes 1 KB
records at a fixed rate to a fresh in-memory nisshi broker, two consumer groups read them as
they come, and every three seconds the broker's CPU share (from /proc) is printed next to the
number of records stored so far. docs/PERFORMANCE.md quotes its output: on nisshi's memory
engine the share grows as the run goes on, at 1,000 and at 10,000 records/s alike, which is part
of why latency at 10,000 events/s depends on how long the run lasts.

    pip install confluent-kafka
    python3 bench/broker_probe.py --rate 1000 --seconds 24
"""

import argparse
import os
import socket
import subprocess
import time

from confluent_kafka import Consumer, Producer


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cpu_seconds(pid):
    # utime and stime: fields 14 and 15 of /proc/PID/stat, counted after the command name.
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=1000, help="records per second")
    parser.add_argument("--seconds", type=int, default=24, help="length of the run")
    parser.add_argument("--fetch-wait-ms", type=int, default=10, help="consumers' fetch.wait.max.ms")
    args = parser.parse_args()

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    broker = subprocess.Popen(
        ["nisshi", "broker", "--listener-url", address, "--advertised-listener-url", address,
         "--storage-engine", "memory://nisshi/", "--group-initial-rebalance-delay", "0s"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2)
        subprocess.run(
            ["nisshi", "topic", "create", "probe", "--broker", address, "--partitions", "4",
             "--config", "cleanup.policy=delete", "--config", "retention.ms=86400000"],
            check=True, stdout=subprocess.DEVNULL)
        servers = f"127.0.0.1:{port}"
        producer = Producer({"bootstrap.servers": servers, "linger.ms": 5})
        consumers = []
        for group in ("probe-a", "probe-b"):
            consumer = Consumer({"bootstrap.servers": servers, "group.id": group,
                                 "auto.offset.reset": "earliest",
                                 "fetch.wait.max.ms": args.fetch_wait_ms})
            consumer.subscribe(["probe"])
            consumers.append(consumer)
        payload = b"x" * 1000
        sent = 0
        start = window_start = time.time()
        window_cpu = cpu_seconds(broker.pid)
        print("seconds | records stored | broker CPU, % of a core")
        while time.time() - start < args.seconds:
            due = int((time.time() - start) * args.rate)
            while sent < due:
                producer.produce("probe", payload)
                sent += 1
            producer.poll(0)
            for consumer in consumers:
                while consumer.poll(0.001) is not None:
                    pass
            if time.time() - window_start >= 3:
                now, cpu = time.time(), cpu_seconds(broker.pid)
                share = 100 * (cpu - window_cpu) / (now - window_start)
                print(f"{now - start:7.0f} | {sent:14d} | {share:5.1f}", flush=True)
                window_start, window_cpu = now, cpu
        producer.flush(10)
        del producer  # closes its connections before the broker goes
        for consumer in consumers:
            consumer.close()
    finally:
        broker.terminate()
        broker.wait()


if __name__ == "__main__":
    main()
