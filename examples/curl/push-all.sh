#!/bin/sh
# Push every sample notification in examples/notifications/ to a bridge, as the
# platform would: one curl line per notifyType, each with the topic it lands on.
# Run the whole file:
#
#     examples/curl/push-all.sh [BASE_URL] [APP_ID]     (default http://127.0.0.1:8080 demoApp)
#
# or copy a single line: it needs the variables B, H and W, and runs in
# examples/notifications/ (the @file paths are relative):
#
#     cd examples/notifications
#     B=http://127.0.0.1:8080/push/demoApp H='Content-Type: application/json' W=' %{http_code}\n'
#
# Each line prints the bridge's answer and the HTTP status: "ok 200" once the
# broker acknowledged the message (see README.md, "HTTP", for 400/401/404/413/503).
set -eu
cd "$(dirname "$0")/../notifications"
B=${1:-http://127.0.0.1:8080}/push/${2:-demoApp}
H='Content-Type: application/json'
W=' %{http_code}\n'

# -> iot/<appId>/762634d2-be6e-42d4-bc26-c3a751adcee7/bindDevice
curl -sS -w "$W" -X POST "$B" -H "$H" --data-binary @bindDevice.json
# -> iot/<appId>/762634d2-be6e-42d4-bc26-c3a751adcee7/commandRsp
curl -sS -w "$W" -X POST "$B" -H "$H" --data-binary @commandRsp.json
# -> iot/<appId>/ae446a4e-1617-46e7-bb36-bbb4738b4ef3/commandStatus
curl -sS -w "$W" -X POST "$B" -H "$H" --data-binary @commandStatus.json
# -> iot/<appId>/762634d2-be6e-42d4-bc26-c3a751adcee7/deviceAdded
curl -sS -w "$W" -X POST "$B" -H "$H" --data-binary @deviceAdded.json
# -> iot/<appId>/_/deviceCapabilitiesAdded
curl -sS -w "$W" -X POST "$B" -H "$H" --data-binary @deviceCapabilitiesAdded.json
# -> iot/<appId>/_/deviceCapabilitiesChanged
curl -sS -w "$W" -X POST "$B" -H "$H" --data-binary @deviceCapabilitiesChanged.json
# -> iot/<appId>/_/deviceCapabilitiesDeleted
curl -sS -w "$W" -X POST "$B" -H "$H" --data-binary @deviceCapabilitiesDeleted.json
# -> iot/<appId>/c2dc6ecc-495f-48ff-95b1-177855ce5c69/deviceDataChanged
curl -sS -w "$W" -X POST "$B" -H "$H" --data-binary @deviceDataChanged.json
# -> iot/<appId>/b8b92cc7-2622-4f27-a24b-041ab26f0b80/deviceDatasChanged
curl -sS -w "$W" -X POST "$B" -H "$H" --data-binary @deviceDatasChanged.json
# -> iot/<appId>/762634d2-be6e-42d4-bc26-c3a751adcee7/deviceDeleted
curl -sS -w "$W" -X POST "$B" -H "$H" --data-binary @deviceDeleted.json
# -> iot/<appId>/762634d2-be6e-42d4-bc26-c3a751adcee7/deviceDesiredPropertiesModifyStatusChanged
curl -sS -w "$W" -X POST "$B" -H "$H" --data-binary @deviceDesiredPropertiesModifyStatusChanged.json
# -> iot/<appId>/762634d2-be6e-42d4-bc26-c3a751adcee7/deviceEvent
curl -sS -w "$W" -X POST "$B" -H "$H" --data-binary @deviceEvent.json
# -> iot/<appId>/762634d2-be6e-42d4-bc26-c3a751adcee7/deviceInfoChanged
curl -sS -w "$W" -X POST "$B" -H "$H" --data-binary @deviceInfoChanged.json
# -> iot/<appId>/_/deviceModelAdded
curl -sS -w "$W" -X POST "$B" -H "$H" --data-binary @deviceModelAdded.json
# -> iot/<appId>/_/deviceModelDeleted
curl -sS -w "$W" -X POST "$B" -H "$H" --data-binary @deviceModelDeleted.json
# -> iot/<appId>/762634d2-be6e-42d4-bc26-c3a751adcee7/fwUpgradeResultNotify
curl -sS -w "$W" -X POST "$B" -H "$H" --data-binary @fwUpgradeResultNotify.json
# -> iot/<appId>/762634d2-be6e-42d4-bc26-c3a751adcee7/fwUpgradeStateChangeNotify
curl -sS -w "$W" -X POST "$B" -H "$H" --data-binary @fwUpgradeStateChangeNotify.json
# -> iot/<appId>/_/messageConfirm
curl -sS -w "$W" -X POST "$B" -H "$H" --data-binary @messageConfirm.json
# -> iot/<appId>/_/ruleEvent
curl -sS -w "$W" -X POST "$B" -H "$H" --data-binary @ruleEvent.json
# -> iot/<appId>/762634d2-be6e-42d4-bc26-c3a751adcee7/serviceInfoChanged
curl -sS -w "$W" -X POST "$B" -H "$H" --data-binary @serviceInfoChanged.json
# -> iot/<appId>/762634d2-be6e-42d4-bc26-c3a751adcee7/swUpgradeResultNotify
curl -sS -w "$W" -X POST "$B" -H "$H" --data-binary @swUpgradeResultNotify.json
# -> iot/<appId>/762634d2-be6e-42d4-bc26-c3a751adcee7/swUpgradeStateChangeNotify
curl -sS -w "$W" -X POST "$B" -H "$H" --data-binary @swUpgradeStateChangeNotify.json
