#include "tools/client_rpc.h"

#include <stdbool.h>
#include <stdint.h>

fl_code client_rpc_tokenize(rpc_channel *ch, const char *text, int timeout_ms,
                            Falconlite__V1__TokenizeResponse **out, fl_error *err) {
    Falconlite__V1__TokenizeRequest req = FALCONLITE__V1__TOKENIZE_REQUEST__INIT;
    req.inputs = (char *)text;
    rpc_result res;
    fl_code rc = rpc_unary(ch, CLIENT_METHOD_TOKENIZE, &req.base,
                           &falconlite__v1__tokenize_response__descriptor, timeout_ms, &res, err);
    *out = rc == FL_OK ? (Falconlite__V1__TokenizeResponse *)res.resp : NULL;
    return rc;
}

fl_code client_rpc_info(rpc_channel *ch, int timeout_ms, Falconlite__V1__InfoResponse **out,
                        fl_error *err) {
    Falconlite__V1__InfoRequest req = FALCONLITE__V1__INFO_REQUEST__INIT;
    rpc_result res;
    fl_code rc = rpc_unary(ch, CLIENT_METHOD_INFO, &req.base,
                           &falconlite__v1__info_response__descriptor, timeout_ms, &res, err);
    *out = rc == FL_OK ? (Falconlite__V1__InfoResponse *)res.resp : NULL;
    return rc;
}

rpc_channel *client_rpc_connect(const char *addr, int timeout_ms, fl_error *err) {
    rpc_channel *ch = rpc_channel_create(addr, err);
    if (ch && rpc_channel_wait_ready(ch, timeout_ms, err) != FL_OK) {
        rpc_channel_free(ch);
        return NULL;
    }
    return ch;
}

const char *client_finish_name(Falconlite__V1__FinishReason r) {
    switch (r) {
    case FALCONLITE__V1__FINISH_REASON__FINISH_REASON_LENGTH:
        return "length";
    case FALCONLITE__V1__FINISH_REASON__FINISH_REASON_EOS_TOKEN:
        return "eos_token";
    case FALCONLITE__V1__FINISH_REASON__FINISH_REASON_STOP_SEQUENCE:
        return "stop_sequence";
    default:
        return "unspecified";
    }
}

cJSON *client_json_scalars(const ProtobufCMessage *msg) {
    cJSON *o = cJSON_CreateObject();
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    const char *base = (const char *)msg;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const void *v = base + f->offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) continue;
        // proto2 optional scalars carry a has_ flag; strings are set when non-NULL.
        if (f->type == PROTOBUF_C_TYPE_STRING) {
            const char *s = *(char *const *)v;
            if (s) cJSON_AddStringToObject(o, f->name, s);
            continue;
        }
        if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset &&
            !*(const protobuf_c_boolean *)(base + f->quantifier_offset))
            continue;
        switch (f->type) {
        case PROTOBUF_C_TYPE_UINT32:
            cJSON_AddNumberToObject(o, f->name, *(const uint32_t *)v);
            break;
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_ENUM:
            cJSON_AddNumberToObject(o, f->name, *(const int32_t *)v);
            break;
        case PROTOBUF_C_TYPE_UINT64:
            cJSON_AddNumberToObject(o, f->name, (double)*(const uint64_t *)v);
            break;
        case PROTOBUF_C_TYPE_FLOAT:
            cJSON_AddNumberToObject(o, f->name, *(const float *)v);
            break;
        case PROTOBUF_C_TYPE_BOOL:
            cJSON_AddBoolToObject(o, f->name, *(const protobuf_c_boolean *)v);
            break;
        default: // nested messages, bytes, doubles: none in the messages printed this way
            break;
        }
    }
    return o;
}
