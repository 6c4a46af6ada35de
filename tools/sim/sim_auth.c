/*
 * sim_auth.c: login, refreshToken, the token check on business calls and the per-app throttle
 * (docs/platform-api.md §4).
 *
 * Each app has one valid refresh token and one current access token.  A login replaces both, so
 * older tokens stop working at once ("only the last accessToken is valid").  Whether a refresh
 * also kills the access token it replaces is not documented: by default (lenient) the previous
 * access token keeps working until it expires, --refresh-revokes kills it at once.  The
 * deprecated logout kills the access token it names.
 * Token errors use the gateway shape {"resultcode","resultmsg"}; login errors the application
 * shape {"error_code","error_desc"}.  The throttle is a sliding window over accepted business
 * calls: no period of throttle_period_s seconds ever sees more than throttle_calls of them.
 */
#include "sim.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

struct sim_app *sim_auth_app_locked(const char *id)
{
    for (size_t i = 0; id && i < g_sim.napps; i++)
        if (strcmp(g_sim.apps[i].id, id) == 0)
            return &g_sim.apps[i];
    return NULL;
}

static void issue_tokens_locked(struct sim_app *a, struct sim_resp *resp, bool keep_previous)
{
    const struct sim_opts *o = g_sim.opts;
    int64_t now = sim_now_ms();
    a->prev_access[0] = '\0';
    if (keep_previous && a->access[0] && now < a->access_expires_ms) {
        memcpy(a->prev_access, a->access, sizeof a->prev_access);
        a->prev_access_expires_ms = a->access_expires_ms;
    }
    sim_rand_hex(a->access, SIM_TOKEN_HEX);
    sim_rand_hex(a->refresh, SIM_TOKEN_HEX);
    a->access_expires_ms = now + o->token_ttl_s * 1000;
    a->refresh_expires_ms = now + o->refresh_ttl_s * 1000;
    cJSON *r = cJSON_CreateObject();
    if (r) {
        cJSON_AddStringToObject(r, "accessToken", a->access);
        cJSON_AddStringToObject(r, "tokenType", "bearer");
        cJSON_AddStringToObject(r, "refreshToken", a->refresh);
        cJSON_AddNumberToObject(r, "expiresIn", (double)o->token_ttl_s);
        cJSON_AddStringToObject(r, "scope", "default");
    }
    sim_resp_json(resp, 200, r);
}

void sim_auth_login(const struct sim_req *req, struct sim_resp *resp)
{
    char app_id[SIM_APP_ID_MAX + 2], secret[SIM_SECRET_MAX + 2];
    if (strcmp(req->method, "POST") != 0) {
        sim_resp_error(resp, 405, "100022", "The input is invalid.");
        return;
    }
    bool have_id = sim_form_get(req->body, req->body_len, "appId", app_id, sizeof app_id);
    /* UNCONFIRMED: one Go client sends "Secret"; accept it (lenient reading). */
    bool have_secret = sim_form_get(req->body, req->body_len, "secret", secret, sizeof secret) ||
                       sim_form_get(req->body, req->body_len, "Secret", secret, sizeof secret);
    if (!have_id || !have_secret || !app_id[0] || !secret[0]) {
        SIM_INFO("auth", "login without appId/secret");
        sim_resp_error(resp, 400, "102202", "Required Parameter is null or empty.");
        return;
    }
    struct sim_app *a = sim_auth_app_locked(app_id);
    if (!a || strcmp(a->secret, secret) != 0) {
        SIM_INFO("auth", "login refused for app %s", app_id);
        sim_resp_error(resp, 401, "100208", "AppId or secret is not right.");
        return;
    }
    SIM_INFO("auth", "login app %s (older tokens invalidated)", a->id);
    issue_tokens_locked(a, resp, false);
}

void sim_auth_refresh(const struct sim_req *req, struct sim_resp *resp)
{
    if (strcmp(req->method, "POST") != 0) {
        sim_resp_error(resp, 405, "100022", "The input is invalid.");
        return;
    }
    cJSON *body = cJSON_ParseWithLength(req->body, req->body_len);
    if (!cJSON_IsObject(body)) {
        cJSON_Delete(body);
        sim_resp_error(resp, 400, "50400", "The input is invalid.");
        return;
    }
    const char *id = sim_json_str(body, "appId"), *sec = sim_json_str(body, "secret"),
               *rt = sim_json_str(body, "refreshToken");
    if (!id || !sec || !rt || !*id || !*sec || !*rt) {
        sim_resp_error(resp, 400, "102202", "Required Parameter is null or empty.");
    } else {
        struct sim_app *a = sim_auth_app_locked(id);
        if (!a || strcmp(a->secret, sec) != 0 || !a->refresh[0] || strcmp(a->refresh, rt) != 0 ||
            sim_now_ms() >= a->refresh_expires_ms) {
            SIM_INFO("auth", "refreshToken refused for app %s", id);
            sim_resp_error(resp, 401, "100208", "AppId or secret is not right.");
        } else {
            SIM_INFO("auth", "refreshToken app %s (previous access token %s)", a->id,
                     g_sim.opts->refresh_revokes ? "revoked" : "kept until it expires");
            issue_tokens_locked(a, resp, !g_sim.opts->refresh_revokes);
        }
    }
    cJSON_Delete(body);
}

void sim_auth_logout(const struct sim_req *req, struct sim_resp *resp)
{
    if (strcmp(req->method, "POST") != 0) {
        sim_resp_error(resp, 405, "100022", "The input is invalid.");
        return;
    }
    cJSON *body = cJSON_ParseWithLength(req->body, req->body_len);
    const char *tok = cJSON_IsObject(body) ? sim_json_str(body, "accessToken") : NULL;
    if (!tok || !*tok) {
        sim_resp_error(resp, 400, "102202", "Required Parameter is null or empty.");
        cJSON_Delete(body);
        return;
    }
    /* UNCONFIRMED: an unknown or dead token is not an error (logging out twice is harmless). */
    for (size_t i = 0; i < g_sim.napps; i++) {
        struct sim_app *a = &g_sim.apps[i];
        if (a->access[0] && strcmp(a->access, tok) == 0) {
            a->access[0] = '\0';
            SIM_INFO("auth", "logout app %s", a->id);
        }
        if (a->prev_access[0] && strcmp(a->prev_access, tok) == 0)
            a->prev_access[0] = '\0';
    }
    sim_resp_empty(resp, 204);
    cJSON_Delete(body);
}

static bool token_ok(const struct sim_app *a, const char *tok, int64_t now)
{
    if (a->access[0] && strcmp(tok, a->access) == 0 && now < a->access_expires_ms)
        return true;
    return a->prev_access[0] && strcmp(tok, a->prev_access) == 0 && now < a->prev_access_expires_ms;
}

bool sim_auth_throttle_take(struct sim_app *app, long calls, long period_s, int64_t now_ms)
{
    if (calls <= 0 || !app->calls)
        return true;
    int64_t window = (int64_t)period_s * 1000;
    /* Forget calls that left the window. */
    while (app->calls_n > 0 && app->calls[app->calls_head] <= now_ms - window) {
        app->calls_head = (app->calls_head + 1) % app->calls_cap;
        app->calls_n--;
    }
    if (app->calls_n >= (size_t)calls || app->calls_n >= app->calls_cap)
        return false;
    app->calls[(app->calls_head + app->calls_n) % app->calls_cap] = now_ms;
    app->calls_n++;
    return true;
}

struct sim_app *sim_auth_check_locked(const struct sim_req *req, struct sim_resp *resp)
{
    const struct sim_opts *o = g_sim.opts;
    const char *key = sim_req_header(req, "app_key");
    /* UNCONFIRMED: some deployments name the header x-app-key; accept both (lenient). */
    if (!key)
        key = sim_req_header(req, "x-app-key");
    if (!key || !*key) {
        sim_resp_error(resp, 401, "100025", "AppId for auth not exist.");
        return NULL;
    }
    struct sim_app *a = sim_auth_app_locked(key);
    const char *auth = sim_req_header(req, "authorization");
    const char *tok = NULL;
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
        tok = auth + 7;
        while (*tok == ' ')
            tok++;
    }
    if (!a || !tok || !token_ok(a, tok, sim_now_ms())) {
        SIM_INFO("auth", "%s %s: invalid access token or appId (%s)", req->method, req->path, key);
        sim_resp_gw_error(resp, 403, "1010005", "Invalid access token or appId.");
        return NULL;
    }
    if (!sim_auth_throttle_take(a, o->throttle_calls, o->throttle_period_s, sim_now_ms())) {
        SIM_INFO("auth", "%s %s: app %s throttled", req->method, req->path, a->id);
        if (o->throttle_resultcode)
            sim_resp_gw_error(resp, 403, "1010009", "app throttle exceed.");
        else
            sim_resp_error(resp, 403, "1010009", "app throttle exceed.");
        return NULL;
    }
    return a;
}

void sim_auth_revoke_locked(struct sim_app *app)
{
    app->access[0] = '\0';
    app->prev_access[0] = '\0';
    app->refresh[0] = '\0';
}

void sim_auth_reset_locked(void)
{
    for (size_t i = 0; i < g_sim.napps; i++) {
        sim_auth_revoke_locked(&g_sim.apps[i]);
        g_sim.apps[i].calls_head = 0;
        g_sim.apps[i].calls_n = 0;
    }
}
