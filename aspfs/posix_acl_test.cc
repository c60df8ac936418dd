#include "aspfs/posix_acl.h"

#include <gtest/gtest.h>

namespace aspfs {
namespace {

constexpr uint32_t kNoId = kAclUndefinedId;

// u::rwx u:1000:rwx g::r-x m::rwx o::r-x
std::vector<AclEntry> Named() {
  return {{kAclUserObj, 7, kNoId}, {kAclUser, 7, 1000}, {kAclGroupObj, 5, kNoId}, {kAclMask, 7, kNoId},
          {kAclOther, 5, kNoId}};
}

std::string Bytes(const std::vector<AclEntry>& entries) { return PosixAcl(entries).Encode(); }

// Entries as getfacl would print the short form, for readable expectations.
std::string Text(std::string_view bytes) {
  auto acl = PosixAcl::Decode(bytes);
  if (!acl.ok()) return acl.status().ToString();
  std::string out;
  for (const AclEntry& e : acl->entries()) {
    if (!out.empty()) out += ",";
    switch (e.tag) {
      case kAclUserObj: out += "u::"; break;
      case kAclUser: out += "u:" + std::to_string(e.id) + ":"; break;
      case kAclGroupObj: out += "g::"; break;
      case kAclGroup: out += "g:" + std::to_string(e.id) + ":"; break;
      case kAclMask: out += "m::"; break;
      case kAclOther: out += "o::"; break;
    }
    out += (e.perm & 4) ? "r" : "-";
    out += (e.perm & 2) ? "w" : "-";
    out += (e.perm & 1) ? "x" : "-";
  }
  return out;
}

TEST(PosixAclTest, EncodeDecodeRoundTripsTheKernelLayout) {
  std::string bytes = Bytes(Named());
  ASSERT_EQ(4u + 5 * 8, bytes.size());
  EXPECT_EQ(std::string("\x02\x00\x00\x00", 4), bytes.substr(0, 4));
  // The second entry: tag 2, perm 7, id 1000, little-endian.
  EXPECT_EQ(std::string("\x02\x00\x07\x00\xe8\x03\x00\x00", 8), bytes.substr(12, 8));
  auto acl = PosixAcl::Decode(bytes);
  ASSERT_TRUE(acl.ok()) << acl.status().ToString();
  EXPECT_EQ(Named(), acl->entries());
}

TEST(PosixAclTest, MalformedBytesAreInvalidNotACrash) {
  std::string good = Bytes(Named());
  for (std::string bad : {std::string(), std::string("\x02\x00\x00", 3), good.substr(0, good.size() - 1),
                          good + std::string(3, '\0'), std::string("\x01\x00\x00\x00", 4) + good.substr(4),
                          std::string("\x02\x00\x00\x00", 4)}) {
    auto acl = PosixAcl::Decode(bad);
    ASSERT_FALSE(acl.ok()) << bad.size() << " bytes";
    EXPECT_EQ(Code::kInvalid, acl.status().code());
  }
  // Every truncation and every single-byte change decodes or fails cleanly.
  for (size_t n = 0; n <= good.size(); ++n) PosixAcl::Decode(good.substr(0, n)).status().IgnoreError();
  for (size_t i = 0; i < good.size(); ++i) {
    for (int v : {0x00, 0x08, 0x40, 0xff}) {
      std::string mutated = good;
      mutated[i] = static_cast<char>(v);
      PosixAcl::Decode(mutated).status().IgnoreError();
    }
  }
}

TEST(PosixAclTest, ValidateEnforcesTheKernelsRules) {
  auto invalid = [](std::vector<AclEntry> entries) { return !PosixAcl(std::move(entries)).Validate().ok(); };
  EXPECT_FALSE(invalid({{kAclUserObj, 6}, {kAclGroupObj, 4}, {kAclOther, 4}}));
  EXPECT_FALSE(invalid(Named()));
  EXPECT_TRUE(invalid({{kAclUserObj, 8}, {kAclGroupObj, 4}, {kAclOther, 4}}));            // perm beyond rwx
  EXPECT_TRUE(invalid({{kAclGroupObj, 4}, {kAclUserObj, 6}, {kAclOther, 4}}));            // order
  EXPECT_TRUE(invalid({{kAclUserObj, 6}, {kAclOther, 4}}));                               // no GROUP_OBJ
  EXPECT_TRUE(invalid({{kAclUserObj, 6}, {kAclGroupObj, 4}}));                            // no OTHER
  EXPECT_TRUE(invalid({{kAclUserObj, 6}, {kAclUser, 6, 5}, {kAclGroupObj, 4}, {kAclOther, 4}}));  // no MASK
  EXPECT_TRUE(invalid({{kAclUserObj, 6}, {kAclUser, 6, kNoId}, {kAclGroupObj, 4}, {kAclMask, 6}, {kAclOther, 4}}));
  EXPECT_TRUE(invalid({{kAclUserObj, 6}, {kAclGroupObj, 4}, {kAclOther, 4}, {kAclOther, 4}}));  // repeated
  EXPECT_TRUE(invalid({{kAclUserObj, 6}, {kAclGroupObj, 4}, {0x40, 4}, {kAclOther, 4}}));      // unknown tag
}

TEST(PosixAclTest, PermissionBitsUseTheMaskForTheGroupClass) {
  EXPECT_EQ(0640u, PosixAcl({{kAclUserObj, 6}, {kAclGroupObj, 4}, {kAclOther, 0}}).PermissionBits());
  // u::rw- u:1000:--- g::r-- m::r-x o::r--
  PosixAcl masked({{kAclUserObj, 6}, {kAclUser, 0, 1000}, {kAclGroupObj, 4}, {kAclMask, 5}, {kAclOther, 4}});
  EXPECT_EQ(0654u, masked.PermissionBits());
  EXPECT_FALSE(masked.EquivalentToMode());
  EXPECT_TRUE(PosixAcl({{kAclUserObj, 6}, {kAclGroupObj, 4}, {kAclOther, 0}}).EquivalentToMode());
  // A mask alone already makes the ACL more than the mode, as on Linux.
  EXPECT_FALSE(PosixAcl({{kAclUserObj, 6}, {kAclGroupObj, 4}, {kAclMask, 4}, {kAclOther, 0}}).EquivalentToMode());
}

TEST(PosixAclTest, ChmodSetsTheMaskNotTheOwningGroup) {
  PosixAcl acl(Named());
  acl.Chmod(0640);
  EXPECT_EQ("u::rw-,u:1000:rwx,g::r-x,m::r--,o::---", Text(acl.Encode()));
  PosixAcl minimal({{kAclUserObj, 7}, {kAclGroupObj, 7}, {kAclOther, 7}});
  minimal.Chmod(0751);
  EXPECT_EQ("u::rwx,g::r-x,o::--x", Text(minimal.Encode()));
}

TEST(PosixAclTest, FileInheritsAMaskedAccessAclAndNoDefault) {
  auto got = InheritAcl(Bytes(Named()), 0100644);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(0100644u, got->mode);  // no umask: only the ACL limits the mode
  EXPECT_EQ("u::rw-,u:1000:rwx,g::r-x,m::r--,o::r--", Text(got->access));
  EXPECT_EQ("", got->default_acl);
}

TEST(PosixAclTest, DirectoryInheritsBothAcls) {
  auto got = InheritAcl(Bytes(Named()), 040777);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(040775u, got->mode);
  EXPECT_EQ("u::rwx,u:1000:rwx,g::r-x,m::rwx,o::r-x", Text(got->access));
  EXPECT_EQ(Bytes(Named()), got->default_acl);
}

TEST(PosixAclTest, RestrictiveDefaultMasksTheMode) {
  // u::rwx g::--- m::r-x o::---, file requested 0666 with setuid kept.
  auto got = InheritAcl(Bytes({{kAclUserObj, 7}, {kAclGroupObj, 0}, {kAclMask, 5}, {kAclOther, 0}}), 0104666);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(0104640u, got->mode);
  EXPECT_EQ("u::rw-,g::---,m::r--,o::---", Text(got->access));
}

TEST(PosixAclTest, MinimalDefaultGivesOnlyAMode) {
  auto got = InheritAcl(Bytes({{kAclUserObj, 7}, {kAclGroupObj, 5}, {kAclOther, 0}}), 0100666);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(0100640u, got->mode);
  EXPECT_EQ("", got->access);
}

TEST(PosixAclTest, CorruptDefaultIsAnError) {
  auto got = InheritAcl("garbage", 0100644);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(Code::kInvalid, got.status().code());
}

}  // namespace
}  // namespace aspfs
