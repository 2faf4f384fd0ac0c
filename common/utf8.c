#include "common/utf8.h"

// Allowed range of the second byte for each lead byte (Unicode Table 3-7); later bytes are 80..BF.
static int utf8_lead(uint8_t b, int *need, uint8_t *lo, uint8_t *hi) {
    *lo = 0x80;
    *hi = 0xBF;
    if (b < 0x80)
        *need = 0;
    else if (b >= 0xC2 && b <= 0xDF)
        *need = 1;
    else if (b >= 0xE0 && b <= 0xEF) {
        *need = 2;
        if (b == 0xE0) *lo = 0xA0;
        if (b == 0xED) *hi = 0x9F; // surrogates
    } else if (b >= 0xF0 && b <= 0xF4) {
        *need = 3;
        if (b == 0xF0) *lo = 0x90;
        if (b == 0xF4) *hi = 0x8F; // > U+10FFFF
    } else
        return 0;
    return 1;
}

size_t utf8_scan(const uint8_t *s, size_t n, utf8_unit *kind) {
    int need;
    uint8_t lo, hi;
    if (!utf8_lead(s[0], &need, &lo, &hi)) {
        *kind = UTF8_INVALID;
        return 1;
    }
    size_t i = 1;
    for (int k = 0; k < need; k++, i++) {
        if (i >= n) {
            *kind = UTF8_INCOMPLETE;
            return i;
        }
        uint8_t b = s[i];
        if (b < (k == 0 ? lo : 0x80) || b > (k == 0 ? hi : 0xBF)) {
            *kind = UTF8_INVALID;
            return i;
        }
    }
    *kind = UTF8_VALID;
    return i;
}

uint32_t utf8_decode(const uint8_t *s, size_t len) {
    switch (len) {
    case 1:
        return s[0];
    case 2:
        return ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
    case 3:
        return ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    default:
        return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
               ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    }
}

int utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t utf8_valid_prefix(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        utf8_unit kind;
        size_t len = utf8_scan(s + i, n - i, &kind);
        if (kind != UTF8_VALID) break;
        i += len;
    }
    return i;
}
