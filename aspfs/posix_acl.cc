#include "aspfs/posix_acl.h"

#include "journal/format.h"

namespace aspfs {
namespace {

uint32_t LoadLittle(std::string_view bytes, size_t at, int width) {
  uint32_t v = 0;
  for (int i = 0; i < width; ++i) v |= uint32_t{static_cast<uint8_t>(bytes[at + i])} << (8 * i);
  return v;
}

void PutLittle(std::string* out, uint32_t v, int width) {
  for (int i = 0; i < width; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}

}  // namespace

Result<PosixAcl> PosixAcl::Decode(std::string_view bytes) {
  if (bytes.size() < kAclHeaderSize || (bytes.size() - kAclHeaderSize) % kAclEntrySize != 0) {
    return Error(Code::kInvalid,
                 "posix acl: " + std::to_string(bytes.size()) + " bytes is not a header and whole entries");
  }
  uint32_t version = LoadLittle(bytes, 0, 4);
  if (version != kAclXattrVersion) {
    return Error(Code::kInvalid, "posix acl: version " + std::to_string(version) + ", want 2");
  }
  std::vector<AclEntry> entries;
  for (size_t at = kAclHeaderSize; at < bytes.size(); at += kAclEntrySize) {
    entries.push_back(AclEntry{static_cast<uint16_t>(LoadLittle(bytes, at, 2)),
                               static_cast<uint16_t>(LoadLittle(bytes, at + 2, 2)), LoadLittle(bytes, at + 4, 4)});
  }
  PosixAcl acl(std::move(entries));
  ASPFS_RETURN_IF_ERROR(acl.Validate());
  return acl;
}

std::string PosixAcl::Encode() const {
  std::string out;
  out.reserve(kAclHeaderSize + entries_.size() * kAclEntrySize);
  PutLittle(&out, kAclXattrVersion, 4);
  for (const AclEntry& e : entries_) {
    PutLittle(&out, e.tag, 2);
    PutLittle(&out, e.perm, 2);
    // As the kernel writes them: only named entries carry an id.
    PutLittle(&out, (e.tag == kAclUser || e.tag == kAclGroup) ? e.id : kAclUndefinedId, 4);
  }
  return out;
}

Status PosixAcl::Validate() const {
  // The states of posix_acl_valid(): which tags may come next.
  enum { kWantUserObj, kUsers, kGroups, kWantOther, kDone } state = kWantUserObj;
  bool needs_mask = false;
  for (size_t i = 0; i < entries_.size(); ++i) {
    const AclEntry& e = entries_[i];
    auto bad = [&](const char* why) {
      return Error(Code::kInvalid,
                   "posix acl: entry " + std::to_string(i) + " (tag " + std::to_string(e.tag) + "): " + why);
    };
    if (e.perm & ~7u) return bad("permission bits beyond rwx");
    switch (e.tag) {
      case kAclUserObj:
        if (state != kWantUserObj) return bad("USER_OBJ not first or repeated");
        state = kUsers;
        break;
      case kAclUser:
        if (state != kUsers) return bad("USER out of order");
        if (e.id == kAclUndefinedId) return bad("USER without an id");
        needs_mask = true;
        break;
      case kAclGroupObj:
        if (state != kUsers) return bad("GROUP_OBJ out of order or repeated");
        state = kGroups;
        break;
      case kAclGroup:
        if (state != kGroups) return bad("GROUP out of order");
        if (e.id == kAclUndefinedId) return bad("GROUP without an id");
        needs_mask = true;
        break;
      case kAclMask:
        if (state != kGroups) return bad("MASK out of order or repeated");
        state = kWantOther;
        break;
      case kAclOther:
        if (state == kWantOther || (state == kGroups && !needs_mask)) {
          state = kDone;
          break;
        }
        return bad(state == kGroups ? "named entries without a MASK" : "OTHER out of order or repeated");
      default:
        return bad("unknown tag");
    }
  }
  if (state != kDone) return Error(Code::kInvalid, "posix acl: incomplete (needs USER_OBJ, GROUP_OBJ and OTHER)");
  return Status::Ok();
}

uint32_t PosixAcl::PermissionBits() const {
  uint32_t user = 0, group = 0, other = 0;
  bool masked = false;
  for (const AclEntry& e : entries_) {
    if (e.tag == kAclUserObj) user = e.perm;
    if (e.tag == kAclGroupObj && !masked) group = e.perm;
    if (e.tag == kAclMask) {
      group = e.perm;
      masked = true;
    }
    if (e.tag == kAclOther) other = e.perm;
  }
  return (user << 6) | (group << 3) | other;
}

bool PosixAcl::EquivalentToMode() const {
  for (const AclEntry& e : entries_) {
    if (e.tag == kAclUser || e.tag == kAclGroup || e.tag == kAclMask) return false;
  }
  return true;
}

void PosixAcl::Chmod(uint32_t mode) {
  AclEntry* group = nullptr;
  for (AclEntry& e : entries_) {
    if (e.tag == kAclUserObj) e.perm = (mode >> 6) & 7;
    if (e.tag == kAclGroupObj && !group) group = &e;
    if (e.tag == kAclMask) group = &e;  // the mask, not GROUP_OBJ, holds the group bits
    if (e.tag == kAclOther) e.perm = mode & 7;
  }
  if (group) group->perm = (mode >> 3) & 7;
}

Result<InheritedAcl> InheritAcl(std::string_view parent_default, uint32_t mode) {
  auto parsed = PosixAcl::Decode(parent_default);
  if (!parsed.ok()) return parsed.status().Context("default acl of the parent directory");
  std::vector<AclEntry> entries = parsed->entries();
  // posix_acl_create_masq(): each class entry and the mode limit each other.
  uint32_t perms = mode & 0777;
  AclEntry* group_obj = nullptr;
  AclEntry* mask = nullptr;
  for (AclEntry& e : entries) {
    switch (e.tag) {
      case kAclUserObj:
        e.perm &= (perms >> 6) & 7;
        perms &= (e.perm << 6) | ~0700u;
        break;
      case kAclGroupObj:
        group_obj = &e;
        break;
      case kAclMask:
        mask = &e;
        break;
      case kAclOther:
        e.perm &= perms & 7;
        perms &= e.perm | ~07u;
        break;
    }
  }
  AclEntry* group = mask ? mask : group_obj;  // Validate() guarantees a GROUP_OBJ
  group->perm &= (perms >> 3) & 7;
  perms &= (group->perm << 3) | ~070u;

  PosixAcl access(std::move(entries));
  InheritedAcl out;
  out.mode = (mode & ~0777u) | perms;
  if (!access.EquivalentToMode()) out.access = access.Encode();
  if (IsDir(mode)) out.default_acl = parsed->Encode();
  return out;
}

}  // namespace aspfs
