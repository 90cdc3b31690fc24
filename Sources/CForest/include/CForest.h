#ifndef VIGIL_CFOREST_H
#define VIGIL_CFOREST_H

#include <stdbool.h>
#include <stdint.h>

/// One complete tree of a native forest: `2^depth - 1` splits from `split_base` (8 bytes each:
/// the `float` threshold, then the `int32_t` column it reads in a missing-resolved row) and
/// `2^depth` leaves from `leaf_base`.
typedef struct {
    int32_t depth;
    int32_t split_base;
    int32_t leaf_base;
} vigil_tree;

/// Whether this processor runs `vigil_forest_wide` (AVX-512 F).
bool vigil_forest_wide_available(void);

/// Adds every tree's leaf to each row's margin in `out`, in tree order, for `rows` rows (a
/// multiple of 16) of `resolved` (`stride` floats apart): the scalar walk's operations, in its
/// order, sixteen rows to a vector (gathers have no Swift spelling). Call only when
/// `vigil_forest_wide_available()`.
void vigil_forest_wide(const float *resolved, int32_t stride, int32_t rows,
                       const void *splits, const float *leaves,
                       const vigil_tree *trees, int32_t tree_count, float *out);

#endif
