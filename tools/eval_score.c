#define _GNU_SOURCE // strcasestr
#include "tools/eval_score.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

long eval_find_number(const char *text, int last) {
    long found = -1;
    for (const char *p = text; *p;) {
        if (!isdigit((unsigned char)*p)) {
            p++;
            continue;
        }
        long v = 0;
        for (; isdigit((unsigned char)*p); p++)
            v = v < 100000000 ? v * 10 + (*p - '0') : v; // answers are < 50001: no overflow
        if (!last) return v;
        found = v;
    }
    return found;
}

char *eval_text_normalise(const char *text) {
    size_t n = strlen(text);
    char *out = malloc(n + 1), *o = out;
    if (!out) return NULL;
    int space = 1; // drop leading separators
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        int keep = *p >= 0x80 || isalnum(*p);
        if (keep) {
            *o++ = (char)tolower(*p);
            space = 0;
        } else if (!space) {
            *o++ = ' ';
            space = 1;
        }
    }
    if (o > out && o[-1] == ' ') o--;
    *o = 0;
    return out;
}

int eval_topic_match(const char *answer, const char *label) {
    char *a = eval_text_normalise(answer), *l = eval_text_normalise(label);
    int hit = 0;
    if (a && l && *l) {
        size_t ll = strlen(l);
        for (const char *p = strstr(a, l); p && !hit; p = strstr(p + 1, l))
            hit = (p == a || p[-1] == ' ') && (p[ll] == 0 || p[ll] == ' ');
    }
    free(a);
    free(l);
    return hit;
}

eval_option_score eval_option_score_range(const float *logprobs, int from, int to) {
    eval_option_score s = {0, -INFINITY, 0};
    for (int i = from; i < to; i++)
        s.sum += logprobs[i];
    if (to > from) {
        s.n_tokens = to - from;
        s.mean = s.sum / s.n_tokens;
    }
    return s;
}

int eval_option_best(const eval_option_score *s, int n, int by_mean) {
    int best = -1;
    for (int i = 0; i < n; i++) {
        double v = by_mean ? s[i].mean : s[i].sum;
        double b = best < 0 ? 0 : by_mean ? s[best].mean : s[best].sum;
        if (best < 0 || v > b) best = i;
    }
    return best;
}

fl_code eval_ranges_parse(const char *spec, eval_range *out, int max, int *n, fl_error *err) {
    *n = 0;
    const char *p = spec;
    while (*p) {
        char *end;
        errno = 0;
        long lo = strtol(p, &end, 10), hi;
        if (end == p || *end != '-' || lo < 0) goto bad;
        p = end + 1;
        hi = strtol(p, &end, 10);
        if (end == p || errno || hi < lo || hi > 1L << 30) goto bad;
        if (*n == max)
            return fl_error_set(err, FL_EINVAL, "--buckets: more than %d ranges in '%s'", max,
                                spec);
        if (*n && lo <= out[*n - 1].hi)
            return fl_error_set(err, FL_EINVAL,
                                "--buckets: ranges must ascend without overlapping ('%s')", spec);
        out[(*n)++] = (eval_range){(int)lo, (int)hi};
        p = end;
        if (*p == ',') p++;
        else if (*p)
            goto bad;
    }
    if (*n) return FL_OK;
bad:
    return fl_error_set(err, FL_EINVAL,
                        "--buckets: expected token ranges like 2800-3800,5500-5600 ('%s')", spec);
}

int eval_range_find(const eval_range *r, int n, int tokens) {
    for (int i = 0; i < n; i++)
        if (tokens >= r[i].lo && tokens <= r[i].hi) return i;
    return -1;
}

int eval_quality_is_hard(const int *speed_answers, int n, int gold) {
    int right = 0;
    for (int i = 0; i < n; i++)
        right += speed_answers[i] == gold;
    return n > 0 && 2 * right <= n;
}

static const struct {
    const char *name;
    char c;
} entities[] = {{"amp;", '&'}, {"lt;", '<'}, {"gt;", '>'}, {"quot;", '"'},
                {"#39;", '\''}, {"apos;", '\''}, {"nbsp;", ' '}};

static int is_block_tag(const char *t) {
    static const char *blocks[] = {"p", "br", "div", "h1", "h2", "h3", "h4", "h5", "h6", "li",
                                   "tr", "hr", "blockquote", "pre", "title"};
    if (*t == '/') t++;
    size_t n = 0;
    while (isalnum((unsigned char)t[n]))
        n++;
    for (size_t i = 0; i < sizeof blocks / sizeof *blocks; i++)
        if (strlen(blocks[i]) == n && !strncasecmp(t, blocks[i], n)) return 1;
    return 0;
}

char *eval_html_to_text(const char *html) {
    size_t n = strlen(html);
    char *out = malloc(n + 2), *o = out;
    if (!out) return NULL;
    int newlines = 2, bol = 1; // pending line state: drop leading blank lines and indentation
    // In HTML a source line break is white space; block tags end lines.
    int is_html = strcasestr(html, "<html") || strcasestr(html, "<p>") || strcasestr(html, "<br");
    for (const char *p = html; *p;) {
        char c = *p;
        if (c == '<') {
            const char *e = strchr(p, '>');
            if (!e) break; // an unterminated tag ends the text
            int block = is_block_tag(p + 1);
            int skip = !strncasecmp(p, "<head", 5) || !strncasecmp(p, "<style", 6) ||
                       !strncasecmp(p, "<script", 7);
            if (skip) { // drop the element with its content
                const char *close = !strncasecmp(p, "<head", 5)    ? "</head>"
                                    : !strncasecmp(p, "<style", 6) ? "</style>"
                                                                   : "</script>";
                const char *ce = strcasestr(e, close);
                p = ce ? ce + strlen(close) : e + 1;
                continue;
            }
            p = e + 1;
            if (block) c = '\n';
            else
                continue;
        } else if (c == '&') {
            size_t k = 0;
            for (; k < sizeof entities / sizeof *entities; k++)
                if (!strncmp(p + 1, entities[k].name, strlen(entities[k].name))) break;
            if (k < sizeof entities / sizeof *entities) {
                c = entities[k].c;
                p += 1 + strlen(entities[k].name);
            } else {
                p++;
            }
        } else {
            p++;
        }
        if (c == '\r') continue;
        if (is_html && c == '\n' && p[-1] != '>') c = ' ';
        if (c == '\n') {
            while (o > out && o[-1] == ' ')
                o--;
            if (newlines < 2) *o++ = '\n';
            newlines++;
            bol = 1;
            continue;
        }
        if (bol && (c == ' ' || c == '\t')) continue;
        if (c == ' ' && o > out && o[-1] == ' ') continue;
        *o++ = c;
        bol = 0;
        newlines = 0;
    }
    while (o > out && (o[-1] == '\n' || o[-1] == ' '))
        o--;
    *o = 0;
    return out;
}
