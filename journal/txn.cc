#include "journal/txn.h"

#include <cstdio>
#include <sstream>

namespace aspfs {
namespace {

std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

struct Describer {
  std::ostringstream& out;
  void operator()(const op::InitVolume& o) {
    out << "mode=" << std::oct << o.mode << std::dec << " uid=" << o.uid << " gid=" << o.gid
        << " quota_bytes=" << o.quota_bytes << " quota_inodes=" << o.quota_inodes;
  }
  void operator()(const op::SetQuota& o) { out << "bytes=" << o.bytes << " inodes=" << o.inodes; }
  void operator()(const op::Mknod& o) {
    out << "parent=" << o.parent << " name=" << Quote(o.name) << " ino=" << o.ino << " mode=" << std::oct << o.mode
        << std::dec << " uid=" << o.uid << " gid=" << o.gid;
    if (o.rdev) out << " rdev=" << o.rdev;
    if (!o.symlink_target.empty()) out << " target=" << Quote(o.symlink_target);
  }
  void operator()(const op::Link& o) {
    out << "ino=" << o.ino << " new_parent=" << o.new_parent << " new_name=" << Quote(o.new_name);
  }
  void operator()(const op::Unlink& o) {
    out << "parent=" << o.parent << " name=" << Quote(o.name) << (o.directory ? " dir" : "");
  }
  void operator()(const op::Rename& o) {
    out << "parent=" << o.parent << " name=" << Quote(o.name) << " new_parent=" << o.new_parent
        << " new_name=" << Quote(o.new_name);
    if (o.flags & op::kRenameNoReplace) out << " noreplace";
    if (o.flags & op::kRenameExchange) out << " exchange";
  }
  void operator()(const op::SetAttr& o) {
    out << "ino=" << o.ino;
    if (o.mask & op::kSetMode) out << " mode=" << std::oct << o.mode << std::dec;
    if (o.mask & op::kSetUid) out << " uid=" << o.uid;
    if (o.mask & op::kSetGid) out << " gid=" << o.gid;
    if (o.mask & op::kSetSize) out << " size=" << o.size;
    if (o.mask & op::kSetAtime) out << " atime=" << o.atime_ns;
    if (o.mask & op::kSetMtime) out << " mtime=" << o.mtime_ns;
    if (o.mask & op::kSetCtime) out << " ctime=" << o.ctime_ns;
  }
  void operator()(const op::WriteInline& o) {
    out << "ino=" << o.ino << " offset=" << o.offset << " length=" << o.data.size();
  }
  void operator()(const op::SetBlocks& o) {
    out << "ino=" << o.ino << " size=" << o.size << " blocks=[";
    for (size_t i = 0; i < o.blocks.size(); ++i) {
      if (i) out << " ";
      out << o.blocks[i].index << ":";
      if (!o.blocks[i].pages.empty()) {
        out << "pages";
        for (const PagePatch& p : o.blocks[i].pages) out << (&p == &o.blocks[i].pages[0] ? "(" : ",") << p.page;
        out << ")";
      } else if (o.blocks[i].chunk.IsZero()) {
        out << "hole";
      } else {
        out << o.blocks[i].chunk.ToHex().substr(0, 12) << "/" << o.blocks[i].length;
      }
    }
    out << "]";
  }
  void operator()(const op::SetXattr& o) {
    out << "ino=" << o.ino << " name=" << Quote(o.name) << " length=" << o.value.size();
  }
  void operator()(const op::RemoveXattr& o) { out << "ino=" << o.ino << " name=" << Quote(o.name); }
  void operator()(const op::Purge& o) { out << "ino=" << o.ino; }
};

}  // namespace

const char* OpName(const Op& op) {
  static const char* const kNames[] = {"init_volume", "set_quota", "mknod",      "link",      "unlink",       "rename",
                                       "set_attr",    "write_inline", "set_blocks", "set_xattr", "remove_xattr", "purge"};
  return kNames[op.index()];
}

std::string DescribeOp(const Op& op) {
  std::ostringstream out;
  out << OpName(op) << " ";
  std::visit(Describer{out}, op);
  return out.str();
}

}  // namespace aspfs
