#include "ring/ring.hpp"

#include <gtest/gtest.h>

TEST(Ring, LayoutRejectsNonPowerOfTwo) {
  EXPECT_FALSE(ng::ring::compute_layout(100, 256, 4096).has_value());
}
