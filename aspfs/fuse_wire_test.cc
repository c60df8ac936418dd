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

TEST(FuseWireTest, InitReplyGainsWhatIsWantedOnlyForItsRequest) {
  fuse_out_header header = {};
  header.unique = 7;
  fuse_init_out out = {};
  out.major = 7;
  out.flags = FUSE_ASYNC_READ;
  struct iovec iov[2] = {{&header, sizeof header}, {&out, sizeof out}};
  auto patched = PatchInitReply(iov, 2, 7, {.killpriv_v2 = true, .io_uring = false});
  ASSERT_TRUE(patched);
  ASSERT_EQ(sizeof out, patched->size());
  fuse_init_out result;
  memcpy(&result, patched->data(), sizeof result);
  EXPECT_EQ(uint32_t{FUSE_ASYNC_READ | FUSE_HANDLE_KILLPRIV_V2}, result.flags);
  EXPECT_EQ(0u, result.flags2);
  EXPECT_EQ(7u, result.major);

  // FUSE_OVER_IO_URING is bit 41: bit 9 of flags2, which needs FUSE_INIT_EXT.
  patched = PatchInitReply(iov, 2, 7, {.killpriv_v2 = false, .io_uring = true});
  ASSERT_TRUE(patched);
  memcpy(&result, patched->data(), sizeof result);
  EXPECT_EQ(uint32_t{FUSE_ASYNC_READ | FUSE_INIT_EXT}, result.flags);
  EXPECT_EQ(1u << 9, result.flags2);

  EXPECT_FALSE(PatchInitReply(iov, 2, 8, {.killpriv_v2 = true}));  // another request's reply
  header.error = -EPROTO;
  EXPECT_FALSE(PatchInitReply(iov, 2, 7, {.killpriv_v2 = true}));  // a failed INIT
  header.error = 0;
  EXPECT_FALSE(PatchInitReply(iov, 1, 7, {.killpriv_v2 = true}));
}

TEST(FuseWireTest, InitOfferOfIoUringIsInFlags2) {
  fuse_init_in init = {};
  init.major = 7;
  init.minor = 44;
  init.flags = FUSE_INIT_EXT;
  init.flags2 = 1u << 9;
  std::string msg = Message(FUSE_INIT, 1, init);
  EXPECT_TRUE(Parse(msg.data(), msg.size()).offers_io_uring);
  init.flags = 0;  // flags2 means nothing without FUSE_INIT_EXT
  msg = Message(FUSE_INIT, 1, init);
  EXPECT_FALSE(Parse(msg.data(), msg.size()).offers_io_uring);
  init.flags = FUSE_INIT_EXT;
  init.flags2 = 1u << 8;
  msg = Message(FUSE_INIT, 1, init);
  EXPECT_FALSE(Parse(msg.data(), msg.size()).offers_io_uring);
}

// A ring entry as the kernel fills it: header area and payload buffer, with
// room for the message before the payload.
struct RingEntry {
  char headers[kUringHeaderAreaSize] = {};
  std::string buffer = std::string(kUringMessageRoom + 4096, '\xee');
  char* payload() { return buffer.data() + kUringMessageRoom; }
  size_t capacity() const { return 4096; }

  template <typename T>
  void Fill(uint32_t opcode, uint64_t unique, const T* arg, const std::string& rest) {
    fuse_in_header in = {};
    in.opcode = opcode;
    in.unique = unique;
    in.nodeid = 5;
    memcpy(headers, &in, sizeof in);
    if (arg) memcpy(headers + kUringOpInOffset, arg, sizeof *arg);
    memcpy(payload(), rest.data(), rest.size());
    uint64_t commit_id = unique;
    uint32_t payload_sz = static_cast<uint32_t>(rest.size());
    memcpy(headers + kUringEntInOutOffset + 8, &commit_id, sizeof commit_id);
    memcpy(headers + kUringEntInOutOffset + 16, &payload_sz, sizeof payload_sz);
  }
};

TEST(FuseWireTest, UringRequestBecomesTheMessageDevFuseWouldHaveSent) {
  RingEntry entry;
  fuse_write_in write = {};
  write.offset = 4096;
  write.size = 5;
  entry.Fill(FUSE_WRITE, 9, &write, "hello");
  auto message = UringRequestToMessage(entry.headers, entry.payload(), entry.capacity());
  ASSERT_TRUE(message);
  std::string expected = Message(FUSE_WRITE, 9, write) + "hello";
  fuse_in_header header;
  memcpy(&header, expected.data(), sizeof header);
  header.nodeid = 5;
  header.len = static_cast<uint32_t>(expected.size());
  memcpy(expected.data(), &header, sizeof header);
  EXPECT_EQ(expected, std::string(message->data, message->len));
  EXPECT_EQ(entry.payload() + 5, message->data + message->len);  // in place: the payload is not copied
  EXPECT_EQ(9u, message->commit_id);

  // A lookup's first argument is empty: the name is all of the payload.
  RingEntry lookup;
  lookup.Fill<int>(FUSE_LOOKUP, 10, nullptr, std::string("name\0", 5));
  message = UringRequestToMessage(lookup.headers, lookup.payload(), lookup.capacity());
  ASSERT_TRUE(message);
  ASSERT_EQ(sizeof header + 5, message->len);
  memcpy(&header, message->data, sizeof header);
  EXPECT_EQ(sizeof header + 5, header.len);
  EXPECT_EQ(uint32_t{FUSE_LOOKUP}, header.opcode);
  EXPECT_STREQ("name", message->data + sizeof header);

  // An opcode libfuse 3.14 does not serve, or a payload size over the
  // buffer, is refused.
  RingEntry statx;
  statx.Fill<int>(52, 11, nullptr, "");
  EXPECT_FALSE(UringRequestToMessage(statx.headers, statx.payload(), statx.capacity()));
  EXPECT_FALSE(UringRequestToMessage(entry.headers, entry.payload(), 4));
}

TEST(FuseWireTest, ReplyGoesToTheRingEntrysHeaderAndPayload) {
  RingEntry entry;
  fuse_out_header out = {};
  out.unique = 12;
  out.len = sizeof out + 7;
  char part1[] = "abc";
  char part2[] = "defg";
  struct iovec iov[3] = {{&out, sizeof out}, {part1, 3}, {part2, 4}};
  EXPECT_EQ(12u, UniqueOfReply(iov, 3));
  ASSERT_TRUE(ReplyToUring(iov, 3, entry.headers, entry.payload(), entry.capacity()));
  EXPECT_EQ(0, memcmp(entry.headers, &out, sizeof out));
  EXPECT_EQ("abcdefg", std::string(entry.payload(), 7));
  uint32_t payload_sz;
  memcpy(&payload_sz, entry.headers + kUringEntInOutOffset + 16, sizeof payload_sz);
  EXPECT_EQ(7u, payload_sz);
  EXPECT_FALSE(ReplyToUring(iov, 3, entry.headers, entry.payload(), 6));  // does not fit
  EXPECT_FALSE(ReplyToUring(iov + 1, 2, entry.headers, entry.payload(), entry.capacity()));  // no header
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
