/*
 * sim_api.c: the northbound API port: fault injection first, then login/refresh or the token
 * check, then the subscription, command, device-group and device-management routers.  Every request
 * and its answer goes into the request log (GET /requests on the admin port).
 *
 * Runs on MHD connection threads.  A latency fault sleeps before g_sim.lock is taken, so a slow
 * answer never stalls other connections.
 */
#include "sim.h"

#include <string.h>
#include <time.h>

#define LOGIN_PATH   "/iocm/app/sec/v1.1.0/login"
#define REFRESH_PATH "/iocm/app/sec/v1.1.0/refreshToken"
#define LOGOUT_PATH  "/iocm/app/sec/v1.1.0/logout"

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Answer a fired fault; false when it was latency only and the request proceeds. */
static bool apply_fault(const struct sim_fault *f, struct sim_resp *resp)
{
    if (f->latency_ms > 0)
        sleep_ms(f->latency_ms);
    if (f->drop_connection) {
        resp->drop = true;
        return true;
    }
    if (f->status) {
        if (!f->error_code[0])
            sim_resp_empty(resp, f->status);
        else if (f->resultcode_shape)
            sim_resp_gw_error(resp, f->status, f->error_code, f->error_desc);
        else
            sim_resp_error(resp, f->status, f->error_code, f->error_desc);
        return true;
    }
    if (f->body_200_error[0]) {
        sim_resp_error(resp, 200, f->body_200_error, f->error_desc);
        return true;
    }
    return false;
}

static void route_locked(const struct sim_req *req, struct sim_resp *resp)
{
    if (strcmp(req->path, LOGIN_PATH) == 0) {
        sim_auth_login(req, resp);
        return;
    }
    if (strcmp(req->path, REFRESH_PATH) == 0) {
        sim_auth_refresh(req, resp);
        return;
    }
    if (strcmp(req->path, LOGOUT_PATH) == 0) { /* deprecated; the body names the token */
        sim_auth_logout(req, resp);
        return;
    }
    if (strncmp(req->path, "/iocm/", 6) != 0 && strncmp(req->path, "/iodm/", 6) != 0) {
        sim_resp_error(resp, 404, "100022", "Unknown API path.");
        return;
    }
    struct sim_app *app = sim_auth_check_locked(req, resp);
    if (!app)
        return;
    /* ?appId= names an authorized app; this simulator has no authorizations between apps. */
    const char *other = sim_req_query(req, "appId");
    if (other && *other && strcmp(other, app->id) != 0) {
        sim_resp_error(resp, 403, "100217", "The application hasn't been authorized.");
        return;
    }
    if (sim_subs_route(req, resp, app) || sim_cmds_route(req, resp, app) ||
        sim_groups_route(req, resp, app) || sim_dm_route(req, resp, app))
        return;
    sim_resp_error(resp, 404, "100022", "Unknown API path.");
}

void sim_api_handle(const struct sim_req *req, struct sim_resp *resp)
{
    struct sim_fault f = {0};
    sim_state_lock();
    bool fired = sim_faults_match_locked(req->method, req->path, &f);
    sim_state_unlock();
    bool answered = fired && apply_fault(&f, resp);
    sim_state_lock();
    if (!answered) {
        route_locked(req, resp);
        if (fired && f.drop_after) {
            /* Processed, state changed; only the answer is lost on the way. */
            resp->drop = true;
            resp->processed = true;
        }
    }
    sim_reqlog_add_locked(req, resp);
    sim_state_unlock();
    if (resp->drop)
        SIM_INFO("api", "%s %s -> connection dropped (fault)%s", req->method, req->path,
                 resp->processed ? " after processing it" : "");
    else
        SIM_DEBUG("api", "%s %s -> %d%s", req->method, req->path, resp->status,
                  answered ? " (fault)" : "");
}
