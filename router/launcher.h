// TGI's launcher, inside the router: spawns one falconlite-shard per rank (uv_spawn), waits for
// their sockets (<uds-path>-<rank>), and supervises them. When a shard dies while serving, the
// others are stopped too (tensor-parallel ranks only work together), all ranks are spawned again
// with a fresh rendezvous id, and the owner is told so it can re-warm them. Loop thread only.
#pragma once
#include <uv.h>

#include "common/status.h"
#include "router/config.h"

typedef struct launcher launcher;

typedef struct launcher_hooks {
    void (*on_down)(void *user);      // a shard died: requests will fail until on_up
    void (*on_respawned)(void *user); // every rank runs again and has its socket
    void *user;
} launcher_hooks;

fl_code launcher_create(uv_loop_t *loop, const router_config *cfg, launcher_hooks hooks,
                        launcher **out, fl_error *err);
// Spawns every rank and blocks (running the loop) until each has its socket, a rank exits, or
// timeout_ms passes.
fl_code launcher_start(launcher *l, int timeout_ms, fl_error *err);
// Makes a launcher_start in progress give up (a signal arrived during startup).
void launcher_abort_start(launcher *l);
// Hung shards (alive, no progress: stopped, stuck in a collective): SIGKILL to every rank, after
// which supervision restarts them as after a crash (on_down, then on_respawned). Ignored unless
// running.
void launcher_restart(launcher *l);
// SIGTERM to every rank, SIGKILL after grace_ms; done(user) once all have exited. The launcher
// then frees itself.
void launcher_stop(launcher *l, int grace_ms, void (*done)(void *user), void *user);

// The default shard socket prefix: <dir>/shard, dir a new private (0700) directory, under
// $XDG_RUNTIME_DIR when that is an absolute path, else under /tmp. dir gets the directory
// (launcher_socket_dir_remove removes it and what is left in it at exit).
fl_code launcher_socket_dir_create(char *prefix, size_t prefix_cap, char *dir, size_t dir_cap,
                                   fl_error *err);
void launcher_socket_dir_remove(const char *dir);
