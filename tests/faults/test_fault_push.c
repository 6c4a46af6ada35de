/*
 * test_fault_push.c: the fault matrix, push side.  Each case runs the
 * platform's delivery rules (fault_fixture.h) against a real fault and fails
 * if a single report the simulator generated never reaches MQTT:
 *   (a) the broker down for 3x the re-push window while devices report;
 *   (b) the bridge killed with SIGKILL under push load;
 *   (e) the state directory's disk full while the broker is down;
 *   (f) a corrupt state file at start-up;
 *   (g) the broker restarted in the middle of a drain.
 */
#define _GNU_SOURCE /* unshare(), CLONE_NEWNS */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include "fault_fixture.h"
#include "th_main.h"

#define SPOOL_OUTAGE "\"spool\":{\"mode\":\"outage\"}"

START_TEST(a_broker_down_three_repush_windows)
{
    fx_fault_start(SPOOL_OUTAGE);
    fx_report_for(10, 2000);
    th_broker_stop(&fx_broker);
    fx_report_for(10, 3 * FX_WINDOW_S * 1000);
    th_broker_restart(&fx_broker);
    fx_report_for(10, 2000);
    fx_verdict("a_broker_down_3x_window", true, 60000 * th_time_scale());
}
END_TEST

START_TEST(b_bridge_killed_under_push_load)
{
    fx_fault_start(SPOOL_OUTAGE);
    fx_report_for(20, 3000);
    th_stop(&fx_bridge.proc, SIGKILL, 5000);
    fx_report_for(20, 2000);
    fx_bridge_restart();
    fx_report_for(20, 3000);
    fx_verdict("b_bridge_kill9_push_load", false, 60000 * th_time_scale());
}
END_TEST

/* The state directory on a 1 MiB tmpfs that a ballast file (someone else's data) fills to
 * about 192 KiB free.  With the broker down the spool fills the rest: pushes get 503 (the
 * platform keeps them and re-pushes) and /readyz says why.  Then space returns (the ballast
 * is deleted) and the bridge accepts again without a restart; once the broker is back every
 * report reaches MQTT. */
START_TEST(e_disk_full)
{
    char dir[TH_PATH_MAX], ballast[TH_PATH_MAX + 16], small[TH_PATH_MAX + 16], why[256];
    static char chunk[64 * 1024];
    double written;
    FILE *f;

    if (geteuid() != 0) {
        fx_report_line("e_disk_full skipped (mounting a small tmpfs needs root)");
        return;
    }
    /* A mount namespace of this test's own: the tmpfs vanishes with its last process, even
     * when the test fails half-way. */
    ck_assert_msg(unshare(CLONE_NEWNS) == 0, "unshare: %s", strerror(errno));
    ck_assert(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0);
    th_path(dir, sizeof(dir), "state");
    ck_assert(mkdir(dir, 0700) == 0);
    ck_assert_msg(mount("tmpfs", dir, "tmpfs", 0, "size=1m,mode=0700") == 0, "mount: %s",
                  strerror(errno));
    snprintf(ballast, sizeof(ballast), "%s/ballast", dir);
    f = fopen(ballast, "w");
    ck_assert_ptr_nonnull(f);
    memset(chunk, 'x', sizeof(chunk));
    for (int i = 0; i < 13; i++) /* 832 KiB of 1 MiB */
        ck_assert(fwrite(chunk, 1, sizeof(chunk), f) == sizeof(chunk));
    ck_assert(fclose(f) == 0);
    snprintf(small, sizeof(small), "%s/ballast.small", dir);
    f = fopen(small, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert(fwrite(chunk, 1, sizeof(chunk), f) == sizeof(chunk)); /* 64 KiB more */
    ck_assert(fclose(f) == 0);

    fx_fault_start(SPOOL_OUTAGE);
    fx_report_for(10, 1000);
    th_broker_stop(&fx_broker);
    /* Until the disk is full (bounded: ~190 KiB hold a few hundred reports). */
    for (long long end = th_now_ms() + 40000;
         fx_metric("ocb_state_write_errors_total") < 1 && th_now_ms() < end;)
        fx_report_for(40, 250);
    ck_assert_msg(fx_metric("ocb_state_write_errors_total") >= 1, "the disk never filled");
    /* Answered 503 (the platform keeps them), and /readyz stays red while pushes go on: a
     * small write that still fits (the spool's probe, a single push) must not make it flap. */
    for (int i = 0; i < 10; i++) {
        fx_report_for(10, 200);
        ck_assert_msg(fx_readyz(why, sizeof(why)) == 503,
                      "/readyz turned green on a full disk (sample %d): %s", i, why);
    }
    fx_report_line("e: /readyz while the disk is full: %s", why);

    /* 64 KiB come back: small writes fit again and are answered 200, but the state directory
     * is still nearly full, so /readyz stays red until there is real headroom. */
    written = fx_metric("ocb_spool_written_total");
    ck_assert(unlink(small) == 0);
    fx_report_for(2, 1000);
    for (long long end = th_now_ms() + WAIT_MS; fx_metric("ocb_spool_written_total") <= written;
         th_sleep_ms(50))
        ck_assert_msg(th_now_ms() < end, "nothing was spooled with 64 KiB free");
    ck_assert_msg(fx_readyz(why, sizeof(why)) == 503, "/readyz turned green with 64 KiB free: %s",
                  why);

    ck_assert(unlink(ballast) == 0); /* space returns */
    for (long long end = th_now_ms() + WAIT_MS; fx_readyz(why, sizeof(why)) != 200;) {
        ck_assert_msg(th_now_ms() < end, "the bridge did not recover once space returned: %s", why);
        th_sleep_ms(100);
    }
    fx_report_for(10, 1000); /* spooled again */
    th_broker_restart(&fx_broker);
    fx_report_for(10, 2000);
    fx_verdict("e_disk_full", false, 60000 * th_time_scale());
    th_bridge_stop(&fx_bridge);
    umount2(dir, MNT_DETACH); /* so the fixture can remove its directory */
}
END_TEST

START_TEST(f_corrupt_state_file)
{
    char dir[TH_PATH_MAX], db[TH_PATH_MAX + 32];
    static const char junk[] = "this is not an SQLite database, it is what a bad disk left\n";

    th_path(dir, sizeof(dir), "state");
    ck_assert(mkdir(dir, 0700) == 0);
    snprintf(db, sizeof(db), "%s/ocbridge.db", dir);
    ck_assert(th_write_file(db, junk, sizeof(junk) - 1));
    fx_fault_start(SPOOL_OUTAGE);
    ck_assert_msg(th_log_wait(&fx_bridge.proc, ".corrupt-", WAIT_MS),
                  "no log line names the quarantined file");
    ck_assert_int_eq((int)fx_metric("ocb_state_quarantined_total"), 1);
    fx_report_for(10, 1000);
    th_broker_stop(&fx_broker);
    fx_report_for(10, 3000);
    th_broker_restart(&fx_broker);
    fx_report_for(10, 1000);
    fx_verdict("f_corrupt_state_file", true, 60000 * th_time_scale());
}
END_TEST

START_TEST(g_broker_restart_mid_drain)
{
    double left;

    fx_fault_start(SPOOL_OUTAGE);
    th_broker_stop(&fx_broker);
    fx_report_for(50, 6000);
    th_broker_restart(&fx_broker);
    for (long long end = th_now_ms() + WAIT_MS;
         fx_metric("ocb_spool_drained_total") < 1 && th_now_ms() < end;)
        th_sleep_ms(5);
    left = fx_metric("ocb_spool_messages");
    th_broker_restart(&fx_broker);
    fx_report_line("g: the broker restarted with %.0f messages left in the spool", left);
    fx_report_for(10, 1000);
    fx_verdict("g_broker_restart_mid_drain", true, 60000 * th_time_scale());
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const push[] = {a_broker_down_three_repush_windows,
                                 b_bridge_killed_under_push_load,
                                 e_disk_full,
                                 f_corrupt_state_file,
                                 g_broker_restart_mid_drain,
                                 NULL};
    const struct th_case cases[] = {
        {.name = "push", .timeout_s = 300, .tests = push},
        {.name = NULL},
    };

    return th_main(argc, argv, "fault_push", cases);
}
