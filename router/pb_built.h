// A protobuf-c message built by the router (not unpacked) in an arena: every allocation made for
// it is freed at once. Used by router/pb_shard.c and router/pb_api.c.
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

typedef struct pb_built pb_built;

const ProtobufCMessage *pb_built_msg(const pb_built *b);
void pb_built_free(pb_built *b);

// ---- building (for the pb_*.c converters) ----

pb_built *pb_built_new(void); // NULL when out of memory
// Zeroed memory owned by b; NULL when out of memory (b then remembers the failure).
void *pb_built_alloc(pb_built *b, size_t size);
char *pb_built_strdup(pb_built *b, const char *s); // s == NULL: ""
// Ends building with msg as the message: returns b, or NULL (freeing b) when msg is NULL or an
// allocation failed along the way.
pb_built *pb_built_done(pb_built *b, void *msg);

// A T in b's arena, initialised with INIT (a protobuf-c __INIT macro); NULL when out of memory.
#define PB_BUILT_NEW(b, T, INIT)                                                                   \
    ({                                                                                             \
        T *m_ = pb_built_alloc((b), sizeof(T));                                                    \
        if (m_) *m_ = (T)INIT;                                                                     \
        m_;                                                                                        \
    })
