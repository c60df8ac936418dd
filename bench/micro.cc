// aspfs-micro: VolumeFs without FUSE, to profile the cost of one operation
// in the daemon (perf record -g build/bench/aspfs-micro). Prints
// microseconds per operation for each phase; not a test, no assertions.
//
// usage: aspfs-micro [FILES] [STORE_PARENT]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "aspfs/volume_fs.h"

namespace aspfs {
namespace {

template <typename Fn>
void Phase(const char* name, int n, Fn fn) {
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    Status s = fn(i);
    if (!s.ok()) {
      std::fprintf(stderr, "aspfs-micro: %s %d: %s\n", name, i, s.ToString().c_str());
      std::exit(1);
    }
  }
  double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
  std::printf("%-8s %8.2f us/op\n", name, us / n);
}

int Run(int files, const std::string& parent) {
  std::string dir = parent + "/aspfs-micro-XXXXXX";
  if (!mkdtemp(dir.data())) {
    std::perror("aspfs-micro: mkdtemp");
    return 1;
  }
  {
    auto store = Store::Open(dir);
    if (!store.ok()) {
      std::fprintf(stderr, "aspfs-micro: %s\n", store.status().ToString().c_str());
      return 1;
    }
    Volume* vol = *(*store)->CreateVolume("micro", {});
    VolumeFs fs(store->get(), vol);
    auto d = fs.Mknod(1, "d", S_IFDIR | 0755, 0, Caller{});
    uint64_t dir_ino = d->st_ino;
    std::string data(1024, 'x');
    Phase("create", files, [&](int i) -> Status {
      auto st = fs.Mknod(dir_ino, "f." + std::to_string(i), S_IFREG | 0644, 0, Caller{});
      if (!st.ok()) return st.status();
      fs.AddLookup(st->st_ino);
      auto w = fs.Write(st->st_ino, 0, data);
      if (!w.ok()) return w.status();
      return fs.Flush(st->st_ino);
    });
    Phase("lookup", files, [&](int i) -> Status {
      return fs.Lookup(dir_ino, "f." + std::to_string(i)).status();
    });
    Phase("rename", files, [&](int i) -> Status {
      return fs.Rename(dir_ino, "f." + std::to_string(i), dir_ino, "r." + std::to_string(i), 0);
    });
    Phase("unlink", files, [&](int i) -> Status {
      return fs.Unlink(dir_ino, "r." + std::to_string(i), false);
    });
    Phase("forget", files, [&](int i) -> Status {
      fs.Forget(3 + i, 1);
      return Status::Ok();
    });
    Status flushed = fs.FlushAll();
    if (!flushed.ok()) std::fprintf(stderr, "aspfs-micro: %s\n", flushed.ToString().c_str());
  }
  std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace aspfs

int main(int argc, char** argv) {
  int files = argc > 1 ? std::atoi(argv[1]) : 20000;
  std::string parent = argc > 2 ? argv[2] : "/var/tmp";
  return aspfs::Run(files > 0 ? files : 20000, parent);
}
