#include "router/launcher.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

enum { MAX_RESTARTS = 5, POLL_MS = 100 };

typedef enum launcher_state { L_STARTING, L_RUNNING, L_RESTARTING, L_STOPPING } launcher_state;

typedef struct shard_proc {
    launcher *l;
    int rank;
    uv_process_t proc;
    bool alive;
    bool handle_open;
} shard_proc;

struct launcher {
    uv_loop_t *loop;
    router_config cfg;
    launcher_hooks hooks;
    launcher_state state;
    shard_proc *procs; // [num_shard]
    int n;
    int generation; // spawn round (part of the rendezvous id)
    int restarts;   // consecutive restarts without a successful start
    bool start_failed;
    bool start_aborted;
    uv_timer_t timer; // socket polling and the stop grace period
    void (*stop_done)(void *);
    void *stop_user;
};

static void socket_path(const launcher *l, int rank, char *out, size_t cap) {
    snprintf(out, cap, "%s-%d", l->cfg.shard_uds_path, rank);
}

static int alive_count(const launcher *l) {
    int n = 0;
    for (int i = 0; i < l->n; i++)
        n += l->procs[i].alive;
    return n;
}

static void spawn_all(launcher *l);
static void on_poll(uv_timer_t *t);
static void on_timer_closed(uv_handle_t *h);

static bool any_handle_open(const launcher *l) {
    for (int i = 0; i < l->n; i++)
        if (l->procs[i].handle_open) return true;
    return false;
}

static void on_proc_closed(uv_handle_t *h) {
    shard_proc *p = h->data;
    p->handle_open = false;
    launcher *l = p->l;
    if (any_handle_open(l)) return;
    if (l->state == L_STOPPING) {
        uv_timer_stop(&l->timer);
        if (!uv_is_closing((uv_handle_t *)&l->timer))
            uv_close((uv_handle_t *)&l->timer, on_timer_closed);
    } else if (l->state == L_RESTARTING) {
        // Every old process is gone and its handle closed: the ranks can be spawned again.
        if (++l->restarts > MAX_RESTARTS) {
            log_error("shards failed %d times in a row; giving up (the router stays unhealthy)",
                      MAX_RESTARTS);
            return;
        }
        spawn_all(l);
        uv_timer_start(&l->timer, on_poll, POLL_MS, POLL_MS);
    }
}

static void kill_all(launcher *l, int sig) {
    for (int i = 0; i < l->n; i++)
        if (l->procs[i].alive) uv_process_kill(&l->procs[i].proc, sig);
}

static bool sockets_ready(const launcher *l) {
    for (int r = 0; r < l->n; r++) {
        char path[512];
        struct stat st;
        socket_path(l, r, path, sizeof path);
        if (stat(path, &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
    }
    return true;
}

static void on_poll(uv_timer_t *t) {
    launcher *l = t->data;
    if (l->state != L_RESTARTING || alive_count(l) < l->n || !sockets_ready(l)) return;
    uv_timer_stop(t);
    l->state = L_RUNNING;
    l->restarts = 0;
    log_info("shards respawned generation=%d", l->generation);
    if (l->hooks.on_respawned) l->hooks.on_respawned(l->hooks.user);
}

static void on_exit_cb(uv_process_t *proc, int64_t status, int term_signal) {
    shard_proc *p = proc->data;
    launcher *l = p->l;
    p->alive = false;
    uv_close((uv_handle_t *)proc, on_proc_closed);
    if (l->state == L_STOPPING) {
        log_info("shard exited rank=%d status=%lld signal=%d", p->rank, (long long)status,
                 term_signal);
        return;
    }
    log_error("shard died rank=%d status=%lld signal=%d", p->rank, (long long)status, term_signal);
    if (l->state == L_STARTING) {
        l->start_failed = true;
        return;
    }
    if (l->state == L_RUNNING) {
        l->state = L_RESTARTING;
        if (l->hooks.on_down) l->hooks.on_down(l->hooks.user);
        kill_all(l, SIGTERM); // the other ranks cannot go on without this one
    }
    // The respawn happens in on_proc_closed, once every handle is closed.
}

static int spawn_rank(launcher *l, int rank) {
    const router_config *c = &l->cfg;
    char sock[512], rank_s[16], world_s[16], threads_s[16], comm_id[64], rope_s[160];
    char gptq_s[32];
    socket_path(l, rank, sock, sizeof sock);
    unlink(sock); // stale socket from an earlier run (TGI does the same)
    snprintf(rank_s, sizeof rank_s, "%d", rank);
    snprintf(world_s, sizeof world_s, "%d", l->n);
    snprintf(threads_s, sizeof threads_s, "%d", c->threads);
    snprintf(comm_id, sizeof comm_id, "fl-%d-%d", (int)getpid(), l->generation);
    char *args[48];
    int n = 0;
    args[n++] = (char *)c->shard_bin;
    args[n++] = "--model", args[n++] = (char *)c->model_id;
    args[n++] = "--uds-path", args[n++] = (char *)c->shard_uds_path;
    args[n++] = "--rank", args[n++] = rank_s;
    args[n++] = "--world", args[n++] = world_s;
    args[n++] = "--backend", args[n++] = (char *)c->backend;
    args[n++] = "--comm-id", args[n++] = comm_id;
    if (c->threads > 0) args[n++] = "--threads", args[n++] = threads_s;
    n += router_config_rope_args(c, rope_s, sizeof rope_s, args + n);
    n += router_config_quant_args(c, gptq_s, sizeof gptq_s, args + n);
    args[n++] = "--prefix-cache", args[n++] = c->prefix_cache ? "on" : "off";
    args[n++] = "--nccl-stream", args[n++] = (char *)router_nccl_stream_modes[c->nccl_stream];
    args[n] = NULL;

    shard_proc *p = &l->procs[rank];
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_INHERIT_FD, .data.fd = 1},
        {.flags = UV_INHERIT_FD, .data.fd = 2},
    };
    uv_process_options_t opt = {
        // Its own session, as TGI's process_group(0): a terminal's Ctrl-C reaches the router only,
        // which then drains requests before it stops the shards itself.
        .flags = UV_PROCESS_DETACHED,
        .exit_cb = on_exit_cb,
        .file = c->shard_bin,
        .args = args,
        .stdio_count = 3,
        .stdio = stdio,
    };
    memset(&p->proc, 0, sizeof p->proc);
    p->proc.data = p;
    int rc = uv_spawn(l->loop, &p->proc, &opt);
    if (rc != 0) {
        log_error("cannot start %s: %s", c->shard_bin, uv_strerror(rc));
        uv_close((uv_handle_t *)&p->proc, NULL);
        return rc;
    }
    p->alive = true;
    p->handle_open = true;
    log_info("shard started rank=%d pid=%d", rank, p->proc.pid);
    return 0;
}

static void spawn_all(launcher *l) {
    l->generation++;
    for (int r = 0; r < l->n; r++)
        if (spawn_rank(l, r) != 0) l->start_failed = true;
}

fl_code launcher_create(uv_loop_t *loop, const router_config *cfg, launcher_hooks hooks,
                        launcher **out, fl_error *err) {
    launcher *l = calloc(1, sizeof *l);
    if (!l) return fl_error_set(err, FL_ENOMEM, "launcher: out of memory");
    l->procs = calloc((size_t)cfg->num_shard, sizeof *l->procs);
    if (!l->procs) {
        free(l);
        return fl_error_set(err, FL_ENOMEM, "launcher: out of memory");
    }
    l->loop = loop;
    l->cfg = *cfg;
    l->hooks = hooks;
    l->n = cfg->num_shard;
    for (int i = 0; i < l->n; i++)
        l->procs[i].l = l, l->procs[i].rank = i;
    uv_timer_init(loop, &l->timer);
    l->timer.data = l;
    *out = l;
    return FL_OK;
}

fl_code launcher_start(launcher *l, int timeout_ms, fl_error *err) {
    l->state = L_STARTING;
    log_info("starting %d shard(s): each loads its weights, then opens %s-<rank>", l->n,
             l->cfg.shard_uds_path);
    spawn_all(l);
    uint64_t t0 = uv_now(l->loop), deadline = t0 + (uint64_t)timeout_ms;
    while (!l->start_failed && !l->start_aborted && !sockets_ready(l)) {
        if (uv_now(l->loop) > deadline)
            return fl_error_set(err, FL_EIO,
                                "shards did not open their sockets (%s-<rank>) within %d ms",
                                l->cfg.shard_uds_path, timeout_ms);
        uv_run(l->loop, UV_RUN_NOWAIT);
        usleep(POLL_MS * 1000);
        uv_update_time(l->loop);
    }
    if (l->start_aborted) return fl_error_set(err, FL_EIO, "interrupted during startup");
    if (l->start_failed)
        return fl_error_set(err, FL_EIO, "a shard exited or could not start (see the log above)");
    log_info("shards up: %d socket(s) open after %.1f s", l->n, (uv_now(l->loop) - t0) / 1e3);
    l->state = L_RUNNING;
    return FL_OK;
}

void launcher_abort_start(launcher *l) {
    l->start_aborted = true;
}

static void on_timer_closed(uv_handle_t *h) {
    launcher *l = h->data;
    void (*done)(void *) = l->stop_done;
    void *user = l->stop_user;
    free(l->procs);
    free(l);
    if (done) done(user);
}

static void on_grace_over(uv_timer_t *t) {
    launcher *l = t->data;
    log_warn("shards still running after the grace period: killing them");
    kill_all(l, SIGKILL);
}

void launcher_restart(launcher *l) {
    if (l->state != L_RUNNING) return;
    log_warn("restarting the shards: a step passed --shard-step-timeout");
    kill_all(l, SIGKILL); // on_exit_cb then restarts every rank
}

fl_code launcher_socket_dir_create(char *prefix, size_t prefix_cap, char *dir, size_t dir_cap,
                                   fl_error *err) {
    const char *base = getenv("XDG_RUNTIME_DIR");
    if (!base || base[0] != '/' || strlen(base) > 256) base = "/tmp";
    char tmpl[300];
    snprintf(tmpl, sizeof tmpl, "%s/falconlite-XXXXXX", base);
    if (!mkdtemp(tmpl)) // mode 0700
        return fl_error_set(err, FL_EIO, "cannot create a socket directory in %s: %s", base,
                            strerror(errno));
    snprintf(dir, dir_cap, "%s", tmpl);
    snprintf(prefix, prefix_cap, "%s/shard", tmpl);
    return FL_OK;
}

void launcher_socket_dir_remove(const char *dir) {
    if (!dir || !dir[0]) return;
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char path[1024];
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    if (rmdir(dir) != 0) log_warn("cannot remove socket directory %s: %s", dir, strerror(errno));
}

void launcher_stop(launcher *l, int grace_ms, void (*done)(void *user), void *user) {
    l->state = L_STOPPING;
    l->stop_done = done;
    l->stop_user = user;
    uv_timer_stop(&l->timer);
    if (!any_handle_open(l)) {
        uv_close((uv_handle_t *)&l->timer, on_timer_closed);
        return;
    }
    kill_all(l, SIGTERM);
    uv_timer_start(&l->timer, on_grace_over, (uint64_t)grace_ms, 0);
}
