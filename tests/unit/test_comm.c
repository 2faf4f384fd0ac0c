// Shared-memory communicator (shard/engine/comm.h) across real processes: the test is rank 0 and
// forks the other ranks (2 and 4 of them). Checks all-reduce and all-gather results for odd sizes
// (including ones that span several chunks), many repetitions to shake out barrier races, and that
// a dead peer or a missing peer gives an error instead of a hang. With --gpu (its own ctest entry,
// test_comm_nccl; exits 77 unless two GPUs are present), the same for NCCL on the backend's stream
// (COMM_STREAM_AUTO, the default: collectives queued, one wait per step, captured in a graph and
// replayed) and on the host-synchronised path (COMM_STREAM_OFF).
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shard/engine/comm.h"
#include "tests/unit/helpers/gpu_probe.h"
#ifdef FALCONLITE_HAVE_CUDA
#include <cuda_runtime.h>
#endif

// comm only needs the backend's name, activation type and sync; the shared-memory path works on
// host f32 buffers, which is what the CPU backend's activations are.
static int cpu_syncs;
static fl_code cpu_sync(backend *b, fl_error *err) {
    cpu_syncs++;
    return FL_OK;
}
static backend cpu_like = {.name = "cpu", .act_dtype = DTYPE_F32, .sync = cpu_sync};

static const size_t sizes[] = {1, 3, 17, 1023, 4097, 65537, 1048576 + 7}; // last: 2 chunks

static float value(int rank, int iter, size_t i) {
    // Small integers and halves: sums (of up to 4 ranks) are exact in f32, so results compare
    // with ==.
    return (float)((i * 7 + (size_t)iter * 13 + (size_t)rank * 101) % 1000) * 0.5f;
}

static void make_id(char *id, size_t cap, const char *what) {
    snprintf(id, cap, "test-%d-%s", (int)getpid(), what);
}

// Runs body(rank, world) in this process as rank 0 and in forked children as ranks 1..world-1;
// returns 0 when every child's checks passed (else the first failing exit status) and the
// parent's body result through *parent_ok.
static int run_world(int (*body)(int rank, int world, const char *id), int world, const char *id,
                     int *parent_ok) {
    pid_t pids[8];
    assert_true(world <= 8);
    fflush(NULL);
    for (int r = 1; r < world; r++) {
        pids[r] = fork();
        if (pids[r] == 0) _exit(body(r, world, id) ? 0 : 1);
    }
    *parent_ok = body(0, world, id);
    int first_bad = 0;
    for (int r = 1; r < world; r++) {
        int status = 0;
        waitpid(pids[r], &status, 0);
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
        if (code && !first_bad) first_bad = code;
    }
    return first_bad;
}

static int reduce_and_gather(int rank, int world, const char *id) {
    comm *c = NULL;
    fl_error err;
    if (comm_create(&cpu_like, rank, world, id, NULL, COMM_STREAM_AUTO, 10000, &c, &err) != FL_OK) {
        fprintf(stderr, "rank %d: %s\n", rank, err.msg);
        return 0;
    }
    // Host collectives are done when they return: nothing a graph could capture.
    int ok = comm_rank(c) == rank && comm_world(c) == world && !comm_capturable(c);
    size_t max_n = sizes[sizeof sizes / sizeof sizes[0] - 1];
    float *buf = malloc(max_n * sizeof(float));
    float *out = malloc((size_t)world * max_n * sizeof(float));
    for (size_t si = 0; ok && si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t n = sizes[si];
        // Fewer repetitions with more ranks than cores: every barrier then waits for the
        // scheduler, and the races show within a few dozen.
        int iters = n > 100000 ? 3 : world > 2 ? 60 : 300;
        for (int it = 0; ok && it < iters; it++) {
            for (size_t i = 0; i < n; i++)
                buf[i] = value(rank, it, i);
            int syncs = cpu_syncs;
            if (comm_all_reduce_sum(c, &cpu_like, buf, n, &err) != FL_OK ||
                comm_step_wait(c, &cpu_like, &err) != FL_OK) {
                fprintf(stderr, "rank %d: %s\n", rank, err.msg);
                ok = 0;
                break;
            }
            ok = cpu_syncs == syncs + 1; // the step wait syncs the backend
            for (size_t i = 0; i < n && ok; i++) {
                float want = 0; // the ranks' values summed in rank order, as the comm does
                for (int r = 0; r < world; r++)
                    want += value(r, it, i);
                if (buf[i] != want) {
                    fprintf(stderr, "rank %d: all-reduce n=%zu iter %d [%zu] = %g\n", rank, n, it,
                            i, buf[i]);
                    ok = 0;
                }
            }
            for (size_t i = 0; i < n; i++)
                buf[i] = value(rank, it + 1, i);
            if (comm_all_gather_f32(c, buf, out, n, &err) != FL_OK) {
                fprintf(stderr, "rank %d: %s\n", rank, err.msg);
                ok = 0;
                break;
            }
            for (int r = 0; r < world && ok; r++)
                for (size_t i = 0; i < n && ok; i++)
                    if (out[(size_t)r * n + i] != value(r, it + 1, i)) {
                        fprintf(stderr, "rank %d: all-gather n=%zu iter %d rank %d [%zu]\n", rank,
                                n, it, r, i);
                        ok = 0;
                    }
        }
    }
    free(buf);
    free(out);
    comm_free(c);
    return ok;
}

static void all_reduce_all_gather(int world) {
    char id[64], what[16];
    snprintf(what, sizeof what, "ops%d", world);
    make_id(id, sizeof id, what);
    int parent_ok = 0;
    int child = run_world(reduce_and_gather, world, id, &parent_ok);
    assert_int_equal(child, 0);
    assert_true(parent_ok);
}

static void test_all_reduce_all_gather(void **state) {
    all_reduce_all_gather(2);
}

static void test_all_reduce_all_gather_4(void **state) {
    all_reduce_all_gather(4);
}

// Rank 1 joins and exits at once; rank 0's next collective must fail, not hang.
static int join_then_leave(int rank, const char *id) {
    comm *c = NULL;
    fl_error err;
    if (comm_create(&cpu_like, rank, 2, id, NULL, COMM_STREAM_AUTO, 10000, &c, &err) != FL_OK)
        return 0;
    if (rank == 1) _exit(0); // dies without comm_free, as a crashed shard would
    int status;
    wait(&status); // reaped: the peer's pid is gone
    float x = 1;
    fl_code rc = comm_all_reduce_sum(c, &cpu_like, &x, 1, &err);
    int ok = rc == FL_EBACKEND && strstr(err.msg, "rank 1") != NULL;
    // Once broken, the communicator keeps failing.
    ok = ok && comm_all_gather_f32(c, &x, &x, 0, &err) == FL_EBACKEND;
    ok = ok && comm_step_wait(c, &cpu_like, &err) == FL_EBACKEND;
    comm_free(c);
    return ok;
}

static void test_dead_peer_fails(void **state) {
    char id[64];
    make_id(id, sizeof id, "dead");
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) _exit(join_then_leave(1, id) ? 0 : 1);
    assert_true(join_then_leave(0, id));
}

static void test_missing_peer_times_out(void **state) {
    char id[64];
    make_id(id, sizeof id, "alone");
    comm *c = NULL;
    fl_error err;
    assert_int_not_equal(comm_create(&cpu_like, 0, 2, id, NULL, COMM_STREAM_AUTO, 300, &c, &err), FL_OK);
    assert_null(c);
    assert_non_null(strstr(err.msg, "300 ms"));
}

static void test_bad_arguments(void **state) {
    comm *c = NULL;
    fl_error err;
    assert_int_equal(comm_create(&cpu_like, 2, 2, "x", NULL, COMM_STREAM_AUTO, 100, &c, &err),
                     FL_EINVAL);
    assert_int_equal(comm_create(&cpu_like, 0, 2, "a/b", NULL, COMM_STREAM_AUTO, 100, &c, &err),
                     FL_EINVAL);
    assert_int_equal(comm_create(&cpu_like, 0, 1, "x", NULL, (comm_stream)7, 100, &c, &err),
                     FL_EINVAL);
    assert_null(c);
}

static void test_world_one(void **state) {
    // A single rank needs no peer: ops are identities.
    comm *c = NULL;
    fl_error err;
    char id[64];
    make_id(id, sizeof id, "one");
    assert_int_equal(comm_create(&cpu_like, 0, 1, id, NULL, COMM_STREAM_AUTO, 1000, &c, &err), FL_OK);
    float x[3] = {1, 2, 3}, y[3];
    assert_int_equal(comm_all_reduce_sum(c, &cpu_like, x, 3, &err), FL_OK);
    assert_int_equal(comm_all_gather_f32(c, x, y, 3, &err), FL_OK);
    assert_true(x[0] == 1 && x[2] == 3 && y[1] == 2);
    int syncs = cpu_syncs;
    assert_int_equal(comm_step_wait(c, &cpu_like, &err), FL_OK);
    assert_int_equal(cpu_syncs, syncs + 1);
    comm_free(c);
}

#ifdef FALCONLITE_HAVE_CUDA
// NCCL between two GPUs: f16 all-reduce on device buffers (the CUDA backend's activations) and
// the host f32 all-gather. Each process picks GPU <rank> and plays the CUDA backend with its own
// non-blocking stream: copies are queued on it, sync waits for it, and graph_reset drops the
// test's graph (as the backend drops its captured decode steps).
static cudaStream_t test_stream;
static cudaGraphExec_t test_graph;
static void *graph_in, *graph_buf; // [GRAPH_N] the captured step's input and reduce buffer
#define GRAPH_N 8192               // one decode token of Falcon-40B's d_model

static fl_code stream_sync(backend *b, fl_error *err) {
    cudaError_t e = cudaStreamSynchronize(test_stream);
    return e == cudaSuccess ? FL_OK : fl_error_set(err, FL_EBACKEND, "%s", cudaGetErrorString(e));
}

static void *stream_of(backend *b) {
    return test_stream;
}

static void graph_drop(backend *b) {
    if (test_graph) cudaGraphExecDestroy(test_graph);
    test_graph = NULL;
}

static void halves_fill(_Float16 *h, size_t n, int rank, int iter) {
    // values up to 31.2 in 1/32 steps: sums of two ranks stay exact in f16
    for (size_t i = 0; i < n; i++)
        h[i] = (_Float16)(value(rank, iter, i) / 16.0f);
}

// Reads d back (after the stream's work) and checks it holds both ranks' halves_fill sums.
static int halves_summed(const void *d, _Float16 *h, size_t n, int iter) {
    cudaMemcpyAsync(h, d, n * sizeof *h, cudaMemcpyDeviceToHost, test_stream);
    if (cudaStreamSynchronize(test_stream) != cudaSuccess) return 0;
    for (size_t i = 0; i < n; i++)
        if ((float)h[i] != value(0, iter, i) / 16.0f + value(1, iter, i) / 16.0f) return 0;
    return 1;
}

// Decode steps as the forward driver runs them at TP > 1: a copy of the step's input (standing
// in for the ops) and an all-reduce queued after it, captured once and replayed with new inputs,
// each step followed by a plain (prefill-like) all-reduce on the same stream and one wait.
static int graph_steps(comm *c, backend *be, int rank) {
    _Float16 *h = malloc(GRAPH_N * sizeof *h);
    void *plain = NULL;
    fl_error err = {0};
    int ok = h && cudaMalloc(&graph_in, GRAPH_N * 2) == cudaSuccess &&
             cudaMalloc(&graph_buf, GRAPH_N * 2) == cudaSuccess &&
             cudaMalloc(&plain, GRAPH_N * 2) == cudaSuccess &&
             cudaStreamBeginCapture(test_stream, cudaStreamCaptureModeRelaxed) == cudaSuccess;
    if (ok) {
        cudaGraph_t g = NULL;
        ok = cudaMemcpyAsync(graph_buf, graph_in, GRAPH_N * 2, cudaMemcpyDeviceToDevice,
                             test_stream) == cudaSuccess;
        ok = comm_all_reduce_sum(c, be, graph_buf, GRAPH_N, &err) == FL_OK && ok;
        ok = cudaStreamEndCapture(test_stream, &g) == cudaSuccess && ok;
        ok = ok && cudaGraphInstantiate(&test_graph, g, 0) == cudaSuccess;
        if (g) cudaGraphDestroy(g);
    }
    for (int it = 0; ok && it < 10; it++) {
        halves_fill(h, GRAPH_N, rank, 100 + it);
        cudaMemcpyAsync(graph_in, h, GRAPH_N * 2, cudaMemcpyHostToDevice, test_stream);
        ok = cudaGraphLaunch(test_graph, test_stream) == cudaSuccess;
        halves_fill(h, GRAPH_N, rank, 200 + it);
        cudaMemcpyAsync(plain, h, GRAPH_N * 2, cudaMemcpyHostToDevice, test_stream);
        ok = ok && comm_all_reduce_sum(c, be, plain, GRAPH_N, &err) == FL_OK &&
             comm_step_wait(c, be, &err) == FL_OK;
        ok = ok && halves_summed(graph_buf, h, GRAPH_N, 100 + it) &&
             halves_summed(plain, h, GRAPH_N, 200 + it);
        if (!ok) fprintf(stderr, "rank %d: graph step %d: %s\n", rank, it, err.msg);
    }
    cudaFree(plain);
    free(h);
    return ok;
}

// on_stream 1: the default (COMM_STREAM_AUTO), the backend's stream; 0: COMM_STREAM_OFF, the
// host-synchronised path although the backend has a stream.
static int nccl_body(int rank, const char *id, int on_stream) {
    alarm(120); // a hang (a collective or an abort that never returns) fails instead of blocking
    if (cudaSetDevice(rank) != cudaSuccess ||
        cudaStreamCreateWithFlags(&test_stream, cudaStreamNonBlocking) != cudaSuccess)
        return 0;
    backend be = {.name = "cuda",
                  .act_dtype = DTYPE_F16,
                  .sync = stream_sync,
                  .native_stream = stream_of,
                  .graph_reset = graph_drop};
    comm *c = NULL;
    fl_error err = {0};
    comm_stream mode = on_stream ? COMM_STREAM_AUTO : COMM_STREAM_OFF;
    if (comm_create(&be, rank, 2, id, NULL, mode, 60000, &c, &err) != FL_OK) {
        fprintf(stderr, "rank %d: %s\n", rank, err.msg);
        return 0;
    }
    int ok = comm_capturable(c) == on_stream;
    static const size_t ns[] = {1, 4097, (1u << 20) + 3};
    for (size_t si = 0; ok && si < 3; si++) {
        size_t n = ns[si];
        _Float16 *h = malloc(n * sizeof *h);
        float *in = malloc(n * sizeof *in), *out = malloc(2 * n * sizeof *out);
        void *d = NULL;
        ok = h && in && out && cudaMalloc(&d, n * sizeof *h) == cudaSuccess;
        for (int it = 0; ok && it < 20; it++) {
            halves_fill(h, n, rank, it);
            cudaMemcpyAsync(d, h, n * sizeof *h, cudaMemcpyHostToDevice, test_stream);
            if (comm_all_reduce_sum(c, &be, d, n, &err) != FL_OK) {
                fprintf(stderr, "rank %d: %s\n", rank, err.msg);
                ok = 0;
                break;
            }
            // The host-synchronised path is done when the call returns; the stream path once
            // the step has been waited for.
            if (on_stream) ok = comm_step_wait(c, &be, &err) == FL_OK;
            ok = ok && halves_summed(d, h, n, it);
            for (size_t i = 0; i < n; i++)
                in[i] = value(rank, it, i);
            ok = ok && comm_all_gather_f32(c, in, out, n, &err) == FL_OK;
            for (int r = 0; r < 2 && ok; r++)
                for (size_t i = 0; i < n && ok; i++)
                    ok = out[(size_t)r * n + i] == value(r, it, i);
            if (!ok) fprintf(stderr, "rank %d: NCCL mismatch n=%zu iter %d\n", rank, n, it);
        }
        cudaFree(d);
        free(h);
        free(in);
        free(out);
    }
    if (on_stream && ok) {
        ok = graph_steps(c, &be, rank);
        float x = 1, y[2]; // every rank is done with the steps before rank 1 leaves
        ok = ok && comm_all_gather_f32(c, &x, y, 1, &err) == FL_OK;
    }
    if (rank == 1) _exit(ok ? 0 : 1); // dies holding the communicator, as a crashed shard would
    // Rank 1 is gone (the test reaps it): the next step must fail instead of hanging. On the
    // stream path that step is a graph replay, whose graph must be dropped before NCCL aborts.
    fl_code rc = FL_OK;
    if (on_stream) {
        ok = ok && cudaGraphLaunch(test_graph, test_stream) == cudaSuccess;
        rc = comm_step_wait(c, &be, &err);
        ok = ok && test_graph == NULL;
    } else {
        _Float16 *d = NULL;
        cudaMalloc((void **)&d, sizeof *d);
        rc = comm_all_reduce_sum(c, &be, d, 1, &err);
        cudaFree(d);
    }
    ok = ok && rc == FL_EBACKEND && strstr(err.msg, "rank 1 exited") != NULL;
    if (!ok) fprintf(stderr, "rank 0: after peer death: %s\n", err.msg);
    ok = ok && !comm_capturable(c); // broken: the driver issues ops, which then fail
    comm_free(c);
    cudaFree(graph_in);
    cudaFree(graph_buf);
    return ok;
}

static int nccl_stream_body(int rank, const char *id) {
    return nccl_body(rank, id, 1);
}

static int nccl_kill_switch_body(int rank, const char *id) {
    return nccl_body(rank, id, 0);
}

// Runs body as ranks 0 and 1 in two children, so this process never initialises CUDA.
static void nccl_run(int (*body)(int rank, const char *id), const char *what) {
    char id[64];
    make_id(id, sizeof id, what);
    fflush(NULL);
    pid_t r1 = fork();
    if (r1 == 0) _exit(body(1, id) ? 0 : 1);
    pid_t r0 = fork();
    if (r0 == 0) _exit(body(0, id) ? 0 : 1);
    int s0 = 0, s1 = 0;
    waitpid(r1, &s1, 0); // reaped first, so rank 0 sees it gone
    waitpid(r0, &s0, 0);
    if (WIFSIGNALED(s0) || WIFSIGNALED(s1))
        fprintf(stderr, "%s: rank 0 signal %d, rank 1 signal %d (14: hung)\n", what,
                WIFSIGNALED(s0) ? WTERMSIG(s0) : 0, WIFSIGNALED(s1) ? WTERMSIG(s1) : 0);
    assert_true(WIFEXITED(s0) && WEXITSTATUS(s0) == 0);
    assert_true(WIFEXITED(s1) && WEXITSTATUS(s1) == 0);
}

// main has checked (in a child: CUDA must not be initialised before forking ranks) for 2 GPUs.
static void test_nccl_two_gpus(void **state) {
    nccl_run(nccl_stream_body, "nccl-stream");
    nccl_run(nccl_kill_switch_body, "nccl-sync");
}
#endif

// Plain: the shared-memory cases. --gpu: NCCL on two GPUs (exits 77, skipped, without them).
int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--gpu")) {
        gpu_probe_require("test_comm --gpu (NCCL)", 2);
#ifdef FALCONLITE_HAVE_CUDA
        const struct CMUnitTest gpu_tests[] = {cmocka_unit_test(test_nccl_two_gpus)};
        return cmocka_run_group_tests(gpu_tests, NULL, NULL);
#endif
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_reduce_all_gather),
        cmocka_unit_test(test_all_reduce_all_gather_4),
        cmocka_unit_test(test_dead_peer_fails),
        cmocka_unit_test(test_missing_peer_times_out),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_world_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
