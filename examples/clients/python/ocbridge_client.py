#!/usr/bin/env python3
"""Watch one device's data through ocbridge and send it a command.

The shape every ocbridge client has (README.md, "Topics"):

1. subscribe to iot/<appId>/<deviceId>/+ : the device's notifications,
   byte for byte as the platform pushed them, plus commandResponse and
   commandStatus;
2. publish {"serviceId","method","paras","correlationId"} on
   iot/<appId>/<deviceId>/command with the MQTT 5 response topic and
   correlation data set;
3. the bridge answers on the response topic with the same correlation data
   (and on .../commandResponse, where MQTT 3.1.1 clients match the
   correlationId field).

Uses paho-mqtt's 1.6 API (Debian 12: apt-get install python3-paho-mqtt).

    python3 ocbridge_client.py --host 127.0.0.1 --user client \\
        --password client-demo-password --app demoApp --device <deviceId> \\
        --command '{"serviceId":"Light","method":"SWITCH","paras":{"state":"ON"}}'

Prints one line per message: "data <topic> <payload>", then
"commandResponse <payload>".  Exit status: 0 when the response says ok,
1 when it says not ok, 2 on a connection error or timeout.
"""
import argparse
import json
import queue
import sys
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--user", default="")
    p.add_argument("--password", default="")
    p.add_argument("--prefix", default="iot", help="mqtt.topic_prefix of the bridge")
    p.add_argument("--app", required=True, help="the platform appId")
    p.add_argument("--device", required=True, help="the platform deviceId")
    p.add_argument("--data", type=int, default=1,
                   help="data messages to wait for before the command (0: do not wait)")
    p.add_argument("--command", default="",
                   help='command JSON, e.g. {"serviceId":"Light","method":"SWITCH","paras":{}}; '
                        "empty: only watch the data")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds for each step")
    return p.parse_args()


def main():
    args = parse_args()
    device_topic = f"{args.prefix}/{args.app}/{args.device}"
    # The broker's ACL lets each user read replies/<user>/#.
    reply_topic = f"replies/{args.user or 'anonymous'}/{uuid.uuid4().hex}"
    correlation = uuid.uuid4().hex
    events = queue.Queue()  # filled by paho's network thread, drained here
    # Set once the verdict is in: the command's statuses keep arriving until the
    # connection closes, and must not print after the response.
    finished = threading.Event()

    client = mqtt.Client(client_id=f"example-py-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5)
    if args.user:
        client.username_pw_set(args.user, args.password)

    def on_connect(c, _userdata, _flags, rc, _props=None):
        if rc != 0:
            events.put(("error", f"connect refused: {rc}"))
            return
        c.subscribe([(device_topic + "/+", 1), (reply_topic, 1)])

    def on_subscribe(_c, _userdata, _mid, reason_codes, _props=None):
        failed = [str(r) for r in reason_codes if r.value >= 0x80]
        events.put(("error", "subscribe refused: " + ", ".join(failed)) if failed
                   else ("subscribed", None))

    def on_message(_c, _userdata, msg):
        if finished.is_set():
            return
        payload = msg.payload.decode("utf-8", "replace")
        if msg.topic == reply_topic:
            cd = getattr(msg.properties, "CorrelationData", b"")
            if cd == correlation.encode():
                events.put(("response", payload))
            return
        kind = msg.topic.rsplit("/", 1)[-1]
        if kind in ("command", "commandCancel"):
            return  # our own request, echoed because we may read iot/#
        print(f"data {msg.topic} {payload}", flush=True)
        if kind not in ("commandResponse", "commandStatus"):
            events.put(("data", None))

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        client.connect(args.host, args.port, keepalive=30)
    except OSError as e:
        print(f"error: cannot connect to {args.host}:{args.port}: {e}", file=sys.stderr)
        return 2
    client.loop_start()
    try:
        return run(args, client, events, finished, device_topic, reply_topic, correlation)
    finally:
        client.disconnect()
        client.loop_stop()


def wait_for(events, wanted, timeout):
    """The next event of kind `wanted`, or raise TimeoutError/RuntimeError."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no {wanted} within {timeout:g} s")
        try:
            kind, value = events.get(timeout=left)
        except queue.Empty:
            continue
        if kind == "error":
            raise RuntimeError(value)
        if kind == wanted:
            return value


def run(args, client, events, finished, device_topic, reply_topic, correlation):
    try:
        wait_for(events, "subscribed", args.timeout)
        for _ in range(args.data):
            wait_for(events, "data", args.timeout)
        if not args.command:
            return 0
        cmd = json.loads(args.command)
        cmd.setdefault("correlationId", correlation)
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = reply_topic
        props.CorrelationData = correlation.encode()
        info = client.publish(device_topic + "/command", json.dumps(cmd), qos=1,
                              properties=props)
        info.wait_for_publish(args.timeout)
        response = wait_for(events, "response", args.timeout)
    except (TimeoutError, RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        finished.set()
    print(f"commandResponse {response}", flush=True)
    try:
        return 0 if json.loads(response).get("ok") is True else 1
    except ValueError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
