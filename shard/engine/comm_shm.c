// Shared-memory communicator for CPU-backend ranks on one host (what TP=2 runs on in CI).
//
// One file, mapped by every rank: a header (barrier state, pids) and two sets of per-rank slots.
// An op moves data in chunks of at most one slot: each rank copies its chunk into its slot of the
// current set, waits at the barrier, then reads every rank's slot. Sets alternate between chunks,
// so one barrier per chunk suffices: a rank that has passed barrier k has finished reading the set
// of chunk k-1, which chunk k+1 overwrites. Every rank sums the slots in rank order, so all ranks
// get bit-identical results (their samplers must agree).
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shard/engine/comm_impl.h"

#define SHM_MAGIC        0x666c636f6d6d3031ULL // "flcomm01"
#define SHM_MAX_WORLD    64
#define SHM_SLOT_BYTES   ((size_t)4 << 20)
#define SHM_HEADER_BYTES 4096
#define SHM_SPINS        2000
#define SHM_STALL_MS     100 // futex wait before checking that the peers are alive

typedef struct shm_header {
    uint64_t magic;
    int32_t world;
    uint32_t count;      // ranks arrived at the current barrier
    uint32_t generation; // barrier generation; the futex word
    uint32_t failed;     // set by a rank that gave up: the others stop waiting
    int32_t pid[SHM_MAX_WORLD];
} shm_header;

typedef struct shm_comm {
    shm_header *hdr;
    char *slots; // [2][world][SHM_SLOT_BYTES]
    size_t map_bytes;
    int set; // slot set of the next chunk
} shm_comm;

static size_t shm_map_bytes(int world) {
    return SHM_HEADER_BYTES + 2 * (size_t)world * SHM_SLOT_BYTES;
}

static void futex_wait(uint32_t *addr, uint32_t val, int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    syscall(SYS_futex, addr, FUTEX_WAIT, val, &ts, NULL, 0); // shared mapping: not PRIVATE
}

static void futex_wake_all(uint32_t *addr) {
    syscall(SYS_futex, addr, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// Waits until every rank has arrived. timeout_ms < 0: wait as long as the peers live.
static fl_code shm_barrier(comm *c, int timeout_ms, fl_error *err) {
    shm_comm *s = c->impl;
    shm_header *h = s->hdr;
    uint32_t gen = __atomic_load_n(&h->generation, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&h->count, 1, __ATOMIC_ACQ_REL) == (uint32_t)c->world) {
        __atomic_store_n(&h->count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&h->generation, gen + 1, __ATOMIC_RELEASE);
        futex_wake_all(&h->generation);
        return FL_OK;
    }
    int64_t start = now_ms();
    for (int spin = 0; __atomic_load_n(&h->generation, __ATOMIC_ACQUIRE) == gen; spin++) {
        if (spin < SHM_SPINS) {
            __builtin_ia32_pause();
            continue;
        }
        futex_wait(&h->generation, gen, SHM_STALL_MS);
        if (__atomic_load_n(&h->generation, __ATOMIC_ACQUIRE) != gen) break;
        if (__atomic_load_n(&h->failed, __ATOMIC_ACQUIRE))
            return fl_error_set(err, FL_EBACKEND, "comm rank %d: a peer rank failed", c->rank);
        int dead = comm_dead_peer(c, h->pid);
        if (dead >= 0)
            return fl_error_set(err, FL_EBACKEND, "comm rank %d: rank %d exited", c->rank, dead);
        if (timeout_ms >= 0 && now_ms() - start > timeout_ms)
            return fl_error_set(err, FL_EBACKEND, "comm rank %d: peers did not arrive in %d ms",
                                c->rank, timeout_ms);
    }
    return FL_OK;
}

static char *shm_slot(shm_comm *s, int world, int set, int rank) {
    return s->slots + ((size_t)set * (size_t)world + (size_t)rank) * SHM_SLOT_BYTES;
}

static fl_code shm_all_reduce_sum(comm *c, backend *be, void *buf, size_t n, fl_error *err) {
    if (be->act_dtype != DTYPE_F32)
        return fl_error_set(err, FL_EUNSUPPORTED,
                            "comm: shared-memory all-reduce needs f32 activations (backend %s)",
                            be->name);
    shm_comm *s = c->impl;
    float *x = buf;
    const size_t chunk = SHM_SLOT_BYTES / sizeof(float);
    for (size_t off = 0; off < n; off += chunk) {
        size_t m = n - off < chunk ? n - off : chunk;
        memcpy(shm_slot(s, c->world, s->set, c->rank), x + off, m * sizeof(float));
        fl_code rc = shm_barrier(c, -1, err);
        if (rc != FL_OK) return rc;
        const float *p0 = (const float *)shm_slot(s, c->world, s->set, 0);
        memcpy(x + off, p0, m * sizeof(float));
        for (int r = 1; r < c->world; r++) {
            const float *pr = (const float *)shm_slot(s, c->world, s->set, r);
            for (size_t i = 0; i < m; i++)
                x[off + i] += pr[i];
        }
        s->set ^= 1;
    }
    return FL_OK;
}

static fl_code shm_all_gather_f32(comm *c, const float *in, float *out, size_t n, fl_error *err) {
    shm_comm *s = c->impl;
    const size_t chunk = SHM_SLOT_BYTES / sizeof(float);
    for (size_t off = 0; off < n; off += chunk) {
        size_t m = n - off < chunk ? n - off : chunk;
        memcpy(shm_slot(s, c->world, s->set, c->rank), in + off, m * sizeof(float));
        fl_code rc = shm_barrier(c, -1, err);
        if (rc != FL_OK) return rc;
        for (int r = 0; r < c->world; r++)
            memcpy(out + (size_t)r * n + off, shm_slot(s, c->world, s->set, r), m * sizeof(float));
        s->set ^= 1;
    }
    return FL_OK;
}

// Collectives ran on the host when they were called: only the backend's own work is pending.
static fl_code shm_step_wait(comm *c, backend *be, fl_error *err) {
    return be->sync(be, err);
}

static void shm_free(comm *c) {
    shm_comm *s = c->impl;
    if (!s) return;
    if (s->hdr) {
        // Peers blocked in a barrier with this rank stop waiting instead of hanging.
        __atomic_store_n(&s->hdr->failed, 1, __ATOMIC_RELEASE);
        futex_wake_all(&s->hdr->generation);
        munmap(s->hdr, s->map_bytes);
    }
    free(s);
    c->impl = NULL;
}

static const comm_ops shm_ops = {shm_all_reduce_sum, shm_all_gather_f32, shm_step_wait, shm_free};

// Rank 0 builds the file under a temporary name and renames it into place, so the other ranks
// never see a half-initialised header.
static fl_code shm_file_create(const char *path, size_t bytes, int world, fl_error *err) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
    unlink(path); // a stale file of an earlier launch with the same id
    int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return fl_error_set(err, FL_EIO, "comm: cannot create %s: %s", tmp, strerror(errno));
    if (ftruncate(fd, (off_t)bytes) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return fl_error_set(err, FL_ENOMEM, "comm: cannot size %s to %zu bytes: %s", tmp, bytes,
                            strerror(e));
    }
    shm_header h = {.magic = SHM_MAGIC, .world = world};
    ssize_t w = pwrite(fd, &h, sizeof h, 0);
    close(fd);
    if (w != (ssize_t)sizeof h || rename(tmp, path) != 0) {
        unlink(tmp);
        return fl_error_set(err, FL_EIO, "comm: cannot publish %s", path);
    }
    return FL_OK;
}

fl_code comm_shm_create(comm *c, const char *path, int timeout_ms, fl_error *err) {
    if (c->world > SHM_MAX_WORLD)
        return fl_error_set(err, FL_EINVAL, "comm: world %d exceeds %d", c->world, SHM_MAX_WORLD);
    shm_comm *s = calloc(1, sizeof *s);
    if (!s) return fl_error_set(err, FL_ENOMEM, "comm: out of memory");
    s->map_bytes = shm_map_bytes(c->world);
    if (c->rank == 0) {
        fl_code rc = shm_file_create(path, s->map_bytes, c->world, err);
        if (rc != FL_OK) {
            free(s);
            return rc;
        }
    }
    // Every rank (rank 0 included) opens the published file; the others wait for it to appear.
    int64_t start = now_ms();
    int fd;
    struct stat st;
    for (;;) {
        fd = open(path, O_RDWR);
        if (fd >= 0 && fstat(fd, &st) == 0 && (size_t)st.st_size == s->map_bytes) break;
        if (fd >= 0) close(fd);
        if (now_ms() - start > timeout_ms) {
            free(s);
            return fl_error_set(err, FL_EIO, "comm rank %d: %s did not appear within %d ms",
                                c->rank, path, timeout_ms);
        }
        usleep(10000);
    }
    void *map = mmap(NULL, s->map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        free(s);
        return fl_error_set(err, FL_ENOMEM, "comm: cannot map %s: %s", path, strerror(errno));
    }
    s->hdr = map;
    s->slots = (char *)map + SHM_HEADER_BYTES;
    c->impl = s;
    c->ops = &shm_ops;
    if (s->hdr->magic != SHM_MAGIC || s->hdr->world != c->world) {
        munmap(map, s->map_bytes);
        free(s);
        c->impl = NULL;
        c->ops = NULL;
        return fl_error_set(err, FL_EINVAL, "comm: %s is not a world-%d communicator", path,
                            c->world);
    }
    __atomic_store_n(&s->hdr->pid[c->rank], (int32_t)getpid(), __ATOMIC_RELEASE);
    fl_code rc = shm_barrier(c, timeout_ms, err); // everyone has mapped the file
    if (rc != FL_OK) {
        __atomic_store_n(&s->hdr->failed, 1, __ATOMIC_RELEASE);
        if (c->rank == 0) unlink(path);
        munmap(map, s->map_bytes);
        free(s);
        c->impl = NULL;
        c->ops = NULL;
        return fl_error_wrap(err, "joining %s", path);
    }
    // The mapping outlives the name: remove it so nothing is left behind in /dev/shm.
    if (c->rank == 0) unlink(path);
    return FL_OK;
}
