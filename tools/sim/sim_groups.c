/*
 * sim_groups.c: device groups (platform-api.md §8): create, query (paged list and one), modify and
 * delete a group under /iocm/app/devgroup/v1.3.0/devGroups, list its members
 * (dm/v1.2.0/devices/ids) and add or remove members (dm/v1.1.0/devices/addDevGroupTagToDevices,
 * deleteDevGroupTagFromDevices).
 *
 * Shapes follow the Java SDK DTOs (CreateDeviceGroupOutDTO, ModifyDeviceGroupOutDTO,
 * QueryDeviceGroupsOutDTO with its "list" key as observed, DeviceGroupWithDeviceListDTO).  Where
 * sources disagree it is a flag: create answers 200 (table) or 201 (--devgroup-create-201, the
 * example); member changes echo the deviceIds (the reference) or [] (--devgroup-ids-empty, as
 * observed on a live platform).  The group error codes 100601-100603 and their HTTP statuses are
 * UNCONFIRMED.  These calls name an authorized app with ?accessAppId= (not appId); as elsewhere,
 * no app is authorized for another here.
 *
 * Groups live in g_sim.groups; members are deviceIds of the group's app.  A deleted device leaves
 * every group (sim_groups_forget_device_locked).  Runs with g_sim.lock held.
 */
#include "sim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GROUPS_PATH     "/iocm/app/devgroup/v1.3.0/devGroups"
#define MEMBERS_PATH    "/iocm/app/dm/v1.2.0/devices/ids"
#define ADD_PATH        "/iocm/app/dm/v1.1.0/devices/addDevGroupTagToDevices"
#define REMOVE_PATH     "/iocm/app/dm/v1.1.0/devices/deleteDevGroupTagFromDevices"
#define GROUP_PAGE_DEF  25   /* UNCONFIRMED */
#define GROUP_PAGE_MAX  1000 /* UNCONFIRMED */
#define NAME_MAX_LEN    50
#define DESC_MAX_LEN    1024
#define INPUT_INVALID   "The input is invalid."
#define NOT_EXIST_GROUP "The device group is not existed."

static struct sim_group *find_group_locked(const struct sim_app *app, const char *id)
{
    for (size_t i = 0; id && i < g_sim.ngroups; i++)
        if (strcmp(g_sim.groups[i].id, id) == 0 && strcmp(g_sim.groups[i].app, app->id) == 0)
            return &g_sim.groups[i];
    return NULL;
}

static bool name_taken_locked(const struct sim_app *app, const char *name,
                              const struct sim_group *except)
{
    for (size_t i = 0; i < g_sim.ngroups; i++)
        if (&g_sim.groups[i] != except && strcmp(g_sim.groups[i].app, app->id) == 0 &&
            strcmp(g_sim.groups[i].name, name) == 0)
            return true;
    return false;
}

static size_t member_index(const struct sim_group *g, const char *id)
{
    for (size_t i = 0; i < g->nmembers; i++)
        if (strcmp(g->members[i], id) == 0)
            return i;
    return (size_t)-1;
}

static void remove_member(struct sim_group *g, size_t i)
{
    memmove(&g->members[i], &g->members[i + 1], (g->nmembers - i - 1) * sizeof *g->members);
    g->nmembers--;
}

void sim_groups_forget_device_locked(const char *id)
{
    for (size_t i = 0; i < g_sim.ngroups; i++) {
        size_t k = member_index(&g_sim.groups[i], id);
        if (k != (size_t)-1)
            remove_member(&g_sim.groups[i], k);
    }
}

static void free_group(struct sim_group *g)
{
    free(g->description);
    free(g->members);
}

void sim_groups_free_locked(void)
{
    for (size_t i = 0; i < g_sim.ngroups; i++)
        free_group(&g_sim.groups[i]);
    g_sim.ngroups = 0;
}

static cJSON *group_json(const struct sim_group *g, bool with_creator)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "name", g->name);
    if (g->description)
        cJSON_AddStringToObject(o, "description", g->description);
    cJSON_AddStringToObject(o, "id", g->id);
    cJSON_AddStringToObject(o, "appId", g->app);
    cJSON_AddNumberToObject(o, "maxDevNum", (double)g->max_dev);
    cJSON_AddNumberToObject(o, "curDevNum", (double)g->nmembers);
    if (with_creator) /* UNCONFIRMED: the creator's name; the app here */
        cJSON_AddStringToObject(o, "creator", g->app);
    return o;
}

/* Validate the optional fields of create/modify: name, description, maxDevNum. */
static bool group_fields_ok(const cJSON *in, bool name_required)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(in, "name");
    const cJSON *desc = cJSON_GetObjectItemCaseSensitive(in, "description");
    const cJSON *max = cJSON_GetObjectItemCaseSensitive(in, "maxDevNum");
    if (name_required || (name && !cJSON_IsNull(name))) {
        /* UNCONFIRMED: the reference allows letters and digits only; any 1..50 chars here. */
        if (!cJSON_IsString(name) || !*name->valuestring ||
            strlen(name->valuestring) > NAME_MAX_LEN)
            return false;
    }
    if (desc && !cJSON_IsNull(desc) &&
        (!cJSON_IsString(desc) || strlen(desc->valuestring) > DESC_MAX_LEN))
        return false;
    if (max && !cJSON_IsNull(max) &&
        (!cJSON_IsNumber(max) || max->valuedouble < 0 || max->valuedouble > SIM_MAX_GROUP_DEVS ||
         floor(max->valuedouble) != max->valuedouble))
        return false;
    return true;
}

static bool add_member(struct sim_group *g, const char *id)
{
    if (member_index(g, id) != (size_t)-1)
        return true;
    if (sim_grow((void **)&g->members, &g->cap_members, g->nmembers + 1, sizeof *g->members,
                 SIM_MAX_GROUP_DEVS) != OCB_OK)
        return false;
    snprintf(g->members[g->nmembers++], sizeof *g->members, "%s", id);
    return true;
}

/* Every entry of ids is a deviceId of app: else answers 400 (shape) or 404 (unknown device). */
static bool ids_ok(const cJSON *ids, const struct sim_app *app, struct sim_resp *resp)
{
    const cJSON *e;
    if (!cJSON_IsArray(ids)) {
        sim_resp_error(resp, 400, "100022", INPUT_INVALID);
        return false;
    }
    cJSON_ArrayForEach(e, ids)
    {
        if (!cJSON_IsString(e)) {
            sim_resp_error(resp, 400, "100022", INPUT_INVALID);
            return false;
        }
        const struct sim_device *d = sim_devices_find_locked(e->valuestring);
        if (!d || strcmp(d->app, app->id) != 0) {
            sim_resp_error(resp, 404, "100403", "The device is not existed.");
            return false;
        }
    }
    return true;
}

/* Members after adding ids: more than max_dev (when set) is refused. */
static bool capacity_ok(const struct sim_group *g, const cJSON *ids, long max_dev,
                        struct sim_resp *resp)
{
    size_t n = g ? g->nmembers : 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, ids)
    {
        if (!g || member_index(g, e->valuestring) == (size_t)-1)
            n++;
    }
    if ((max_dev > 0 && n > (size_t)max_dev) || n > SIM_MAX_GROUP_DEVS) {
        sim_resp_error(resp, 400, "100601",
                       "The number of device in the group has reached the max.");
        return false;
    }
    return true;
}

static void create_group(const struct sim_req *req, struct sim_resp *resp, struct sim_app *app)
{
    cJSON *in = sim_req_json_object(req, resp);
    if (!in)
        return;
    const char *for_app = sim_json_str(in, "appId");
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(in, "deviceIds");
    const cJSON *max = cJSON_GetObjectItemCaseSensitive(in, "maxDevNum");
    long max_dev = cJSON_IsNumber(max) ? (long)max->valuedouble : 0;
    if (for_app && *for_app && strcmp(for_app, app->id) != 0) {
        sim_resp_error(resp, 403, "100217", "The application hasn't been authorized.");
        goto out;
    }
    if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(in, "name"))) {
        sim_resp_error(resp, 400, "102202", "Required Parameter is null or empty.");
        goto out;
    }
    if (!group_fields_ok(in, true)) {
        sim_resp_error(resp, 400, "100022", INPUT_INVALID);
        goto out;
    }
    if (ids && !cJSON_IsNull(ids) &&
        (!ids_ok(ids, app, resp) || !capacity_ok(NULL, ids, max_dev, resp)))
        goto out;
    const char *name = sim_json_str(in, "name");
    if (name_taken_locked(app, name, NULL)) {
        sim_resp_error(resp, 400, "100602", "The device group name has been used.");
        goto out;
    }
    if (sim_grow((void **)&g_sim.groups, &g_sim.cap_groups, g_sim.ngroups + 1, sizeof *g_sim.groups,
                 SIM_MAX_GROUPS) != OCB_OK) {
        sim_resp_error(resp, 500, "100001", "Internal server error.");
        goto out;
    }
    struct sim_group *g = &g_sim.groups[g_sim.ngroups];
    memset(g, 0, sizeof *g);
    sim_uuid_random(g->id);
    snprintf(g->app, sizeof g->app, "%s", app->id);
    snprintf(g->name, sizeof g->name, "%s", name);
    const char *desc = sim_json_str(in, "description");
    g->description = desc ? strdup(desc) : NULL;
    g->max_dev = max_dev;
    const cJSON *members = cJSON_IsArray(ids) ? ids : NULL, *e;
    cJSON_ArrayForEach(e, members)
    {
        if (!add_member(g, e->valuestring)) {
            free_group(g);
            sim_resp_error(resp, 500, "100001", "Internal server error.");
            goto out;
        }
    }
    g_sim.ngroups++;
    SIM_INFO("groups", "app %s: created group %s (%s, %zu devices)", app->id, g->name, g->id,
             g->nmembers);
    cJSON *o = group_json(g, false);
    cJSON *arr = o ? cJSON_AddArrayToObject(o, "deviceIds") : NULL;
    for (size_t i = 0; arr && i < g->nmembers; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(g->members[i]));
    sim_resp_json(resp, g_sim.opts->devgroup_create_201 ? 201 : 200, o);
out:
    cJSON_Delete(in);
}

static void list_groups(const struct sim_req *req, struct sim_resp *resp, struct sim_app *app)
{
    long page_no, page_size;
    if (!sim_req_paging(req, resp, GROUP_PAGE_DEF, GROUP_PAGE_MAX, &page_no, &page_size))
        return;
    const char *name = sim_req_query(req, "name");
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    size_t total = 0, first = (size_t)page_no * (size_t)page_size;
    for (size_t i = 0; i < g_sim.ngroups; i++) {
        const struct sim_group *g = &g_sim.groups[i];
        if (strcmp(g->app, app->id) != 0 || (name && *name && strcmp(name, g->name) != 0))
            continue;
        if (arr && total >= first && total < first + (size_t)page_size)
            cJSON_AddItemToArray(arr, group_json(g, true));
        total++;
    }
    if (o) {
        cJSON_AddNumberToObject(o, "totalCount", (double)total);
        cJSON_AddNumberToObject(o, "pageNo", (double)page_no);
        cJSON_AddNumberToObject(o, "pageSize", (double)page_size);
        cJSON_AddItemToObject(o, "list", arr);
    } else {
        cJSON_Delete(arr);
    }
    sim_resp_json(resp, 200, o);
}

static void modify_group(const struct sim_req *req, struct sim_resp *resp, struct sim_app *app,
                         struct sim_group *g)
{
    cJSON *in = sim_req_json_object(req, resp);
    if (!in)
        return;
    const char *name = sim_json_str(in, "name"), *desc = sim_json_str(in, "description");
    const cJSON *max = cJSON_GetObjectItemCaseSensitive(in, "maxDevNum");
    if (!group_fields_ok(in, false)) {
        sim_resp_error(resp, 400, "100022", INPUT_INVALID);
        goto out;
    }
    if (name && name_taken_locked(app, name, g)) {
        sim_resp_error(resp, 400, "100602", "The device group name has been used.");
        goto out;
    }
    if (cJSON_IsNumber(max) && max->valuedouble > 0 && (size_t)max->valuedouble < g->nmembers) {
        sim_resp_error(resp, 400, "100601",
                       "The number of device in the group has reached the max.");
        goto out;
    }
    if (desc) {
        char *copy = strdup(desc);
        if (!copy) {
            sim_resp_error(resp, 500, "100001", "Internal server error.");
            goto out;
        }
        free(g->description);
        g->description = copy;
    }
    if (name)
        snprintf(g->name, sizeof g->name, "%s", name);
    if (cJSON_IsNumber(max))
        g->max_dev = (long)max->valuedouble;
    SIM_INFO("groups", "app %s: modified group %s", app->id, g->id);
    cJSON *o = group_json(g, false);
    cJSON_DeleteItemFromObjectCaseSensitive(o, "curDevNum"); /* ModifyDeviceGroupOutDTO */
    sim_resp_json(resp, 200, o);
out:
    cJSON_Delete(in);
}

static void one_group(const struct sim_req *req, struct sim_resp *resp, struct sim_app *app,
                      const char *id)
{
    const char *m = req->method;
    if (strcmp(m, "GET") != 0 && strcmp(m, "PUT") != 0 && strcmp(m, "DELETE") != 0) {
        sim_resp_error(resp, 405, "100022", "Method not allowed.");
        return;
    }
    struct sim_group *g = find_group_locked(app, id);
    if (!g) {
        sim_resp_error(resp, 404, "100603", NOT_EXIST_GROUP);
    } else if (strcmp(m, "GET") == 0) {
        sim_resp_json(resp, 200, group_json(g, true));
    } else if (strcmp(m, "PUT") == 0) {
        modify_group(req, resp, app, g);
    } else {
        SIM_INFO("groups", "app %s: deleted group %s", app->id, g->id);
        free_group(g);
        size_t i = (size_t)(g - g_sim.groups);
        memmove(&g_sim.groups[i], &g_sim.groups[i + 1],
                (g_sim.ngroups - i - 1) * sizeof *g_sim.groups);
        g_sim.ngroups--;
        sim_resp_empty(resp, 200); /* UNCONFIRMED: 200 without a body (204 elsewhere) */
    }
}

static void list_members(const struct sim_req *req, struct sim_resp *resp, struct sim_app *app)
{
    long page_no, page_size;
    if (!sim_req_paging(req, resp, GROUP_PAGE_DEF, GROUP_PAGE_MAX, &page_no, &page_size))
        return;
    const char *gid = sim_req_query(req, "devGroupId");
    if (!gid || !*gid) {
        sim_resp_error(resp, 400, "102202", "Required Parameter is null or empty.");
        return;
    }
    const struct sim_group *g = find_group_locked(app, gid);
    if (!g) {
        sim_resp_error(resp, 404, "100603", NOT_EXIST_GROUP);
        return;
    }
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    size_t first = (size_t)page_no * (size_t)page_size;
    for (size_t i = first; arr && i < g->nmembers && i < first + (size_t)page_size; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(g->members[i]));
    if (o) {
        cJSON_AddNumberToObject(o, "totalCount", (double)g->nmembers);
        cJSON_AddNumberToObject(o, "pageNo", (double)page_no);
        cJSON_AddNumberToObject(o, "pageSize", (double)page_size);
        cJSON_AddItemToObject(o, "deviceIds", arr);
    } else {
        cJSON_Delete(arr);
    }
    sim_resp_json(resp, 200, o);
}

static void change_members(const struct sim_req *req, struct sim_resp *resp, struct sim_app *app,
                           bool add)
{
    cJSON *in = sim_req_json_object(req, resp);
    if (!in)
        return;
    const char *gid = sim_json_str(in, "devGroupId");
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(in, "deviceIds"), *e;
    struct sim_group *g = NULL;
    if (!gid || !*gid || !ids) {
        sim_resp_error(resp, 400, "102202", "Required Parameter is null or empty.");
        goto out;
    }
    if (!(g = find_group_locked(app, gid))) {
        sim_resp_error(resp, 404, "100603", NOT_EXIST_GROUP);
        goto out;
    }
    if (!ids_ok(ids, app, resp) || (add && !capacity_ok(g, ids, g->max_dev, resp)))
        goto out;
    cJSON_ArrayForEach(e, ids)
    {
        if (add && !add_member(g, e->valuestring)) {
            sim_resp_error(resp, 500, "100001", "Internal server error.");
            goto out;
        }
        size_t k = add ? (size_t)-1 : member_index(g, e->valuestring);
        if (k != (size_t)-1)
            remove_member(g, k);
    }
    SIM_INFO("groups", "app %s: group %s now has %zu devices", app->id, g->id, g->nmembers);
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "devGroupId", g->id);
        cJSON_AddItemToObject(o, "deviceIds",
                              g_sim.opts->devgroup_ids_empty ? cJSON_CreateArray()
                                                             : cJSON_Duplicate(ids, true));
    }
    sim_resp_json(resp, 200, o);
out:
    cJSON_Delete(in);
}

bool sim_groups_route(const struct sim_req *req, struct sim_resp *resp, struct sim_app *app)
{
    const char *m = req->method, *p = req->path;
    bool get = strcmp(m, "GET") == 0, post = strcmp(m, "POST") == 0;
    size_t gl = strlen(GROUPS_PATH);
    bool groups = strncmp(p, GROUPS_PATH, gl) == 0 && (p[gl] == '\0' || p[gl] == '/');
    if (!groups && strcmp(p, MEMBERS_PATH) != 0 && strcmp(p, ADD_PATH) != 0 &&
        strcmp(p, REMOVE_PATH) != 0)
        return false;
    const char *other = sim_req_query(req, "accessAppId");
    if (other && *other && strcmp(other, app->id) != 0) {
        sim_resp_error(resp, 403, "100217", "The application hasn't been authorized.");
        return true;
    }
    if (groups && p[gl] == '\0') {
        if (post)
            create_group(req, resp, app);
        else if (get)
            list_groups(req, resp, app);
        else
            sim_resp_error(resp, 405, "100022", "Method not allowed.");
    } else if (groups) {
        const char *id = p + gl + 1;
        if (!*id || strchr(id, '/'))
            return false;
        one_group(req, resp, app, id);
    } else if (strcmp(p, MEMBERS_PATH) == 0) {
        if (get)
            list_members(req, resp, app);
        else
            sim_resp_error(resp, 405, "100022", "Method not allowed.");
    } else if (post) {
        change_members(req, resp, app, strcmp(p, ADD_PATH) == 0);
    } else {
        sim_resp_error(resp, 405, "100022", "Method not allowed.");
    }
    return true;
}
