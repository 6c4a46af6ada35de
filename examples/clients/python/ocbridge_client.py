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

With --register NODEID it uses the device API instead (README.md, "The
device API over MQTT"; the app's apps[].api must allow register, history
and delete): it registers a device with that nodeId on
iot/<appId>/_/api, reads the new device's data history and deletes it,
each a request on .../api answered on the MQTT 5 response topic (the only
place a register's psk is published when a response topic is set).
Prints "apiResponse <op> <payload>" per answer; exit 0 when all three
are ok.

    python3 ocbridge_client.py --user client --password client-demo-password \\
        --app demoApp --register 86000099
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
    p.add_argument("--device", default="", help="the platform deviceId (not with --register)")
    p.add_argument("--register", default="", metavar="NODEID",
                   help="register a device with this nodeId, read its history, delete it")
    p.add_argument("--data", type=int, default=1,
                   help="data messages to wait for before the command (0: do not wait)")
    p.add_argument("--command", default="",
                   help='command JSON, e.g. {"serviceId":"Light","method":"SWITCH","paras":{}}; '
                        "empty: only watch the data")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds for each step")
    args = p.parse_args()
    if not args.device and not args.register:
        p.error("one of --device and --register is required")
    return args


def main():
    args = parse_args()
    device_topic = f"{args.prefix}/{args.app}/{args.device or '_'}"
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
        if args.register:
            c.subscribe([(reply_topic, 1)])
        else:
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
            elif args.register:
                events.put(("response:" + cd.decode("utf-8", "replace"), payload))
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
        if args.register:
            return run_api(args, client, events, reply_topic)
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


def api_request(args, client, events, reply_topic, device, request):
    """One device API request on <prefix>/<app>/<device or _>/api; its parsed answer."""
    corr = uuid.uuid4().hex
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = reply_topic
    props.CorrelationData = corr.encode()
    request = dict(request, correlationId=corr)
    info = client.publish(f"{args.prefix}/{args.app}/{device}/api", json.dumps(request), qos=1,
                          properties=props)
    info.wait_for_publish(args.timeout)
    answer = wait_for(events, "response:" + corr, args.timeout)
    print(f"apiResponse {request['op']} {answer}", flush=True)
    return json.loads(answer)


def run_api(args, client, events, reply_topic):
    """register -> history -> delete; 0 when every answer is ok."""
    try:
        wait_for(events, "subscribed", args.timeout)
        reg = api_request(args, client, events, reply_topic, "_",
                          {"op": "register", "nodeId": args.register, "timeout": 0})
        if not reg.get("ok"):
            return 1
        device = reg["platform"]["deviceId"]
        hist = api_request(args, client, events, reply_topic, device,
                           {"op": "history", "pageSize": 10})
        gone = api_request(args, client, events, reply_topic, device, {"op": "delete"})
    except (TimeoutError, RuntimeError, ValueError, KeyError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if hist.get("ok") is True and gone.get("ok") is True else 1


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
