#include "aspfs/fuse_wire.h"

#include <gtest/gtest.h>
#include <linux/fuse.h>

#include <cstring>
#include <string>

namespace aspfs::fuse_wire {
namespace {

// A request as the kernel writes it: header, then the argument struct.
template <typename T>
std::string Message(uint32_t opcode, uint64_t unique, const T& arg) {
  fuse_in_header header = {};
  header.len = sizeof header + sizeof arg;
  header.opcode = opcode;
  header.unique = unique;
  std::string out(reinterpret_cast<const char*>(&header), sizeof header);
  out.append(reinterpret_cast<const char*>(&arg), sizeof arg);
  return out;
}

TEST(FuseWireTest, InitOfferOfKillPrivV2) {
  fuse_init_in init = {};
  init.major = 7;
  init.minor = 38;
  init.flags = FUSE_ASYNC_READ | FUSE_HANDLE_KILLPRIV_V2;
  std::string msg = Message(FUSE_INIT, 7, init);
  Request r = Parse(msg.data(), msg.size());
  EXPECT_TRUE(r.is_init);
  EXPECT_TRUE(r.offers_killpriv_v2);
  EXPECT_EQ(38u, r.kernel_minor);
  EXPECT_EQ(7u, r.unique);
  init.flags = FUSE_ASYNC_READ;
  msg = Message(FUSE_INIT, 7, init);
  EXPECT_FALSE(Parse(msg.data(), msg.size()).offers_killpriv_v2);
}

TEST(FuseWireTest, KillFlagsOfWriteSetattrOpenCreate) {
  fuse_write_in write = {};
  write.write_flags = FUSE_WRITE_KILL_SUIDGID;
  std::string msg = Message(FUSE_WRITE, 1, write);
  EXPECT_TRUE(Parse(msg.data(), msg.size()).kill_suidgid);
  write.write_flags = FUSE_WRITE_LOCKOWNER;
  msg = Message(FUSE_WRITE, 1, write);
  EXPECT_FALSE(Parse(msg.data(), msg.size()).kill_suidgid);

  fuse_setattr_in setattr = {};
  setattr.valid = FATTR_SIZE | FATTR_KILL_SUIDGID;
  msg = Message(FUSE_SETATTR, 2, setattr);
  EXPECT_TRUE(Parse(msg.data(), msg.size()).kill_suidgid);

  fuse_open_in open = {};
  open.open_flags = FUSE_OPEN_KILL_SUIDGID;
  msg = Message(FUSE_OPEN, 3, open);
  EXPECT_TRUE(Parse(msg.data(), msg.size()).kill_suidgid);

  fuse_create_in create = {};
  create.open_flags = FUSE_OPEN_KILL_SUIDGID;
  msg = Message(FUSE_CREATE, 4, create);
  EXPECT_TRUE(Parse(msg.data(), msg.size()).kill_suidgid);

  // The same bits in other requests, or a message cut short, mean nothing.
  msg = Message(FUSE_READ, 5, write);
  EXPECT_FALSE(Parse(msg.data(), msg.size()).kill_suidgid);
  msg = Message(FUSE_SETATTR, 2, setattr);
  EXPECT_FALSE(Parse(msg.data(), sizeof(fuse_in_header) + 2).kill_suidgid);
  EXPECT_FALSE(Parse(msg.data(), 3).is_init);
}

TEST(FuseWireTest, TmpfileBecomesACreateAndIsMarked) {
  fuse_create_in create = {};
  create.mode = 0100600;
  create.open_flags = FUSE_OPEN_KILL_SUIDGID;
  std::string msg = Message(FUSE_TMPFILE, 6, create) + "/";
  Request r = Parse(msg.data(), msg.size());
  EXPECT_TRUE(r.is_tmpfile);
  EXPECT_TRUE(r.kill_suidgid);
  fuse_in_header header;
  memcpy(&header, msg.data(), sizeof header);
  EXPECT_EQ(static_cast<uint32_t>(FUSE_CREATE), header.opcode);
  EXPECT_EQ(6u, header.unique);
  EXPECT_EQ(0, memcmp(msg.data() + sizeof header, &create, sizeof create));  // the argument is left alone
  // A create is a create.
  msg = Message(FUSE_CREATE, 7, create);
  EXPECT_FALSE(Parse(msg.data(), msg.size()).is_tmpfile);
}

TEST(FuseWireTest, InitReplyGainsKillPrivV2OnlyForItsRequest) {
  fuse_out_header header = {};
  header.unique = 7;
  fuse_init_out out = {};
  out.major = 7;
  out.flags = FUSE_ASYNC_READ;
  struct iovec iov[2] = {{&header, sizeof header}, {&out, sizeof out}};
  auto patched = InitReplyWithKillPrivV2(iov, 2, 7);
  ASSERT_TRUE(patched);
  ASSERT_EQ(sizeof out, patched->size());
  fuse_init_out result;
  memcpy(&result, patched->data(), sizeof result);
  EXPECT_EQ(uint32_t{FUSE_ASYNC_READ | FUSE_HANDLE_KILLPRIV_V2}, result.flags);
  EXPECT_EQ(7u, result.major);
  EXPECT_FALSE(InitReplyWithKillPrivV2(iov, 2, 8));  // another request's reply
  header.error = -EPROTO;
  EXPECT_FALSE(InitReplyWithKillPrivV2(iov, 2, 7));  // a failed INIT
  header.error = 0;
  EXPECT_FALSE(InitReplyWithKillPrivV2(iov, 1, 7));
}

TEST(FuseWireTest, ErrorRepliesNameTheirRequestAndSkipThoseWithoutReplies) {
  fuse_getattr_in getattr = {};
  std::string msg = Message(FUSE_GETATTR, 42, getattr);
  auto reply = ErrorReplyTo(msg.data(), msg.size(), EIO);
  ASSERT_TRUE(reply.has_value());
  fuse_out_header out;
  ASSERT_EQ(sizeof out, reply->size());
  memcpy(&out, reply->data(), sizeof out);
  EXPECT_EQ(sizeof out, out.len);
  EXPECT_EQ(-EIO, out.error);
  EXPECT_EQ(42u, out.unique);

  fuse_forget_in forget = {};
  msg = Message(FUSE_FORGET, 43, forget);
  EXPECT_FALSE(ErrorReplyTo(msg.data(), msg.size(), EIO).has_value());
  fuse_batch_forget_in batch = {};
  msg = Message(FUSE_BATCH_FORGET, 44, batch);
  EXPECT_FALSE(ErrorReplyTo(msg.data(), msg.size(), EIO).has_value());
  fuse_interrupt_in interrupt = {};
  msg = Message(FUSE_INTERRUPT, 45, interrupt);
  EXPECT_FALSE(ErrorReplyTo(msg.data(), msg.size(), EIO).has_value());
  EXPECT_FALSE(ErrorReplyTo(msg.data(), 10, EIO).has_value());
}

}  // namespace
}  // namespace aspfs::fuse_wire
