// protobuf-c messages <-> grpc byte buffers, and gRPC status names for error messages.
#pragma once
#include <grpc/byte_buffer.h>
#include <grpc/status.h>
#include <protobuf-c/protobuf-c.h>

// Packs msg into a new byte buffer (caller destroys it with grpc_byte_buffer_destroy).
grpc_byte_buffer *rpc_codec_pack(const ProtobufCMessage *msg);
// Unpacks bb as a message of type desc; NULL when bb is not a valid encoding. Free the result
// with protobuf_c_message_free_unpacked(msg, NULL).
ProtobufCMessage *rpc_codec_unpack(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc);
// "INTERNAL", "UNAVAILABLE", ... for a status code.
const char *rpc_status_name(grpc_status_code code);
