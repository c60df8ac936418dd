// Invariant 7: bad input gets a clear error and nothing is lost; the daemon
// keeps serving other volumes.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <random>

#include <nlohmann/json.hpp>

#include "journal/store.h"
#include "tests/harness.h"

namespace aspfs::testing {
namespace {

// One line on stderr, "aspfs: ...", and a non-zero exit.
void ExpectCleanFailure(const CliResult& r, const std::string& needle) {
  EXPECT_NE(0, r.exit_code);
  EXPECT_EQ(0u, r.err.rfind("aspfs: ", 0)) << r.err;
  EXPECT_EQ(1, std::count(r.err.begin(), r.err.end(), '\n')) << r.err;
  EXPECT_NE(std::string::npos, r.err.find(needle)) << r.err;
}

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_ = std::make_unique<Daemon>(tmp_.path());
    daemon_->Start();
    good_ = daemon_->CreateAndMount("good");
    WriteFile(good_ + "/f", "still here");
  }
  void TearDown() override {
    // Whatever the test did, the other volume is still served.
    EXPECT_EQ("still here", ReadFile(good_ + "/f"));
    EXPECT_EQ(0, daemon_->Stop());
  }
  TempDir tmp_;
  std::unique_ptr<Daemon> daemon_;
  std::string good_;
};

TEST_F(BadInputTest, InvalidAndUnknownVolumeNames) {
  ExpectCleanFailure(daemon_->Cli({"volume", "create", "a/b"}), "volume name");
  ExpectCleanFailure(daemon_->Cli({"volume", "create", std::string(65, 'x')}), "volume name");
  ExpectCleanFailure(daemon_->Cli({"volume", "create", "-rf"}), "");
  ExpectCleanFailure(daemon_->Cli({"volume", "create", "good"}), "already exists");
  ExpectCleanFailure(daemon_->Cli({"volume", "info", "nope"}), "no volume named nope");
  ExpectCleanFailure(daemon_->Cli({"volume", "delete", "nope"}), "no volume named nope");
  ExpectCleanFailure(daemon_->Cli({"journal", "dump", "nope"}), "no volume named nope");
  ExpectCleanFailure(daemon_->Cli({"mount", "nope", tmp_.path()}), "no volume named nope");
  ExpectCleanFailure(daemon_->Cli({"volume", "create", "q", "--quota-bytes", "lots"}), "not a size");
  ExpectCleanFailure(daemon_->Cli({"frobnicate"}), "");
  ExpectCleanFailure(daemon_->Cli({"volume", "info"}), "NAME");
}

TEST_F(BadInputTest, SecondMountAndBadMountPoints) {
  std::string again = tmp_.path() + "/again";
  mkdir(again.c_str(), 0755);
  ExpectCleanFailure(daemon_->Cli({"mount", "good", again}), "already mounted");
  ExpectCleanFailure(daemon_->Cli({"mount", "good", tmp_.path() + "/missing"}), "mount point");
  ExpectCleanFailure(daemon_->Cli({"volume", "delete", "good"}), "unmount it first");
  ExpectCleanFailure(daemon_->Cli({"umount", again}), "not an aspfs mount");
  ASSERT_EQ(0, daemon_->Cli({"volume", "create", "second"}).exit_code);
  ExpectCleanFailure(daemon_->Cli({"mount", "second", good_}), "already holds a mount");
}

TEST_F(BadInputTest, CliWithoutDaemon) {
  auto r = RunCommand({BinDir() + "/aspfs", "status"}, {"ASPFS_SOCKET=" + tmp_.path() + "/nobody.sock"});
  ExpectCleanFailure(r, "cannot reach aspfsd");
}

TEST_F(BadInputTest, MalformedControlMessagesAreDropped) {
  std::mt19937 rng(7);
  for (int round = 0; round < 30; ++round) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    strncpy(addr.sun_path, daemon_->socket().c_str(), sizeof addr.sun_path - 1);
    ASSERT_EQ(0, connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr));
    std::string junk(1 + rng() % 4096, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    if (round % 3 == 0) {
      // A frame header that claims a huge message.
      uint32_t header[2] = {0, 0x7fffffff};
      junk.replace(0, std::min<size_t>(8, junk.size()), reinterpret_cast<char*>(header), 8);
    }
    if (write(fd, junk.data(), junk.size()) < 0) {
      // The daemon may drop us before we finish: that is the point.
    }
    close(fd);
  }
  auto status = daemon_->Cli({"status", "--json"});
  EXPECT_EQ(0, status.exit_code) << status.err;
  EXPECT_NE(std::string::npos, status.out.find("\"good\""));
}

TEST_F(BadInputTest, CorruptChunkIsEioNotServed) {
  std::string mnt = daemon_->CreateAndMount("victim");
  std::string data(200000, '\0');
  std::mt19937 rng(99);  // no repeating blocks: each block has its own chunk
  for (char& c : data) c = static_cast<char>(rng());
  WriteFile(mnt + "/file", data);
  WriteFile(mnt + "/other", std::string(100000, 'o'));
  struct stat st;
  ASSERT_EQ(0, stat((mnt + "/file").c_str(), &st));
  ASSERT_EQ(0, daemon_->Stop());
  {
    auto store = Store::Open(daemon_->store());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    auto vol = (*store)->FindVolume("victim");
    ASSERT_TRUE(vol.ok());
    auto raw = (*store)->Get(key::Extent((*vol)->id(), InodeId{st.st_ino}, 1));
    ASSERT_TRUE(raw.ok() && *raw);
    auto ext = ExtentRecord::Decode(**raw);
    ASSERT_TRUE(ext.ok());
    ASSERT_TRUE((*store)->CorruptChunkForTest(ext->chunk).ok());
  }
  daemon_->Start();
  ASSERT_EQ(0, daemon_->Cli({"mount", "victim", mnt}).exit_code);
  ASSERT_EQ(0, daemon_->Cli({"mount", "good", good_}).exit_code);
  // O_DIRECT: exact ranges, no readahead into the neighbouring block.
  int fd = open((mnt + "/file").c_str(), O_RDONLY | O_DIRECT);
  ASSERT_GE(fd, 0);
  alignas(4096) static char buf[4096];
  // Block 0 is intact; block 1 fails its hash and is not served.
  EXPECT_EQ(4096, pread(fd, buf, sizeof buf, 0)) << strerror(errno);
  EXPECT_EQ(0, memcmp(buf, data.data(), 4096));
  EXPECT_EQ(-1, pread(fd, buf, sizeof buf, 69632));
  EXPECT_EQ(EIO, errno);
  close(fd);
  EXPECT_EQ(std::string(100000, 'o'), ReadFile(mnt + "/other"));
}

// Fills a file with data no two MiB of which are alike (chunks dedup; each
// seed gives other data), one MiB per write, until a write, or the close
// that commits the last ones, fails; returns that errno (0 if max_mib went
// in).
int FillUntilRefused(const std::string& path, int max_mib, uint64_t seed) {
  int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
  if (fd < 0) return errno;
  std::string buf(1 << 20, '\0');
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  int error = 0;
  for (int mib = 0; mib < max_mib && !error; ++mib) {
    for (size_t i = 0; i + 8 <= buf.size(); i += 8) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      memcpy(&buf[i], &x, 8);
    }
    if (write(fd, buf.data(), buf.size()) < 0) error = errno;
  }
  if (close(fd) != 0 && !error) error = errno;
  return error;
}

// Invariant 7 when the store's disk fills up: file data gets ENOSPC before
// RocksDB would meet it, while deletes still work and every volume stays
// readable; once space is freed on that disk, writes go in again without a
// restart, and nothing on the store is broken.
TEST(FullStoreDiskTest, FileDataIsRefusedDeletesWorkAndFreedSpaceIsUsedAgain) {
  TempDir tmp;
  const std::string disk = tmp.path() + "/disk";
  ASSERT_EQ(0, mkdir(disk.c_str(), 0755));
  ASSERT_EQ(0, mount("tmpfs", disk.c_str(), "tmpfs", 0, "size=256m")) << strerror(errno);
  struct Unmount {
    std::string dir;
    ~Unmount() { umount2(dir.c_str(), MNT_DETACH); }
  } unmount{disk};
  const std::string ballast = disk + "/ballast";
  ASSERT_EQ(0, FillUntilRefused(ballast, 64, 1));
  {
    Daemon daemon(disk);
    daemon.Start();
    const std::string a = daemon.CreateAndMount("a"), b = daemon.CreateAndMount("b");
    WriteFileDurably(b + "/keep", "kept");

    EXPECT_EQ(ENOSPC, FillUntilRefused(a + "/big", 256, 2));
    // File data goes to the chunk log; xattrs (like small fsynced writes)
    // go through RocksDB's WAL, which must not meet ENOSPC itself.
    WriteFile(a + "/x", "");
    const std::string value(65536, 'v');
    int xattrs = 0;
    // Between statvfs probes the daemon counts down what it writes, and
    // RocksDB writes into WAL space it allocated ahead: a later probe can
    // find room the count-down had given up. So the filling goes on until a
    // fresh probe (status) agrees that the disk is full.
    bool full = false;
    for (int round = 0; round < 100 && !full; ++round) {
      while (xattrs < 16384 && setxattr((a + "/x").c_str(), ("user." + std::to_string(xattrs)).c_str(),
                                        value.data(), value.size(), 0) == 0) {
        ++xattrs;
      }
      ASSERT_EQ(ENOSPC, errno) << "after " << xattrs << " xattrs";
      CliResult status = daemon.Cli({"status", "--json"});
      ASSERT_EQ(0, status.exit_code) << status.err;
      full = nlohmann::json::parse(status.out)["disk_full"].get<bool>();
      if (!full) usleep(20000);  // the next statvfs of the store's disk
    }
    ASSERT_TRUE(full) << "after " << xattrs << " xattrs";
    EXPECT_EQ("kept", ReadFile(b + "/keep"));
    CliResult create = daemon.Cli({"volume", "create", "c"});
    EXPECT_NE(0, create.exit_code);
    EXPECT_EQ(0u, create.err.rfind("aspfs: ", 0)) << create.err;
    EXPECT_NE(std::string::npos, create.err.find("store disk full")) << create.err;
    CliResult status = daemon.Cli({"status", "--json"});
    ASSERT_EQ(0, status.exit_code) << status.err;
    EXPECT_NE(std::string::npos, status.out.find("\"disk_reserve_bytes\": " + std::to_string((256ull << 20) / 20)))
        << status.out;
    // Cleaning up works on a full disk.
    EXPECT_EQ(0, unlink((a + "/big").c_str())) << strerror(errno);
    EXPECT_EQ(0, mkdir((a + "/logs").c_str(), 0755)) << strerror(errno);

    // Space freed on the store's disk is seen within a probe interval.
    ASSERT_EQ(0, unlink(ballast.c_str()));
    int error = ENOSPC;
    for (int attempt = 0; attempt < 100 && error == ENOSPC; ++attempt) {
      error = FillUntilRefused(a + "/logs/after", 8, 3);
      if (error == ENOSPC) usleep(20000);  // the next statvfs of the store's disk
    }
    EXPECT_EQ(0, error) << strerror(error);
    EXPECT_EQ(0, setxattr((a + "/x").c_str(), "user.after", value.data(), value.size(), 0))
        << strerror(errno);
    for (const char* vol : {"a", "b"}) {
      CliResult verify = daemon.Cli({"volume", "verify", vol});
      EXPECT_EQ(0, verify.exit_code) << vol << ": " << verify.err;
    }
    EXPECT_EQ(0, daemon.Stop());
  }
}

}  // namespace
}  // namespace aspfs::testing
