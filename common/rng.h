// splitmix64: a tiny seeded generator for test data, random checkpoints and eval prompts
// (the sampler keeps its own xoshiro256** per request).
#pragma once
#include <stdint.h>

static inline uint64_t splitmix64_next(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// Uniform in the open interval (0, 1).
static inline double splitmix64_uniform(uint64_t *state) {
    return ((double)(splitmix64_next(state) >> 11) + 0.5) * 0x1.0p-53;
}
