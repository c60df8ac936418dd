// Randomized differential test: the same random syscalls run on an ASPFS mount
// and on a plain reference directory on the host's disk (ext4 under
// /var/tmp), side by side, with real syscalls on both. After every step:
//  - the syscall results (return value or errno, bytes read, hashes of data
//    read back) must match;
//  - both whole trees must match: names, types, content, size, mode, nlink,
//    uid/gid, symlink targets, user.* xattrs; on the mount, the kernel's
//    cached attributes must equal the daemon's (statx AT_STATX_FORCE_SYNC);
//  - whether the step changed each path's mtime and ctime must match;
//  - every 10 steps, every file read with O_DIRECT (from the daemon, not the
//    page cache) must match.
// Directory sizes, atime and inode numbers are not compared (they
// legitimately differ between file systems). Every 500 steps the volume is
// remounted (cold caches); another test stops and restarts the daemon. About
// a fifth of the steps run with fsuid/fsgid 1000.
//
// Replay a failure with the seed it prints:
//   ASPFS_SEED=n ./build/tests/differential_test [--gtest_filter=...]
// ASPFS_STEPS=n scales the number of steps of the random tests; ASPFS_VERBOSE=1
// prints every step and its result.
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <stdio.h>
#include <sys/fsuid.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "tests/harness.h"

namespace aspfs::testing {
namespace {

constexpr uint64_t kBlock = 64 * 1024;   // ASPFS extent size
constexpr uint64_t kInline = 4096;       // ASPFS inline-data limit
constexpr uint64_t kMaxFile = 300 * 1024;
constexpr size_t kMaxEntries = 40;
constexpr int kMaxDepth = 3;

// ---------------------------------------------------------------- trees

struct Node {
  char type = '?';  // f d l p c b s ?
  mode_t mode = 0;
  nlink_t nlink = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  off_t size = 0;
  dev_t rdev = 0;    // of a device (a whiteout is a character device 0/0)
  std::string data;  // file content or symlink target
  std::map<std::string, std::string> xattrs;
  std::string error;  // a syscall that failed while reading this node
  int64_t mtime_ns = 0, ctime_ns = 0;  // compared only as "changed by the last step or not"
};

using Tree = std::map<std::string, Node>;  // path relative to the root ("" is the root)

// base + "/" + rel, where rel "" is base itself; also joins relative paths.
std::string Join(const std::string& base, const std::string& rel) {
  if (rel.empty()) return base;
  if (base.empty()) return rel;
  return base + "/" + rel;
}

std::string ErrName(int e) {
  const char* n = strerrorname_np(e);
  return std::string("-") + (n ? n : std::to_string(e));
}

std::string Res(long r) { return r < 0 ? ErrName(errno) : std::to_string(r); }

int Depth(const std::string& rel) {
  return rel.empty() ? 0 : 1 + static_cast<int>(std::count(rel.begin(), rel.end(), '/'));
}

bool ReadAll(int fd, std::string* out) {
  char buf[1 << 16];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out->append(buf, n);
  return n == 0;
}

void ReadXattrs(const std::string& path, Node* node) {
  // One call with a buffer larger than any list the test can make.
  std::string names(1 << 16, '\0');
  ssize_t len = llistxattr(path.c_str(), names.data(), names.size());
  if (len < 0) {
    node->error += " llistxattr:" + ErrName(errno);
    return;
  }
  names.resize(len);
  std::string value(1 << 16, '\0');
  for (size_t at = 0; at < names.size();) {
    std::string name(names.c_str() + at);
    at += name.size() + 1;
    if (name.rfind("user.", 0) != 0) continue;  // security.* etc. are host business
    ssize_t vlen = lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
    node->xattrs[name] = vlen < 0 ? "<" + ErrName(errno) + ">" : value.substr(0, vlen);
  }
}

void Walk(const std::string& base, const std::string& rel, Tree* tree) {
  std::string path = Join(base, rel);
  Node& node = (*tree)[rel];
  // What the kernel answers from its attribute cache (lstat)...
  struct stat cached;
  bool have_cached = lstat(path.c_str(), &cached) == 0;
  // ...must be what the daemon says (AT_STATX_FORCE_SYNC makes FUSE ask it;
  // for regular files the kernel still keeps its own times and size under
  // the writeback cache).
  struct statx stx;
  if (statx(AT_FDCWD, path.c_str(), AT_SYMLINK_NOFOLLOW | AT_STATX_FORCE_SYNC, STATX_BASIC_STATS, &stx) != 0) {
    node.error = "statx:" + ErrName(errno);
    return;
  }
  auto ns = [](int64_t sec, int64_t nsec) { return sec * 1000000000 + nsec; };
  const mode_t type = stx.stx_mode & S_IFMT;
  node.mode = stx.stx_mode & 07777;
  node.nlink = stx.stx_nlink;
  node.uid = stx.stx_uid;
  node.gid = stx.stx_gid;
  node.size = static_cast<off_t>(stx.stx_size);
  node.mtime_ns = ns(stx.stx_mtime.tv_sec, stx.stx_mtime.tv_nsec);
  node.ctime_ns = ns(stx.stx_ctime.tv_sec, stx.stx_ctime.tv_nsec);
  if (have_cached) {
    std::ostringstream stale;
    if (cached.st_mode != stx.stx_mode) stale << " mode " << std::oct << cached.st_mode << "/" << stx.stx_mode << std::dec;
    if (cached.st_nlink != stx.stx_nlink) stale << " nlink " << cached.st_nlink << "/" << stx.stx_nlink;
    if (cached.st_uid != stx.stx_uid || cached.st_gid != stx.stx_gid) stale << " owner";
    if (type != S_IFDIR && cached.st_size != node.size) stale << " size " << cached.st_size << "/" << node.size;
    int64_t m = ns(cached.st_mtim.tv_sec, cached.st_mtim.tv_nsec), c = ns(cached.st_ctim.tv_sec, cached.st_ctim.tv_nsec);
    if (m != node.mtime_ns) stale << " mtime " << m << "/" << node.mtime_ns;
    if (c != node.ctime_ns) stale << " ctime " << c << "/" << node.ctime_ns;
    if (!stale.str().empty()) node.error += " stale attribute cache (cached/daemon):" + stale.str();
  }
  ReadXattrs(path, &node);
  if (type == S_IFREG) {
    node.type = 'f';
    int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW);
    if (fd < 0) {
      node.error += " open:" + ErrName(errno);
    } else {
      // Ask for more than the size says: extra bytes would show up as a
      // content difference.
      node.data.resize(node.size + 4096);
      ssize_t n = pread(fd, node.data.data(), node.data.size(), 0);
      if (n < 0) node.error += " read:" + ErrName(errno);
      node.data.resize(n < 0 ? 0 : n);
      close(fd);
    }
  } else if (type == S_IFLNK) {
    node.type = 'l';
    char buf[8192];
    ssize_t n = readlink(path.c_str(), buf, sizeof buf);
    if (n < 0) node.error += " readlink:" + ErrName(errno);
    else node.data.assign(buf, n);
  } else if (type == S_IFIFO) {
    node.type = 'p';
  } else if (type == S_IFCHR || type == S_IFBLK) {
    node.type = type == S_IFCHR ? 'c' : 'b';
    node.rdev = makedev(stx.stx_rdev_major, stx.stx_rdev_minor);
  } else if (type == S_IFSOCK) {
    node.type = 's';
  } else if (type == S_IFDIR) {
    node.type = 'd';
    node.size = 0;  // differs between file systems
    DIR* dir = opendir(path.c_str());
    if (!dir) {
      node.error += " opendir:" + ErrName(errno);
      return;
    }
    std::vector<std::string> names;
    while (dirent* e = readdir(dir)) {
      std::string name = e->d_name;
      if (name != "." && name != "..") names.push_back(name);
    }
    closedir(dir);
    std::sort(names.begin(), names.end());
    for (size_t i = 1; i < names.size(); ++i) {
      if (names[i] == names[i - 1]) node.error += " readdir: duplicate " + names[i];
    }
    for (const std::string& name : names) Walk(base, Join(rel, name), tree);
  }
}

// A whole file read with O_DIRECT: on FUSE this asks the daemon, not the
// page cache (after writing back dirty pages of the range).
std::string ReadDirect(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_DIRECT | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return "<open: " + ErrName(errno) + ">";
  std::string out;
  constexpr size_t kChunk = 1 << 20;
  void* buf = nullptr;
  if (posix_memalign(&buf, 4096, kChunk) != 0) abort();
  for (off_t off = 0;;) {
    ssize_t n = pread(fd, buf, kChunk, off);
    if (n < 0) {
      out = "<read: " + ErrName(errno) + ">";
      break;
    }
    if (n == 0) break;
    out.append(static_cast<char*>(buf), n);
    off += n;
  }
  free(buf);
  close(fd);
  return out;
}

Tree Snapshot(const std::string& base) {
  Tree tree;
  Walk(base, "", &tree);
  return tree;
}

std::string Hex(const std::string& s, size_t at, size_t n) {
  std::ostringstream out;
  for (size_t i = at; i < std::min(s.size(), at + n); ++i) {
    char b[4];
    snprintf(b, sizeof b, "%02x", static_cast<unsigned char>(s[i]));
    out << b;
  }
  return out.str();
}

std::string DescribeContentDiff(const std::string& want, const std::string& got) {
  size_t i = 0;
  while (i < want.size() && i < got.size() && want[i] == got[i]) ++i;
  std::ostringstream out;
  out << "content differs at byte " << i << " (block " << i / kBlock << ", +" << i % kBlock << "): ref len "
      << want.size() << " [" << Hex(want, i, 16) << "], aspfs len " << got.size() << " [" << Hex(got, i, 16) << "]";
  // Where does the difference end?
  size_t j = i;
  while (j < std::min(want.size(), got.size()) && want[j] != got[j]) ++j;
  out << "; first differing run ends at " << j;
  return out.str();
}

// Whether the last step changed each path's mtime and ctime must agree: the
// values themselves differ between the two file systems. "" when it does.
// (A remount or a restart must change none.)
std::string DiffTimeChanges(const Tree& ref_before, const Tree& ref, const Tree& fs_before, const Tree& fs) {
  std::ostringstream out;
  for (const auto& [path, now] : ref) {
    auto rb = ref_before.find(path), fb = fs_before.find(path), fn = fs.find(path);
    if (rb == ref_before.end() || fb == fs_before.end() || fn == fs.end()) continue;
    if (rb->second.type != now.type) continue;  // replaced
    bool ref_m = rb->second.mtime_ns != now.mtime_ns, fs_m = fb->second.mtime_ns != fn->second.mtime_ns;
    bool ref_c = rb->second.ctime_ns != now.ctime_ns, fs_c = fb->second.ctime_ns != fn->second.ctime_ns;
    if (ref_m != fs_m) {
      out << "/" << path << ": mtime " << (ref_m ? "changed" : "unchanged") << " on ref, "
          << (fs_m ? "changed" : "unchanged") << " on aspfs (" << fb->second.mtime_ns << " -> " << fn->second.mtime_ns
          << ")\n";
    }
    if (ref_c != fs_c) {
      out << "/" << path << ": ctime " << (ref_c ? "changed" : "unchanged") << " on ref, "
          << (fs_c ? "changed" : "unchanged") << " on aspfs (" << fb->second.ctime_ns << " -> " << fn->second.ctime_ns
          << ")\n";
    }
  }
  return out.str();
}

// "" when equal; otherwise one line per difference (ref is the expectation).
std::string DiffTrees(const Tree& ref, const Tree& fs) {
  std::ostringstream out;
  for (const auto& [path, want] : ref) {
    auto it = fs.find(path);
    std::string p = "/" + path;
    if (it == fs.end()) {
      out << p << ": missing on aspfs (ref type " << want.type << ")\n";
      continue;
    }
    const Node& got = it->second;
    if (want.type != got.type) out << p << ": type ref " << want.type << " aspfs " << got.type << "\n";
    if (want.error != got.error) out << p << ": errors ref '" << want.error << "' aspfs '" << got.error << "'\n";
    if (want.mode != got.mode) {
      out << p << ": mode ref 0" << std::oct << want.mode << " aspfs 0" << got.mode << std::dec << "\n";
    }
    if (want.nlink != got.nlink) out << p << ": nlink ref " << want.nlink << " aspfs " << got.nlink << "\n";
    if (want.uid != got.uid || want.gid != got.gid) {
      out << p << ": owner ref " << want.uid << ":" << want.gid << " aspfs " << got.uid << ":" << got.gid << "\n";
    }
    if (want.size != got.size) out << p << ": size ref " << want.size << " aspfs " << got.size << "\n";
    if (want.rdev != got.rdev) {
      out << p << ": device ref " << major(want.rdev) << ":" << minor(want.rdev) << " aspfs " << major(got.rdev) << ":"
          << minor(got.rdev) << "\n";
    }
    if (want.data != got.data) {
      if (want.type == 'l') {
        out << p << ": symlink target ref '" << want.data.substr(0, 100) << "' aspfs '" << got.data.substr(0, 100)
            << "'\n";
      } else {
        out << p << ": " << DescribeContentDiff(want.data, got.data) << "\n";
      }
    }
    if (want.xattrs != got.xattrs) {
      out << p << ": xattrs ref {";
      for (const auto& [k, v] : want.xattrs) out << k << ":" << v.size() << "B ";
      out << "} aspfs {";
      for (const auto& [k, v] : got.xattrs) out << k << ":" << v.size() << "B ";
      out << "}\n";
    }
  }
  for (const auto& [path, got] : fs) {
    if (!ref.count(path)) out << "/" << path << ": only on aspfs (type " << got.type << ")\n";
  }
  return out.str();
}

// ---------------------------------------------------------------- ops

// One step: the same operation, run once per side. Returns a result string
// that must be identical on both sides.
// A step whose result ends in this may leave the times alone on one side.
constexpr char kSameTimesOptional[] = " (size unchanged)";

struct Step {
  std::string what;
  std::function<std::string(const std::string& base)> run;
};

std::string PatternData(std::mt19937_64& rng, size_t len) {
  std::string data(len, '\0');
  switch (rng() % 4) {
    case 0:  // random bytes
      for (size_t i = 0; i < len; i += 8) {
        uint64_t v = rng();
        memcpy(data.data() + i, &v, std::min<size_t>(8, len - i));
      }
      break;
    case 1: {  // a short repeated pattern (compresses)
      std::string pat = std::to_string(rng()) + "-";
      for (size_t i = 0; i < len; ++i) data[i] = pat[i % pat.size()];
      break;
    }
    case 2:  // zeros: must read back as zeros, however stored
      break;
    default:
      std::fill(data.begin(), data.end(), static_cast<char>('A' + rng() % 26));
  }
  return data;
}

// SEEK_DATA/SEEK_HOLE may report holes at any granularity, but never a
// hole where there are non-zero bytes, and they must end at EOF.
std::string CheckHoles(int fd, bool flush_first) {
  struct stat st;
  if (fstat(fd, &st) != 0) return "fstat" + ErrName(errno);
  if (!S_ISREG(st.st_mode)) return "not regular";
  if (flush_first && fsync(fd) != 0) return "fsync" + ErrName(errno);
  std::string content(st.st_size, '\0');
  if (pread(fd, content.data(), content.size(), 0) != st.st_size) return "short read";
  auto zeros = [&](off_t from, off_t to) {
    for (off_t i = from; i < to && i < st.st_size; ++i) {
      if (content[i] != 0) return false;
    }
    return true;
  };
  off_t pos = 0;
  for (int guard = 0; guard < 10000; ++guard) {
    off_t data = lseek(fd, pos, SEEK_DATA);
    if (data < 0) {
      if (errno != ENXIO) return "SEEK_DATA(" + std::to_string(pos) + ")" + ErrName(errno);
      if (!zeros(pos, st.st_size)) return "SEEK_DATA(" + std::to_string(pos) + ") says no data but there is";
      return "ok";
    }
    if (data < pos || data > st.st_size) return "SEEK_DATA(" + std::to_string(pos) + ")=" + std::to_string(data);
    if (!zeros(pos, data)) {
      return "SEEK_DATA(" + std::to_string(pos) + ")=" + std::to_string(data) + " skips non-zero bytes";
    }
    if (data == st.st_size) return "ok";
    off_t hole = lseek(fd, data, SEEK_HOLE);
    if (hole < 0) return "SEEK_HOLE(" + std::to_string(data) + ")" + ErrName(errno);
    if (hole <= data || hole > st.st_size) {
      return "SEEK_HOLE(" + std::to_string(data) + ")=" + std::to_string(hole) + " size " +
             std::to_string(st.st_size);
    }
    if (hole == st.st_size) return "ok";
    pos = hole;
  }
  return "too many segments";
}

class Fuzzer {
 public:
  explicit Fuzzer(uint64_t seed) : rng_(seed) {}

  // Chooses the next step from the current (reference) tree.
  Step Next(const Tree& tree) {
    Index(tree);
    bool full = entries_.size() >= kMaxEntries;
    struct Choice {
      int weight;
      Step (Fuzzer::*make)();
    };
    const Choice choices[] = {
        {full ? 0 : 8, &Fuzzer::Create},     {20, &Fuzzer::Write},
        {8, &Fuzzer::Truncate},              {4, &Fuzzer::ReadAt},
        {10, &Fuzzer::Rename},               {full ? 0 : 4, &Fuzzer::Link},
        {full ? 9 : 6, &Fuzzer::Unlink},     {full ? 0 : 5, &Fuzzer::Mkdir},
        {full ? 6 : 3, &Fuzzer::Rmdir},      {full ? 3 : 1, &Fuzzer::RemoveTree},
        {4, &Fuzzer::Chmod},                 {2, &Fuzzer::Chown},
        {4, &Fuzzer::Utimens},               {5, &Fuzzer::SetXattr},
        {3, &Fuzzer::RemoveXattr},           {3, &Fuzzer::Fsync},
        {full ? 0 : 4, &Fuzzer::Symlink},    {full ? 0 : 1, &Fuzzer::Mkfifo},
        {2, &Fuzzer::UnlinkWhileOpen},       {2, &Fuzzer::RenameOverOpen},
        {2, &Fuzzer::MmapWrite},             {3, &Fuzzer::CopyRange},
        {2, &Fuzzer::Fallocate},             {2, &Fuzzer::SeekHoles},
        {3, &Fuzzer::TwoDescriptors},        {full ? 0 : 1, &Fuzzer::Tmpfile},
    };
    int total = 0;
    for (const Choice& c : choices) total += c.weight;
    int pick = static_cast<int>(U(total));
    bool as_user = P(0.2);
    as_user_ = as_user;
    for (const Choice& c : choices) {
      if (pick < c.weight) return as_user ? AsUser((this->*c.make)()) : (this->*c.make)();
      pick -= c.weight;
    }
    return Write();
  }

 private:
  uint64_t U(uint64_t n) { return n ? rng_() % n : 0; }
  bool P(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  template <typename T>
  const T& Pick(const std::vector<T>& v) {
    return v[U(v.size())];
  }

  void Index(const Tree& tree) {
    tree_ = &tree;
    entries_.clear();
    dirs_.clear();
    files_.clear();
    for (const auto& [path, node] : tree) {
      if (node.type == 'd') dirs_.push_back(path);
      if (path.empty()) continue;
      entries_.push_back(path);
      if (node.type == 'f') files_.push_back(path);
    }
  }

  std::string Name() {
    static const char* const kNames[] = {"a", "b", "c", "d", "e", "f", "g", "h", "sub", "x.txt"};
    if (P(0.01)) return std::string(255, 'n');                   // the longest legal name
    if (P(0.005)) return std::string(256, 'n');                  // ENAMETOOLONG
    return kNames[U(sizeof kNames / sizeof kNames[0])];
  }

  // A path that may or may not exist: mostly fresh names in shallow dirs,
  // sometimes existing entries, under files (ENOTDIR) or missing dirs (ENOENT).
  std::string NewPath() {
    double r = std::uniform_real_distribution<double>(0, 1)(rng_);
    if (r < 0.1 && !entries_.empty()) return Pick(entries_);
    if (r < 0.13 && !files_.empty()) return Pick(files_) + "/" + Name();
    if (r < 0.15) return "nodir/" + Name();
    std::vector<std::string> shallow;
    for (const std::string& d : dirs_) {
      if (Depth(d) < kMaxDepth) shallow.push_back(d);
    }
    return Join(shallow.empty() ? "" : Pick(shallow), Name());
  }

  std::string Existing() {
    if (entries_.empty() || P(0.05)) return NewPath();
    return Pick(entries_);
  }

  std::string ExistingFile() {
    if (files_.empty() || P(0.1)) return Existing();
    return Pick(files_);
  }

  std::string Dir() {
    if (P(0.1)) return Existing();
    return Pick(dirs_);
  }

  uint64_t SizeOf(const std::string& path) {
    auto it = tree_->find(path);
    return it == tree_->end() ? 0 : static_cast<uint64_t>(it->second.size);
  }

  // An offset that likes boundaries: 0, EOF, beyond EOF (a hole), around the
  // inline limit and around 64 KiB extents, 4 KiB pages (page patches).
  uint64_t Offset(uint64_t size) {
    switch (U(8)) {
      case 6: return U(size / 4096 + 2) * 4096;
      case 0: return 0;
      case 1: return size;
      case 2: return size + U(150 * 1024);
      case 3: return kInline - std::min<uint64_t>(kInline, U(64)) + U(2) * U(64);
      case 4: {
        uint64_t b = 1 + U(4);
        return b * kBlock - U(300) + U(2) * U(300);
      }
      default: return U(std::max<uint64_t>(size, 1) + 1);
    }
  }

  uint64_t Length() {
    switch (U(5)) {
      case 4: return 4096 * (1 + U(20));
      case 0: return 1 + U(64);
      case 1: return 1 + U(5000);
      case 2: return 1 + U(70 * 1024);
      default: return 1 + U(160 * 1024);
    }
  }

  uint64_t NewSize(uint64_t size) {
    switch (U(7)) {
      case 0: return 0;
      case 1: return U(size + 1);
      case 2: return std::min(kMaxFile, size + U(100 * 1024));
      case 3: return (1 + U(4)) * kBlock;
      case 4: return kInline - 2 + U(4);
      case 5: return (1 + U(4)) * kBlock - 2 + U(4);
      default: return size;
    }
  }

  std::string Mode() {
    static const mode_t kModes[] = {0644, 0600, 0755, 0700, 0444, 0640, 0777, 0000,
                                    04755, 02755, 01777, 06711, 04777, 02777, 06777, 0666};
    std::ostringstream o;
    o << std::oct << kModes[U(sizeof kModes / sizeof kModes[0])];
    return o.str();
  }
  mode_t ModeBits() { return static_cast<mode_t>(std::stoul(Mode(), nullptr, 8)); }

  // A symlink target that resolves to the same place on both sides: relative
  // without "..", so that it stays inside the tree wherever a rename moves
  // the link (it may dangle); or dangling, looping, long.
  std::string Target(const std::string& link) {
    switch (U(6)) {
      case 0: return Existing();  // right when the link sits in the root
      case 1: {
        std::string dir = Pick(dirs_);
        return dir.empty() ? "." : dir;
      }
      case 2: return link.substr(link.rfind('/') + 1);  // itself: ELOOP
      case 3: return "/nonexistent-aspfs-target/" + Name();
      case 4: return std::string(1 + U(4000), 't');  // long, dangling
      default: return Name();
    }
  }

  Step Create() {
    std::string path = NewPath();
    int flags = O_CREAT | O_WRONLY | O_NONBLOCK;
    if (P(0.3)) flags |= O_EXCL;
    if (P(0.3)) flags |= O_TRUNC;
    mode_t mode = P(0.5) ? 0666 : ModeBits() & 0777;
    std::ostringstream what;
    what << "create " << path << " flags=0x" << std::hex << flags << " mode=0" << std::oct << mode;
    return {what.str(), [=](const std::string& base) {
              int fd = open(Join(base, path).c_str(), flags, mode);
              std::string r = Res(fd);
              if (fd >= 0) r = "ok close=" + Res(close(fd));
              return r;
            }};
  }

  Step Write() {
    std::string path = ExistingFile();
    uint64_t size = SizeOf(path);
    int flags = (P(0.7) ? O_WRONLY : O_RDWR) | O_NONBLOCK;
    if (P(0.1)) flags |= O_APPEND;
    if (P(0.1)) flags |= O_CREAT;
    struct Piece {
      uint64_t off;
      std::string data;
    };
    std::vector<Piece> pieces;
    std::ostringstream what;
    what << "write " << path << " flags=0x" << std::hex << flags << std::dec;
    int n = 1 + static_cast<int>(U(3));
    for (int i = 0; i < n; ++i) {
      uint64_t off = Offset(size), len = Length();
      if (off >= kMaxFile) off = U(kMaxFile);
      len = std::min(len, kMaxFile - off);
      if (len == 0) len = 1;
      pieces.push_back({off, PatternData(rng_, len)});
      what << " [" << off << "+" << len << "]";
      size = std::max(size, off + len);
    }
    bool sync = P(0.1);
    if (sync) what << " fsync";
    return {what.str(), [=](const std::string& base) {
              int fd = open(Join(base, path).c_str(), flags, 0644);
              if (fd < 0) return "open" + ErrName(errno);
              std::string r;
              for (const Piece& p : pieces) r += " " + Res(pwrite(fd, p.data.data(), p.data.size(), p.off));
              if (sync) r += " fsync=" + Res(fsync(fd));
              r += " close=" + Res(close(fd));
              return r;
            }};
  }

  Step Truncate() {
    std::string path = ExistingFile();
    uint64_t to = NewSize(SizeOf(path));
    bool via_fd = P(0.5);
    return {"truncate " + path + " " + std::to_string(to) + (via_fd ? " (ftruncate)" : ""),
            [=](const std::string& base) {
              if (!via_fd) {
                // POSIX updates the times only "if the file size is changed";
                // ext4 always does, ASPFS (through the kernel) does not.
                struct stat st;
                bool same = stat(Join(base, path).c_str(), &st) == 0 && st.st_size == static_cast<off_t>(to);
                return Res(truncate(Join(base, path).c_str(), to)) + (same ? kSameTimesOptional : "");
              }
              int fd = open(Join(base, path).c_str(), O_WRONLY | O_NONBLOCK);
              if (fd < 0) return "open" + ErrName(errno);
              std::string r = Res(ftruncate(fd, to));
              close(fd);
              return r;
            }};
  }

  Step ReadAt() {
    std::string path = ExistingFile();
    uint64_t size = SizeOf(path);
    uint64_t off = P(0.2) ? size + U(1000) : U(size + 1);
    uint64_t len = Length();
    return {"read " + path + " [" + std::to_string(off) + "+" + std::to_string(len) + "]",
            [=](const std::string& base) {
              int fd = open(Join(base, path).c_str(), O_RDONLY | O_NONBLOCK);
              if (fd < 0) return "open" + ErrName(errno);
              std::string buf(len, '\0');
              ssize_t n = pread(fd, buf.data(), len, off);
              std::string r = Res(n);
              if (n > 0) r += " hash=" + std::to_string(std::hash<std::string>()(buf.substr(0, n)));
              close(fd);
              return r;
            }};
  }

  Step Rename() {
    std::string from = Existing();
    std::string to;
    auto node = tree_->find(from);
    if (node != tree_->end() && node->second.type == 'd' && P(0.15)) {
      to = from + "/" + Name();  // into its own subtree: EINVAL
    } else if (P(0.5) && !entries_.empty()) {
      to = Pick(entries_);  // over an existing entry (or an ancestor, or itself)
    } else {
      to = NewPath();
    }
    unsigned flags = 0;
    double r = std::uniform_real_distribution<double>(0, 1)(rng_);
    if (r < 0.1) flags = RENAME_NOREPLACE;
    else if (r < 0.2) flags = RENAME_EXCHANGE;
    else if (r < 0.24) flags = RENAME_WHITEOUT;  // overlayfs's: a whiteout is left at the old name
    else if (r < 0.25) flags = RENAME_WHITEOUT | RENAME_NOREPLACE;
    return {"rename " + from + " -> " + to + " flags=" + std::to_string(flags), [=](const std::string& base) {
              std::string r = Res(renameat2(AT_FDCWD, Join(base, from).c_str(), AT_FDCWD, Join(base, to).c_str(), flags));
              // ext4 makes the whiteout first and stamps the source directory
              // even when the rename then fails (ENOTEMPTY, say).
              if ((flags & RENAME_WHITEOUT) && r[0] == '-') r += kSameTimesOptional;
              return r;
            }};
  }

  Step Link() {
    std::string from = Existing(), to = NewPath();
    return {"link " + from + " -> " + to, [=](const std::string& base) {
              return Res(link(Join(base, from).c_str(), Join(base, to).c_str()));
            }};
  }

  Step Unlink() {
    std::string path = Existing();
    return {"unlink " + path, [=](const std::string& base) { return Res(unlink(Join(base, path).c_str())); }};
  }

  Step Mkdir() {
    std::string path = NewPath();
    // Mostly world-writable, so that steps run as user 1000 get somewhere.
    double r = std::uniform_real_distribution<double>(0, 1)(rng_);
    mode_t mode = r < 0.4 ? 0777 : r < 0.6 ? 01777 : r < 0.8 ? 0755 : ModeBits();
    return {"mkdir " + path + " " + std::to_string(mode),
            [=](const std::string& base) { return Res(mkdir(Join(base, path).c_str(), mode)); }};
  }

  Step Rmdir() {
    std::string path = P(0.7) && dirs_.size() > 1 ? Dir() : Existing();
    if (path.empty()) path = Existing();
    return {"rmdir " + path, [=](const std::string& base) { return Res(rmdir(Join(base, path).c_str())); }};
  }

 public:
  static std::string RemoveAll(const std::string& path) {
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) return "lstat" + ErrName(errno);
    if (!S_ISDIR(st.st_mode)) return unlink(path.c_str()) == 0 ? "" : "unlink" + ErrName(errno);
    DIR* dir = opendir(path.c_str());
    if (!dir) return "opendir" + ErrName(errno);
    std::vector<std::string> names;
    while (dirent* e = readdir(dir)) {
      std::string name = e->d_name;
      if (name != "." && name != "..") names.push_back(name);
    }
    closedir(dir);
    std::sort(names.begin(), names.end());
    std::string r;
    for (const std::string& name : names) r += RemoveAll(path + "/" + name);
    if (rmdir(path.c_str()) != 0) r += "rmdir" + ErrName(errno);
    return r;
  }

 private:
  Step RemoveTree() {
    std::string path = dirs_.size() > 1 && P(0.8) ? Dir() : Existing();
    if (path.empty()) path = Existing();
    return {"rm -rf " + path, [=](const std::string& base) { return "[" + RemoveAll(Join(base, path)) + "]"; }};
  }

  Step Chmod() {
    std::string path = Existing();
    if (P(0.2)) path = "";  // the root
    mode_t mode = ModeBits();
    if (path.empty()) mode |= 0700;
    std::ostringstream what;
    what << "chmod " << path << " 0" << std::oct << mode;
    return {what.str(), [=](const std::string& base) { return Res(chmod(Join(base, path).c_str(), mode)); }};
  }

  Step Chown() {
    static const int kIds[] = {0, 1000, 1000, 65534, -1};
    std::string path = Existing();
    int uid = kIds[U(5)], gid = kIds[U(5)];
    bool no_follow = P(0.5);
    return {"chown " + path + " " + std::to_string(uid) + ":" + std::to_string(gid) + (no_follow ? " (lchown)" : ""),
            [=](const std::string& base) {
              std::string p = Join(base, path);
              return Res(no_follow ? lchown(p.c_str(), uid, gid) : chown(p.c_str(), uid, gid));
            }};
  }

  Step Utimens() {
    std::string path = Existing();
    struct timespec ts[2];
    std::ostringstream what;
    what << "utimensat " << path;
    for (auto& t : ts) {
      switch (U(4)) {
        case 0: t.tv_sec = 0; t.tv_nsec = UTIME_NOW; what << " now"; break;
        case 1: t.tv_sec = 0; t.tv_nsec = UTIME_OMIT; what << " omit"; break;
        default:
          t.tv_sec = static_cast<time_t>(U(1ull << 33)) - (1ll << 31);
          t.tv_nsec = static_cast<long>(U(1000000000));
          what << " " << t.tv_sec << "." << t.tv_nsec;
      }
    }
    int flags = P(0.3) ? AT_SYMLINK_NOFOLLOW : 0;
    what << " flags=" << flags;
    bool explicit_mtime = ts[1].tv_nsec != UTIME_NOW && ts[1].tv_nsec != UTIME_OMIT;
    return {what.str(), [=](const std::string& base) {
              std::string p = Join(base, path);
              std::string r = Res(utimensat(AT_FDCWD, p.c_str(), ts, flags));
              struct stat st;
              if (r == "0" && explicit_mtime &&
                  fstatat(AT_FDCWD, p.c_str(), &st, flags ? AT_SYMLINK_NOFOLLOW : 0) == 0) {
                r += " mtime=" + std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
              }
              return r;
            }};
  }

  std::string XattrName() {
    static const char* const kNames[] = {"user.a", "user.b", "user.comment", "user.x.y"};
    return kNames[U(4)];
  }

  Step SetXattr() {
    std::string path = Existing(), name = XattrName();
    std::string value = PatternData(rng_, P(0.1) ? 0 : U(500));
    int flags = 0;
    double r = std::uniform_real_distribution<double>(0, 1)(rng_);
    if (r < 0.2) flags = XATTR_CREATE;
    else if (r < 0.4) flags = XATTR_REPLACE;
    bool no_follow = P(0.3);
    return {"setxattr " + path + " " + name + " " + std::to_string(value.size()) + "B flags=" +
                std::to_string(flags) + (no_follow ? " (l)" : ""),
            [=](const std::string& base) {
              std::string p = Join(base, path);
              return Res(no_follow ? lsetxattr(p.c_str(), name.c_str(), value.data(), value.size(), flags)
                                   : setxattr(p.c_str(), name.c_str(), value.data(), value.size(), flags));
            }};
  }

  Step RemoveXattr() {
    std::string path = Existing(), name = XattrName();
    return {"removexattr " + path + " " + name, [=](const std::string& base) {
              return Res(removexattr(Join(base, path).c_str(), name.c_str()));
            }};
  }

  Step Fsync() {
    std::string path = P(0.3) ? Dir() : Existing();
    bool data_only = P(0.3);
    return {std::string(data_only ? "fdatasync " : "fsync ") + path, [=](const std::string& base) {
              int fd = open(Join(base, path).c_str(), O_RDONLY | O_NONBLOCK);
              if (fd < 0) return "open" + ErrName(errno);
              std::string r = Res(data_only ? fdatasync(fd) : fsync(fd));
              close(fd);
              return r;
            }};
  }

  Step Symlink() {
    std::string path = NewPath();
    std::string target = Target(path);
    return {"symlink " + path + " -> " + target.substr(0, 80) + " (" + std::to_string(target.size()) + "B)",
            [=](const std::string& base) { return Res(symlink(target.c_str(), Join(base, path).c_str())); }};
  }

  Step Mkfifo() {
    std::string path = NewPath();
    return {"mkfifo " + path, [=](const std::string& base) { return Res(mkfifo(Join(base, path).c_str(), 0640)); }};
  }

  // An unlinked file stays usable through its open descriptor.
  Step UnlinkWhileOpen() {
    std::string path = ExistingFile();
    uint64_t off = Offset(SizeOf(path));
    if (off >= kMaxFile) off = 0;
    std::string data = PatternData(rng_, std::min<uint64_t>(Length(), kMaxFile - off));
    return {"unlink-while-open " + path + " write [" + std::to_string(off) + "+" + std::to_string(data.size()) + "]",
            [=](const std::string& base) {
              std::string p = Join(base, path);
              int fd = open(p.c_str(), O_RDWR | O_NONBLOCK);
              if (fd < 0) return "open" + ErrName(errno);
              std::string r = "unlink=" + Res(unlink(p.c_str()));
              r += " write=" + Res(pwrite(fd, data.data(), data.size(), off));
              struct stat st;
              if (fstat(fd, &st) == 0) {
                r += " nlink=" + std::to_string(st.st_nlink) + " size=" + std::to_string(st.st_size);
              } else {
                r += " fstat" + ErrName(errno);
              }
              std::string content;
              lseek(fd, 0, SEEK_SET);
              if (ReadAll(fd, &content)) {
                r += " len=" + std::to_string(content.size()) +
                     " hash=" + std::to_string(std::hash<std::string>()(content));
              } else {
                r += " read" + ErrName(errno);
              }
              r += " close=" + Res(close(fd));
              return r;
            }};
  }

  // O_TMPFILE in a directory, written, then mostly named with linkat(2)
  // (never, with O_EXCL).
  Step Tmpfile() {
    std::string dir = Dir(), path = NewPath();
    std::string data = PatternData(rng_, std::min<uint64_t>(Length(), kMaxFile));
    bool name_it = !P(0.2), excl = P(0.1);
    return {"tmpfile in " + dir + (excl ? " excl" : "") + " write " + std::to_string(data.size()) +
                (name_it ? " link " + path : ""),
            [=](const std::string& base) {
              int fd = open(Join(base, dir).c_str(), O_TMPFILE | O_RDWR | (excl ? O_EXCL : 0), 0640);
              if (fd < 0) return "open" + ErrName(errno);
              std::string r = "write=" + Res(write(fd, data.data(), data.size()));
              struct stat st;
              if (fstat(fd, &st) == 0) {
                r += " nlink=" + std::to_string(st.st_nlink) + " size=" + std::to_string(st.st_size);
              }
              if (name_it) {
                std::string proc = "/proc/self/fd/" + std::to_string(fd);
                r += " link=" + Res(linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, Join(base, path).c_str(), AT_SYMLINK_FOLLOW));
              }
              r += " close=" + Res(close(fd));
              return r;
            }};
  }

  // The old target of a rename stays readable through its open descriptor.
  Step RenameOverOpen() {
    std::string from = ExistingFile(), to = ExistingFile();
    return {"rename-over-open " + from + " -> " + to, [=](const std::string& base) {
              std::string t = Join(base, to);
              int fd = open(t.c_str(), O_RDONLY | O_NONBLOCK);
              std::string r = "open=" + std::string(fd < 0 ? ErrName(errno) : "ok");
              r += " rename=" + Res(rename(Join(base, from).c_str(), t.c_str()));
              if (fd >= 0) {
                std::string content;
                if (ReadAll(fd, &content)) {
                  r += " len=" + std::to_string(content.size()) +
                       " hash=" + std::to_string(std::hash<std::string>()(content));
                } else {
                  r += " read" + ErrName(errno);
                }
                struct stat st;
                if (fstat(fd, &st) == 0) r += " nlink=" + std::to_string(st.st_nlink);
                close(fd);
              }
              return r;
            }};
  }

  // Shared writable mapping: dirty pages reach the file system by msync.
  Step MmapWrite() {
    std::string path = ExistingFile();
    uint64_t size = SizeOf(path);
    uint64_t off = U(size + 1), len = 1 + U(std::min<uint64_t>(size - std::min(size, off), 100000) + 1);
    std::string data = PatternData(rng_, len);
    return {"mmap-write " + path + " [" + std::to_string(off) + "+" + std::to_string(len) + "]",
            [=](const std::string& base) {
              int fd = open(Join(base, path).c_str(), O_RDWR | O_NONBLOCK);
              if (fd < 0) return "open" + ErrName(errno);
              struct stat st;
              std::string r;
              if (fstat(fd, &st) != 0 || st.st_size == 0 || !S_ISREG(st.st_mode)) {
                close(fd);
                return std::string("empty-or-special");
              }
              void* map = mmap(nullptr, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
              if (map == MAP_FAILED) {
                r = "mmap" + ErrName(errno);
              } else {
                uint64_t n = std::min<uint64_t>(data.size(), st.st_size - std::min<uint64_t>(st.st_size, off));
                memcpy(static_cast<char*>(map) + std::min<uint64_t>(off, st.st_size), data.data(), n);
                r = "n=" + std::to_string(n) + " msync=" + Res(msync(map, st.st_size, MS_SYNC));
                munmap(map, st.st_size);
              }
              close(fd);
              return r;
            }};
  }

  Step CopyRange() {
    std::string from = ExistingFile(), to = ExistingFile();
    uint64_t off_in = U(SizeOf(from) + 1), off_out = Offset(SizeOf(to)), len = Length();
    if (P(0.5)) {  // block-aligned: ASPFS shares the blocks instead of copying them
      off_in -= off_in % kBlock;
      off_out -= off_out % kBlock;
      if (P(0.5)) len = (1 + U(4)) * kBlock;
    }
    if (off_out >= kMaxFile) off_out = 0;
    len = std::min(len, kMaxFile - off_out);
    return {"copy_file_range " + from + "@" + std::to_string(off_in) + " -> " + to + "@" + std::to_string(off_out) +
                " len " + std::to_string(len),
            [=](const std::string& base) {
              int in = open(Join(base, from).c_str(), O_RDONLY | O_NONBLOCK);
              if (in < 0) return "open-in" + ErrName(errno);
              int out = open(Join(base, to).c_str(), O_WRONLY | O_NONBLOCK);
              if (out < 0) {
                close(in);
                return "open-out" + ErrName(errno);
              }
              loff_t i = off_in, o = off_out;
              // Copy in a loop: a short copy is allowed, the total is not.
              std::string r;
              uint64_t done = 0;
              while (done < len) {
                ssize_t n = copy_file_range(in, &i, out, &o, len - done, 0);
                if (n < 0) {
                  r = ErrName(errno);
                  break;
                }
                if (n == 0) break;
                done += n;
              }
              if (r.empty()) r = std::to_string(done);
              close(in);
              close(out);
              return r;
            }};
  }

  Step Fallocate() {
    std::string path = ExistingFile();
    uint64_t size = SizeOf(path);
    uint64_t off = Offset(size);
    if (off >= kMaxFile) off = U(kMaxFile);
    uint64_t len = std::max<uint64_t>(1, std::min(Length(), kMaxFile - off));
    static const int kModes[] = {0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                 FALLOC_FL_ZERO_RANGE, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE};
    int mode = kModes[U(5)];
    return {"fallocate " + path + " mode=" + std::to_string(mode) + " [" + std::to_string(off) + "+" +
                std::to_string(len) + "]",
            [=](const std::string& base) {
              int fd = open(Join(base, path).c_str(), O_WRONLY | O_NONBLOCK);
              if (fd < 0) return "open" + ErrName(errno);
              std::string r = Res(fallocate(fd, mode, off, len));
              close(fd);
              return r;
            }};
  }

  // Runs the step with fsuid/fsgid 1000 (this thread only): permission
  // checks, sticky directories, owners of new files, setuid bits cleared by
  // an unprivileged write or chown.
  static Step AsUser(Step step) {
    auto run = step.run;
    step.what = "[as 1000:1000] " + step.what;
    step.run = [run](const std::string& base) {
      setfsgid(1000);
      setfsuid(1000);
      std::string r = run(base);
      setfsuid(0);
      setfsgid(0);
      return r;
    };
    return step;
  }

  Step SeekHoles() {
    std::string path = ExistingFile();
    bool flush_first = P(0.5);
    return {"seek-holes " + path + (flush_first ? " (after fsync)" : ""), [=](const std::string& base) {
              int fd = open(Join(base, path).c_str(), O_RDONLY | O_NONBLOCK);
              if (fd < 0) return "open" + ErrName(errno);
              std::string r = CheckHoles(fd, flush_first);
              close(fd);
              return r;
            }};
  }

  // Two descriptors and the path on one file, interleaved: the kernel's
  // writeback cache, size changes and reads must stay coherent.
  Step TwoDescriptors() {
    std::string path = ExistingFile();
    uint64_t size = SizeOf(path);
    struct Sub {
      int kind;
      uint64_t off, len;
      std::string data;
    };
    std::vector<Sub> subs;
    std::ostringstream what;
    what << "two-fds " << path;
    int n = 2 + static_cast<int>(U(5));
    for (int i = 0; i < n; ++i) {
      Sub sub{static_cast<int>(U(7)), Offset(size), Length(), ""};
      if (sub.off >= kMaxFile) sub.off = U(kMaxFile);
      sub.len = std::max<uint64_t>(1, std::min(sub.len, kMaxFile - sub.off));
      static const char* const kNames[] = {"w1", "w2", "ftrunc2", "trunc-path", "read1", "punch2", "fstat1"};
      what << " " << kNames[sub.kind] << "[" << sub.off << "+" << sub.len << "]";
      if (sub.kind <= 1) {
        sub.data = PatternData(rng_, sub.len);
        size = std::max(size, sub.off + sub.len);
      }
      if (sub.kind == 2 || sub.kind == 3) size = sub.off;
      subs.push_back(std::move(sub));
    }
    return {what.str(), [=](const std::string& base) {
              std::string p = Join(base, path);
              int fd1 = open(p.c_str(), O_RDWR | O_NONBLOCK);
              if (fd1 < 0) return "open" + ErrName(errno);
              int fd2 = open(p.c_str(), O_RDWR | O_NONBLOCK);
              std::string r;
              bool same_size = false;  // a truncate(path) that keeps the size
              for (const Sub& sub : subs) {
                r += " ";
                switch (sub.kind) {
                  case 0: r += Res(pwrite(fd1, sub.data.data(), sub.len, sub.off)); break;
                  case 1: r += Res(pwrite(fd2, sub.data.data(), sub.len, sub.off)); break;
                  case 2: r += Res(ftruncate(fd2, sub.off)); break;
                  case 3: {
                    struct stat st;
                    if (fstat(fd1, &st) == 0 && st.st_size == static_cast<off_t>(sub.off)) same_size = true;
                    r += Res(truncate(p.c_str(), sub.off));
                    break;
                  }
                  case 4: {
                    std::string buf(sub.len, '\0');
                    ssize_t got = pread(fd1, buf.data(), sub.len, sub.off);
                    r += Res(got);
                    if (got > 0) r += "#" + std::to_string(std::hash<std::string>()(buf.substr(0, got)));
                    break;
                  }
                  case 5:
                    r += Res(fallocate(fd2, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, sub.off, sub.len));
                    break;
                  default: {
                    struct stat st;
                    r += fstat(fd1, &st) == 0 ? "size=" + std::to_string(st.st_size) : ErrName(errno);
                  }
                }
              }
              close(fd2);
              close(fd1);
              return r + (same_size ? kSameTimesOptional : "");
            }};
  }

  std::mt19937_64 rng_;
  bool as_user_ = false;  // the step being made will run as user 1000
  const Tree* tree_ = nullptr;
  std::vector<std::string> entries_, dirs_, files_;
};

// ---------------------------------------------------------------- fixture

uint64_t Seed() {
  static const uint64_t seed = [] {
    const char* env = getenv("ASPFS_SEED");
    uint64_t s = env ? std::strtoull(env, nullptr, 10)
                     : static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) % 1000000007;
    fprintf(stderr, "differential_test: ASPFS_SEED=%llu\n", static_cast<unsigned long long>(s));
    return s;
  }();
  return seed;
}

int Steps(int default_steps) {
  const char* env = getenv("ASPFS_STEPS");
  return env ? atoi(env) : default_steps;
}

class DifferentialTest : public ::testing::Test {
 protected:
  void SetUp() override {
    umask(0);  // let every mode bit through, on both sides alike
    // User 1000 must be able to reach both roots (mkdtemp makes 0700).
    ASSERT_EQ(0, chmod(tmp_.path().c_str(), 0755));
    ASSERT_EQ(0, chmod(ref_tmp_.path().c_str(), 0755));
    daemon_ = std::make_unique<Daemon>(tmp_.path());
    ASSERT_NO_FATAL_FAILURE(daemon_->Start());
    mnt_ = daemon_->CreateAndMount("v");
    ref_ = ref_tmp_.path() + "/ref";
    ASSERT_EQ(0, mkdir(ref_.c_str(), 0755));
    // A world-writable sticky root, like /tmp: steps run as user 1000 can
    // create there, and meet the sticky rules.
    ASSERT_EQ(0, chmod(ref_.c_str(), 01777));
    ASSERT_EQ(0, chmod(mnt_.c_str(), 01777));
  }

  void TearDown() override {
    umask(022);
    // Nothing may have escaped the two roots (through a symlink, say).
    for (const auto& [dir, allowed] : std::vector<std::pair<std::string, std::set<std::string>>>{
             {ref_tmp_.path(), {"ref"}}, {tmp_.path(), {"store", "aspfsd.sock", "aspfsd.log", "mnt-v"}}}) {
      DIR* d = opendir(dir.c_str());
      while (dirent* e = d ? readdir(d) : nullptr) {
        std::string name = e->d_name;
        EXPECT_TRUE(name == "." || name == ".." || allowed.count(name)) << "stray " << dir << "/" << name;
      }
      if (d) closedir(d);
    }
  }

  std::string Context(int step) const {
    std::ostringstream out;
    out << "replay: ASPFS_SEED=" << Seed() << " " << ::testing::UnitTest::GetInstance()->current_test_info()->name()
        << " step " << step << "\nlast ops (oldest first):\n";
    for (const std::string& op : recent_) out << "  " << op << "\n";
    out << "reference tree before the last op (path type mode nlink size [target]):\n";
    for (const auto& [path, node] : tree_) {
      out << "  /" << path << " " << node.type << " 0" << std::oct << node.mode << std::dec << " " << node.nlink
          << " " << node.size;
      if (node.type == 'l') out << " -> " << node.data.substr(0, 60);
      out << "\n";
    }
    std::string log = ReadFile(tmp_.path() + "/aspfsd.log");
    if (log.size() > 3000) log = "..." + log.substr(log.size() - 3000);
    out << "aspfsd.log tail:\n" << log;
    return out.str();
  }

  // Compares both whole trees; fails the test with everything needed to replay.
  // cold: the first comparison after a remount or a daemon restart.
  void Compare(int step, const std::string& when, bool check_times = true, bool cold = false) {
    auto t0 = std::chrono::steady_clock::now();
    Tree ref = Snapshot(ref_);
    auto t1 = std::chrono::steady_clock::now();
    Tree fs = Snapshot(mnt_);
    ref_walk_secs_ += std::chrono::duration<double>(t1 - t0).count();
    fs_walk_secs_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    std::string diff = DiffTrees(ref, fs);
    ASSERT_TRUE(diff.empty()) << "trees differ " << when << ":\n" << diff << Context(step);
    if (!tree_.empty() && check_times) {
      diff = DiffTimeChanges(tree_, ref, fs_tree_, fs);
      ASSERT_TRUE(diff.empty()) << "timestamps differ " << when << ":\n" << diff << Context(step);
    }
    // Every few steps, read every file past the page cache (O_DIRECT goes to
    // the daemon), so that data the daemon stored wrongly shows near the
    // step that did it, not only at the next remount.
    if (step % 10 == 0 || cold) {
      for (const auto& [path, node] : ref) {
        if (node.type != 'f') continue;
        std::string direct = ReadDirect(Join(mnt_, path));
        ASSERT_TRUE(direct == node.data) << "/" << path << " read with O_DIRECT " << when << ": "
                                         << DescribeContentDiff(node.data, direct) << "\n"
                                         << Context(step);
      }
    }
    tree_ = std::move(ref);
    fs_tree_ = std::move(fs);
  }

  // Runs n random steps, comparing results and trees after each.
  void Run(Fuzzer* fuzzer, int n) {
    if (tree_.empty()) {
      ASSERT_NO_FATAL_FAILURE(Compare(step_, "at start"));
    }
    for (int i = 0; i < n; ++i, ++step_) {
      Step s = fuzzer->Next(tree_);
      recent_.push_back(std::to_string(step_) + ": " + s.what);
      if (recent_.size() > 25) recent_.pop_front();
      // The kernel stamps FUSE (writeback-cache) changes with its coarse
      // clock, ext4's with a fine one when the old time was seen: start
      // each step on a new tick so that "the step changed the time" means
      // the same on both sides.
      WaitForNewTick();
      auto t0 = std::chrono::steady_clock::now();
      std::string want = s.run(ref_);
      auto t1 = std::chrono::steady_clock::now();
      std::string got = s.run(mnt_);
      clock_gettime(CLOCK_REALTIME_COARSE, &last_tick_);
      auto t2 = std::chrono::steady_clock::now();
      ref_secs_ += std::chrono::duration<double>(t1 - t0).count();
      fs_secs_ += std::chrono::duration<double>(t2 - t1).count();
      if (want != got) {
        std::string diff = DiffTrees(Snapshot(ref_), Snapshot(mnt_));
        FAIL() << "result differs for: " << s.what << "\n  ref:   " << want << "\n  aspfs: " << got
               << "\ntrees after it:\n"
               << (diff.empty() ? "equal\n" : diff) << Context(step_);
      }
      recent_.back() += "  => " + want.substr(0, 120);
      if (getenv("ASPFS_VERBOSE")) fprintf(stderr, "%s\n", recent_.back().c_str());
      {
        std::string kind = s.what.substr(0, s.what.find(' '));
        if (kind == "[as") kind = "as-user";
        auto& [ok, failed] = op_stats_[kind];
        ++(want.find("-E") == std::string::npos ? ok : failed);
      }
      bool check_times = want.find(kSameTimesOptional) == std::string::npos;
      ASSERT_NO_FATAL_FAILURE(Compare(step_, "after " + s.what, check_times));
      compare_secs_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t2).count();
    }
  }

  // Waits until the coarse clock has moved on since the last step's
  // operation on the mount.
  void WaitForNewTick() {
    struct timespec now;
    for (;;) {
      clock_gettime(CLOCK_REALTIME_COARSE, &now);
      if (now.tv_sec != last_tick_.tv_sec || now.tv_nsec != last_tick_.tv_nsec) break;
      usleep(500);
    }
  }

  // Removes everything on both sides; then the volume must account for
  // nothing but its root: no leaked bytes or inodes (orphans, charges).
  void EmptyAndCheckAccounting() {
    for (const auto& [path, node] : tree_) {
      if (path.empty() || path.find('/') != std::string::npos) continue;
      EXPECT_EQ(Fuzzer::RemoveAll(Join(ref_, path)), Fuzzer::RemoveAll(Join(mnt_, path))) << path;
    }
    ASSERT_NO_FATAL_FAILURE(Remount());
    ASSERT_NO_FATAL_FAILURE(Compare(step_, "after removing everything", true, /*cold=*/true));
    struct statvfs st;
    ASSERT_EQ(0, statvfs(mnt_.c_str(), &st));
    EXPECT_EQ(0u, (st.f_blocks - st.f_bfree) * st.f_frsize) << "bytes still charged to an empty volume" << Context(step_);
    EXPECT_EQ(1u, st.f_files - st.f_ffree) << "inodes still charged to an empty volume" << Context(step_);
  }

  void Verify() {
    CliResult v = daemon_->Cli({"volume", "verify", "v"});
    EXPECT_EQ(0, v.exit_code) << v.out << v.err << Context(step_);
  }

  // Unmount and mount again: every kernel cache of the mount is gone, so the
  // next comparison reads what the daemon stored.
  void Remount() {
    CliResult u = daemon_->Cli({"umount", mnt_});
    ASSERT_EQ(0, u.exit_code) << u.out << u.err << Context(step_);
    CliResult m = daemon_->Cli({"mount", "v", mnt_});
    ASSERT_EQ(0, m.exit_code) << m.out << m.err << Context(step_);
  }

  TempDir tmp_, ref_tmp_;
  std::unique_ptr<Daemon> daemon_;
  std::string mnt_, ref_;
  Tree tree_, fs_tree_;  // after the last comparison
  struct timespec last_tick_ = {0, 0};
  int step_ = 0;
  std::map<std::string, std::pair<int, int>> op_stats_;  // kind -> (no error, some error)
  double ref_secs_ = 0, fs_secs_ = 0, compare_secs_ = 0, ref_walk_secs_ = 0, fs_walk_secs_ = 0;
  std::deque<std::string> recent_;
};

TEST_F(DifferentialTest, RandomOps) {
  SCOPED_TRACE("ASPFS_SEED=" + std::to_string(Seed()));
  Fuzzer fuzzer(Seed());
  const int total = Steps(2000), chunk = 500;
  auto start = std::chrono::steady_clock::now();
  for (int done = 0; done < total; done += chunk) {
    ASSERT_NO_FATAL_FAILURE(Run(&fuzzer, std::min(chunk, total - done)));
    ASSERT_NO_FATAL_FAILURE(Remount());
    ASSERT_NO_FATAL_FAILURE(Compare(step_, "after a remount (cold caches)", true, /*cold=*/true));
  }
  Verify();
  ASSERT_NO_FATAL_FAILURE(EmptyAndCheckAccounting());
  Verify();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  fprintf(stderr,
          "RandomOps: %d steps in %.1f s (ops: ref %.1f s, aspfs %.1f s; tree compares %.1f s: walking ref %.1f s, "
          "aspfs %.1f s)\n",
          total, secs, ref_secs_, fs_secs_, compare_secs_, ref_walk_secs_, fs_walk_secs_);
  std::string stats;
  for (const auto& [kind, counts] : op_stats_) {
    stats += " " + kind + "=" + std::to_string(counts.first) + "/" + std::to_string(counts.second);
  }
  fprintf(stderr, "steps without/with an error:%s\n", stats.c_str());
}

TEST_F(DifferentialTest, SurvivesDaemonRestart) {
  SCOPED_TRACE("ASPFS_SEED=" + std::to_string(Seed()));
  Fuzzer fuzzer(Seed() ^ 0x9e3779b97f4a7c15ull);
  const int half = Steps(2000) / 4;
  ASSERT_NO_FATAL_FAILURE(Run(&fuzzer, half));
  // A clean stop (SIGTERM) must lose nothing, not even data still in the
  // kernel's writeback cache or the daemon's buffers: no sync before it.
  EXPECT_EQ(0, daemon_->Stop());
  ASSERT_NO_FATAL_FAILURE(daemon_->Start());
  CliResult m = daemon_->Cli({"mount", "v", mnt_});
  ASSERT_EQ(0, m.exit_code) << m.out << m.err;
  ASSERT_NO_FATAL_FAILURE(Compare(step_, "after a daemon restart", true, /*cold=*/true));
  Verify();
  ASSERT_NO_FATAL_FAILURE(Run(&fuzzer, half));
  EXPECT_EQ(0, daemon_->Stop());
  ASSERT_NO_FATAL_FAILURE(daemon_->Start());
  m = daemon_->Cli({"mount", "v", mnt_});
  ASSERT_EQ(0, m.exit_code) << m.out << m.err;
  ASSERT_NO_FATAL_FAILURE(Compare(step_, "after a second daemon restart", true, /*cold=*/true));
  Verify();
  ASSERT_NO_FATAL_FAILURE(EmptyAndCheckAccounting());
}

// readdir over a directory larger than one reply buffer while it changes:
// POSIX leaves it open whether entries added or removed meanwhile show up,
// but every entry present throughout must come exactly once, and seekdir to
// a telldir cookie must resume where it was. Returns "ok" or what broke.
// Container hosts run Docker inside a VE: overlayfs with its layers on the
// VE's volume. overlayfs mounts only on an upper file system with
// RENAME_WHITEOUT, and relies on whiteouts, trusted.overlay.* xattrs,
// RENAME_EXCHANGE and hard links there. The same layers and steps on ext4
// and on a volume must give the same merged view and the same upper layer.
class OverlayMount {
 public:
  // Mounts base/merged from base/lower, base/upper and base/work.
  explicit OverlayMount(const std::string& base) : merged_(base + "/merged") {
    std::string options = "lowerdir=" + base + "/lower,upperdir=" + base + "/upper,workdir=" + base + "/work";
    if (mount("overlay", merged_.c_str(), "overlay", 0, options.c_str()) != 0) error_ = strerror(errno);
  }
  ~OverlayMount() {
    if (error_.empty()) umount2(merged_.c_str(), MNT_DETACH);
  }
  const std::string& error() const { return error_; }

 private:
  std::string merged_, error_;
};

TEST_F(DifferentialTest, OverlayfsOnAVolumeMatchesExt4) {
  std::vector<Step> setup = {
      {"layers", [](const std::string& base) {
         std::string r;
         for (const char* d : {"lower", "lower/d", "lower/gone", "lower/keep", "upper", "work", "merged"}) {
           r += Res(mkdir(Join(base, d).c_str(), 0755)) + " ";
         }
         WriteFile(Join(base, "lower/a"), "lower a\n");
         WriteFile(Join(base, "lower/d/b"), "lower b\n");
         WriteFile(Join(base, "lower/gone/c"), "c\n");
         WriteFile(Join(base, "lower/keep/k"), "k\n");
         WriteFile(Join(base, "lower/m"), "m\n");
         WriteFile(Join(base, "lower/big"), std::string(300000, 'B'));
         for (const char* f : {"lower/suid", "lower/sgid", "lower/suid-moved", "lower/suid-linked"}) {
           WriteFile(Join(base, f), "#!/bin/true\n");
         }
         r += Res(chmod(Join(base, "lower/suid").c_str(), 04755)) + Res(chmod(Join(base, "lower/sgid").c_str(), 02755)) +
              Res(chown(Join(base, "lower/sgid").c_str(), 0, 42)) +
              Res(chmod(Join(base, "lower/suid-moved").c_str(), 04711)) +
              Res(chmod(Join(base, "lower/suid-linked").c_str(), 06755));
         r += Res(symlink("a", Join(base, "lower/l").c_str()));
         return r;
       }}};
  auto in_merged = [](const std::string& base, const std::string& rel) { return Join(base, "merged/" + rel); };
  std::vector<Step> steps = {
      {"append to a lower file (copy-up)", [=](const std::string& base) {
         int fd = open(in_merged(base, "a").c_str(), O_WRONLY | O_APPEND);
         std::string r = Res(fd < 0 ? -1 : write(fd, "more\n", 5));
         if (fd >= 0) close(fd);
         return r;
       }},
      {"unlink a lower file (whiteout)", [=](const std::string& base) {
         return Res(unlink(in_merged(base, "d/b").c_str()));
       }},
      {"rename a lower file (copy-up, RENAME_WHITEOUT)", [=](const std::string& base) {
         return Res(rename(in_merged(base, "m").c_str(), in_merged(base, "m2").c_str()));
       }},
      {"rename a lower directory (EXDEV without redirect_dir)", [=](const std::string& base) {
         return Res(rename(in_merged(base, "keep").c_str(), in_merged(base, "kept").c_str()));
       }},
      {"remove a lower directory", [=](const std::string& base) {
         return Res(unlink(in_merged(base, "gone/c").c_str())) + " " + Res(rmdir(in_merged(base, "gone").c_str()));
       }},
      {"mkdir over the whiteout (opaque directory)", [=](const std::string& base) {
         return Res(mkdir(in_merged(base, "gone").c_str(), 0700));
       }},
      {"new file renamed over a copied-up one", [=](const std::string& base) {
         WriteFile(in_merged(base, "new"), "new\n");
         return Res(rename(in_merged(base, "new").c_str(), in_merged(base, "a").c_str()));
       }},
      {"chmod and truncate of a large lower file", [=](const std::string& base) {
         return Res(chmod(in_merged(base, "big").c_str(), 0600)) + " " +
                Res(truncate(in_merged(base, "big").c_str(), 70000));
       }},
      {"hard link of a lower file", [=](const std::string& base) {
         return Res(link(in_merged(base, "keep/k").c_str(), in_merged(base, "k2").c_str()));
       }},
      {"symlink replaced by a directory", [=](const std::string& base) {
         return Res(unlink(in_merged(base, "l").c_str())) + " " + Res(mkdir(in_merged(base, "l").c_str(), 0755));
       }},
      {"copy-up of setuid and setgid files (append, touch, rename, link)", [=](const std::string& base) {
         int fd = open(in_merged(base, "suid").c_str(), O_WRONLY | O_APPEND);
         std::string r = Res(fd < 0 ? -1 : write(fd, "\n", 1));
         if (fd >= 0) close(fd);
         return r + " " + Res(utimensat(AT_FDCWD, in_merged(base, "sgid").c_str(), nullptr, 0)) + " " +
                Res(rename(in_merged(base, "suid-moved").c_str(), in_merged(base, "suid-moved2").c_str())) + " " +
                Res(link(in_merged(base, "suid-linked").c_str(), in_merged(base, "suid-link2").c_str()));
       }},
      {"whiteout then a new file of the same name", [=](const std::string& base) {
         WriteFile(in_merged(base, "d/b"), "again\n");
         return ReadFile(in_merged(base, "d/b"));
       }},
  };
  for (const Step& s : setup) ASSERT_EQ(s.run(ref_), s.run(mnt_)) << s.what;
  auto compare = [&](const std::string& when) {
    for (const char* layer : {"merged", "upper"}) {
      std::string diff = DiffTrees(Snapshot(Join(ref_, layer)), Snapshot(Join(mnt_, layer)));
      EXPECT_TRUE(diff.empty()) << layer << " differs " << when << ":\n" << diff;
    }
  };
  {
    auto ref_overlay = std::make_unique<OverlayMount>(ref_);
    if (!ref_overlay->error().empty()) GTEST_SKIP() << "overlayfs cannot mount here: " << ref_overlay->error();
    OverlayMount overlay(mnt_);
    ASSERT_EQ("", overlay.error()) << "overlayfs refused the volume as its upper layer (dmesg tells why)";
    for (const Step& s : steps) {
      std::string want = s.run(ref_), got = s.run(mnt_);
      ASSERT_EQ(want, got) << s.what;
      ASSERT_NO_FATAL_FAILURE(compare("after: " + s.what));
    }
  }
  // What overlayfs left on the volume is there after a remount, and a new
  // overlay mount, whose caches are cold, reads it as the first did, again
  // and again (copied-up files find their lower origin by file handle).
  ASSERT_NO_FATAL_FAILURE(Remount());
  OverlayMount ref_overlay(ref_), overlay(mnt_);
  ASSERT_EQ("", overlay.error());
  compare("after the volume's remount");
  compare("at the second look after the volume's remount");
  Verify();
}

std::string CheckLargeReaddir(const std::string& dir) {
  if (mkdir(dir.c_str(), 0755) != 0) return "mkdir" + ErrName(errno);
  std::set<std::string> stable, volatile_names;
  for (int i = 0; i < 1200; ++i) {
    // Names of varying length, so entries straddle the reply buffers.
    std::string name = "e" + std::to_string(i) + std::string(i % 37, 'x');
    int fd = open((dir + "/" + name).c_str(), O_CREAT | O_WRONLY, 0644);
    if (fd < 0) return "create " + name + ErrName(errno);
    close(fd);
    (i % 3 == 0 ? volatile_names : stable).insert(name);
  }
  std::ostringstream problems;
  DIR* d = opendir(dir.c_str());
  if (!d) return "opendir" + ErrName(errno);
  std::map<std::string, int> seen;
  int n = 0;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    ++seen[name];
    ++n;
    if (n == 400) {
      // Mid-way: remove the volatile names, add new ones, rename some.
      for (const std::string& v : volatile_names) {
        if (unlink((dir + "/" + v).c_str()) != 0) problems << "unlink " << v << ErrName(errno) << "; ";
      }
      for (int i = 0; i < 300; ++i) {
        int fd = open((dir + "/new" + std::to_string(i)).c_str(), O_CREAT | O_WRONLY, 0644);
        if (fd >= 0) close(fd);
      }
    }
  }
  for (const std::string& name : stable) {
    if (seen[name] != 1) problems << name << " seen " << seen[name] << " times; ";
  }
  for (const auto& [name, count] : seen) {
    if (count > 1 && !stable.count(name)) problems << name << " seen " << count << " times; ";
  }
  closedir(d);
  // On a directory that no longer changes, seekdir to a telldir cookie
  // resumes at the same entry.
  d = opendir(dir.c_str());
  if (!d) return "opendir" + ErrName(errno);
  for (int i = 0; i < 700 && readdir(d); ++i) {
  }
  long cookie = telldir(d);
  std::vector<std::string> first, again;
  for (int i = 0; i < 20; ++i) {
    dirent* e = readdir(d);
    if (e) first.push_back(e->d_name);
  }
  seekdir(d, cookie);
  for (int i = 0; i < 20; ++i) {
    dirent* e = readdir(d);
    if (e) again.push_back(e->d_name);
  }
  if (first.size() != 20 || again != first) problems << "seekdir(telldir) does not resume at the same entry; ";
  closedir(d);
  // A fresh listing is exactly what is there now.
  std::set<std::string> expect = stable;
  for (int i = 0; i < 300; ++i) expect.insert("new" + std::to_string(i));
  std::set<std::string> listed;
  d = opendir(dir.c_str());
  while (dirent* e = d ? readdir(d) : nullptr) {
    std::string name = e->d_name;
    if (name != "." && name != ".." && !listed.insert(name).second) problems << "duplicate " << name << "; ";
  }
  if (d) closedir(d);
  if (listed != expect) problems << "listing has " << listed.size() << " names, want " << expect.size() << "; ";
  std::string out = problems.str();
  return out.empty() ? "ok" : out.substr(0, 2000);
}

TEST_F(DifferentialTest, LargeDirectoryReaddir) {
  EXPECT_EQ("ok", CheckLargeReaddir(ref_ + "/big")) << "the reference itself";
  EXPECT_EQ("ok", CheckLargeReaddir(mnt_ + "/big"));
  ASSERT_NO_FATAL_FAILURE(Remount());
  Tree ref = Snapshot(ref_), fs = Snapshot(mnt_);
  EXPECT_EQ("", DiffTrees(ref, fs));
}

// Found by probing: a clean stop (SIGTERM, "stopped cleanly") must not lose
// what a process wrote to a file it still holds open (in the kernel's
// writeback cache, neither flushed nor fsynced): the daemon can flush the
// mount (syncfs) before it lets go of it.
TEST_F(DifferentialTest, CleanStopKeepsDataOfOpenFiles) {
  const std::string path = mnt_ + "/still-open";
  int fd = open(path.c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(6, write(fd, "hello\n", 6));
  EXPECT_EQ(0, daemon_->Stop());
  close(fd);  // fails: the mount is gone
  ASSERT_NO_FATAL_FAILURE(daemon_->Start());
  CliResult m = daemon_->Cli({"mount", "v", mnt_});
  ASSERT_EQ(0, m.exit_code) << m.err;
  EXPECT_EQ("hello\n", ReadFile(path));
}

// Found by the fuzzer: open(O_TRUNC) by a process without CAP_FSETID clears
// the set-user-ID bit (and set-group-ID when group-executable), as
// ftruncate(2) and write(2) do; otherwise anyone allowed to write to a
// setuid file can empty it and keep the bit.
TEST_F(DifferentialTest, OpenTruncClearsSetuid) {
  auto run = [](const std::string& base) {
    std::string path = base + "/setuid";
    WriteFile(path, "#!/bin/sh\n");
    chmod(path.c_str(), 06777);
    setfsgid(1000);
    setfsuid(1000);
    int fd = open(path.c_str(), O_WRONLY | O_TRUNC);
    std::string r = fd < 0 ? "open" + ErrName(errno) : "ok";
    if (fd >= 0) close(fd);
    setfsuid(0);
    setfsgid(0);
    struct stat st;
    if (stat(path.c_str(), &st) == 0) {
      std::ostringstream mode;
      mode << std::oct << (st.st_mode & 07777);
      r += " mode=0" + mode.str() + " size=" + std::to_string(st.st_size);
    }
    return r;
  };
  std::string want = run(ref_);
  EXPECT_EQ(want, run(mnt_)) << "(the first is ext4's)";
}

// Found by a pjdfstest-style probe: ext4 marks mtime and ctime on every
// truncate that does not shrink the file, to the same size too, by path as
// through a descriptor; the kernel asks FUSE for the mtime only for the latter.
TEST_F(DifferentialTest, TruncateToTheSameSizeMarksTimesAsExt4) {
  auto run = [](const std::string& base) {
    std::string path = base + "/same-size";
    WriteFile(path, "hello");
    struct timespec old_times[2] = {{1000, 0}, {1000, 0}};
    utimensat(AT_FDCWD, path.c_str(), old_times, 0);
    std::string r;
    for (const char* how : {"truncate", "ftruncate"}) {
      struct stat before, after;
      stat(path.c_str(), &before);
      int fd = open(path.c_str(), O_WRONLY);
      int rc = std::string(how) == "truncate" ? truncate(path.c_str(), 5) : ftruncate(fd, 5);
      close(fd);
      stat(path.c_str(), &after);
      r += std::string(how) + (rc == 0 ? " ok" : ErrName(errno)) +
           " mtime " + (after.st_mtim.tv_sec != before.st_mtim.tv_sec ? "moved" : "kept") + "; ";
      utimensat(AT_FDCWD, path.c_str(), old_times, 0);
    }
    return r;
  };
  std::string want = run(ref_);
  EXPECT_EQ(want, run(mnt_)) << "(the first is ext4's)";
}

// With FUSE_HANDLE_KILLPRIV_V2 the file system, not the kernel, clears
// set-user-ID and set-group-ID on write, truncate, open(O_TRUNC) and chown;
// on fallocate nobody would without us.
// Each case on both sides; the mode is read with a mode-only statx, which
// the kernel answers from its attribute cache (a write leaves the mode bits
// of that cache alone), so a change the kernel was not told of shows.
TEST_F(DifferentialTest, SetuidSetgidClearingMatchesExt4) {
  auto mode_of = [](const std::string& path) {
    struct statx stx;
    if (statx(AT_FDCWD, path.c_str(), 0, STATX_MODE, &stx) != 0) return std::string("statx") + ErrName(errno);
    std::ostringstream out;
    out << std::oct << (stx.stx_mode & 07777);
    return out.str();
  };
  auto as_1000 = [](const std::function<void()>& step) {
    setfsgid(1000);
    setfsuid(1000);
    step();
    setfsuid(0);
    setfsgid(0);
  };
  auto run = [&](const std::string& base) {
    std::string path = base + "/sid", r;
    WriteFile(path, "data\n");
    auto step = [&](const std::string& name, uint32_t mode, uid_t owner, bool user, const std::function<void()>& f) {
      chown(path.c_str(), owner, 0);
      chmod(path.c_str(), mode);
      mode_of(path);  // cached by the kernel before the step
      if (user) {
        as_1000(f);
      } else {
        f();
      }
      r += name + "=" + mode_of(path) + " ";
    };
    auto append = [&] {
      int fd = open(path.c_str(), O_WRONLY | O_APPEND);
      if (fd >= 0) {
        if (write(fd, "x", 1) != 1) r += "(write failed) ";
        close(fd);
      }
    };
    auto trunc = [&] {
      if (truncate(path.c_str(), 1) != 0) r += "(truncate" + ErrName(errno) + ") ";
    };
    auto open_trunc = [&] {
      int fd = open(path.c_str(), O_WRONLY | O_TRUNC);
      if (fd >= 0) close(fd);
    };
    step("write-1000", 06777, 1000, true, append);
    step("write-root", 06777, 1000, false, append);
    step("write-1000-sgid-noexec", 02767, 1000, true, append);
    step("truncate-1000", 06777, 1000, true, trunc);
    step("truncate-root", 06777, 1000, false, trunc);
    step("otrunc-1000", 06777, 1000, true, open_trunc);
    auto allocate = [&] {
      int fd = open(path.c_str(), O_WRONLY);
      if (fd >= 0) {
        if (fallocate(fd, 0, 0, 8192) != 0) r += "(fallocate" + ErrName(errno) + ") ";
        close(fd);
      }
    };
    step("fallocate-1000", 06777, 1000, true, allocate);
    step("fallocate-root", 06777, 1000, false, allocate);
    step("chown-root", 06755, 1000, false, [&] { chown(path.c_str(), 0, 0); });
    step("chown-root-sgid-noexec", 02745, 1000, false, [&] { chown(path.c_str(), 0, 0); });
    step("chown-self-1000", 06755, 1000, true, [&] { chown(path.c_str(), 1000, -1); });
    // chown(-1, -1) changes no id, yet clears the bits as any chown does.
    step("chown-nothing-root", 06711, 1000, false, [&] { chown(path.c_str(), -1, -1); });
    step("chown-nothing-1000", 06711, 1000, true, [&] { chown(path.c_str(), -1, -1); });
    // chown's rules hold for every non-directory (found by the random ops,
    // ASPFS_SEED=860106274 with ASPFS_STEPS=20000, step 10171: a FIFO).
    path = base + "/sidfifo";
    if (mkfifo(path.c_str(), 0644) != 0) r += "(mkfifo" + ErrName(errno) + ") ";
    step("fifo-chown-root", 06755, 1000, false, [&] { chown(path.c_str(), 0, 0); });
    step("fifo-chown-nothing-root", 06711, 1000, false, [&] { chown(path.c_str(), -1, -1); });
    step("fifo-chown-nothing-1000", 06711, 1000, true, [&] { chown(path.c_str(), -1, -1); });
    return r;
  };
  std::string want = run(ref_);
  EXPECT_EQ(want, run(mnt_)) << "(the first is ext4's)";
}

// A POSIX ACL as the kernel's system.posix_acl_* xattrs carry it.
std::string AclXattr(const std::vector<std::tuple<uint16_t, uint16_t, uint32_t>>& entries) {
  std::string out;
  auto put = [&](uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
  };
  put(2, 4);  // POSIX_ACL_XATTR_VERSION
  for (const auto& [tag, perm, id] : entries) {
    put(tag, 2);
    put(perm, 2);
    put(id, 4);
  }
  return out;
}

// Found by probing: setfacl on the mount succeeded and getfacl showed the
// ACL, but the kernel never enforced it nor inherited default ACLs. The same
// steps on both sides must give the same results.
TEST_F(DifferentialTest, PosixAclsAreEnforced) {
  constexpr uint16_t kUserObj = 0x01, kUser = 0x02, kGroupObj = 0x04, kMask = 0x10, kOther = 0x20;
  constexpr uint32_t kNoId = 0xffffffff;
  // u::rw- u:1000:--- g::r-- m::r-- o::r--  (mode 0644, but not for 1000)
  const std::string deny = AclXattr(
      {{kUserObj, 6, kNoId}, {kUser, 0, 1000}, {kGroupObj, 4, kNoId}, {kMask, 4, kNoId}, {kOther, 4, kNoId}});
  // u::rwx u:1000:rwx g::r-x m::rwx o::r-x, as a default ACL.
  const std::string inherit = AclXattr(
      {{kUserObj, 7, kNoId}, {kUser, 7, 1000}, {kGroupObj, 5, kNoId}, {kMask, 7, kNoId}, {kOther, 5, kNoId}});
  auto run = [&](const std::string& base) {
    std::string r;
    WriteFile(base + "/acl-file", "public\n");
    chmod((base + "/acl-file").c_str(), 0644);
    r += "set=" + Res(setxattr((base + "/acl-file").c_str(), "system.posix_acl_access", deny.data(), deny.size(), 0));
    setfsgid(1000);
    setfsuid(1000);
    int fd = open((base + "/acl-file").c_str(), O_RDONLY);
    r += " open-as-1000=" + std::string(fd < 0 ? ErrName(errno) : "ok");
    if (fd >= 0) close(fd);
    setfsuid(0);
    setfsgid(0);
    mkdir((base + "/acl-dir").c_str(), 0755);
    r += " set-default=" + Res(setxattr((base + "/acl-dir").c_str(), "system.posix_acl_default", inherit.data(),
                                        inherit.size(), 0));
    WriteFile(base + "/acl-dir/new", "x");
    r += " inherited=" + Res(getxattr((base + "/acl-dir/new").c_str(), "system.posix_acl_access", nullptr, 0));
    return r;
  };
  std::string want = run(ref_);
  EXPECT_EQ(want, run(mnt_)) << "(the first is ext4's)";
}

// An ACL xattr's entries as "tag:perm[:id]", or the errno of getxattr.
std::string AclText(const std::string& path, const char* name) {
  char buf[1024];
  ssize_t n = lgetxattr(path.c_str(), name, buf, sizeof buf);
  if (n < 0) return ErrName(errno);
  std::string out;
  for (ssize_t at = 4; at + 8 <= n; at += 8) {
    auto u = [&](int off, int width) {
      uint32_t v = 0;
      for (int i = 0; i < width; ++i) v |= uint32_t{static_cast<uint8_t>(buf[at + off + i])} << (8 * i);
      return v;
    };
    out += (out.empty() ? "" : ",") + std::to_string(u(0, 2)) + ":" + std::to_string(u(2, 2));
    if (u(0, 2) == 0x02 || u(0, 2) == 0x08) out += ":" + std::to_string(u(4, 4));
  }
  return out;
}

// Mode bits and both ACLs of path, as getfacl sees them.
std::string AclState(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return ErrName(errno);
  std::ostringstream mode;
  mode << std::oct << (st.st_mode & 07777);
  return "mode=0" + mode.str() + " access=" + AclText(path, "system.posix_acl_access") +
         " default=" + AclText(path, "system.posix_acl_default");
}

// What the file system must do itself once the kernel enforces ACLs (it
// then applies no umask): the umask when the parent has no default ACL, a
// default ACL inherited and masked by the requested mode otherwise, the ACL
// kept in step with chmod, and the mode with setfacl.
TEST_F(DifferentialTest, PosixAclCreateChmodAndSetfaclMatchExt4) {
  constexpr uint16_t kUserObj = 0x01, kUser = 0x02, kGroupObj = 0x04, kMask = 0x10, kOther = 0x20;
  constexpr uint32_t kNoId = 0xffffffff;
  // u::rwx u:1000:rwx g::r-x m::rwx o::r-x
  const std::string inherit = AclXattr(
      {{kUserObj, 7, kNoId}, {kUser, 7, 1000}, {kGroupObj, 5, kNoId}, {kMask, 7, kNoId}, {kOther, 5, kNoId}});
  // u::rwx g::--- m::r-x o::---: masks what a new inode may get.
  const std::string narrow =
      AclXattr({{kUserObj, 7, kNoId}, {kGroupObj, 0, kNoId}, {kMask, 5, kNoId}, {kOther, 0, kNoId}});
  // u::rw- g::r-- o::---: says no more than mode 0640.
  const std::string minimal = AclXattr({{kUserObj, 6, kNoId}, {kGroupObj, 4, kNoId}, {kOther, 0, kNoId}});
  auto create_all = [](const std::string& dir) {
    std::string r;
    int fd = open((dir + "/file").c_str(), O_CREAT | O_WRONLY, 0666);
    if (fd >= 0) close(fd);
    mkdir((dir + "/sub").c_str(), 0777);
    mkfifo((dir + "/fifo").c_str(), 0666);
    symlink("file", (dir + "/link").c_str());
    for (const char* name : {"file", "sub", "fifo", "link"}) {
      r += std::string(" ") + name + ": " + AclState(dir + "/" + name) + ";";
    }
    return r;
  };
  auto run = [&](const std::string& base) {
    std::string r;
    // The call's result, then the state it left (two statements: operands
    // of + have no evaluation order).
    auto after = [&](const std::string& label, long result, const std::string& path) {
      r += label + "=" + Res(result);
      r += " " + AclState(path);
    };
    for (mode_t mask : {022, 077}) {
      std::string dir = base + "/umask-" + std::to_string(mask);
      mkdir(dir.c_str(), 0777);
      umask(mask);
      r += "\n  umask " + std::to_string(mask) + ":" + create_all(dir);
      umask(0);
    }
    for (const auto& [name, acl] : {std::pair<std::string, std::string>{"inherit", inherit}, {"narrow", narrow}}) {
      std::string dir = base + "/" + name;
      mkdir(dir.c_str(), 0777);
      r += "\n  " + name + ": set-default=" +
           Res(setxattr(dir.c_str(), "system.posix_acl_default", acl.data(), acl.size(), 0));
      umask(077);  // ignored: the default ACL decides
      r += create_all(dir);
      umask(0);
      std::string nested = dir + "/sub/nested";
      r += " sub/nested: " + (mkdir(nested.c_str(), 0777) == 0 ? AclState(nested) : ErrName(errno));
    }
    // chmod rewrites the access ACL: the mask takes the group bits, and
    // user 1000's rwx entry no longer grants write.
    std::string file = base + "/inherit/file";
    after("\n  chmod", chmod(file.c_str(), 0640), file);
    setfsgid(1000);
    setfsuid(1000);
    int fd = open(file.c_str(), O_WRONLY);
    r += " write-as-1000=" + std::string(fd < 0 ? ErrName(errno) : "ok");
    if (fd >= 0) close(fd);
    fd = open(file.c_str(), O_RDONLY);
    r += " read-as-1000=" + std::string(fd < 0 ? ErrName(errno) : "ok");
    if (fd >= 0) close(fd);
    setfsuid(0);
    setfsgid(0);
    // setfacl sets the mode; an ACL the mode says in full is not kept.
    after("\n  setfacl", setxattr(file.c_str(), "system.posix_acl_access", inherit.data(), inherit.size(), 0), file);
    after(" minimal", setxattr(file.c_str(), "system.posix_acl_access", minimal.data(), minimal.size(), 0), file);
    std::string plain = base + "/umask-18/file";
    after(" minimal-on-plain", setxattr(plain.c_str(), "system.posix_acl_access", minimal.data(), minimal.size(), 0),
          plain);
    // setfacl by the owner keeps set-group-ID only for a member of the
    // file's group: gid 1000 (fsgid), 3000 (a supplementary group), 2000
    // (neither).
    const gid_t supplementary = 3000;
    if (setgroups(1, &supplementary) != 0) r += " setgroups" + ErrName(errno);
    for (gid_t gid : {1000, 3000, 2000}) {
      std::string sgid = base + "/sgid-" + std::to_string(gid);
      WriteFile(sgid, "x");
      chown(sgid.c_str(), 1000, gid);
      chmod(sgid.c_str(), 02775);
      setfsgid(1000);
      setfsuid(1000);
      after(" sgid-" + std::to_string(gid), setxattr(sgid.c_str(), "system.posix_acl_access", inherit.data(),
                                                      inherit.size(), 0), sgid);
      setfsuid(0);
      setfsgid(0);
    }
    setgroups(0, nullptr);
    // Malformed ACL bytes are refused, not stored.
    std::string bad = inherit.substr(0, inherit.size() - 3);
    after("\n  malformed", setxattr(file.c_str(), "system.posix_acl_access", bad.data(), bad.size(), 0), file);
    return r;
  };
  std::string want = run(ref_);
  EXPECT_EQ(want, run(mnt_)) << "(the first is ext4's)";
  // The expectation itself proves the cases are exercised.
  const std::string inherited = "1:7,2:7:1000,4:5,16:7,32:5";
  EXPECT_NE(std::string::npos, want.find("sub: mode=0775 access=" + inherited + " default=" + inherited)) << want;
}

// Found by probing: xattr names outside the kernel's namespaces, or with an
// empty name after "user.", are refused by ext4 (EOPNOTSUPP, EINVAL).
TEST_F(DifferentialTest, XattrNamespacesChecked) {
  for (const char* name : {"bogus.x", "user.", "user.ok"}) {
    std::string want = Res(setxattr((ref_).c_str(), name, "1", 1, 0));
    EXPECT_EQ(want, Res(setxattr((mnt_).c_str(), name, "1", 1, 0))) << name;
  }
}

// Found by the fuzzer: lseek(SEEK_DATA/SEEK_HOLE) must see data that is
// still in the kernel's writeback cache (written, not yet flushed), as ext4
// does; tools like cp and tar use them to skip holes.
TEST_F(DifferentialTest, SeekDataSeesUnflushedWrites) {
  for (const std::string& base : {ref_, mnt_}) {
    SCOPED_TRACE(base == ref_ ? "reference" : "aspfs");
    int fd = open((base + "/sparse").c_str(), O_CREAT | O_RDWR, 0644);
    ASSERT_GE(fd, 0);
    std::string data(10000, 'x');
    ASSERT_EQ(10000, pwrite(fd, data.data(), data.size(), 200000));
    EXPECT_EQ(200000, lseek(fd, 200000, SEEK_DATA)) << strerror(errno);
    EXPECT_EQ("ok", CheckHoles(fd, /*flush_first=*/false));
    close(fd);
    fd = open((base + "/small").c_str(), O_CREAT | O_RDWR, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(5, write(fd, "hello", 5));
    EXPECT_EQ(0, lseek(fd, 0, SEEK_DATA)) << strerror(errno);
    EXPECT_EQ(5, lseek(fd, 0, SEEK_HOLE)) << strerror(errno);
    EXPECT_EQ("ok", CheckHoles(fd, /*flush_first=*/false));
    close(fd);
  }
}

// Found by the fuzzer: the mtime/ctime that stat shows for a file must be
// what the file system stored: nothing may change them across a remount
// (or a daemon restart). With the kernel's writeback cache, a write in the
// same clock tick as a size change, or a punch hole / zero range /
// copy_file_range right after a write, leaves the kernel showing one time and
// the daemon storing another.
TEST_F(DifferentialTest, MtimeStableAcrossRemount) {
  struct Case {
    const char* name;
    std::function<void(int fd, const std::string& path)> op;
  };
  const std::vector<Case> cases = {
      {"truncate-then-write",
       [](int fd, const std::string& path) {
         EXPECT_EQ(0, truncate(path.c_str(), 90302));
         EXPECT_EQ(17, pwrite(fd, "yyyyyyyyyyyyyyyyy", 17, 4046));
       }},
      {"write-then-punch",
       [](int fd, const std::string&) {
         EXPECT_EQ(1, pwrite(fd, "y", 1, 1000));
         EXPECT_EQ(0, fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 65299, 29696));
       }},
      {"write-then-zero-range",
       [](int fd, const std::string&) {
         EXPECT_EQ(1, pwrite(fd, "y", 1, 1000));
         EXPECT_EQ(0, fallocate(fd, FALLOC_FL_ZERO_RANGE, 65299, 29696));
       }},
      {"ftruncate-then-copy_file_range",
       [](int fd, const std::string& path) {
         EXPECT_EQ(0, ftruncate(fd, 234411));
         int in = open(path.c_str(), O_RDONLY);
         loff_t from = 0, to = 150000;
         EXPECT_EQ(100, copy_file_range(in, &from, fd, &to, 100, 0));
         close(in);
       }},
  };
  struct Seen {
    std::string path, name;
    int64_t mtime, ctime;
  };
  std::vector<Seen> seen;
  for (int rep = 0; rep < 8; ++rep) {
    for (const Case& c : cases) {
      std::string path = mnt_ + "/" + c.name + "-" + std::to_string(rep);
      WriteFile(path, std::string(200000, 'x'));
      usleep(20000);
      int fd = open(path.c_str(), O_RDWR);
      ASSERT_GE(fd, 0);
      c.op(fd, path);
      close(fd);
      struct stat st;
      ASSERT_EQ(0, stat(path.c_str(), &st));
      seen.push_back({path, c.name, st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec,
                      st.st_ctim.tv_sec * 1000000000ll + st.st_ctim.tv_nsec});
    }
  }
  ASSERT_NO_FATAL_FAILURE(Remount());
  std::map<std::string, int> changed;
  std::string example;
  for (const Seen& s : seen) {
    struct stat st;
    ASSERT_EQ(0, stat(s.path.c_str(), &st));
    int64_t m = st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec;
    int64_t c = st.st_ctim.tv_sec * 1000000000ll + st.st_ctim.tv_nsec;
    if (m != s.mtime || c != s.ctime) {
      ++changed[s.name];
      if (example.empty()) {
        example = s.path + ": mtime " + std::to_string(s.mtime) + " -> " + std::to_string(m) + ", ctime " +
                  std::to_string(s.ctime) + " -> " + std::to_string(c);
      }
    }
  }
  std::string summary;
  for (const auto& [name, n] : changed) summary += " " + name + ": " + std::to_string(n) + "/8";
  EXPECT_TRUE(changed.empty()) << "times changed by a remount:" << summary << "\ne.g. " << example;
}

}  // namespace
}  // namespace aspfs::testing
