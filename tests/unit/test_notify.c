/*
 * test_notify.c: the subscribable notification types and their API
 * (docs/platform-api.md 1.2 and 5): the bridge's config check, its subscription
 * sync and the simulator all read this one table.
 */
#include <check.h>
#include <stddef.h>

#include "ocb/notify.h"
#include "th_main.h"

static const struct {
    const char *type;
    enum ocb_notify_api api;
} cases[] = {
    {"deviceDataChanged", OCB_NOTIFY_BUSINESS},
    {"deviceDatasChanged", OCB_NOTIFY_BUSINESS},
    {"deviceDesiredPropertiesModifyStatusChanged", OCB_NOTIFY_BUSINESS},
    {"appDeleted", OCB_NOTIFY_BUSINESS},
    {"swUpgradeStateChangeNotify", OCB_NOTIFY_MANAGEMENT},
    {"fwUpgradeResultNotify", OCB_NOTIFY_MANAGEMENT},
    {"deviceDataChange", OCB_NOTIFY_UNKNOWN},
    {"DEVICEDATACHANGED", OCB_NOTIFY_UNKNOWN},
    {"commandStatus", OCB_NOTIFY_UNKNOWN},
    {"", OCB_NOTIFY_UNKNOWN},
    {NULL, OCB_NOTIFY_UNKNOWN},
};

START_TEST(each_type_has_its_api)
{
    ck_assert_int_eq(notify_type_api(cases[_i].type), cases[_i].api);
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const notify_tests[] = {each_type_has_its_api, NULL};
    const struct th_loop notify_loops[] = {
        {each_type_has_its_api, 0, (int)(sizeof(cases) / sizeof(cases[0]))}, {NULL, 0, 0}};
    const struct th_case tcases[] = {
        {.name = "notify", .tests = notify_tests, .loops = notify_loops},
        {.name = NULL},
    };

    return th_main(argc, argv, "notify", tcases);
}
