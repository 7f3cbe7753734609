// bf16 / f16 conversions against known bit patterns: exact values, round-to-nearest-even
// ties, subnormals, overflow, infinities and NaN.
#include "solo/core/half.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

namespace solo {
namespace {

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint32_t to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

TEST(Bf16, ExactValuesRoundTrip) {
  const std::pair<float, uint16_t> cases[] = {{0.f, 0x0000},     {-0.f, 0x8000}, {1.f, 0x3f80},
                                              {-2.f, 0xc000},    {0.5f, 0x3f00}, {3.f, 0x4040},
                                              {65536.f, 0x4780}, {1.5f, 0x3fc0}};
  for (const auto& [f, bits] : cases) {
    EXPECT_EQ(f32_to_bf16(f).bits, bits) << f;
    EXPECT_EQ(to_bits(bf16_to_f32(bf16{bits})), to_bits(f)) << f;
  }
}

TEST(Bf16, RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f808000)).bits, 0x3f80);  // tie, even below
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f818000)).bits, 0x3f82);  // tie, even above
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f808001)).bits, 0x3f81);  // above the tie
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f807fff)).bits, 0x3f80);  // below the tie
  EXPECT_EQ(f32_to_bf16(from_bits(0xbf818000)).bits, 0xbf82);  // negative tie
  EXPECT_EQ(f32_to_bf16(0.1f).bits, 0x3dcd);
  // The largest finite f32 rounds past bf16's largest finite value to inf.
  EXPECT_EQ(f32_to_bf16(from_bits(0x7f7fffff)).bits, 0x7f80);
  EXPECT_EQ(f32_to_bf16(from_bits(0x7f7f7fff)).bits, 0x7f7f);
}

TEST(Bf16, SubnormalsInfNan) {
  EXPECT_EQ(f32_to_bf16(from_bits(0x00010000)).bits, 0x0001);  // smallest bf16 subnormal
  EXPECT_EQ(f32_to_bf16(from_bits(0x00008000)).bits, 0x0000);  // tie to even: zero
  EXPECT_EQ(f32_to_bf16(from_bits(0x00018000)).bits, 0x0002);
  EXPECT_EQ(bf16_to_f32(bf16{0x0001}), from_bits(0x00010000));
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(f32_to_bf16(inf).bits, 0x7f80);
  EXPECT_EQ(f32_to_bf16(-inf).bits, 0xff80);
  EXPECT_TRUE(std::isinf(bf16_to_f32(bf16{0xff80})));
  // A NaN whose payload lives only in the low bits must stay NaN, not become inf.
  const bf16 n = f32_to_bf16(from_bits(0x7f800001));
  EXPECT_EQ(n.bits & 0x7f80, 0x7f80);
  EXPECT_NE(n.bits & 0x007f, 0);
  EXPECT_TRUE(std::isnan(bf16_to_f32(n)));
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::nanf("")))));
}

TEST(F16, ExactValuesRoundTrip) {
  const std::pair<float, uint16_t> cases[] = {{0.f, 0x0000},
                                              {-0.f, 0x8000},
                                              {1.f, 0x3c00},
                                              {-2.f, 0xc000},
                                              {0.5f, 0x3800},
                                              {65504.f, 0x7bff},
                                              {6.103515625e-05f, 0x0400},  // smallest normal
                                              {1.5f, 0x3e00},
                                              {0.333251953125f, 0x3555}};
  for (const auto& [f, bits] : cases) {
    EXPECT_EQ(f32_to_f16(f).bits, bits) << f;
    EXPECT_EQ(to_bits(f16_to_f32(f16{bits})), to_bits(f)) << f;
  }
}

TEST(F16, RoundsToNearestEven) {
  // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: even is 1.
  EXPECT_EQ(f32_to_f16(1.f + 0x1p-11f).bits, 0x3c00);
  // 1 + 3 * 2^-11 is halfway between 1 + 2^-10 and 1 + 2^-9: even is the latter.
  EXPECT_EQ(f32_to_f16(1.f + 3 * 0x1p-11f).bits, 0x3c02);
  EXPECT_EQ(f32_to_f16(1.f + 0x1p-11f + 0x1p-20f).bits, 0x3c01);
  EXPECT_EQ(f32_to_f16(0.1f).bits, 0x2e66);
  EXPECT_EQ(f32_to_f16(-0.1f).bits, 0xae66);
  // A tie above 2047/1024 (odd) rounds up, carrying into the exponent.
  EXPECT_EQ(f32_to_f16(2.f - 0x1p-11f).bits, 0x4000);
}

TEST(F16, OverflowToInf) {
  EXPECT_EQ(f32_to_f16(65519.f).bits, 0x7bff);  // below the tie: max finite
  EXPECT_EQ(f32_to_f16(65520.f).bits, 0x7c00);  // the tie rounds to even: inf
  EXPECT_EQ(f32_to_f16(1e6f).bits, 0x7c00);
  EXPECT_EQ(f32_to_f16(-1e6f).bits, 0xfc00);
  EXPECT_EQ(f32_to_f16(std::numeric_limits<float>::infinity()).bits, 0x7c00);
  EXPECT_TRUE(std::isinf(f16_to_f32(f16{0xfc00})));
  EXPECT_LT(f16_to_f32(f16{0xfc00}), 0.f);
}

TEST(F16, Subnormals) {
  EXPECT_EQ(f32_to_f16(0x1p-24f).bits, 0x0001);         // smallest subnormal
  EXPECT_EQ(f32_to_f16(0x1p-25f).bits, 0x0000);         // tie with zero: even
  EXPECT_EQ(f32_to_f16(0x1.000002p-25f).bits, 0x0001);  // just above the tie
  EXPECT_EQ(f32_to_f16(3 * 0x1p-25f).bits, 0x0002);     // tie between 1 and 2: even
  EXPECT_EQ(f32_to_f16(5 * 0x1p-25f).bits, 0x0002);     // tie between 2 and 3: even
  EXPECT_EQ(f32_to_f16(0x1p-15f).bits, 0x0200);
  EXPECT_EQ(f32_to_f16(-0x1p-15f).bits, 0x8200);
  EXPECT_EQ(f32_to_f16(0x1.ff8p-15f).bits, 0x03ff);  // largest subnormal
  EXPECT_EQ(f32_to_f16(0x1.ffcp-15f).bits, 0x0400);  // rounds up into the smallest normal
  EXPECT_EQ(f32_to_f16(1e-10f).bits, 0x0000);
  EXPECT_EQ(f16_to_f32(f16{0x0001}), 0x1p-24f);
  EXPECT_EQ(f16_to_f32(f16{0x03ff}), 1023 * 0x1p-24f);
  EXPECT_EQ(f16_to_f32(f16{0x8200}), -0x1p-15f);
  // Every f16 value converts to f32 and back unchanged.
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const f16 h{static_cast<uint16_t>(b)};
    const float f = f16_to_f32(h);
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_f16(f).bits, h.bits) << std::hex << b;
  }
}

TEST(F16, Nan) {
  const f16 n = f32_to_f16(std::nanf(""));
  EXPECT_EQ(n.bits & 0x7c00, 0x7c00);
  EXPECT_NE(n.bits & 0x03ff, 0);
  EXPECT_TRUE(std::isnan(f16_to_f32(n)));
  EXPECT_TRUE(std::isnan(f16_to_f32(f16{0x7e00})));
  EXPECT_TRUE(std::isnan(f16_to_f32(f16{0xfc01})));
}

TEST(Bf16, EveryValueRoundTrips) {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const bf16 h{static_cast<uint16_t>(b)};
    const float f = bf16_to_f32(h);
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_bf16(f).bits, h.bits) << std::hex << b;
  }
}

}  // namespace
}  // namespace solo
