/*
 * th_proc.c: files, ports, child processes and Mosquitto for integration tests.
 *
 * Children are registered per test process; on_exit() kills what is still
 * running (by PID) and, when the test failed, prints each child's log tail.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CHILDREN 32

static pid_t owner_pid;
static char tmpdir[TH_PATH_MAX];
static struct th_proc *children[MAX_CHILDREN];

static void remove_tree(const char *path)
{
    pid_t pid = fork();

    /* rm -rf by exec: simplest correct recursive delete, and only ever our own mkdtemp dir. */
    if (pid == 0) {
        execlp("rm", "rm", "-rf", "--", path, (char *)NULL);
        _exit(127);
    }
    if (pid > 0)
        waitpid(pid, NULL, 0);
}

static void at_exit(int status, void *arg)
{
    (void)arg;
    if (owner_pid != getpid())
        return;
    for (size_t i = 0; i < MAX_CHILDREN; i++) {
        struct th_proc *p = children[i];
        if (p == NULL)
            continue;
        if (status != 0)
            th_log_dump(p, 40);
        if (p->pid > 0) {
            kill(p->pid, SIGCONT);
            kill(p->pid, SIGKILL);
            waitpid(p->pid, NULL, 0);
            p->pid = 0;
        }
    }
    if (tmpdir[0] != '\0') {
        if (getenv("OCB_TEST_KEEP") != NULL || status != 0)
            fprintf(stderr, "harness: test files kept in %s\n", tmpdir);
        else
            remove_tree(tmpdir);
    }
}

/* Per-process state: Check forks a process per test, which must not act on
 * (or clean up) what its parent registered. */
static void own(void)
{
    if (owner_pid == getpid())
        return;
    owner_pid = getpid();
    tmpdir[0] = '\0';
    memset(children, 0, sizeof(children));
    on_exit(at_exit, NULL);
}

const char *th_env(const char *name)
{
    const char *v = getenv(name);

    if (v == NULL || v[0] == '\0')
        ck_abort_msg("environment variable %s is not set (run the tests through ctest)", name);
    return v;
}

const char *th_tmpdir(void)
{
    own();
    if (tmpdir[0] == '\0') {
        const char *base = getenv("TMPDIR");
        snprintf(tmpdir, sizeof(tmpdir), "%s/ocb-it-XXXXXX",
                 base != NULL && base[0] != '\0' ? base : "/tmp");
        if (mkdtemp(tmpdir) == NULL) {
            tmpdir[0] = '\0';
            ck_abort_msg("mkdtemp failed");
        }
        /* Mosquitto may drop privileges; let it read what we write here. */
        chmod(tmpdir, 0755);
    }
    return tmpdir;
}

void th_path(char *out, size_t cap, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", th_tmpdir(), name);

    ck_assert_msg(n > 0 && (size_t)n < cap, "path too long");
}

bool th_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    bool ok;

    if (f == NULL)
        return false;
    ok = fwrite(data, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

char *th_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0;

    if (f == NULL)
        return NULL;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            char *nb;
            cap = cap ? cap * 2 : 8192;
            nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, 4096, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    buf[n] = '\0';
    if (len != NULL)
        *len = n;
    return buf;
}

void th_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

long long th_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int th_time_scale(void)
{
    const char *v = getenv("OCB_TEST_TIME_SCALE");
    long n = v != NULL ? strtol(v, NULL, 10) : 1;

    return n >= 1 && n <= 10 ? (int)n : 1;
}

bool th_wait_port(int port, int timeout_ms)
{
    long long end = th_now_ms() + timeout_ms;

    do {
        struct sockaddr_in a;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int rc;

        if (fd < 0)
            return false;
        memset(&a, 0, sizeof(a));
        a.sin_family = AF_INET;
        a.sin_port = htons((uint16_t)port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
        close(fd);
        if (rc == 0)
            return true;
        th_sleep_ms(20);
    } while (th_now_ms() < end);
    return false;
}

static void register_child(struct th_proc *p)
{
    for (size_t i = 0; i < MAX_CHILDREN; i++) {
        if (children[i] == p)
            return;
    }
    for (size_t i = 0; i < MAX_CHILDREN; i++) {
        if (children[i] == NULL) {
            children[i] = p;
            return;
        }
    }
    ck_abort_msg("too many child processes");
}

void th_spawn(struct th_proc *p, const char *name, char *const argv[])
{
    pid_t parent = getpid();
    char logname[64];
    pid_t pid;

    own();
    snprintf(p->name, sizeof(p->name), "%s", name);
    snprintf(logname, sizeof(logname), "%s.log", name);
    th_path(p->log, sizeof(p->log), logname);
    p->status = -1;
    pid = fork();
    ck_assert_msg(pid >= 0, "fork failed");
    if (pid == 0) {
        int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

        /* Die with the test, even when Check kills it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        execv(argv[0], argv);
        fprintf(stderr, "harness: cannot exec %s: errno %d\n", argv[0], errno);
        _exit(127);
    }
    p->pid = pid;
    register_child(p);
}

static int decode_status(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

int th_wait_exit(struct th_proc *p, int timeout_ms)
{
    long long end = th_now_ms() + timeout_ms;

    if (p->pid <= 0)
        return p->status;
    do {
        int st;
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid) {
            p->pid = 0;
            p->status = decode_status(st);
            return p->status;
        }
        th_sleep_ms(10);
    } while (th_now_ms() < end);
    return -1;
}

int th_stop(struct th_proc *p, int sig, int timeout_ms)
{
    int st;

    if (p->pid <= 0)
        return p->status;
    kill(p->pid, SIGCONT); /* a paused process cannot handle sig */
    kill(p->pid, sig);
    st = th_wait_exit(p, timeout_ms);
    if (st < 0) {
        kill(p->pid, SIGKILL);
        st = th_wait_exit(p, 5000);
    }
    return st;
}

bool th_running(struct th_proc *p)
{
    return p->pid > 0 && th_wait_exit(p, 0) < 0;
}

void th_signal(const struct th_proc *p, int sig)
{
    if (p->pid > 0)
        kill(p->pid, sig);
}

bool th_log_contains(const struct th_proc *p, const char *needle)
{
    char *text = th_read_file(p->log, NULL);
    bool found = text != NULL && strstr(text, needle) != NULL;

    free(text);
    return found;
}

bool th_log_wait(const struct th_proc *p, const char *needle, int timeout_ms)
{
    long long end = th_now_ms() + timeout_ms;

    do {
        if (th_log_contains(p, needle))
            return true;
        th_sleep_ms(20);
    } while (th_now_ms() < end);
    return false;
}

void th_log_dump(const struct th_proc *p, int max_lines)
{
    size_t len = 0;
    char *text = th_read_file(p->log, &len);
    size_t start = len;
    int lines = 0;

    if (text == NULL)
        return;
    while (start > 0 && lines <= max_lines) {
        start--;
        if (text[start] == '\n')
            lines++;
    }
    fprintf(stderr, "---- last lines of %s (%s) ----\n%s\n---- end of %s ----\n", p->name, p->log,
            text + start, p->name);
    free(text);
}

/* ---- Mosquitto */

void th_broker_start(struct th_broker *b, const char *extra_conf)
{
    char conf[2048], name[32];
    int n;

    if (b->port == 0)
        b->port = th_free_port();
    snprintf(b->url, sizeof(b->url), "tcp://127.0.0.1:%d", b->port);
    n = snprintf(conf, sizeof(conf),
                 "listener %d 127.0.0.1\n"
                 "allow_anonymous true\n"
                 "persistence false\n"
                 "log_dest stderr\n"
                 "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
                 "%s%s",
                 b->port, geteuid() == 0 ? "user root\n" : "",
                 extra_conf != NULL ? extra_conf : "");
    ck_assert_msg(n > 0 && (size_t)n < sizeof(conf), "mosquitto config too long");
    snprintf(name, sizeof(name), "mosquitto-%d.conf", b->port);
    th_path(b->conf, sizeof(b->conf), name);
    ck_assert_msg(th_write_file(b->conf, conf, strlen(conf)), "cannot write %s", b->conf);
    th_broker_restart(b);
}

void th_broker_restart(struct th_broker *b)
{
    char name[32];
    char *argv[4];

    if (b->proc.pid > 0)
        th_broker_stop(b);
    snprintf(name, sizeof(name), "mosquitto-%d", b->port);
    argv[0] = (char *)th_env("OCB_MOSQUITTO_BIN");
    argv[1] = "-c";
    argv[2] = b->conf;
    argv[3] = NULL;
    th_spawn(&b->proc, name, argv);
    if (!th_wait_port(b->port, 10000)) {
        th_log_dump(&b->proc, 40);
        ck_abort_msg("mosquitto did not listen on port %d", b->port);
    }
}

void th_broker_stop(struct th_broker *b)
{
    th_stop(&b->proc, SIGTERM, 5000);
}

void th_broker_pause(struct th_broker *b)
{
    th_signal(&b->proc, SIGSTOP);
}

void th_broker_resume(struct th_broker *b)
{
    th_signal(&b->proc, SIGCONT);
}

/* ---- certificates */

static void run_openssl(const char *dir, const char *args)
{
    char cmd[2048];
    int n, st;

    n = snprintf(cmd, sizeof(cmd), "cd '%s' && openssl %s >>openssl.log 2>&1", dir, args);
    ck_assert_msg(n > 0 && (size_t)n < sizeof(cmd), "openssl command too long");
    st = system(cmd);
    ck_assert_msg(st == 0, "openssl %s failed (see %s/openssl.log)", args, dir);
}

void th_make_certs(const char *dir)
{
    static const char *ext = "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                             "basicConstraints=CA:FALSE\n"
                             "keyUsage=digitalSignature,keyEncipherment\n"
                             "extendedKeyUsage=serverAuth,clientAuth\n";
    char path[TH_PATH_MAX];

    ck_assert_msg(mkdir(dir, 0755) == 0 || errno == EEXIST, "cannot create %s", dir);
    snprintf(path, sizeof(path), "%s/ext.cnf", dir);
    ck_assert(th_write_file(path, ext, strlen(ext)));
    run_openssl(dir, "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
                     "-subj /CN=ocb-test-ca "
                     "-keyout ca-key.pem -out ca.pem");
    run_openssl(dir,
                "req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost "
                "-keyout server-key.pem -out server.csr");
    run_openssl(dir, "x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial "
                     "-days 2 -extfile ext.cnf -out server.pem");
    run_openssl(
        dir,
        "req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=ocb-test-client "
        "-keyout client-key.pem -out client.csr");
    run_openssl(dir, "x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial "
                     "-days 2 -extfile ext.cnf -out client.pem");
    run_openssl(dir, "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
                     "-subj /CN=ocb-other-ca "
                     "-keyout other-ca-key.pem -out other-ca.pem");
    run_openssl(
        dir,
        "req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=ocb-other-client "
        "-keyout other-client-key.pem -out other-client.csr");
    run_openssl(dir, "x509 -req -in other-client.csr -CA other-ca.pem -CAkey other-ca-key.pem "
                     "-CAcreateserial -days 2 -extfile ext.cnf -out other-client.pem");
}
