// POSIX ACLs as Linux carries them in the system.posix_acl_access and
// system.posix_acl_default xattrs (the kernel's posix_acl_xattr format), and
// the POSIX.1e rules that tie an access ACL to the mode bits: what chmod,
// setfacl and create do to both. Pure: no I/O, no errno. Layout in
// docs/store-format.md ("POSIX ACL xattrs").
//
// Layout, little-endian: u32 version (kAclXattrVersion), then one
// {u16 tag, u16 perm, u32 id} per entry, in the order Validate() checks.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "journal/status.h"

namespace aspfs {

inline constexpr char kAclAccessXattr[] = "system.posix_acl_access";
inline constexpr char kAclDefaultXattr[] = "system.posix_acl_default";

inline constexpr uint32_t kAclXattrVersion = 2;
inline constexpr size_t kAclHeaderSize = 4;
inline constexpr size_t kAclEntrySize = 8;

inline constexpr uint16_t kAclUserObj = 0x01;
inline constexpr uint16_t kAclUser = 0x02;
inline constexpr uint16_t kAclGroupObj = 0x04;
inline constexpr uint16_t kAclGroup = 0x08;
inline constexpr uint16_t kAclMask = 0x10;
inline constexpr uint16_t kAclOther = 0x20;
inline constexpr uint32_t kAclUndefinedId = 0xffffffff;  // the id of the *_OBJ, MASK and OTHER entries

struct AclEntry {
  uint16_t tag = 0;
  uint16_t perm = 0;  // rwx as 4|2|1
  uint32_t id = kAclUndefinedId;
  bool operator==(const AclEntry&) const = default;
};

class PosixAcl {
 public:
  PosixAcl() = default;
  explicit PosixAcl(std::vector<AclEntry> entries) : entries_(std::move(entries)) {}

  // Parses and validates xattr bytes; anything malformed is kInvalid.
  static Result<PosixAcl> Decode(std::string_view bytes);
  std::string Encode() const;

  // The rules the kernel's posix_acl_valid() enforces: perms within rwx;
  // exactly one USER_OBJ, then USERs, one GROUP_OBJ, GROUPs, at most one
  // MASK (required when there are USERs or GROUPs), one OTHER, in that order.
  Status Validate() const;

  // The permission bits the ACL stands for: USER_OBJ, MASK (GROUP_OBJ when
  // there is no mask) and OTHER (posix_acl_equiv_mode).
  uint32_t PermissionBits() const;
  // True when the mode bits alone say everything (no USER, GROUP or MASK
  // entry): Linux then stores no access ACL, only the mode.
  bool EquivalentToMode() const;
  // chmod(2) on a file with an access ACL (posix_acl_chmod): USER_OBJ,
  // MASK (or GROUP_OBJ) and OTHER take the mode's bits.
  void Chmod(uint32_t mode);

  const std::vector<AclEntry>& entries() const { return entries_; }

 private:
  std::vector<AclEntry> entries_;
};

// What a new inode gets from its parent directory's default ACL
// (posix_acl_create): the requested permission bits are ANDed with the ACL
// and the ACL's USER_OBJ, MASK (or GROUP_OBJ) and OTHER with the requested
// bits; the umask is not applied.
struct InheritedAcl {
  uint32_t mode = 0;        // type, special bits and masked permission bits
  std::string access;       // the new access ACL; empty when the mode says it all
  std::string default_acl;  // a new directory's default ACL (the parent's); empty otherwise
};
// parent_default: the parent's system.posix_acl_default bytes. mode: the
// requested type and permission bits. Not for symlinks, which take no ACL.
Result<InheritedAcl> InheritAcl(std::string_view parent_default, uint32_t mode);

}  // namespace aspfs
