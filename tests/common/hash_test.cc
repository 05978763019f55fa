// Tests of common/hash.h: SHA-256 against the FIPS 180-2 test vectors, the
// incremental hasher and its Clone (two streams sharing a prefix).
#include "common/hash.h"

#include <memory>
#include <string>

#include "gtest/gtest.h"

namespace sweepd {
namespace {

// FIPS 180-2, appendix B.1 and B.2.
constexpr char kAbc[] =
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
constexpr char kTwoBlocks[] =
    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";
constexpr char kTwoBlocksMessage[] =
    "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";

TEST(HashTest, Sha256MatchesTheStandardVectors) {
  EXPECT_EQ(Sha256Hex("abc"), kAbc);
  EXPECT_EQ(Sha256Hex(kTwoBlocksMessage), kTwoBlocks);
  Sha256 h;
  h.Update("a");
  h.Update("");
  h.Update("bc");
  EXPECT_EQ(h.HexDigest(), kAbc);
}

TEST(HashTest, CloneContinuesFromTheSharedPrefix) {
  const std::string m = kTwoBlocksMessage;
  Sha256 h;
  h.Update(m.substr(0, 40));  // past the first 64-byte block's half
  std::unique_ptr<Sha256> fork = h.Clone();
  h.Update(m.substr(40));
  fork->Update("x");
  EXPECT_EQ(h.HexDigest(), kTwoBlocks);
  EXPECT_EQ(fork->HexDigest(), Sha256Hex(m.substr(0, 40) + "x"));

  Sha256 empty;
  EXPECT_EQ(empty.Clone()->HexDigest(), Sha256Hex(""));
}

}  // namespace
}  // namespace sweepd
