/*
 * fuzz_config.c: any bytes given as a configuration file either load into a
 * configuration whose every value is inside its documented bounds, or fail
 * with a message of the form "NAME: key.path: reason".  Never a crash, a
 * leak, or a half-built configuration.
 */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ocb/config.h"
#include "ocb/grammar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ocb_config *cfg = NULL;
    char err[512] = "";
    enum ocb_err rc = config_parse("fuzz.json", (const char *)data, size, &cfg, err, sizeof(err));
    if (rc != OCB_OK) {
        assert(cfg == NULL);
        assert(strncmp(err, "fuzz.json: ", 11) == 0);
        return 0;
    }
    assert(cfg->mqtt.qos >= 0 && cfg->mqtt.qos <= 2);
    assert(cfg->mqtt.version == 4 || cfg->mqtt.version == 5);
    assert(cfg->mqtt.max_inflight >= 1);
    assert(cfg->http.max_body_bytes >= 1024);
    assert(cfg->http.public_url[0] != '\0');
    assert(cfg->n_apps <= OCB_MAX_APPS);
    for (size_t i = 0; i < cfg->n_apps; i++) {
        assert(cfg->apps[i].app_id[0] != '\0');
        assert(strpbrk(cfg->apps[i].app_id, "/+#") == NULL);
        /* What -t accepts, routing accepts: one topic-level rule. */
        assert(grammar_level_valid(cfg->apps[i].app_id, strlen(cfg->apps[i].app_id)));
        assert(cfg->apps[i].secret && cfg->apps[i].push_token);
    }
    config_free(cfg);
    return 0;
}
