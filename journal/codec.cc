#include "journal/codec.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstring>

#include "journal/txn.capnp.h"

namespace aspfs {
namespace {

capnp::Data::Reader AsData(const std::string& s) {
  return capnp::Data::Reader(reinterpret_cast<const kj::byte*>(s.data()), s.size());
}

std::string FromData(capnp::Data::Reader d) { return std::string(reinterpret_cast<const char*>(d.begin()), d.size()); }

struct OpWriter {
  wire::Op::Builder b;
  void operator()(const op::InitVolume& o) {
    auto g = b.initInitVolume();
    g.setMode(o.mode);
    g.setUid(o.uid);
    g.setGid(o.gid);
    g.setQuotaBytes(o.quota_bytes);
    g.setQuotaInodes(o.quota_inodes);
  }
  void operator()(const op::SetQuota& o) {
    auto g = b.initSetQuota();
    g.setBytes(o.bytes);
    g.setInodes(o.inodes);
  }
  void operator()(const op::Mknod& o) {
    auto g = b.initMknod();
    g.setParent(o.parent);
    g.setName(AsData(o.name));
    g.setIno(o.ino);
    g.setMode(o.mode);
    g.setUid(o.uid);
    g.setGid(o.gid);
    g.setRdev(o.rdev);
    g.setSymlinkTarget(AsData(o.symlink_target));
  }
  void operator()(const op::Link& o) {
    auto g = b.initLink();
    g.setIno(o.ino);
    g.setNewParent(o.new_parent);
    g.setNewName(AsData(o.new_name));
  }
  void operator()(const op::Unlink& o) {
    auto g = b.initUnlink();
    g.setParent(o.parent);
    g.setName(AsData(o.name));
    g.setDirectory(o.directory);
  }
  void operator()(const op::Rename& o) {
    auto g = b.initRename();
    g.setParent(o.parent);
    g.setName(AsData(o.name));
    g.setNewParent(o.new_parent);
    g.setNewName(AsData(o.new_name));
    g.setFlags(o.flags);
  }
  void operator()(const op::SetAttr& o) {
    auto g = b.initSetAttr();
    g.setIno(o.ino);
    g.setMask(o.mask);
    g.setMode(o.mode);
    g.setUid(o.uid);
    g.setGid(o.gid);
    g.setSize(o.size);
    g.setAtimeNs(o.atime_ns);
    g.setMtimeNs(o.mtime_ns);
    g.setCtimeNs(o.ctime_ns);
  }
  void operator()(const op::WriteInline& o) {
    auto g = b.initWriteInline();
    g.setIno(o.ino);
    g.setOffset(o.offset);
    g.setData(AsData(o.data));
  }
  void operator()(const op::SetBlocks& o) {
    auto g = b.initSetBlocks();
    g.setIno(o.ino);
    g.setSize(o.size);
    g.setTouchMtime(o.touch_mtime);
    auto list = g.initBlocks(o.blocks.size());
    for (size_t i = 0; i < o.blocks.size(); ++i) {
      list[i].setIndex(o.blocks[i].index);
      list[i].setChunkHi(o.blocks[i].chunk.hi);
      list[i].setChunkLo(o.blocks[i].chunk.lo);
      list[i].setLength(o.blocks[i].length);
      const auto& pages = o.blocks[i].pages;
      if (pages.empty()) continue;
      auto out = list[i].initPages(pages.size());
      for (size_t j = 0; j < pages.size(); ++j) {
        out[j].setPage(pages[j].page);
        out[j].setLength(pages[j].length);
        out[j].setChunkHi(pages[j].chunk.hi);
        out[j].setChunkLo(pages[j].chunk.lo);
      }
    }
  }
  void operator()(const op::SetXattr& o) {
    auto g = b.initSetXattr();
    g.setIno(o.ino);
    g.setName(AsData(o.name));
    g.setValue(AsData(o.value));
    g.setFlags(o.flags);
  }
  void operator()(const op::RemoveXattr& o) {
    auto g = b.initRemoveXattr();
    g.setIno(o.ino);
    g.setName(AsData(o.name));
  }
  void operator()(const op::Purge& o) { b.initPurge().setIno(o.ino); }
};

Result<Op> ReadOp(wire::Op::Reader r) {
  switch (r.which()) {
    case wire::Op::INIT_VOLUME: {
      auto g = r.getInitVolume();
      return Op(op::InitVolume{g.getMode(), g.getUid(), g.getGid(), g.getQuotaBytes(), g.getQuotaInodes()});
    }
    case wire::Op::SET_QUOTA: {
      auto g = r.getSetQuota();
      return Op(op::SetQuota{g.getBytes(), g.getInodes()});
    }
    case wire::Op::MKNOD: {
      auto g = r.getMknod();
      return Op(op::Mknod{g.getParent(), FromData(g.getName()), g.getIno(), g.getMode(), g.getUid(), g.getGid(),
                          g.getRdev(), FromData(g.getSymlinkTarget())});
    }
    case wire::Op::LINK: {
      auto g = r.getLink();
      return Op(op::Link{g.getIno(), g.getNewParent(), FromData(g.getNewName())});
    }
    case wire::Op::UNLINK: {
      auto g = r.getUnlink();
      return Op(op::Unlink{g.getParent(), FromData(g.getName()), g.getDirectory()});
    }
    case wire::Op::RENAME: {
      auto g = r.getRename();
      return Op(op::Rename{g.getParent(), FromData(g.getName()), g.getNewParent(), FromData(g.getNewName()),
                           g.getFlags()});
    }
    case wire::Op::SET_ATTR: {
      auto g = r.getSetAttr();
      return Op(op::SetAttr{g.getIno(), g.getMask(), g.getMode(), g.getUid(), g.getGid(), g.getSize(),
                            g.getAtimeNs(), g.getMtimeNs(), g.getCtimeNs()});
    }
    case wire::Op::WRITE_INLINE: {
      auto g = r.getWriteInline();
      return Op(op::WriteInline{g.getIno(), g.getOffset(), FromData(g.getData())});
    }
    case wire::Op::SET_BLOCKS: {
      auto g = r.getSetBlocks();
      op::SetBlocks o;
      o.ino = g.getIno();
      o.size = g.getSize();
      o.touch_mtime = g.getTouchMtime();
      for (auto b : g.getBlocks()) {
        op::BlockRef ref{b.getIndex(), ChunkId{b.getChunkHi(), b.getChunkLo()}, b.getLength(), {}};
        for (auto p : b.getPages()) {
          ref.pages.push_back(PagePatch{p.getPage(), p.getLength(), ChunkId{p.getChunkHi(), p.getChunkLo()}});
        }
        o.blocks.push_back(std::move(ref));
      }
      return Op(std::move(o));
    }
    case wire::Op::SET_XATTR: {
      auto g = r.getSetXattr();
      return Op(op::SetXattr{g.getIno(), FromData(g.getName()), FromData(g.getValue()), g.getFlags()});
    }
    case wire::Op::REMOVE_XATTR: {
      auto g = r.getRemoveXattr();
      return Op(op::RemoveXattr{g.getIno(), FromData(g.getName())});
    }
    case wire::Op::PURGE:
      return Op(op::Purge{r.getPurge().getIno()});
  }
  return Error(Code::kCorrupt, "unknown op kind in journal entry");
}

}  // namespace

std::string EncodeTxn(const Txn& txn) {
  // A fresh builder callocs an 8 KiB first segment; most txns need a few
  // hundred bytes. The builder zeroes what it used of the scratch again.
  constexpr size_t kScratchWords = 512;
  alignas(capnp::word) thread_local capnp::word scratch[kScratchWords] = {};
  capnp::MallocMessageBuilder message(kj::arrayPtr(scratch, kScratchWords));
  auto root = message.initRoot<wire::Txn>();
  root.setEpoch(txn.epoch);
  root.setTxid(txn.txid);
  root.setTimeNs(txn.time_ns);
  root.setChecksum(txn.checksum);
  auto ops = root.initOps(txn.ops.size());
  for (size_t i = 0; i < txn.ops.size(); ++i) std::visit(OpWriter{ops[i]}, txn.ops[i]);
  auto words = capnp::messageToFlatArray(message);
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

Result<Txn> DecodeTxn(std::string_view bytes) {
  if (bytes.size() % sizeof(capnp::word) != 0 || bytes.empty()) {
    return Error(Code::kCorrupt, "journal entry is not a whole number of words");
  }
  // Copy for alignment; Cap'n Proto reads words in place.
  kj::Array<capnp::word> words = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
  memcpy(words.begin(), bytes.data(), bytes.size());
  Txn txn;
  kj::Maybe<kj::Exception> failure = kj::runCatchingExceptions([&]() {
    capnp::ReaderOptions options;
    options.traversalLimitInWords = 64 * 1024 * 1024;
    capnp::FlatArrayMessageReader reader(words, options);
    auto root = reader.getRoot<wire::Txn>();
    txn.epoch = root.getEpoch();
    txn.txid = root.getTxid();
    txn.time_ns = root.getTimeNs();
    txn.checksum = root.getChecksum();
    for (auto op : root.getOps()) {
      auto decoded = ReadOp(op);
      if (!decoded.ok()) KJ_FAIL_REQUIRE("bad op", decoded.status().ToString());
      txn.ops.push_back(std::move(*decoded));
    }
  });
  KJ_IF_MAYBE(e, failure) {
    return Error(Code::kCorrupt, std::string("malformed journal entry: ") + e->getDescription().cStr());
  }
  return txn;
}

}  // namespace aspfs
