/*
 * notify.c: the subscribable notification types, in one table (notify.h).
 */
#include "ocb/notify.h"

#include <stddef.h>
#include <string.h>

static const struct {
    const char *type;
    enum ocb_notify_api api;
} types[] = {
    {"deviceAdded", OCB_NOTIFY_BUSINESS},
    {"bindDevice", OCB_NOTIFY_BUSINESS},
    {"deviceInfoChanged", OCB_NOTIFY_BUSINESS},
    {"deviceDataChanged", OCB_NOTIFY_BUSINESS},
    {"deviceDatasChanged", OCB_NOTIFY_BUSINESS},
    {"deviceCapabilitiesChanged", OCB_NOTIFY_BUSINESS},
    {"deviceCapabilitiesAdded", OCB_NOTIFY_BUSINESS},
    {"deviceCapabilitiesDeleted", OCB_NOTIFY_BUSINESS},
    {"deviceDeleted", OCB_NOTIFY_BUSINESS},
    {"messageConfirm", OCB_NOTIFY_BUSINESS},
    {"commandRsp", OCB_NOTIFY_BUSINESS},
    {"ruleEvent", OCB_NOTIFY_BUSINESS},
    {"deviceDesiredPropertiesModifyStatusChanged", OCB_NOTIFY_BUSINESS},
    /* SDK-only types and the demo's appDeleted (docs/platform-api.md 1.2, UNCONFIRMED). */
    {"deviceEvent", OCB_NOTIFY_BUSINESS},
    {"serviceInfoChanged", OCB_NOTIFY_BUSINESS},
    {"deviceModelAdded", OCB_NOTIFY_BUSINESS},
    {"deviceModelDeleted", OCB_NOTIFY_BUSINESS},
    {"appDeleted", OCB_NOTIFY_BUSINESS},
    /* Device management (docs/platform-api.md 5.3). */
    {"swUpgradeStateChangeNotify", OCB_NOTIFY_MANAGEMENT},
    {"swUpgradeResultNotify", OCB_NOTIFY_MANAGEMENT},
    {"fwUpgradeStateChangeNotify", OCB_NOTIFY_MANAGEMENT},
    {"fwUpgradeResultNotify", OCB_NOTIFY_MANAGEMENT},
};

enum ocb_notify_api notify_type_api(const char *type)
{
    for (size_t i = 0; type && i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(types[i].type, type) == 0)
            return types[i].api;
    return OCB_NOTIFY_UNKNOWN;
}
