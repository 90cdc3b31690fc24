#include "CForest.h"
#include <immintrin.h>

bool vigil_forest_wide_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

/// Rows walked through every tree before the next ones: 64 rows' resolved values stay in L1 (the
/// shipped model's 2 × 57 values a row: 29 KB), as in the scalar walk.
enum { chunk_rows = 64, lanes = 16, groups_max = chunk_rows / lanes };

/// Splits are read from memory by gathers only below level 6: a tree's first 31 splits (levels
/// 0–4) and its next 32 (level 5) are each held in four vectors for the walk (`table`), and a
/// lane's split is picked out of them by a permutation, which costs far less than a gather.
enum { table_levels = 6 };

/// 32 consecutive splits from node `base`, thresholds and columns apart, 16 to a vector.
typedef struct { __m512 threshold_lo, threshold_hi; __m512i column_lo, column_hi; int32_t base; } table;

__attribute__((target("avx512f"), always_inline))
static inline __mmask16 first(int32_t n) { return n >= 16 ? 0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

/// Loads `count` (≤ 32) splits from node `base` of the tree at `s`: masked loads, so that a
/// shallow tree's splits may end before 32 (and the array with them).
__attribute__((target("avx512f"), always_inline))
static inline table load_table(const char *s, int32_t base, int32_t count) {
    const char *p = s + 8 * base;
    const int32_t words = 2 * count;
    const __m512i r0 = _mm512_maskz_loadu_epi32(first(words), p), r1 = _mm512_maskz_loadu_epi32(first(words - 16), p + 64);
    const __m512i r2 = _mm512_maskz_loadu_epi32(first(words - 32), p + 128), r3 = _mm512_maskz_loadu_epi32(first(words - 48), p + 192);
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    table t = {
        _mm512_castsi512_ps(_mm512_permutex2var_epi32(r0, even, r1)), _mm512_castsi512_ps(_mm512_permutex2var_epi32(r2, even, r3)),
        _mm512_permutex2var_epi32(r0, odd, r1), _mm512_permutex2var_epi32(r2, odd, r3), base,
    };
    return t;
}

/// The value each lane's row holds in `column`; whether it is below `threshold` decides the
/// step: to `2i + 1` when it is, else `2i + 2`, as the scalar step.
__attribute__((target("avx512f"), always_inline))
static inline __m512i descend(__m512i i, __m512 threshold, __m512i column, __m512i row, const float *x) {
    const __m512 value = _mm512_i32gather_ps(_mm512_add_epi32(row, column), x, 4);
    const __mmask16 below = _mm512_cmp_ps_mask(value, threshold, _CMP_LT_OQ);
    const __m512i down = _mm512_add_epi32(_mm512_add_epi32(i, i), _mm512_set1_epi32(2));
    return _mm512_mask_sub_epi32(down, below, down, _mm512_set1_epi32(1));
}

/// One step down for sixteen rows, at nodes within table `t`.
__attribute__((target("avx512f"), always_inline))
static inline __m512i step_table(__m512i i, __m512i row, const table *t, const float *x) {
    const __m512i at = _mm512_sub_epi32(i, _mm512_set1_epi32(t->base));
    const __m512 threshold = _mm512_permutex2var_ps(t->threshold_lo, at, t->threshold_hi);
    const __m512i column = _mm512_permutex2var_epi32(t->column_lo, at, t->column_hi);
    return descend(i, threshold, column, row, x);
}

/// The same at any node, its split gathered from the tree's splits `s`.
__attribute__((target("avx512f"), always_inline))
static inline __m512i step_far(__m512i i, __m512i row, const char *s, const float *x) {
    return descend(i, _mm512_i32gather_ps(i, s, 8), _mm512_i32gather_epi32(i, s + 4, 8), row, x);
}

/// Walks one tree for `count` groups of sixteen rows (independent walks, so that their chains
/// of loads overlap) and adds the leaves reached to their margins.
__attribute__((target("avx512f"), always_inline))
static inline void walk(int32_t count, const __m512i *row, __m512 *margin, const char *s, const float *l, int32_t depth,
                        const float *x) {
    __m512i i[groups_max];
    for (int32_t g = 0; g < count; g++) i[g] = _mm512_setzero_si512();
    // Levels 0–4 (nodes 0–30), level 5 (nodes 31–62), then the rest from memory.
    const int32_t splits = (1 << depth) - 1;
    const table top = load_table(s, 0, splits < 32 ? splits : 32);
    int32_t d = 0;
    for (; d < depth && d < table_levels - 1; d++)
        for (int32_t g = 0; g < count; g++) i[g] = step_table(i[g], row[g], &top, x);
    if (d < depth) {
        const table fifth = load_table(s, 31, 32);
        for (int32_t g = 0; g < count; g++) i[g] = step_table(i[g], row[g], &fifth, x);
        d++;
    }
    for (; d < depth; d++)
        for (int32_t g = 0; g < count; g++) i[g] = step_far(i[g], row[g], s, x);
    // The leaves: up to 64 (depth 6) picked out of four vectors, more gathered.
    if (depth <= table_levels) {
        const float *first_leaf = l + splits;
        const int32_t leaves = splits + 1;
        const __m512 a = _mm512_maskz_loadu_ps(first(leaves), first_leaf), b = _mm512_maskz_loadu_ps(first(leaves - 16), first_leaf + 16);
        const __m512 c = _mm512_maskz_loadu_ps(first(leaves - 32), first_leaf + 32), e = _mm512_maskz_loadu_ps(first(leaves - 48), first_leaf + 48);
        for (int32_t g = 0; g < count; g++) {
            const __m512i at = _mm512_sub_epi32(i[g], _mm512_set1_epi32(splits));
            const __mmask16 upper = _mm512_test_epi32_mask(at, _mm512_set1_epi32(32));
            const __m512 leaf = _mm512_mask_blend_ps(upper, _mm512_permutex2var_ps(a, at, b), _mm512_permutex2var_ps(c, at, e));
            margin[g] = _mm512_add_ps(margin[g], leaf);
        }
    } else {
        for (int32_t g = 0; g < count; g++) margin[g] = _mm512_add_ps(margin[g], _mm512_i32gather_ps(i[g], l, 4));
    }
}

__attribute__((target("avx512f")))
void vigil_forest_wide(const float *x, int32_t stride, int32_t rows,
                       const void *splits, const float *leaves,
                       const vigil_tree *trees, int32_t tree_count, float *out) {
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int32_t chunk = 0; chunk < rows; chunk += chunk_rows) {
        const int32_t groups = (rows - chunk < chunk_rows ? rows - chunk : chunk_rows) / lanes;
        const float *xc = x + (int64_t)chunk * stride;
        // Each lane's row as an offset into the chunk's rows, and its margin so far.
        __m512i row[groups_max];
        __m512 margin[groups_max];
        for (int32_t g = 0; g < groups; g++) {
            row[g] = _mm512_mullo_epi32(_mm512_add_epi32(lane, _mm512_set1_epi32(g * lanes)), _mm512_set1_epi32(stride));
            margin[g] = _mm512_loadu_ps(out + chunk + g * lanes);
        }
        for (int32_t t = 0; t < tree_count; t++) {
            const vigil_tree tree = trees[t];
            const char *s = (const char *)splits + 8 * (int64_t)tree.split_base;
            const float *l = leaves + tree.leaf_base - ((1 << tree.depth) - 1);
            // Written out per count so that each walk keeps its vectors in registers.
            switch (groups) {
            case 4: walk(4, row, margin, s, l, tree.depth, xc); break;
            case 3: walk(3, row, margin, s, l, tree.depth, xc); break;
            case 2: walk(2, row, margin, s, l, tree.depth, xc); break;
            default: walk(1, row, margin, s, l, tree.depth, xc); break;
            }
        }
        for (int32_t g = 0; g < groups; g++) _mm512_storeu_ps(out + chunk + g * lanes, margin[g]);
    }
}
