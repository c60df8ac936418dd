#include "journal/format.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include <xxhash.h>

namespace aspfs {
namespace {

void PutBigEndian(std::string* out, uint64_t v) {
  char buf[8];
  for (int i = 7; i >= 0; --i) {
    buf[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  out->append(buf, 8);
}

// Little-endian fixed-width value encoding with bounds-checked reading.
class Writer {
 public:
  void U32(uint32_t v) { Raw(&v, 4); }
  void U64(uint64_t v) { Raw(&v, 8); }
  void I64(int64_t v) { Raw(&v, 8); }
  void Str(std::string_view s) {
    U32(static_cast<uint32_t>(s.size()));
    out_.append(s);
  }
  std::string Take() { return std::move(out_); }

 private:
  void Raw(const void* p, size_t n) { out_.append(static_cast<const char*>(p), n); }
  std::string out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool U32(uint32_t* v) { return Raw(v, 4); }
  bool U64(uint64_t* v) { return Raw(v, 8); }
  bool I64(int64_t* v) { return Raw(v, 8); }
  bool Str(std::string* s) {
    uint32_t n;
    if (!U32(&n) || in_.size() < n) return false;
    s->assign(in_.substr(0, n));
    in_.remove_prefix(n);
    return true;
  }
  bool Done() const { return in_.empty(); }

 private:
  bool Raw(void* p, size_t n) {
    if (in_.size() < n) return false;
    memcpy(p, in_.data(), n);
    in_.remove_prefix(n);
    return true;
  }
  std::string_view in_;
};

Status Corrupt(const char* what) { return Error(Code::kCorrupt, std::string("corrupt ") + what + " record"); }

std::string Prefix(VolumeId vol, char tag) {
  std::string k;
  PutBigEndian(&k, vol.value);
  k.push_back(tag);
  return k;
}

std::string Prefix(VolumeId vol, char tag, uint64_t id) {
  std::string k = Prefix(vol, tag);
  PutBigEndian(&k, id);
  return k;
}

}  // namespace

std::string Position::ToString() const {
  char buf[80];
  snprintf(buf, sizeof buf, "e%llu:t%llu:%016llx", static_cast<unsigned long long>(epoch),
           static_cast<unsigned long long>(txid), static_cast<unsigned long long>(checksum));
  return buf;
}

uint64_t DirentCookie(std::string_view name) {
  // 62 bits: the kernel's directory offsets are signed.
  return (XXH3_64bits(name.data(), name.size()) >> 2) + 3;
}

namespace key {
std::string VolumePrefix(VolumeId vol) {
  std::string k;
  PutBigEndian(&k, vol.value);
  return k;
}
std::string VolumeEnd(VolumeId vol) { return VolumePrefix(VolumeId{vol.value + 1}); }
std::string Inode(VolumeId vol, InodeId ino) { return Prefix(vol, kTagInode, ino.value); }
std::string Dirent(VolumeId vol, InodeId parent, std::string_view name) {
  std::string k = DirentFrom(vol, parent, DirentCookie(name));
  k.append(name);
  return k;
}
std::string DirentPrefix(VolumeId vol, InodeId parent) { return Prefix(vol, kTagDirent, parent.value); }
std::string DirentFrom(VolumeId vol, InodeId parent, uint64_t cookie) {
  std::string k = Prefix(vol, kTagDirent, parent.value);
  PutBigEndian(&k, cookie);
  return k;
}
bool SplitDirent(std::string_view key, size_t prefix_size, uint64_t* cookie, std::string_view* name) {
  if (key.size() <= prefix_size + 8) return false;
  *cookie = DecodeBigEndian(key.substr(prefix_size, 8));
  *name = key.substr(prefix_size + 8);
  return true;
}
std::string Extent(VolumeId vol, InodeId ino, uint64_t block) {
  std::string k = Prefix(vol, kTagExtent, ino.value);
  PutBigEndian(&k, block);
  return k;
}
std::string ExtentPrefix(VolumeId vol, InodeId ino) { return Prefix(vol, kTagExtent, ino.value); }
std::string Xattr(VolumeId vol, InodeId ino, std::string_view name) {
  std::string k = Prefix(vol, kTagXattr, ino.value);
  k.append(name);
  return k;
}
std::string XattrPrefix(VolumeId vol, InodeId ino) { return Prefix(vol, kTagXattr, ino.value); }
std::string Orphan(VolumeId vol, InodeId ino) { return Prefix(vol, kTagOrphan, ino.value); }
std::string OrphanPrefix(VolumeId vol) { return Prefix(vol, kTagOrphan); }
std::string Usage(VolumeId vol) { return Prefix(vol, kTagUsage); }
std::string Quota(VolumeId vol) { return Prefix(vol, kTagQuota); }
std::string PositionKey(VolumeId vol) { return Prefix(vol, kTagPosition); }
std::string VolumeName(std::string_view name) {
  std::string k = Prefix(kNodeVolume, kTagVolumeName);
  k.append(name);
  return k;
}
std::string VolumeMetaKey(VolumeId vol) { return Prefix(kNodeVolume, kTagVolumeMeta, vol.value); }
std::string NextVolume() { return Prefix(kNodeVolume, kTagNextVolume); }
std::string Format() { return Prefix(kNodeVolume, kTagFormat); }
std::string Journal(VolumeId vol, uint64_t txid) {
  std::string k;
  PutBigEndian(&k, vol.value);
  PutBigEndian(&k, txid);
  return k;
}
std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty()) {
    unsigned char c = static_cast<unsigned char>(prefix.back());
    if (c != 0xff) {
      prefix.back() = static_cast<char>(c + 1);
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(32, '\xff');
}
bool IsStateKey(std::string_view k) {
  return k.size() >= 9 && DecodeBigEndian(k.substr(0, 8)) != 0 && k[8] != kTagPosition;
}
std::string EncodeBigEndian(uint64_t v) {
  std::string out;
  PutBigEndian(&out, v);
  return out;
}
uint64_t DecodeBigEndian(std::string_view bytes) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8 && i < bytes.size(); ++i) v = (v << 8) | static_cast<unsigned char>(bytes[i]);
  return v;
}
}  // namespace key

std::string InodeRecord::Encode() const {
  Writer w;
  w.U32(3);  // record version
  w.U32(mode);
  w.U32(uid);
  w.U32(gid);
  w.U32(nlink);
  w.U64(rdev);
  w.U64(size);
  w.I64(atime_ns);
  w.I64(mtime_ns);
  w.I64(ctime_ns);
  w.U64(alloc_bytes);
  w.U64(parent);
  w.U64(entries);
  w.U32(flags);
  w.Str(inline_data);
  return w.Take();
}

Result<InodeRecord> InodeRecord::Decode(std::string_view bytes) {
  Reader r(bytes);
  InodeRecord rec;
  uint32_t version;
  if (!r.U32(&version) || version != 3 || !r.U32(&rec.mode) || !r.U32(&rec.uid) || !r.U32(&rec.gid) ||
      !r.U32(&rec.nlink) || !r.U64(&rec.rdev) || !r.U64(&rec.size) || !r.I64(&rec.atime_ns) ||
      !r.I64(&rec.mtime_ns) || !r.I64(&rec.ctime_ns) || !r.U64(&rec.alloc_bytes) || !r.U64(&rec.parent) ||
      !r.U64(&rec.entries) || !r.U32(&rec.flags) || !r.Str(&rec.inline_data) ||
      !r.Done()) {
    return Corrupt("inode");
  }
  return rec;
}

std::string DirentRecord::Encode() const {
  Writer w;
  w.U64(ino);
  w.U32(type);
  return w.Take();
}

Result<DirentRecord> DirentRecord::Decode(std::string_view bytes) {
  Reader r(bytes);
  DirentRecord rec;
  if (!r.U64(&rec.ino) || !r.U32(&rec.type) || !r.Done()) return Corrupt("dirent");
  return rec;
}

std::string ChunkId::Bytes() const {
  std::string out;
  PutBigEndian(&out, hi);
  PutBigEndian(&out, lo);
  return out;
}

ChunkId ChunkId::FromBytes(std::string_view bytes) {
  ChunkId id;
  if (bytes.size() == 16) {
    id.hi = key::DecodeBigEndian(bytes.substr(0, 8));
    id.lo = key::DecodeBigEndian(bytes.substr(8, 8));
  }
  return id;
}

std::string ChunkId::ToHex() const {
  char buf[40];
  snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(hi),
           static_cast<unsigned long long>(lo));
  return buf;
}

uint32_t ExtentRecord::End() const {
  uint32_t end = length;
  for (const PagePatch& p : patches) end = std::max<uint32_t>(end, p.page * kPageSize + p.length);
  return end;
}

bool ExtentRecord::HasPatch(uint32_t page) const {
  return std::any_of(patches.begin(), patches.end(), [&](const PagePatch& p) { return p.page == page; });
}

// Base chunk (16) and length (4), then per patch: page (1), length (2), chunk (16).
std::string ExtentRecord::Encode() const {
  std::string out = chunk.Bytes();
  Writer w;
  w.U32(length);
  out += w.Take();
  for (const PagePatch& p : patches) {
    out.push_back(static_cast<char>(p.page));
    uint16_t len = static_cast<uint16_t>(p.length);
    out.append(reinterpret_cast<const char*>(&len), 2);
    out += p.chunk.Bytes();
  }
  return out;
}

Result<ExtentRecord> ExtentRecord::Decode(std::string_view bytes) {
  constexpr size_t kBase = 20, kPatch = 19;
  if (bytes.size() < kBase || (bytes.size() - kBase) % kPatch != 0) return Corrupt("extent");
  ExtentRecord rec;
  rec.chunk = ChunkId::FromBytes(bytes.substr(0, 16));
  memcpy(&rec.length, bytes.data() + 16, 4);
  size_t count = (bytes.size() - kBase) / kPatch;
  if (count > kPagesPerBlock) return Corrupt("extent");
  for (size_t i = 0; i < count; ++i) {
    std::string_view raw = bytes.substr(kBase + i * kPatch, kPatch);
    PagePatch p;
    p.page = static_cast<unsigned char>(raw[0]);
    uint16_t len;
    memcpy(&len, raw.data() + 1, 2);
    p.length = len;
    p.chunk = ChunkId::FromBytes(raw.substr(3, 16));
    bool ordered = rec.patches.empty() || rec.patches.back().page < p.page;
    if (!ordered || !p.Valid()) {
      return Corrupt("extent");
    }
    rec.patches.push_back(p);
  }
  if (rec.chunk.IsZero() ? (rec.length != 0 || rec.patches.empty()) : (rec.length == 0 || rec.length > kBlockSize)) {
    return Corrupt("extent");
  }
  return rec;
}

std::string UsageRecord::Encode() const {
  Writer w;
  w.U64(bytes);
  w.U64(inodes);
  w.U64(next_ino);
  return w.Take();
}

Result<UsageRecord> UsageRecord::Decode(std::string_view in) {
  Reader r(in);
  UsageRecord rec;
  if (!r.U64(&rec.bytes) || !r.U64(&rec.inodes) || !r.U64(&rec.next_ino) || !r.Done()) return Corrupt("usage");
  return rec;
}

std::string QuotaRecord::Encode() const {
  Writer w;
  w.U64(bytes);
  w.U64(inodes);
  return w.Take();
}

Result<QuotaRecord> QuotaRecord::Decode(std::string_view in) {
  Reader r(in);
  QuotaRecord rec;
  if (!r.U64(&rec.bytes) || !r.U64(&rec.inodes) || !r.Done()) return Corrupt("quota");
  return rec;
}

std::string VolumeMeta::Encode() const {
  Writer w;
  w.Str(name);
  w.I64(created_ns);
  return w.Take();
}

Result<VolumeMeta> VolumeMeta::Decode(std::string_view in) {
  Reader r(in);
  VolumeMeta rec;
  if (!r.Str(&rec.name) || !r.I64(&rec.created_ns) || !r.Done()) return Corrupt("volume");
  return rec;
}

std::string EncodePosition(const Position& pos) {
  Writer w;
  w.U64(pos.epoch);
  w.U64(pos.txid);
  w.U64(pos.checksum);
  return w.Take();
}

Result<Position> DecodePosition(std::string_view in) {
  Reader r(in);
  Position pos;
  if (!r.U64(&pos.epoch) || !r.U64(&pos.txid) || !r.U64(&pos.checksum) || !r.Done()) return Corrupt("position");
  return pos;
}

Status ValidateName(std::string_view name) {
  if (name.empty() || name == "." || name == "..") return Error(Code::kInvalid, "invalid name");
  if (name.size() > kNameMax) return Error(Code::kNameTooLong, "name longer than 255 bytes");
  if (name.find('/') != std::string_view::npos || name.find('\0') != std::string_view::npos) {
    return Error(Code::kInvalid, "name contains '/' or NUL");
  }
  return Status::Ok();
}

}  // namespace aspfs
