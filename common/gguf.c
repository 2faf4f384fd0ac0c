// GGUF parsing with a bounds-checked cursor: every count is checked against the bytes left
// before anything is allocated, so a corrupt count cannot ask for gigabytes, and every read past
// the end becomes "truncated" with the key or tensor being read.
#include "common/gguf.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/dtype.h"

#define GGUF_MAGIC             0x46554747u // "GGUF" little-endian
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_ARRAY_DEPTH   8

struct gguf_file {
    char *name;
    const uint8_t *base;
    size_t size;
    void *map; // mmap of the file, or NULL for gguf_open_memory
    size_t map_size;
    uint32_t version;
    gguf_kv *kvs;
    int n_kv;
    gguf_tensor *tensors;
    int n_tensors;
    size_t alignment;
};

typedef struct cursor {
    const uint8_t *p;
    size_t left;
} cursor;

static int cur_read(cursor *c, void *dst, size_t n) {
    if (c->left < n) return -1;
    memcpy(dst, c->p, n);
    c->p += n, c->left -= n;
    return 0;
}

static int cur_skip(cursor *c, uint64_t n) {
    if (c->left < n) return -1;
    c->p += n, c->left -= (size_t)n;
    return 0;
}

static int cur_u32(cursor *c, uint32_t *v) {
    return cur_read(c, v, 4);
}
static int cur_u64(cursor *c, uint64_t *v) {
    return cur_read(c, v, 8);
}

static int cur_str(cursor *c, gguf_str *s) {
    uint64_t len;
    if (cur_u64(c, &len) || len > c->left) return -1;
    s->ptr = (const char *)c->p, s->len = len;
    return cur_skip(c, len);
}

static char *str_dup(gguf_str s) {
    char *d = malloc(s.len + 1);
    if (!d) return NULL;
    memcpy(d, s.ptr, s.len);
    d[s.len] = 0;
    return d;
}

static size_t vtype_size(gguf_vtype t) { // fixed-size scalars; 0 for STRING / ARRAY
    static const size_t sizes[GGUF_VT_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return (unsigned)t < GGUF_VT_COUNT ? sizes[t] : 0;
}

// A scalar at p (little-endian, unaligned) widened into kv->v.
static void scalar_decode(gguf_vtype t, const uint8_t *p, gguf_kv *kv) {
    union {
        uint8_t u8;
        int8_t i8;
        uint16_t u16;
        int16_t i16;
        uint32_t u32;
        int32_t i32;
        float f32;
        uint64_t u64;
        int64_t i64;
        double f64;
    } x;
    memcpy(&x, p, vtype_size(t));
    switch (t) {
    case GGUF_VT_U8:
        kv->v.u = x.u8;
        break;
    case GGUF_VT_BOOL:
        kv->v.u = x.u8 != 0;
        break;
    case GGUF_VT_I8:
        kv->v.i = x.i8;
        break;
    case GGUF_VT_U16:
        kv->v.u = x.u16;
        break;
    case GGUF_VT_I16:
        kv->v.i = x.i16;
        break;
    case GGUF_VT_U32:
        kv->v.u = x.u32;
        break;
    case GGUF_VT_I32:
        kv->v.i = x.i32;
        break;
    case GGUF_VT_F32:
        kv->v.f = x.f32;
        break;
    case GGUF_VT_U64:
        kv->v.u = x.u64;
        break;
    case GGUF_VT_I64:
        kv->v.i = x.i64;
        break;
    case GGUF_VT_F64:
        kv->v.f = x.f64;
        break;
    default:
        break;
    }
}

// Skips one array body (element type + count + elements), for arrays nested in arrays.
static int array_skip(cursor *c, int depth) {
    uint32_t et;
    uint64_t n;
    if (depth > GGUF_MAX_ARRAY_DEPTH || cur_u32(c, &et) || cur_u64(c, &n) || et >= GGUF_VT_COUNT)
        return -1;
    if (et == GGUF_VT_STRING || et == GGUF_VT_ARRAY) {
        if (n > c->left / (et == GGUF_VT_STRING ? 8 : 12)) return -1;
        for (uint64_t i = 0; i < n; i++) {
            gguf_str s;
            if (et == GGUF_VT_STRING ? cur_str(c, &s) : array_skip(c, depth + 1)) return -1;
        }
        return 0;
    }
    size_t es = vtype_size(et);
    if (n > c->left / es) return -1;
    return cur_skip(c, n * es);
}

static fl_code kv_parse(gguf_file *g, cursor *c, int idx, gguf_kv *kv, fl_error *err) {
    gguf_str key;
    uint32_t t;
    if (cur_str(c, &key))
        return fl_error_set(err, FL_EFORMAT, "%s: metadata key %d: truncated key", g->name, idx);
    if (!(kv->key = str_dup(key)))
        return fl_error_set(err, FL_ENOMEM, "%s: out of memory", g->name);
    if (memchr(key.ptr, 0, key.len))
        return fl_error_set(err, FL_EFORMAT, "%s: metadata key %d contains a NUL byte", g->name,
                            idx);
    if (cur_u32(c, &t))
        return fl_error_set(err, FL_EFORMAT, "%s: metadata '%s': truncated value type", g->name,
                            kv->key);
    if (t >= GGUF_VT_COUNT)
        return fl_error_set(err, FL_EFORMAT, "%s: metadata '%s': unknown value type %u", g->name,
                            kv->key, t);
    kv->type = (gguf_vtype)t;
    if (t == GGUF_VT_STRING) {
        if (cur_str(c, &kv->v.str))
            return fl_error_set(err, FL_EFORMAT, "%s: metadata '%s': truncated string", g->name,
                                kv->key);
        return FL_OK;
    }
    if (t != GGUF_VT_ARRAY) {
        uint8_t buf[8];
        if (cur_read(c, buf, vtype_size(kv->type)))
            return fl_error_set(err, FL_EFORMAT, "%s: metadata '%s': truncated value", g->name,
                                kv->key);
        scalar_decode(kv->type, buf, kv);
        return FL_OK;
    }
    uint32_t et;
    if (cur_u32(c, &et) || cur_u64(c, &kv->n))
        return fl_error_set(err, FL_EFORMAT, "%s: metadata '%s': truncated array header", g->name,
                            kv->key);
    if (et >= GGUF_VT_COUNT)
        return fl_error_set(err, FL_EFORMAT, "%s: metadata '%s': unknown array element type %u",
                            g->name, kv->key, et);
    kv->elem_type = (gguf_vtype)et;
    if (et == GGUF_VT_STRING) {
        if (kv->n > c->left / 8) // every string has at least its 8-byte length
            return fl_error_set(err, FL_EFORMAT,
                                "%s: metadata '%s': %" PRIu64 " strings do not fit in the file",
                                g->name, kv->key, kv->n);
        if (!(kv->strs = malloc((kv->n ? kv->n : 1) * sizeof *kv->strs)))
            return fl_error_set(err, FL_ENOMEM, "%s: metadata '%s': out of memory", g->name,
                                kv->key);
        for (uint64_t i = 0; i < kv->n; i++)
            if (cur_str(c, &kv->strs[i]))
                return fl_error_set(err, FL_EFORMAT,
                                    "%s: metadata '%s': string %" PRIu64 " is truncated", g->name,
                                    kv->key, i);
        return FL_OK;
    }
    if (et == GGUF_VT_ARRAY) {
        if (kv->n > c->left / 12)
            return fl_error_set(err, FL_EFORMAT, "%s: metadata '%s': truncated nested array",
                                g->name, kv->key);
        for (uint64_t i = 0; i < kv->n; i++)
            if (array_skip(c, 1))
                return fl_error_set(err, FL_EFORMAT,
                                    "%s: metadata '%s': nested array %" PRIu64 " is malformed",
                                    g->name, kv->key, i);
        return FL_OK;
    }
    size_t es = vtype_size(kv->elem_type);
    if (kv->n > c->left / es)
        return fl_error_set(err, FL_EFORMAT,
                            "%s: metadata '%s': array of %" PRIu64 " elements is truncated",
                            g->name, kv->key, kv->n);
    kv->elems = c->p;
    cur_skip(c, kv->n * es); // fits: checked above
    return FL_OK;
}

static fl_code tensor_info_parse(gguf_file *g, cursor *c, int idx, gguf_tensor *t, fl_error *err) {
    gguf_str name;
    uint32_t n_dim;
    if (cur_str(c, &name))
        return fl_error_set(err, FL_EFORMAT, "%s: tensor info %d: truncated name", g->name, idx);
    if (!(t->name = str_dup(name)))
        return fl_error_set(err, FL_ENOMEM, "%s: out of memory", g->name);
    if (cur_u32(c, &n_dim))
        return fl_error_set(err, FL_EFORMAT, "%s: tensor '%s': truncated info", g->name, t->name);
    if (n_dim < 1 || n_dim > GGUF_MAX_DIMS)
        return fl_error_set(err, FL_EFORMAT, "%s: tensor '%s': %u dimensions (1 to %d allowed)",
                            g->name, t->name, n_dim, GGUF_MAX_DIMS);
    t->n_dim = (int)n_dim;
    t->n_elem = 1;
    for (int d = 0; d < t->n_dim; d++) {
        uint64_t ne;
        if (cur_u64(c, &ne))
            return fl_error_set(err, FL_EFORMAT, "%s: tensor '%s': truncated shape", g->name,
                                t->name);
        if (ne < 1 || ne > (uint64_t)INT64_MAX / (uint64_t)t->n_elem)
            return fl_error_set(err, FL_EFORMAT,
                                "%s: tensor '%s': dimension %d has bad extent %" PRIu64, g->name,
                                t->name, d, ne);
        t->ne[d] = (int64_t)ne;
        t->n_elem *= (int64_t)ne;
    }
    for (int d = t->n_dim; d < GGUF_MAX_DIMS; d++)
        t->ne[d] = 1;
    uint64_t offset;
    if (cur_u32(c, &t->type) || cur_u64(c, &offset))
        return fl_error_set(err, FL_EFORMAT, "%s: tensor '%s': truncated info", g->name, t->name);
    t->data = (const void *)(uintptr_t)offset; // resolved once the data section is known
    return FL_OK;
}

// Places each tensor in the data section and checks it lies inside the file.
static fl_code tensors_place(gguf_file *g, size_t data_start, fl_error *err) {
    for (int i = 0; i < g->n_tensors; i++) {
        gguf_tensor *t = &g->tensors[i];
        uint64_t offset = (uint64_t)(uintptr_t)t->data;
        t->data = NULL;
        if (offset % g->alignment)
            return fl_error_set(err, FL_EFORMAT,
                                "%s: tensor '%s': offset %" PRIu64
                                " is not a multiple of the alignment %zu",
                                g->name, t->name, offset, g->alignment);
        size_t bb;
        int be = ggml_type_block(t->type, &bb);
        if (!be) continue; // unknown type: size unknown, rejected if anyone dequantizes it
        if (t->ne[0] % be)
            return fl_error_set(err, FL_EFORMAT,
                                "%s: tensor '%s': row of %" PRId64
                                " elements is not a multiple of the %s block (%d)",
                                g->name, t->name, t->ne[0], ggml_type_name(t->type), be);
        uint64_t blocks = (uint64_t)t->n_elem / (uint64_t)be;
        if (blocks > SIZE_MAX / bb)
            return fl_error_set(err, FL_EFORMAT, "%s: tensor '%s' is too large", g->name, t->name);
        t->nbytes = blocks * bb;
        uint64_t avail = g->size - data_start;
        if (offset > avail || t->nbytes > avail - offset)
            return fl_error_set(err, FL_EFORMAT,
                                "%s: tensor '%s' (%s, %zu bytes at data offset %" PRIu64
                                ") extends past the end of the file (truncated?)",
                                g->name, t->name, ggml_type_name(t->type), t->nbytes, offset);
        t->data = g->base + data_start + offset;
    }
    return FL_OK;
}

static fl_code gguf_parse(gguf_file *g, fl_error *err) {
    cursor c = {g->base, g->size};
    uint32_t magic;
    uint64_t n_tensors, n_kv;
    if (cur_u32(&c, &magic) || magic != GGUF_MAGIC)
        return fl_error_set(err, FL_EFORMAT, "%s: not a GGUF file (bad magic)", g->name);
    if (cur_u32(&c, &g->version) || cur_u64(&c, &n_tensors) || cur_u64(&c, &n_kv))
        return fl_error_set(err, FL_EFORMAT, "%s: truncated GGUF header", g->name);
    if (g->version < 2 || g->version > 3)
        return fl_error_set(err, FL_EUNSUPPORTED,
                            "%s: GGUF version %u is not supported (2 and 3, little-endian)",
                            g->name, g->version);
    // Each metadata entry takes at least 12 bytes and each tensor info at least 24.
    if (n_kv > c.left / 12 || n_tensors > c.left / 24)
        return fl_error_set(err, FL_EFORMAT,
                            "%s: header counts (%" PRIu64 " tensors, %" PRIu64
                            " metadata keys) do not fit in the file (truncated?)",
                            g->name, n_tensors, n_kv);
    g->kvs = calloc(n_kv ? n_kv : 1, sizeof *g->kvs);
    g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors);
    if (!g->kvs || !g->tensors) return fl_error_set(err, FL_ENOMEM, "%s: out of memory", g->name);
    fl_code rc;
    for (uint64_t i = 0; i < n_kv; i++) {
        g->n_kv = (int)i + 1;
        if ((rc = kv_parse(g, &c, (int)i, &g->kvs[i], err))) return rc;
        for (uint64_t j = 0; j < i; j++)
            if (!strcmp(g->kvs[j].key, g->kvs[i].key))
                return fl_error_set(err, FL_EFORMAT, "%s: metadata key '%s' appears twice", g->name,
                                    g->kvs[i].key);
    }
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *al = gguf_kv_find(g, "general.alignment");
    if (al) {
        if (al->type != GGUF_VT_U32 || al->v.u == 0 || (al->v.u & (al->v.u - 1)))
            return fl_error_set(err, FL_EFORMAT,
                                "%s: metadata 'general.alignment' must be a power-of-two uint32",
                                g->name);
        g->alignment = (size_t)al->v.u;
    }
    for (uint64_t i = 0; i < n_tensors; i++) {
        g->n_tensors = (int)i + 1;
        if ((rc = tensor_info_parse(g, &c, (int)i, &g->tensors[i], err))) return rc;
    }
    for (int i = 1; i < g->n_tensors; i++) // names must be unique (quadratic only in bad files)
        if (gguf_tensor_find(g, g->tensors[i].name) != &g->tensors[i])
            return fl_error_set(err, FL_EFORMAT, "%s: tensor '%s' appears twice", g->name,
                                g->tensors[i].name);
    size_t pos = g->size - c.left;
    size_t data_start = (pos + g->alignment - 1) / g->alignment * g->alignment;
    if (g->n_tensors && data_start > g->size)
        return fl_error_set(err, FL_EFORMAT, "%s: truncated before the tensor data", g->name);
    return tensors_place(g, data_start, err);
}

static fl_code gguf_new(const char *name, gguf_file **out, fl_error *err) {
    gguf_file *g = calloc(1, sizeof *g);
    if (!g || !(g->name = strdup(name))) {
        free(g);
        return fl_error_set(err, FL_ENOMEM, "%s: out of memory", name);
    }
    *out = g;
    return FL_OK;
}

fl_code gguf_open_memory(const void *data, size_t size, const char *name, gguf_file **out,
                         fl_error *err) {
    gguf_file *g;
    *out = NULL;
    fl_code rc = gguf_new(name, &g, err);
    if (rc) return rc;
    g->base = data, g->size = size;
    if ((rc = gguf_parse(g, err))) {
        gguf_close(g);
        return rc;
    }
    *out = g;
    return FL_OK;
}

fl_code gguf_open(const char *path, gguf_file **out, fl_error *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return fl_error_set(err, FL_EIO, "%s: cannot open: %m", path);
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return fl_error_set(err, FL_EIO, "%s: not a regular file", path);
    }
    gguf_file *g;
    fl_code rc = gguf_new(path, &g, err);
    if (rc) {
        close(fd);
        return rc;
    }
    g->size = (size_t)st.st_size;
    if (g->size) {
        g->map = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (g->map == MAP_FAILED) {
            g->map = NULL;
            close(fd);
            gguf_close(g);
            return fl_error_set(err, FL_EIO, "%s: cannot map: %m", path);
        }
        g->map_size = g->size;
        g->base = g->map;
    }
    close(fd);
    if ((rc = gguf_parse(g, err))) {
        gguf_close(g);
        return rc;
    }
    *out = g;
    return FL_OK;
}

void gguf_close(gguf_file *g) {
    if (!g) return;
    for (int i = 0; i < g->n_kv; i++) {
        free((char *)g->kvs[i].key);
        free(g->kvs[i].strs);
    }
    for (int i = 0; i < g->n_tensors; i++)
        free((char *)g->tensors[i].name);
    free(g->kvs);
    free(g->tensors);
    if (g->map) munmap(g->map, g->map_size);
    free(g->name);
    free(g);
}

const char *gguf_name(const gguf_file *g) {
    return g->name;
}
uint32_t gguf_version(const gguf_file *g) {
    return g->version;
}
int gguf_kv_count(const gguf_file *g) {
    return g->n_kv;
}
const gguf_kv *gguf_kv_at(const gguf_file *g, int i) {
    return &g->kvs[i];
}
int gguf_tensor_count(const gguf_file *g) {
    return g->n_tensors;
}
const gguf_tensor *gguf_tensor_at(const gguf_file *g, int i) {
    return &g->tensors[i];
}

const gguf_kv *gguf_kv_find(const gguf_file *g, const char *key) {
    for (int i = 0; i < g->n_kv; i++)
        if (g->kvs[i].key && !strcmp(g->kvs[i].key, key)) return &g->kvs[i];
    return NULL;
}

const gguf_tensor *gguf_tensor_find(const gguf_file *g, const char *name) {
    for (int i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].name && !strcmp(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

static int vtype_is_signed(gguf_vtype t) {
    return t == GGUF_VT_I8 || t == GGUF_VT_I16 || t == GGUF_VT_I32 || t == GGUF_VT_I64;
}

static int vtype_is_int(gguf_vtype t) {
    return vtype_is_signed(t) || t == GGUF_VT_U8 || t == GGUF_VT_U16 || t == GGUF_VT_U32 ||
           t == GGUF_VT_U64;
}

fl_code gguf_get_int_or(const gguf_file *g, const char *key, int64_t def, int64_t *out,
                        fl_error *err) {
    const gguf_kv *kv = gguf_kv_find(g, key);
    if (!kv) {
        *out = def;
        return FL_OK;
    }
    if (!vtype_is_int(kv->type))
        return fl_error_set(err, FL_EFORMAT, "%s: metadata '%s' must be an integer", g->name, key);
    if (!vtype_is_signed(kv->type) && kv->v.u > INT64_MAX)
        return fl_error_set(err, FL_EFORMAT, "%s: metadata '%s' is out of range", g->name, key);
    *out = vtype_is_signed(kv->type) ? kv->v.i : (int64_t)kv->v.u;
    return FL_OK;
}

fl_code gguf_get_int(const gguf_file *g, const char *key, int64_t *out, fl_error *err) {
    if (!gguf_kv_find(g, key))
        return fl_error_set(err, FL_ENOTFOUND, "%s: metadata '%s' is missing", g->name, key);
    return gguf_get_int_or(g, key, 0, out, err);
}

fl_code gguf_get_float_or(const gguf_file *g, const char *key, double def, double *out,
                          fl_error *err) {
    const gguf_kv *kv = gguf_kv_find(g, key);
    if (!kv) {
        *out = def;
        return FL_OK;
    }
    if (kv->type == GGUF_VT_F32 || kv->type == GGUF_VT_F64) {
        *out = kv->v.f;
        return FL_OK;
    }
    int64_t v;
    fl_code rc = gguf_get_int_or(g, key, 0, &v, err);
    if (rc)
        return fl_error_set(err, FL_EFORMAT, "%s: metadata '%s' must be a number", g->name, key);
    *out = (double)v;
    return FL_OK;
}

fl_code gguf_get_bool_or(const gguf_file *g, const char *key, int def, int *out, fl_error *err) {
    const gguf_kv *kv = gguf_kv_find(g, key);
    if (!kv) {
        *out = def;
        return FL_OK;
    }
    if (kv->type != GGUF_VT_BOOL)
        return fl_error_set(err, FL_EFORMAT, "%s: metadata '%s' must be a bool", g->name, key);
    *out = (int)kv->v.u;
    return FL_OK;
}

fl_code gguf_get_string(const gguf_file *g, const char *key, int optional, char **out,
                        fl_error *err) {
    const gguf_kv *kv = gguf_kv_find(g, key);
    *out = NULL;
    if (!kv)
        return optional
                   ? FL_OK
                   : fl_error_set(err, FL_ENOTFOUND, "%s: metadata '%s' is missing", g->name, key);
    if (kv->type != GGUF_VT_STRING)
        return fl_error_set(err, FL_EFORMAT, "%s: metadata '%s' must be a string", g->name, key);
    if (!(*out = str_dup(kv->v.str)))
        return fl_error_set(err, FL_ENOMEM, "%s: out of memory", g->name);
    return FL_OK;
}

int64_t gguf_array_int_at(const gguf_kv *kv, uint64_t i) {
    gguf_kv x = {0};
    size_t es = vtype_size(kv->elem_type);
    if (!kv->elems || !vtype_is_int(kv->elem_type) || i >= kv->n) return 0;
    scalar_decode(kv->elem_type, (const uint8_t *)kv->elems + i * es, &x);
    return vtype_is_signed(kv->elem_type) ? x.v.i : (int64_t)x.v.u;
}

// ---- dequantization (block layouts from ggml-common.h; the formulas from ggml-quants.c) ----

#define QK4_0 32
#define QK4_1 32
#define QK8_0 32
#define QK_K  256

const char *ggml_type_name(uint32_t type) {
    switch (type) {
    case GGML_TYPE_F32:
        return "F32";
    case GGML_TYPE_F16:
        return "F16";
    case GGML_TYPE_BF16:
        return "BF16";
    case GGML_TYPE_Q4_0:
        return "Q4_0";
    case GGML_TYPE_Q4_1:
        return "Q4_1";
    case GGML_TYPE_Q8_0:
        return "Q8_0";
    case GGML_TYPE_Q4_K:
        return "Q4_K";
    case GGML_TYPE_Q6_K:
        return "Q6_K";
    default:
        return "unknown";
    }
}

int ggml_type_block(uint32_t type, size_t *block_bytes) {
    switch (type) {
    case GGML_TYPE_F32:
        *block_bytes = 4;
        return 1;
    case GGML_TYPE_F16:
        *block_bytes = 2;
        return 1;
    case GGML_TYPE_BF16:
        *block_bytes = 2;
        return 1;
    case GGML_TYPE_Q4_0:
        *block_bytes = 2 + QK4_0 / 2;
        return QK4_0; // d, qs
    case GGML_TYPE_Q4_1:
        *block_bytes = 4 + QK4_1 / 2;
        return QK4_1; // d, m, qs
    case GGML_TYPE_Q8_0:
        *block_bytes = 2 + QK8_0;
        return QK8_0; // d, qs
    case GGML_TYPE_Q4_K:
        *block_bytes = 4 + 12 + QK_K / 2;
        return QK_K; // d, dmin, sc, qs
    case GGML_TYPE_Q6_K:
        *block_bytes = QK_K / 2 + QK_K / 4 + QK_K / 16 + 2;
        return QK_K;
    default:
        *block_bytes = 0;
        return 0;
    }
}

static float half_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return fp16_to_f32(h);
}

static void dequant_q4_0(const uint8_t *b, float *y) {
    float d = half_at(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < QK4_0 / 2; j++) {
        y[j] = ((qs[j] & 0x0f) - 8) * d;
        y[j + QK4_0 / 2] = ((qs[j] >> 4) - 8) * d;
    }
}

static void dequant_q4_1(const uint8_t *b, float *y) {
    float d = half_at(b), m = half_at(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < QK4_1 / 2; j++) {
        y[j] = (qs[j] & 0x0f) * d + m;
        y[j + QK4_1 / 2] = (qs[j] >> 4) * d + m;
    }
}

static void dequant_q8_0(const uint8_t *b, float *y) {
    float d = half_at(b);
    const int8_t *qs = (const int8_t *)(b + 2);
    for (int j = 0; j < QK8_0; j++)
        y[j] = qs[j] * d;
}

// 6-bit scale and min j of a Q4_K block's 12 packed scale bytes.
static void q4_k_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63, *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

static void dequant_q4_k(const uint8_t *b, float *y) {
    float d = half_at(b), dmin = half_at(b + 2);
    const uint8_t *scales = b + 4, *q = b + 16;
    for (int j = 0, is = 0; j < QK_K; j += 64, is += 2, q += 32) {
        uint8_t sc, m;
        q4_k_scale_min(is, scales, &sc, &m);
        float d1 = d * sc, m1 = dmin * m;
        q4_k_scale_min(is + 1, scales, &sc, &m);
        float d2 = d * sc, m2 = dmin * m;
        for (int l = 0; l < 32; l++)
            *y++ = d1 * (q[l] & 0xf) - m1;
        for (int l = 0; l < 32; l++)
            *y++ = d2 * (q[l] >> 4) - m2;
    }
}

static void dequant_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + QK_K / 2;
    const int8_t *sc = (const int8_t *)(b + QK_K / 2 + QK_K / 4);
    float d = half_at(b + QK_K / 2 + QK_K / 4 + QK_K / 16);
    for (int n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = (int)((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = (int)((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = (int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * sc[is] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
        }
    }
}

fl_code ggml_dequantize(uint32_t type, const void *src, float *dst, int64_t n, fl_error *err) {
    size_t bb;
    int be = ggml_type_block(type, &bb);
    if (!be)
        return fl_error_set(err, FL_EUNSUPPORTED, "tensor type %u (%s) has no dequantizer", type,
                            ggml_type_name(type));
    if (n % be)
        return fl_error_set(err, FL_EINVAL, "%" PRId64 " elements are not whole %s blocks", n,
                            ggml_type_name(type));
    const uint8_t *s = src;
    for (int64_t i = 0; i < n / be; i++, s += bb, dst += be) {
        switch (type) {
        case GGML_TYPE_F32:
            memcpy(dst, s, 4);
            break;
        case GGML_TYPE_F16:
            *dst = half_at(s);
            break;
        case GGML_TYPE_BF16: {
            uint16_t h;
            memcpy(&h, s, 2);
            *dst = bf16_to_f32(h);
            break;
        }
        case GGML_TYPE_Q4_0:
            dequant_q4_0(s, dst);
            break;
        case GGML_TYPE_Q4_1:
            dequant_q4_1(s, dst);
            break;
        case GGML_TYPE_Q8_0:
            dequant_q8_0(s, dst);
            break;
        case GGML_TYPE_Q4_K:
            dequant_q4_k(s, dst);
            break;
        case GGML_TYPE_Q6_K:
            dequant_q6_k(s, dst);
            break;
        }
    }
    return FL_OK;
}

fl_code gguf_tensor_dequantize(const gguf_file *g, const gguf_tensor *t, float *dst,
                               fl_error *err) {
    if (!t->data)
        return fl_error_set(err, FL_EUNSUPPORTED,
                            "%s: tensor '%s' has type %u (%s), which has no dequantizer", g->name,
                            t->name, t->type, ggml_type_name(t->type));
    fl_code rc = ggml_dequantize(t->type, t->data, dst, t->n_elem, err);
    return rc ? fl_error_wrap(err, "%s: tensor '%s'", g->name, t->name) : FL_OK;
}
