// UTF-8 scanning with Rust's String::from_utf8_lossy semantics (HF decodes bytes that way): each
// maximal invalid subpart becomes one U+FFFD, and a sequence cut short by the end of the input is
// one U+FFFD too, or, for a stream, bytes to hold until more arrive.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef enum utf8_unit {
    UTF8_VALID,      // a complete, well-formed character
    UTF8_INVALID,    // a maximal invalid subpart (replace with U+FFFD)
    UTF8_INCOMPLETE, // a well-formed prefix that the end of the input cut short
} utf8_unit;

// Classifies the unit at the start of s[0..n) (n > 0) and returns its length in bytes.
size_t utf8_scan(const uint8_t *s, size_t n, utf8_unit *kind);
// Decodes the valid character of len bytes at s.
uint32_t utf8_decode(const uint8_t *s, size_t len);
// Writes cp as UTF-8 into out (room for 4) and returns its length.
int utf8_encode(uint32_t cp, char *out);
// Length of the longest prefix of s[0..n) that is well-formed UTF-8.
size_t utf8_valid_prefix(const uint8_t *s, size_t n);

#define UTF8_REPLACEMENT "\xEF\xBF\xBD" // U+FFFD
