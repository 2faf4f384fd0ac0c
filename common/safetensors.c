// Safetensors: 8-byte little-endian header length N, N bytes of JSON header (name ->
// {"dtype","shape","data_offsets":[begin,end]}, optional "__metadata__"), then the data section;
// offsets are relative to the data section. Files are mmapped read-only and every header field is
// validated before a tensor is handed out, so a corrupt checkpoint is an error, never a crash.
#include "common/safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json_util.h"

#define ST_MAX_HEADER (100u << 20) // a header this large is corruption, not a model
#define ST_INDEX_NAME "model.safetensors.index.json"

typedef struct st_file {
    char *path;
    void *map; // whole file, read-only
    size_t size;
} st_file;

struct safetensors {
    char *source; // the directory or file opened (for "not found" messages)
    st_file *files;
    int n_files;
    st_tensor *tensors; // in file order, then header order
    int n_tensors, cap_tensors;
    int *slots; // open-addressing hash of tensor indices by name; -1 = empty
    size_t n_slots;
};

// ---- name lookup ----------------------------------------------------------------------------

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull; // FNV-1a
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

// The slot holding `name`, or the empty slot where it would go.
static size_t slot_of(const safetensors *st, const char *name) {
    size_t mask = st->n_slots - 1, i = name_hash(name) & mask;
    while (st->slots[i] >= 0 && strcmp(st->tensors[st->slots[i]].name, name))
        i = (i + 1) & mask;
    return i;
}

// Indexes tensor i (the hash is kept under half full); a duplicate name, within one header or
// across files, is an error.
static fl_code index_add(safetensors *st, int i, fl_error *err) {
    if (2 * (size_t)(i + 1) > st->n_slots) {
        int *grown = malloc(2 * st->n_slots * sizeof *grown);
        if (!grown) return fl_error_set(err, FL_ENOMEM, "%s: out of memory", st->source);
        free(st->slots);
        st->slots = grown;
        st->n_slots *= 2;
        memset(st->slots, 0xff, st->n_slots * sizeof *st->slots);
        for (int j = 0; j < i; j++)
            st->slots[slot_of(st, st->tensors[j].name)] = j;
    }
    size_t s = slot_of(st, st->tensors[i].name);
    if (st->slots[s] >= 0) {
        const st_tensor *a = &st->tensors[st->slots[s]], *b = &st->tensors[i];
        return fl_error_set(err, FL_EFORMAT, "%s: tensor '%s' appears twice (also in %s)", b->file,
                            b->name, a->file);
    }
    st->slots[s] = i;
    return FL_OK;
}

const st_tensor *safetensors_find(const safetensors *st, const char *name) {
    int i = st->slots[slot_of(st, name)];
    return i >= 0 ? &st->tensors[i] : NULL;
}

int safetensors_count(const safetensors *st) {
    return st->n_tensors;
}

const st_tensor *safetensors_at(const safetensors *st, int i) {
    return i >= 0 && i < st->n_tensors ? &st->tensors[i] : NULL;
}

// ---- reading one file -----------------------------------------------------------------------

static safetensors *safetensors_alloc(const char *source) {
    safetensors *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    st->n_slots = 64;
    st->slots = malloc(st->n_slots * sizeof *st->slots);
    st->source = strdup(source);
    if (!st->slots || !st->source) {
        safetensors_close(st);
        return NULL;
    }
    memset(st->slots, 0xff, st->n_slots * sizeof *st->slots);
    return st;
}

void safetensors_close(safetensors *st) {
    if (!st) return;
    for (int i = 0; i < st->n_tensors; i++)
        free((char *)st->tensors[i].name);
    for (int i = 0; i < st->n_files; i++) {
        if (st->files[i].map) munmap(st->files[i].map, st->files[i].size);
        free(st->files[i].path);
    }
    free(st->files);
    free(st->tensors);
    free(st->slots);
    free(st->source);
    free(st);
}

static fl_code file_map(st_file *f, fl_error *err) {
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return fl_error_set(err, errno == ENOENT ? FL_ENOTFOUND : FL_EIO, "%s: cannot open: %s",
                            f->path, strerror(errno));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return fl_error_set(err, FL_EIO, "%s: not a regular file", f->path);
    }
    f->size = (size_t)sb.st_size;
    if (f->size < 8) {
        close(fd);
        return fl_error_set(err, FL_EFORMAT,
                            "%s: truncated: %zu bytes, shorter than the 8-byte header length",
                            f->path, f->size);
    }
    void *map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int saved = errno;
    close(fd);
    if (map == MAP_FAILED)
        return fl_error_set(err, FL_EIO, "%s: cannot mmap: %s", f->path, strerror(saved));
    f->map = map;
    return FL_OK;
}

typedef struct span {
    uint64_t begin, end;
    int tensor;
} span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

// Parses one header entry into *t (name already set); `data_size` bounds the offsets.
static fl_code tensor_parse(const st_file *f, const cJSON *entry, st_tensor *t, uint64_t data_size,
                            uint64_t *begin, fl_error *err) {
    const char *path = f->path, *name = t->name;
    if (!cJSON_IsObject(entry))
        return fl_error_set(err, FL_EFORMAT, "%s: tensor '%s': entry is not an object", path, name);
    const cJSON *jdtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    const cJSON *jshape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    const cJSON *joffs = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    if (!cJSON_IsString(jdtype))
        return fl_error_set(err, FL_EFORMAT, "%s: tensor '%s': missing string 'dtype'", path, name);
    if (dtype_from_name(jdtype->valuestring, &t->type)) {
        return fl_error_set(err, FL_EUNSUPPORTED, "%s: tensor '%s': unsupported dtype '%s'", path,
                            name, jdtype->valuestring);
    }
    if (!cJSON_IsArray(jshape))
        return fl_error_set(err, FL_EFORMAT, "%s: tensor '%s': missing array 'shape'", path, name);
    int n_dim = cJSON_GetArraySize(jshape);
    if (n_dim > ST_MAX_DIMS) {
        return fl_error_set(err, FL_EUNSUPPORTED, "%s: tensor '%s': %d dimensions (at most %d)",
                            path, name, n_dim, ST_MAX_DIMS);
    }
    t->n_dim = n_dim;
    uint64_t nbytes = dtype_size(t->type);
    int d = 0;
    const cJSON *dim;
    cJSON_ArrayForEach(dim, jshape) {
        int64_t v;
        if (json_number_as_int64(dim, &v) || v < 0)
            return fl_error_set(err, FL_EFORMAT, "%s: tensor '%s': shape[%d] is not a size", path,
                                name, d);
        if (__builtin_mul_overflow(nbytes, (uint64_t)v, &nbytes))
            return fl_error_set(err, FL_EFORMAT, "%s: tensor '%s': shape overflows", path, name);
        t->shape[d++] = v;
    }
    int64_t off[2];
    if (!cJSON_IsArray(joffs) || cJSON_GetArraySize(joffs) != 2 ||
        json_number_as_int64(cJSON_GetArrayItem(joffs, 0), &off[0]) ||
        json_number_as_int64(cJSON_GetArrayItem(joffs, 1), &off[1])) {
        return fl_error_set(err, FL_EFORMAT,
                            "%s: tensor '%s': 'data_offsets' must be two integers [begin, end]",
                            path, name);
    }
    if (off[0] > off[1]) {
        return fl_error_set(err, FL_EFORMAT,
                            "%s: tensor '%s': data_offsets [%lld, %lld] end "
                            "before they begin",
                            path, name, (long long)off[0], (long long)off[1]);
    }
    if (off[0] < 0 || (uint64_t)off[1] > data_size) {
        return fl_error_set(err, FL_EFORMAT,
                            "%s: tensor '%s': data_offsets [%lld, %lld] outside the data section "
                            "of %llu bytes (truncated file?)",
                            path, name, (long long)off[0], (long long)off[1],
                            (unsigned long long)data_size);
    }
    if ((uint64_t)(off[1] - off[0]) != nbytes) {
        return fl_error_set(err, FL_EFORMAT,
                            "%s: tensor '%s': shape x dtype %s is %llu bytes but data_offsets "
                            "span %lld",
                            path, name, dtype_name(t->type), (unsigned long long)nbytes,
                            (long long)(off[1] - off[0]));
    }
    t->nbytes = (size_t)nbytes;
    *begin = (uint64_t)off[0];
    return FL_OK;
}

// Appends every tensor of f (already mapped) to st.
static fl_code header_parse(safetensors *st, const st_file *f, fl_error *err) {
    const unsigned char *p = f->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | p[i];
    if (hlen > f->size - 8) {
        return fl_error_set(err, FL_EFORMAT,
                            "%s: header length %llu runs past the end of the %zu-byte file "
                            "(truncated or not safetensors)",
                            f->path, (unsigned long long)hlen, f->size);
    }
    if (hlen > ST_MAX_HEADER) {
        return fl_error_set(err, FL_EFORMAT, "%s: header length %llu exceeds %u bytes", f->path,
                            (unsigned long long)hlen, ST_MAX_HEADER);
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)p + 8, (size_t)hlen, &end, 0);
    if (!root) {
        long off = end ? (long)(end - (const char *)p - 8) : -1;
        return fl_error_set(err, FL_EFORMAT, "%s: malformed JSON header near byte %ld", f->path,
                            off);
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return fl_error_set(err, FL_EFORMAT, "%s: header is not a JSON object", f->path);
    }
    uint64_t data_size = f->size - 8 - hlen;
    const unsigned char *data = p + 8 + hlen;
    int n = cJSON_GetArraySize(root);
    span *spans = malloc((size_t)(n ? n : 1) * sizeof *spans);
    if (st->n_tensors + n > st->cap_tensors) {
        int cap = st->cap_tensors ? st->cap_tensors : 64;
        while (cap < st->n_tensors + n)
            cap *= 2;
        st_tensor *grown = realloc(st->tensors, (size_t)cap * sizeof *grown);
        if (grown) {
            st->tensors = grown;
            st->cap_tensors = cap;
        }
    }
    fl_code rc = FL_OK;
    if (!spans || st->cap_tensors < st->n_tensors + n)
        rc = fl_error_set(err, FL_ENOMEM, "%s: out of memory for %d tensors", f->path, n);
    int n_spans = 0;
    const cJSON *entry;
    cJSON_ArrayForEach(entry, root) {
        if (rc) break;
        if (!strcmp(entry->string, "__metadata__")) continue;
        st_tensor *t = &st->tensors[st->n_tensors];
        memset(t, 0, sizeof *t);
        t->file = f->path;
        if (!(t->name = strdup(entry->string))) {
            rc = fl_error_set(err, FL_ENOMEM, "%s: out of memory", f->path);
            break;
        }
        st->n_tensors++;
        uint64_t begin = 0;
        rc = index_add(st, st->n_tensors - 1, err);
        if (!rc) rc = tensor_parse(f, entry, t, data_size, &begin, err);
        if (rc) break;
        t->data = data + begin;
        spans[n_spans++] = (span){begin, begin + t->nbytes, st->n_tensors - 1};
    }
    cJSON_Delete(root);
    // Overlap check on offsets sorted by begin; empty tensors occupy no bytes.
    if (!rc) qsort(spans, (size_t)n_spans, sizeof *spans, span_cmp);
    uint64_t covered = 0;
    int last = -1;
    for (int i = 0; !rc && i < n_spans; i++) {
        if (spans[i].begin == spans[i].end) continue;
        if (last >= 0 && spans[i].begin < covered) {
            rc = fl_error_set(err, FL_EFORMAT, "%s: tensor '%s' overlaps tensor '%s'", f->path,
                              st->tensors[spans[i].tensor].name, st->tensors[last].name);
        }
        covered = spans[i].end;
        last = spans[i].tensor;
    }
    free(spans);
    return rc;
}

static fl_code file_add(safetensors *st, const char *path, fl_error *err) {
    st_file *grown = realloc(st->files, (size_t)(st->n_files + 1) * sizeof *grown);
    if (!grown) return fl_error_set(err, FL_ENOMEM, "%s: out of memory", path);
    st->files = grown;
    st_file *f = &st->files[st->n_files];
    memset(f, 0, sizeof *f);
    if (!(f->path = strdup(path))) return fl_error_set(err, FL_ENOMEM, "%s: out of memory", path);
    st->n_files++;
    fl_code rc = file_map(f, err);
    return rc ? rc : header_parse(st, f, err);
}

fl_code safetensors_open_file(const char *path, safetensors **out, fl_error *err) {
    *out = NULL;
    safetensors *st = safetensors_alloc(path);
    if (!st) return fl_error_set(err, FL_ENOMEM, "%s: out of memory", path);
    fl_code rc = file_add(st, path, err);
    if (rc) {
        safetensors_close(st);
        return rc;
    }
    *out = st;
    return FL_OK;
}

// ---- directories ----------------------------------------------------------------------------

static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int str_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void names_free(char **names, int n) {
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

// Sorted names of the regular *.safetensors files in dir.
static fl_code dir_list(const char *dir, char ***out, int *n_out, fl_error *err) {
    DIR *d = opendir(dir);
    if (!d) {
        return fl_error_set(err, errno == ENOENT ? FL_ENOTFOUND : FL_EIO, "%s: cannot open: %s",
                            dir, strerror(errno));
    }
    char **names = NULL;
    int n = 0;
    fl_code rc = FL_OK;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len <= 12 || strcmp(e->d_name + len - 12, ".safetensors")) continue;
        char *full = path_join(dir, e->d_name);
        struct stat sb;
        int regular = full && stat(full, &sb) == 0 && S_ISREG(sb.st_mode);
        free(full);
        if (!regular) continue;
        char **grown = realloc(names, (size_t)(n + 1) * sizeof *grown);
        if (!grown || !(grown[n] = strdup(e->d_name))) {
            if (grown) names = grown;
            rc = fl_error_set(err, FL_ENOMEM, "%s: out of memory", dir);
            break;
        }
        names = grown;
        n++;
    }
    closedir(d);
    if (rc) {
        names_free(names, n);
        return rc;
    }
    if (n > 1) qsort(names, (size_t)n, sizeof *names, str_cmp);
    *out = names;
    *n_out = n;
    return FL_OK;
}

// Opens the shards named in the index's weight_map and checks each listed tensor is in its file.
static fl_code index_open(safetensors *st, const char *dir, const char *index_path, fl_error *err) {
    cJSON *root;
    fl_code rc = json_load_file(index_path, &root, err);
    if (rc) return rc;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(map)) {
        cJSON_Delete(root);
        return fl_error_set(err, FL_EFORMAT, "%s: missing object 'weight_map'", index_path);
    }
    int n_map = cJSON_GetArraySize(map), n_shards = 0;
    char **shards = calloc((size_t)(n_map ? n_map : 1), sizeof *shards);
    if (!shards) rc = fl_error_set(err, FL_ENOMEM, "%s: out of memory", index_path);
    const cJSON *e;
    cJSON_ArrayForEach(e, map) {
        if (rc) break;
        if (!cJSON_IsString(e) || !e->valuestring[0] || strchr(e->valuestring, '/')) {
            rc = fl_error_set(err, FL_EFORMAT,
                              "%s: weight_map entry for tensor '%s' must be a file name in %s",
                              index_path, e->string, dir);
            break;
        }
        int seen = 0;
        for (int i = 0; i < n_shards && !seen; i++)
            seen = !strcmp(shards[i], e->valuestring);
        if (seen) continue;
        // Check existence here so the message can name a tensor that lives in the missing shard.
        char *full = path_join(dir, e->valuestring);
        if (!full || !(shards[n_shards] = strdup(e->valuestring))) {
            free(full);
            rc = fl_error_set(err, FL_ENOMEM, "%s: out of memory", index_path);
            break;
        }
        n_shards++;
        if (access(full, F_OK) != 0) {
            rc = fl_error_set(err, FL_ENOTFOUND,
                              "%s: shard file %s (listed for tensor '%s') does not exist",
                              index_path, full, e->string);
        }
        free(full);
    }
    if (!rc) qsort(shards, (size_t)n_shards, sizeof *shards, str_cmp);
    for (int i = 0; !rc && i < n_shards; i++) {
        char *full = path_join(dir, shards[i]);
        rc = full ? file_add(st, full, err)
                  : fl_error_set(err, FL_ENOMEM, "%s: out of memory", index_path);
        free(full);
    }
    cJSON_ArrayForEach(e, map) {
        if (rc) break;
        const st_tensor *t = safetensors_find(st, e->string);
        const char *file = t ? strrchr(t->file, '/') + 1 : NULL;
        if (!t || strcmp(file, e->valuestring)) {
            rc = fl_error_set(err, FL_ENOTFOUND, "%s: tensor '%s' is listed in %s but not there",
                              index_path, e->string, e->valuestring);
        }
    }
    names_free(shards, n_shards);
    cJSON_Delete(root);
    return rc;
}

fl_code safetensors_open_dir(const char *dir, safetensors **out, fl_error *err) {
    *out = NULL;
    safetensors *st = safetensors_alloc(dir);
    char *index_path = path_join(dir, ST_INDEX_NAME);
    if (!st || !index_path) {
        safetensors_close(st);
        free(index_path);
        return fl_error_set(err, FL_ENOMEM, "%s: out of memory", dir);
    }
    fl_code rc;
    if (access(index_path, F_OK) == 0) {
        rc = index_open(st, dir, index_path, err);
    } else {
        char **names = NULL;
        int n = 0;
        rc = dir_list(dir, &names, &n, err);
        if (!rc && n == 0) rc = fl_error_set(err, FL_ENOTFOUND, "%s: no *.safetensors files", dir);
        for (int i = 0; !rc && i < n; i++) {
            char *full = path_join(dir, names[i]);
            rc = full ? file_add(st, full, err) : fl_error_set(err, FL_ENOMEM, "out of memory");
            free(full);
        }
        names_free(names, n);
    }
    free(index_path);
    if (rc) {
        safetensors_close(st);
        return rc;
    }
    *out = st;
    return FL_OK;
}

// ---- checks ---------------------------------------------------------------------------------

void st_shape_format(char *buf, size_t cap, int n_dim, const int64_t *shape) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < n_dim && n < cap; i++) {
        if (shape[i] < 0)
            n += (size_t)snprintf(buf + n, cap - n, "%s*", i ? ", " : "");
        else
            n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    }
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

static fl_code shape_check(const st_tensor *t, int n_dim, const int64_t *shape, fl_error *err) {
    int ok = t->n_dim == n_dim;
    for (int i = 0; ok && i < n_dim; i++)
        ok = shape[i] < 0 || shape[i] == t->shape[i];
    if (ok) return FL_OK;
    char have[160], want[160];
    st_shape_format(have, sizeof have, t->n_dim, t->shape);
    st_shape_format(want, sizeof want, n_dim, shape);
    return fl_error_set(err, FL_EINVAL, "%s: tensor '%s' has shape %s, expected %s", t->file,
                        t->name, have, want);
}

fl_code safetensors_expect_shape(const safetensors *st, const char *name, int n_dim,
                                 const int64_t *shape, const st_tensor **out, fl_error *err) {
    const st_tensor *t = safetensors_find(st, name);
    if (!t) return fl_error_set(err, FL_ENOTFOUND, "%s: tensor '%s' not found", st->source, name);
    fl_code rc = shape_check(t, n_dim, shape, err);
    if (!rc && out) *out = t;
    return rc;
}

fl_code safetensors_expect(const safetensors *st, const char *name, dtype type, int n_dim,
                           const int64_t *shape, const st_tensor **out, fl_error *err) {
    const st_tensor *t = safetensors_find(st, name);
    if (!t) return fl_error_set(err, FL_ENOTFOUND, "%s: tensor '%s' not found", st->source, name);
    if (t->type != type) {
        return fl_error_set(err, FL_EINVAL, "%s: tensor '%s' has dtype %s, expected %s", t->file,
                            name, dtype_name(t->type), dtype_name(type));
    }
    fl_code rc = shape_check(t, n_dim, shape, err);
    if (!rc && out) *out = t;
    return rc;
}

// ---- writer ---------------------------------------------------------------------------------

typedef struct st_decl {
    char *name;
    dtype type;
    int n_dim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t nbytes;
} st_decl;

struct safetensors_writer {
    char *path;
    FILE *fp;
    st_decl *decls;
    int n_decls, cap_decls;
    uint64_t total, written; // bytes of the data section: declared, written so far
    int header_done;
    fl_code failed; // sticky: once a write fails the file is abandoned
};

fl_code safetensors_writer_create(const char *path, safetensors_writer **out, fl_error *err) {
    *out = NULL;
    safetensors_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        return fl_error_set(err, FL_ENOMEM, "%s: out of memory", path);
    }
    if (!(w->fp = fopen(path, "wb"))) {
        fl_code rc = fl_error_set(err, FL_EIO, "%s: cannot create: %s", path, strerror(errno));
        free(w->path);
        free(w);
        return rc;
    }
    setvbuf(w->fp, NULL, _IOFBF, 4u << 20); // large sequential writes
    *out = w;
    return FL_OK;
}

fl_code safetensors_writer_declare(safetensors_writer *w, const char *name, dtype type, int n_dim,
                                   const int64_t *shape, fl_error *err) {
    if (w->header_done) {
        return fl_error_set(err, FL_EINVAL, "%s: tensor '%s' declared after data was written",
                            w->path, name);
    }
    if (n_dim < 0 || n_dim > ST_MAX_DIMS) {
        return fl_error_set(err, FL_EINVAL, "%s: tensor '%s': %d dimensions (at most %d)", w->path,
                            name, n_dim, ST_MAX_DIMS);
    }
    if (!strcmp(name, "__metadata__"))
        return fl_error_set(err, FL_EINVAL, "%s: '__metadata__' is not a tensor name", w->path);
    for (int i = 0; i < w->n_decls; i++) {
        if (!strcmp(w->decls[i].name, name))
            return fl_error_set(err, FL_EINVAL, "%s: tensor '%s' declared twice", w->path, name);
    }
    uint64_t nbytes = dtype_size(type);
    for (int i = 0; i < n_dim; i++) {
        if (shape[i] < 0 || __builtin_mul_overflow(nbytes, (uint64_t)shape[i], &nbytes)) {
            return fl_error_set(err, FL_EINVAL, "%s: tensor '%s': bad shape[%d] = %lld", w->path,
                                name, i, (long long)shape[i]);
        }
    }
    if (w->n_decls == w->cap_decls) {
        int cap = w->cap_decls ? 2 * w->cap_decls : 64;
        st_decl *grown = realloc(w->decls, (size_t)cap * sizeof *grown);
        if (!grown) return fl_error_set(err, FL_ENOMEM, "%s: out of memory", w->path);
        w->decls = grown;
        w->cap_decls = cap;
    }
    st_decl *d = &w->decls[w->n_decls];
    if (!(d->name = strdup(name)))
        return fl_error_set(err, FL_ENOMEM, "%s: out of memory", w->path);
    d->type = type;
    d->n_dim = n_dim;
    memcpy(d->shape, shape, (size_t)n_dim * sizeof *shape);
    d->nbytes = nbytes;
    w->total += nbytes;
    w->n_decls++;
    return FL_OK;
}

// Writes a JSON string literal (names are arbitrary UTF-8; escape what JSON requires).
static void json_string_write(FILE *fp, const char *s) {
    fputc('"', fp);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(fp, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(fp, "\\u%04x", *p);
        else
            fputc(*p, fp);
    }
    fputc('"', fp);
}

static void header_write(const safetensors_writer *w, FILE *fp) {
    fputc('{', fp);
    uint64_t off = 0;
    for (int i = 0; i < w->n_decls; i++) {
        const st_decl *d = &w->decls[i];
        if (i) fputc(',', fp);
        json_string_write(fp, d->name);
        fprintf(fp, ":{\"dtype\":\"%s\",\"shape\":[", dtype_name(d->type));
        for (int j = 0; j < d->n_dim; j++)
            fprintf(fp, "%s%lld", j ? "," : "", (long long)d->shape[j]);
        fprintf(fp, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                (unsigned long long)(off + d->nbytes));
        off += d->nbytes;
    }
    fputc('}', fp);
}

static fl_code header_emit(safetensors_writer *w, fl_error *err) {
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (!mem) return fl_error_set(err, FL_ENOMEM, "%s: out of memory", w->path);
    header_write(w, mem);
    fflush(mem); // updates len
    // Pad with spaces so the data section starts 8-byte aligned, as the Python library does.
    size_t pad = (8 - len % 8) % 8;
    for (size_t i = 0; i < pad; i++)
        fputc(' ', mem);
    if (fclose(mem) != 0) {
        free(text);
        return fl_error_set(err, FL_ENOMEM, "%s: out of memory", w->path);
    }
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)((uint64_t)len >> (8 * i));
    fwrite(le, 1, 8, w->fp);
    fwrite(text, 1, len, w->fp);
    free(text);
    w->header_done = 1;
    if (ferror(w->fp))
        return fl_error_set(err, FL_EIO, "%s: write failed: %s", w->path, strerror(errno));
    return FL_OK;
}

// The declared tensor holding data byte `pos` (for messages).
static const char *decl_at(const safetensors_writer *w, uint64_t pos) {
    for (int i = 0; i < w->n_decls; i++) {
        if (pos < w->decls[i].nbytes) return w->decls[i].name;
        pos -= w->decls[i].nbytes;
    }
    return w->n_decls ? w->decls[w->n_decls - 1].name : "(none)";
}

fl_code safetensors_writer_write(safetensors_writer *w, const void *data, size_t nbytes,
                                 fl_error *err) {
    if (w->failed) return fl_error_set(err, w->failed, "%s: an earlier write failed", w->path);
    fl_code rc = w->header_done ? FL_OK : header_emit(w, err);
    if (!rc && nbytes > w->total - w->written) {
        rc = fl_error_set(err, FL_EINVAL,
                          "%s: writing %zu bytes past the declared %llu (last tensor '%s')",
                          w->path, nbytes, (unsigned long long)w->total, decl_at(w, w->total));
    }
    if (!rc && fwrite(data, 1, nbytes, w->fp) != nbytes)
        rc = fl_error_set(err, FL_EIO, "%s: write failed: %s", w->path, strerror(errno));
    if (rc) {
        w->failed = rc;
        return rc;
    }
    w->written += nbytes;
    return FL_OK;
}

// A file that failed is removed rather than left behind looking like a truncated checkpoint.
fl_code safetensors_writer_finish(safetensors_writer *w, fl_error *err) {
    fl_code rc = w->failed;
    if (rc) fl_error_set(err, rc, "%s: abandoned after a failed write", w->path);
    if (!rc && !w->header_done) rc = header_emit(w, err);
    if (!rc && w->written != w->total) {
        rc = fl_error_set(
            err, FL_EINVAL, "%s: %llu of %llu data bytes written (tensor '%s' incomplete)", w->path,
            (unsigned long long)w->written, (unsigned long long)w->total, decl_at(w, w->written));
    }
    if (fclose(w->fp) != 0 && !rc)
        rc = fl_error_set(err, FL_EIO, "%s: close failed: %s", w->path, strerror(errno));
    if (rc) unlink(w->path);
    for (int i = 0; i < w->n_decls; i++)
        free(w->decls[i].name);
    free(w->decls);
    free(w->path);
    free(w);
    return rc;
}
