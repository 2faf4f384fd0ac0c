// The model-free parts of `falconlite eval`: answer extraction and matching, option ranking by
// log-likelihood, length buckets, QuALITY's hard-question rule and its HTML articles as text.
// Pure functions on fixed inputs (tests/unit/test_eval_scoring.c).
#pragma once
#include <stddef.h>

#include "common/status.h"

// The first (last = 0) or last number (a run of ASCII digits) in text; -1 when there is none.
long eval_find_number(const char *text, int last);

// Lower-cases ASCII letters, turns every other byte that is not a letter or digit (ASCII) into a
// space, collapses runs of spaces and trims: "The  History of-Rome!" -> "the history of rome".
// Bytes >= 0x80 (UTF-8) are kept. Returns a malloc'd string (NULL without memory).
char *eval_text_normalise(const char *text);
// Topic retrieval's automatic score: 1 when the normalised label occurs in the normalised answer
// as whole words ("rome" matches "the history of rome" but not "romeo"); an empty label never
// matches.
int eval_topic_match(const char *answer, const char *label);

// The log-likelihood of a continuation: logprobs[from..to) of the prompt's tokens (the option's
// tokens after the shared context). n_tokens 0 when the range is empty (sum 0, mean -inf).
typedef struct eval_option_score {
    double sum;  // sum of the token logprobs
    double mean; // sum / n_tokens (length-normalised)
    int n_tokens;
} eval_option_score;
eval_option_score eval_option_score_range(const float *logprobs, int from, int to);
// The index of the highest of n options by sum (by_mean = 0) or by mean (by_mean = 1); the
// first wins a tie; -1 when n < 1.
int eval_option_best(const eval_option_score *s, int n, int by_mean);

// A token-length bucket [lo, hi] (inclusive), as the model card's "2800-3800" columns.
typedef struct eval_range {
    int lo, hi;
} eval_range;
// Parses "2800-3800,5500-5600" (ascending, not overlapping) into out[max]; *n set.
fl_code eval_ranges_parse(const char *spec, eval_range *out, int max, int *n, fl_error *err);
// The index of the range holding tokens, or -1.
int eval_range_find(const eval_range *r, int n, int tokens);

// QuALITY's HARD subset rule for records without the released `difficult` flag: a question is
// hard when at most half of its speed-validation answers (1-based options) equal the gold label.
// No answers: not hard.
int eval_quality_is_hard(const int *speed_answers, int n, int gold);
// An article as plain text: HTML tags dropped (block tags <p>, <br>, <h1>.. end a line), the
// entities &amp; &lt; &gt; &quot; &#39; &nbsp; decoded, runs of blank lines and leading spaces
// of lines collapsed. Text without tags passes through. Returns a malloc'd string.
char *eval_html_to_text(const char *html);
