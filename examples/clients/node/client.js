#!/usr/bin/env node
// Watch one device's data through ocbridge and send it a command.
//
// The shape every ocbridge client has (README.md, "Topics"):
//   1. subscribe to iot/<appId>/<deviceId>/+ : the device's notifications, byte
//      for byte as the platform pushed them, plus commandResponse and commandStatus;
//   2. publish {"serviceId","method","paras","correlationId"} on
//      iot/<appId>/<deviceId>/command with the MQTT 5 response topic and
//      correlation data set;
//   3. the bridge answers on the response topic with the same correlation data
//      (and on .../commandResponse, where MQTT 3.1.1 clients match correlationId).
//
//   npm ci
//   node client.js --host 127.0.0.1 --user client --password client-demo-password \
//        --app demoApp --device <deviceId> \
//        --command '{"serviceId":"Light","method":"SWITCH","paras":{"state":"ON"}}'
//
// Prints one line per message: "data <topic> <payload>", then
// "commandResponse <payload>".  Exit status: 0 when the response says ok, 1 when
// it says not ok, 2 on a connection error or timeout.
//
// With --register NODEID it uses the device API instead (README.md, "The device
// API over MQTT"; the app's apps[].api must allow register, history and delete):
// register a device with that nodeId on iot/<appId>/_/api, read the new device's
// data history, delete it; each a request on .../api answered on the MQTT 5
// response topic.  Prints "apiResponse <op> <payload>" per answer; exit 0 when
// all three are ok.
//
//   node client.js --user client --password client-demo-password --app demoApp \
//        --register 86000099
'use strict';

const crypto = require('node:crypto');
const { parseArgs } = require('node:util');
const mqtt = require('mqtt');

const { values: args } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '1883' },
    user: { type: 'string', default: '' },
    password: { type: 'string', default: '' },
    prefix: { type: 'string', default: 'iot' },
    app: { type: 'string' },
    device: { type: 'string' },
    register: { type: 'string', default: '' }, // nodeId: register, history, delete
    data: { type: 'string', default: '1' }, // data messages to wait for first
    command: { type: 'string', default: '' }, // empty: only watch the data
    timeout: { type: 'string', default: '30' }, // seconds for each step
  },
});
if (!args.app || (!args.device && !args.register)) {
  console.error('usage: client.js --app APPID (--device DEVICEID | --register NODEID) [--host H] ' +
                '[--port P] [--user U --password P] [--data N] [--command JSON] [--timeout S]');
  process.exit(2);
}

const deviceTopic = `${args.prefix}/${args.app}/${args.device || '_'}`;
// The broker's ACL lets each user read replies/<user>/#.
const replyTopic = `replies/${args.user || 'anonymous'}/${crypto.randomUUID()}`;
const correlation = crypto.randomUUID();
const timeoutMs = Number(args.timeout) * 1000;
let dataLeft = Number(args.data);
let commandSent = false;
let timer = null;
let finished = false;

const client = mqtt.connect({
  host: args.host,
  port: Number(args.port),
  protocolVersion: 5,
  clientId: `example-js-${crypto.randomBytes(4).toString('hex')}`,
  username: args.user || undefined,
  password: args.password || undefined,
  keepalive: 30,
  reconnectPeriod: 0, // an example should fail loudly, not retry forever
});

// Once: errors from the closing connection must not change the verdict.
function finish(code, message) {
  if (finished) return;
  finished = true;
  if (message) console.error(message);
  clearTimeout(timer);
  client.end(false, () => process.exit(code));
}

// Each step (subscribe, the first data, the response) has its own deadline.
function step(what) {
  clearTimeout(timer);
  timer = setTimeout(() => finish(2, `error: no ${what} within ${args.timeout} s`), timeoutMs);
}

function sendCommand() {
  if (!args.command) return finish(0);
  let cmd;
  try {
    cmd = JSON.parse(args.command);
  } catch (e) {
    return finish(2, `error: --command is not JSON: ${e.message}`);
  }
  if (cmd.correlationId === undefined) cmd.correlationId = correlation;
  commandSent = true;
  step('commandResponse');
  client.publish(`${deviceTopic}/command`, JSON.stringify(cmd), {
    qos: 1,
    properties: { responseTopic: replyTopic, correlationData: Buffer.from(correlation) },
  }, (err) => { if (err) finish(2, `error: publish: ${err.message}`); });
}

// The device API flow (--register): one request at a time, answered on replyTopic.
const apiWaiting = new Map(); // correlation data -> resolve(answer text)

function apiRequest(device, request) {
  const corr = crypto.randomUUID();
  step(`apiResponse to ${request.op}`);
  return new Promise((resolve, reject) => {
    apiWaiting.set(corr, resolve);
    client.publish(`${args.prefix}/${args.app}/${device}/api`,
      JSON.stringify({ ...request, correlationId: corr }), {
        qos: 1,
        properties: { responseTopic: replyTopic, correlationData: Buffer.from(corr) },
      }, (err) => { if (err) reject(err); });
  }).then((text) => {
    console.log(`apiResponse ${request.op} ${text}`);
    return JSON.parse(text);
  });
}

async function runApi() {
  try {
    const reg = await apiRequest('_', { op: 'register', nodeId: args.register, timeout: 0 });
    if (reg.ok !== true) return finish(1);
    const device = reg.platform.deviceId;
    const hist = await apiRequest(device, { op: 'history', pageSize: 10 });
    const gone = await apiRequest(device, { op: 'delete' });
    return finish(hist.ok === true && gone.ok === true ? 0 : 1);
  } catch (e) {
    return finish(2, `error: ${e.message}`);
  }
}

client.on('error', (err) => finish(2, `error: ${err.message}`));

client.on('connect', () => {
  step('subscription');
  const filters = args.register ? [replyTopic] : [`${deviceTopic}/+`, replyTopic];
  client.subscribe(filters, { qos: 1 }, (err, granted) => {
    const refused = (granted || []).filter((g) => g.qos >= 0x80);
    if (err || refused.length) {
      return finish(2, `error: subscribe refused: ${err ? err.message : JSON.stringify(refused)}`);
    }
    if (args.register) return runApi();
    step('data');
    if (dataLeft <= 0) sendCommand();
  });
});

client.on('message', (topic, payload, packet) => {
  // After the verdict the connection is closing, but messages already on their way still
  // arrive: the command's statuses follow its response on the response topic.
  if (finished) return;
  const text = payload.toString('utf8');
  if (topic === replyTopic) {
    const cd = packet.properties && packet.properties.correlationData;
    const waiting = cd && apiWaiting.get(cd.toString());
    if (waiting) {
      apiWaiting.delete(cd.toString());
      return waiting(text);
    }
    if (!commandSent || !cd || cd.toString() !== correlation) return;
    console.log(`commandResponse ${text}`);
    let ok = false;
    try { ok = JSON.parse(text).ok === true; } catch (e) { ok = false; }
    return finish(ok ? 0 : 1);
  }
  const kind = topic.slice(topic.lastIndexOf('/') + 1);
  if (kind === 'command' || kind === 'commandCancel') return; // our own request echoed
  console.log(`data ${topic} ${text}`);
  if (kind === 'commandResponse' || kind === 'commandStatus' || commandSent) return;
  if (--dataLeft === 0) sendCommand();
});
